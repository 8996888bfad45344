"""Publish persistent messages to a durable queue through a direct exchange.

The classic RabbitMQ tutorial producer in pika 1.x style. Usage:

    AMQP_URL=amqp://guest:guest@localhost:5672/%2F python examples/producer.py "Hello" "World"

With no message arguments it sends "Hello World!". Pair it with examples/consumer.py.
"""

import argparse
import os

import pika

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", nargs="*", default=["Hello World!"])
    parser.add_argument("--exchange", default="demo_direct")
    parser.add_argument("--queue", default="demo_queue")
    parser.add_argument("--routing-key", default="demo")
    args = parser.parse_args()

    connection = pika.BlockingConnection(
        pika.URLParameters(os.environ.get("AMQP_URL", DEFAULT_URL))
    )
    channel = connection.channel()
    channel.exchange_declare(exchange=args.exchange, exchange_type="direct", durable=True)
    channel.queue_declare(queue=args.queue, durable=True)
    channel.queue_bind(queue=args.queue, exchange=args.exchange, routing_key=args.routing_key)

    for message in args.messages:
        channel.basic_publish(
            exchange=args.exchange,
            routing_key=args.routing_key,
            body=message.encode(),
            properties=pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent, content_type="text/plain"
            ),
        )
        print(f" [x] Sent {message!r}", flush=True)
    connection.close()


if __name__ == "__main__":
    main()
