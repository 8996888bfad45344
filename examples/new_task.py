"""Send a task to the durable work queue (RabbitMQ tutorial 2, "Work queues").

Usage: AMQP_URL=... python examples/new_task.py First message.....

Each dot in the message stands for a second of work in examples/worker.py.
"""

import argparse
import os

import pika

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("words", nargs="*")
    parser.add_argument("--queue", default="task_queue")
    args = parser.parse_args()
    message = " ".join(args.words) or "Hello World!"

    connection = pika.BlockingConnection(
        pika.URLParameters(os.environ.get("AMQP_URL", DEFAULT_URL))
    )
    channel = connection.channel()
    channel.queue_declare(queue=args.queue, durable=True)
    channel.basic_publish(
        exchange="",
        routing_key=args.queue,
        body=message.encode(),
        properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
    )
    print(f" [x] Sent {message!r}", flush=True)
    connection.close()


if __name__ == "__main__":
    main()
