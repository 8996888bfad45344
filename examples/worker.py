"""Take tasks from the durable work queue, one at a time (RabbitMQ tutorial 2, "Work queues").

Usage: AMQP_URL=... python examples/worker.py [--count N] [--dot-seconds S]

Each dot in a task's body means S seconds of work (default 1); the task is acknowledged when
done, so a worker that dies mid-task leaves it for another worker. --count N exits after N.
"""

import argparse
import contextlib
import os
import sys
import time

import pika

DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=0, help="exit after N tasks (0: never)")
    parser.add_argument("--dot-seconds", type=float, default=1.0)
    parser.add_argument("--queue", default="task_queue")
    args = parser.parse_args()

    connection = pika.BlockingConnection(
        pika.URLParameters(os.environ.get("AMQP_URL", DEFAULT_URL))
    )
    channel = connection.channel()
    channel.queue_declare(queue=args.queue, durable=True)
    channel.basic_qos(prefetch_count=1)

    done = 0

    def callback(ch, method, properties, body):
        nonlocal done
        task = body.decode()
        print(f" [x] Received {task!r}", flush=True)
        time.sleep(task.count(".") * args.dot_seconds)
        print(" [x] Done", flush=True)
        ch.basic_ack(delivery_tag=method.delivery_tag)
        done += 1
        if args.count and done >= args.count:
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
