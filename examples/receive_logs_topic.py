"""Receive the log messages whose routing keys match binding keys (RabbitMQ tutorial 5).

Usage: AMQP_URL=... python examples/receive_logs_topic.py [--count N] "kern.*" "*.critical"

Binds a server-named exclusive queue to the topic exchange with each binding key ("*" is one
word, "#" zero or more) and prints every message; --count N exits after N messages.
"""

import argparse
import contextlib
import os
import sys

import pika

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binding_keys", nargs="+")
    parser.add_argument("--count", type=int, default=0, help="exit after N messages (0: never)")
    parser.add_argument("--exchange", default="topic_logs")
    args = parser.parse_args()

    connection = pika.BlockingConnection(
        pika.URLParameters(os.environ.get("AMQP_URL", DEFAULT_URL))
    )
    channel = connection.channel()
    channel.exchange_declare(exchange=args.exchange, exchange_type="topic")
    queue_name = channel.queue_declare(queue="", exclusive=True).method.queue
    for binding_key in args.binding_keys:
        channel.queue_bind(exchange=args.exchange, queue=queue_name, routing_key=binding_key)

    received = 0

    def callback(ch, method, properties, body):
        nonlocal received
        print(f" [x] {method.routing_key}:{body.decode()}", flush=True)
        received += 1
        if args.count and received >= args.count:
            ch.stop_consuming()

    channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)
    print(" [*] Waiting for logs. To exit press CTRL+C", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        channel.start_consuming()
    connection.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
