"""Publish a log message to the topic exchange (RabbitMQ tutorial 5, "Topics").

Usage: AMQP_URL=... python examples/emit_log_topic.py kern.critical "A critical kernel error"

The first argument is the routing key ("<facility>.<severity>", default anonymous.info).
"""

import argparse
import os

import pika

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("routing_key", nargs="?", default="anonymous.info")
    parser.add_argument("words", nargs="*")
    parser.add_argument("--exchange", default="topic_logs")
    args = parser.parse_args()
    message = " ".join(args.words) or "Hello World!"

    connection = pika.BlockingConnection(
        pika.URLParameters(os.environ.get("AMQP_URL", DEFAULT_URL))
    )
    channel = connection.channel()
    channel.exchange_declare(exchange=args.exchange, exchange_type="topic")
    channel.basic_publish(
        exchange=args.exchange, routing_key=args.routing_key, body=message.encode()
    )
    print(f" [x] Sent {args.routing_key}:{message}", flush=True)
    connection.close()


if __name__ == "__main__":
    main()
