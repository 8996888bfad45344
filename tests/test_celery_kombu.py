"""Celery and kombu (py-amqp transport) against trimq, unchanged: a worker completes 200 tasks
with the rpc:// result backend; kombu publishes, consumes and acks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

celery = pytest.importorskip("celery")
kombu = pytest.importorskip("kombu")

from amqp.exceptions import ConsumerCancelled  # noqa: E402 - only once kombu is known present
from kombu import Connection, Exchange, Queue  # noqa: E402

APPS = Path(__file__).parent / "apps"


def amqp_url(broker) -> str:  # type: ignore[no-untyped-def]
    return f"amqp://guest:guest@{broker.host}:{broker.port}//"


def test_celery_worker_completes_200_tasks_with_rpc_results(broker) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "AMQP_URL": amqp_url(broker), "PYTHONPATH": str(APPS)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        sys.path.insert(0, str(APPS))
        os.environ["AMQP_URL"] = amqp_url(broker)
        import celery_app  # noqa: PLC0415 - the app module is on sys.path only from here

        results = [celery_app.add.delay(i, i) for i in range(200)]
        deadline = time.monotonic() + 90
        values = [r.get(timeout=max(1.0, deadline - time.monotonic())) for r in results]
        assert values == [2 * i for i in range(200)]
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
        sys.path.remove(str(APPS))


def test_kombu_publish_consume_ack(broker, unique: str) -> None:  # type: ignore[no-untyped-def]
    exchange = Exchange(f"{unique}.x", type="direct", durable=True)
    queue = Queue(
        unique, exchange, routing_key="k", durable=True, queue_arguments={"x-max-priority": 5}
    )
    received: list[tuple[dict, int]] = []
    with Connection(amqp_url(broker), transport="pyamqp") as conn:
        producer = conn.Producer(serializer="json")
        for n in range(5):
            producer.publish(
                {"n": n},
                exchange=exchange,
                routing_key="k",
                declare=[queue],
                priority=n % 3,
                delivery_mode=2,
            )

        def handle(body: dict, message) -> None:  # type: ignore[no-untyped-def]
            received.append((body, message.properties.get("priority", 0)))
            message.ack()

        with conn.Consumer(queue, callbacks=[handle], accept=["json"]):
            deadline = time.monotonic() + 10
            while len(received) < 5 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=1)
    # the highest priority first, FIFO within a priority
    assert [b["n"] for b, _ in received] == [2, 1, 4, 0, 3]


def test_kombu_deleting_a_consumed_queue(broker, unique: str) -> None:  # type: ignore[no-untyped-def]
    """queue_delete on a queue this channel consumes returns its count; py-amqp raises
    ConsumerCancelled for the server's Basic.Cancel only afterwards, when events are drained
    (RabbitMQ sends Delete-Ok first)."""
    with Connection(amqp_url(broker), transport="pyamqp") as conn:
        channel = conn.channel()
        queue = Queue(unique, channel=channel, auto_delete=False)
        queue.declare()
        tag = queue.consume(callback=lambda message: None)  # no on_cancel callback
        assert queue.delete() == 0
        with pytest.raises(ConsumerCancelled) as info:
            conn.drain_events(timeout=5)
        assert tag in str(info.value)
