"""Consume from a durable queue bound to a direct exchange, one unacked message at a time.

The classic RabbitMQ tutorial consumer in pika 1.x style. Usage:

    AMQP_URL=amqp://guest:guest@localhost:5672/%2F python examples/consumer.py [--count N]

It prints each message and acknowledges it; with --count N it exits after N messages.
"""

import argparse
import contextlib
import os
import sys

import pika

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=0, help="exit after N messages (0: never)")
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
    channel.basic_qos(prefetch_count=1)

    received = 0

    def callback(ch, method, properties, body):
        nonlocal received
        print(f" [x] Received {body.decode()!r}", flush=True)
        ch.basic_ack(delivery_tag=method.delivery_tag)
        received += 1
        if args.count and received >= args.count:
            ch.stop_consuming()

    channel.basic_consume(queue=args.queue, on_message_callback=callback)
    print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        channel.start_consuming()
    connection.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
