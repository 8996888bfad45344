"""A failed fsync: persistent publishes are refused with 541 and never confirmed; the broker
stays up for everything that needs no disk.

In-process: the broker runs in a thread (trio) so the test can make the disk fail under it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from conftest import durable_dead_letter_target
from inprocess_broker import BrokerThread
from pika_helpers import wait_for_count

import storage.segment

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: makes the broker's own disk fail"
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    node = BrokerThread(tmp_path, control=False).start()
    yield node
    node.cancel_now()


def test_failed_fsync_refuses_persistent_publishes_with_541(
    broker: BrokerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    ch = conn.channel()
    ch.queue_declare("durable-q", durable=True)
    ch.confirm_delivery()
    ch.basic_publish("", "durable-q", b"before", pika.BasicProperties(delivery_mode=2))

    def broken_fsync(fd: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage.segment.os, "fsync", broken_fsync)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        ch.basic_publish("", "durable-q", b"after", pika.BasicProperties(delivery_mode=2))
    assert info.value.reply_code == 541
    assert info.value.reply_text.startswith("INTERNAL_ERROR - ")

    # Later persistent publishes are refused at once; transient work goes on.
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"transient")
    assert ch.basic_get(q, auto_ack=True)[2] == b"transient"
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        ch.basic_publish("", "durable-q", b"late", pika.BasicProperties(delivery_mode=2))
        ch.queue_declare("sync", passive=True)  # any round trip shows the close
    assert info.value.reply_code == 541


def test_expiry_into_a_durable_queue_after_the_log_failed_keeps_the_broker_up(
    broker: BrokerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dead-lettering on expiry journals the copy; with the log failed that is refused, and
    the timer that expired it must not take the broker down."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    ch = conn.channel()
    durable_dead_letter_target(ch)
    ch.queue_declare(
        "ttl", durable=True, arguments={"x-message-ttl": 300, "x-dead-letter-exchange": "dlx"}
    )
    ch.confirm_delivery()
    ch.basic_publish("", "ttl", b"expiring", pika.BasicProperties(delivery_mode=2))

    def broken_fsync(fd: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage.segment.os, "fsync", broken_fsync)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
        ch.basic_publish("", "ttl", b"fails the log", pika.BasicProperties(delivery_mode=2))
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    ch = conn.channel()
    assert wait_for_count(ch, "ttl", 0) == 0  # the first message expires
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"still serving")
    assert ch.basic_get(q, auto_ack=True)[2] == b"still serving"
    conn.close()
    assert broker.thread.is_alive()
