"""A small Celery application for the smoke test: broker and rpc:// results on trimq."""

import os

from celery import Celery

app = Celery("trimq_smoke", broker=os.environ["AMQP_URL"], backend="rpc://")
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
)


@app.task
def add(x: int, y: int) -> int:
    return x + y
