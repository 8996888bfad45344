"""Run the programs in examples/ as subprocesses against the test broker and check their output."""

from __future__ import annotations

import os
import queue as queue_mod
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pika_helpers import message_count

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WAITING = " [*] Waiting for messages. To exit press CTRL+C"


def example_env(broker) -> dict[str, str]:
    return {**os.environ, "AMQP_URL": broker.url}


def run(broker, script: str, *args: str, timeout: float = 15) -> list[str]:
    """Run an example to completion; return its stdout lines."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        check=False,
        env=example_env(broker),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


class Running:
    """A long-running example whose stdout lines are read by a thread."""

    def __init__(self, broker, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), *args],
            env=example_env(broker),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue_mod.Queue[str] = queue_mod.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 10) -> str:
        return self.lines.get(timeout=timeout)

    def finish(self, timeout: float = 15) -> list[str]:
        """Wait for the process to exit by itself (status 0); return the remaining lines."""
        try:
            self.proc.wait(timeout)
        finally:
            self.kill()
        self.thread.join(5)
        assert self.proc.stderr is not None
        assert self.proc.returncode == 0, self.proc.stderr.read()
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return rest

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def cleanup(broker):
    """Names of (queues, exchanges) to delete after the test."""
    names: dict[str, list[str]] = {"queues": [], "exchanges": []}
    yield names
    conn = broker.connect()
    try:
        ch = conn.channel()
        for q in names["queues"]:
            ch.queue_delete(q)
        for x in names["exchanges"]:
            ch.exchange_delete(x)
    finally:
        conn.close()


def test_producer_then_consumer(broker, channel, unique, cleanup):
    names = ["--exchange", unique + ".x", "--queue", unique, "--routing-key", "demo"]
    cleanup["queues"].append(unique)
    cleanup["exchanges"].append(unique + ".x")
    out = run(broker, "producer.py", "one", "two", "three", *names)
    assert out == [" [x] Sent 'one'", " [x] Sent 'two'", " [x] Sent 'three'"]
    declared = channel.queue_declare(unique, durable=True, passive=True).method
    assert declared.message_count == 3
    _, props, _ = channel.basic_get(unique, auto_ack=False)
    assert (props.delivery_mode, props.content_type) == (2, "text/plain")
    channel.close()  # gives the message back
    out = run(broker, "consumer.py", "--count", "3", *names)
    assert out == [WAITING, " [x] Received 'one'", " [x] Received 'two'", " [x] Received 'three'"]


def test_consumer_waits_for_producer(broker, connection, unique, cleanup):
    names = ["--exchange", unique + ".x", "--queue", unique, "--routing-key", "rk"]
    cleanup["queues"].append(unique)
    cleanup["exchanges"].append(unique + ".x")
    consumer = Running(broker, "consumer.py", "--count", "2", *names)
    try:
        assert consumer.next_line() == WAITING
        assert run(broker, "producer.py", *names) == [" [x] Sent 'Hello World!'"]
        assert run(broker, "producer.py", "bye", *names) == [" [x] Sent 'bye'"]
        assert consumer.finish() == [" [x] Received 'Hello World!'", " [x] Received 'bye'"]
    finally:
        consumer.kill()
    assert message_count(connection.channel(), unique) == 0


def test_work_queue_two_workers(broker, connection, unique, cleanup):
    cleanup["queues"].append(unique)
    workers = [
        Running(broker, "worker.py", "--queue", unique, "--count", "2", "--dot-seconds", "0.05")
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.next_line() == WAITING
        tasks = ["First message.", "Second message..", "Third message...", "Fourth"]
        for task in tasks:
            assert run(broker, "new_task.py", "--queue", unique, *task.split()) == [
                f" [x] Sent {task!r}"
            ]
        outputs = [worker.finish() for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    received = []
    for out in outputs:
        # each worker took two tasks, one at a time: Received, Done, Received, Done
        assert len(out) == 4 and out[1] == out[3] == " [x] Done", out
        received += [out[0], out[2]]
    assert sorted(received) == sorted(f" [x] Received {task!r}" for task in tasks)
    assert message_count(connection.channel(), unique) == 0


def test_new_task_default_message_is_persistent(broker, channel, unique, cleanup):
    cleanup["queues"].append(unique)
    assert run(broker, "new_task.py", "--queue", unique) == [" [x] Sent 'Hello World!'"]
    method, props, body = channel.basic_get(unique, auto_ack=True)
    assert (body, props.delivery_mode, method.routing_key) == (b"Hello World!", 2, unique)


def test_topic_logs(broker, unique, cleanup):
    exchange = unique + ".logs"
    cleanup["exchanges"].append(exchange)
    kern = Running(
        broker, "receive_logs_topic.py", "--exchange", exchange, "--count", "2", "kern.*"
    )
    critical = Running(
        broker,
        "receive_logs_topic.py",
        "--exchange",
        exchange,
        "--count",
        "3",
        "*.critical",
        "audit.#",
    )
    try:
        for receiver in (kern, critical):
            assert receiver.next_line() == " [*] Waiting for logs. To exit press CTRL+C"
        emits = [
            ("kern.critical", "A critical kernel error"),
            ("kern.info", "booted"),
            ("app.warning", "nobody listens"),
            ("app.critical", "app down"),
            ("audit.user.login", "alice"),
        ]
        for key, message in emits:
            assert run(
                broker, "emit_log_topic.py", "--exchange", exchange, key, *message.split()
            ) == [f" [x] Sent {key}:{message}"]
        assert kern.finish() == [
            " [x] kern.critical:A critical kernel error",
            " [x] kern.info:booted",
        ]
        assert critical.finish() == [
            " [x] kern.critical:A critical kernel error",
            " [x] app.critical:app down",
            " [x] audit.user.login:alice",
        ]
    finally:
        kern.kill()
        critical.kill()


def test_emit_log_topic_defaults(broker, channel, unique, cleanup):
    exchange = unique + ".logs"
    cleanup["exchanges"].append(exchange)
    channel.exchange_declare(exchange, "topic")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, "anonymous.*")
    assert run(broker, "emit_log_topic.py", "--exchange", exchange) == [
        " [x] Sent anonymous.info:Hello World!"
    ]
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert (method.routing_key, body) == ("anonymous.info", b"Hello World!")
