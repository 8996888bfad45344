"""A failing online compaction does not take the broker down: the failure is logged, the log
stays consistent, the broker goes on serving, compaction is retried after a pause, and
confirmed messages survive a restart.

In-process: the broker runs in a thread (trio) so the test can make compaction's file-system
steps fail under it.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pytest
from inprocess_broker import BrokerThread

import storage.compaction
import trimq.server.app
from trimq.server.app import COMPACTION_RETRY_MAX, compaction_pause

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: makes the broker's own disk fail"
)

SEGMENT = 4096
PERSISTENT = pika.BasicProperties(delivery_mode=2)


class LogRecorder:
    """Stands in for the server's logger: keeps every event (thread-safe enough: appends)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.events.append((event, fields))

        return record

    def named(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in list(self.events) if event == name]


class FailingSteps:
    """Compaction's deletes and rewrites: the second delete fails (EIO) after the first one
    went through, which is the partial failure that used to leave the name of a deleted
    segment in the WAL's list; then the next step, whatever it is, fails too (ENOSPC)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps = 0
        self.unlinks = 0
        self.fail_next = False
        real_os = storage.compaction.os
        real_replace = storage.compaction.replace_file

        class OsProxy:
            def __getattr__(_self, name: str) -> Any:
                return getattr(real_os, name)

            def unlink(_self, path: Any) -> None:
                self.unlinks += 1
                self._step(errno.EIO if self.unlinks == 2 else None)
                real_os.unlink(path)

        def replace_file(*args: Any, **kwargs: Any) -> None:
            self._step(None)
            real_replace(*args, **kwargs)

        monkeypatch.setattr(storage.compaction, "os", OsProxy())
        monkeypatch.setattr(storage.compaction, "replace_file", replace_file)

    def _step(self, code: int | None) -> None:
        self.steps += 1
        if self.fail_next:
            self.fail_next = False
            code = errno.ENOSPC
        elif code is not None:
            self.fail_next = True
        if code is not None:
            raise OSError(code, os.strerror(code))


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _bodies(ch: Any, queue: str) -> list[bytes]:
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body)


def test_compaction_pause_doubles_after_each_failure_up_to_a_limit() -> None:
    assert compaction_pause(5.0, 0) == 5.0
    assert [compaction_pause(5.0, n) for n in (1, 2, 3)] == [10.0, 20.0, 40.0]
    assert compaction_pause(5.0, 30) == COMPACTION_RETRY_MAX
    assert compaction_pause(3600.0, 2) == 3600.0  # never shorter than the interval


def test_failed_compactions_are_logged_retried_and_lose_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = LogRecorder()
    monkeypatch.setattr(trimq.server.app, "log", logged)
    faults = FailingSteps(monkeypatch)
    node = BrokerThread(tmp_path, segment_size=SEGMENT, compaction_interval=0.05).start()
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("keep", durable=True)
    ch.queue_declare("churn", durable=True)
    kept = [f"keep-{i}".encode() for i in range(20)]
    for body in kept:
        ch.basic_publish("", "keep", body, PERSISTENT)
    for i in range(200):
        ch.basic_publish("", "churn", f"churn-{i}".encode() + b"." * 1000, PERSISTENT)
    assert len(_bodies(ch, "churn")) == 200  # acked: dead records for compaction

    _wait_for(lambda: len(logged.named("wal.compaction_failed")) >= 2, "two failures")
    first, second = logged.named("wal.compaction_failed")[:2]
    assert first["error_type"] == "OSError" and "Input/output error" in first["error"]
    assert "No space left on device" in second["error"]
    assert (first["failures"], second["failures"]) == (1, 2)
    assert second["retry_in"] > first["retry_in"]  # backing off

    # Still serving: publishes are confirmed, queues answer.
    late = [f"late-{i}".encode() for i in range(10)]
    for body in late:
        ch.basic_publish("", "keep", body, PERSISTENT)
    assert ch.queue_declare("keep", passive=True).method.message_count == 30

    _wait_for(lambda: bool(logged.named("wal.compacted")), "a compaction that succeeds")
    assert faults.unlinks > 2
    conn.close()
    node.stop()

    for without_checkpoint in (False, True):
        if without_checkpoint:  # the segments alone replay to the same state
            for path in (tmp_path / "wal").glob("checkpoint-*.ckpt"):
                path.unlink()
        node = BrokerThread(tmp_path, segment_size=SEGMENT, compaction_interval=0.05).start()
        conn = node.connect()
        ch = conn.channel()
        assert ch.queue_declare("churn", durable=True, passive=True).method.message_count == 0
        # Read without acking (requeued when the connection closes): all there, in order.
        got = []
        for _ in range(30):
            method, _props, body = ch.basic_get("keep")
            assert method is not None
            got.append(body)
        assert got == kept + late
        conn.close()
        node.stop()
