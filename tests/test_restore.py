"""trimq/broker/recovery.py restore(): the broker model rebuilt from a recovered state, in
process (no files: the state is built by applying records)."""

from __future__ import annotations

import time
from typing import Any

from storage import RecordType
from storage.replay import ReplayState
from trimq.amqp.codec import encode_table
from trimq.amqp.spec import BasicProperties
from trimq.broker.broker import Broker, BrokerConfig
from trimq.broker.journal import Journal
from trimq.broker.message import QueuedMessage
from trimq.broker.recovery import restore

PERSISTENT = BasicProperties(delivery_mode=2).encode()


class Log:
    def __init__(self, *queues: str, arguments: dict[str, Any] | None = None) -> None:
        self.state = ReplayState()
        self.lsn = 0
        for name in queues:
            self.add(
                RecordType.DEFINE,
                {
                    "kind": "queue",
                    "key": ["/", name],
                    "value": {"auto_delete": False, "arguments": encode_table(arguments)},
                },
            )

    def add(self, rtype: RecordType, payload: dict[str, Any]) -> None:
        self.lsn += 1
        self.state.apply(self.lsn, rtype, payload, 100)

    def publish(self, mid: int, properties: bytes, *queues: str, recorded: int = 0) -> None:
        # bytes() copies: equal properties arrive as distinct objects, as from the log.
        self.add(
            RecordType.MESSAGE,
            {
                "id": mid,
                "exchange": "",
                "routing_key": queues[0],
                "body": b"m%d" % mid,
                "properties": bytes(bytearray(properties)),
                "queues": [["/", q] for q in queues],
                "time": recorded,
            },
        )

    def restore(self) -> Broker:
        broker = Broker(BrokerConfig(), Journal(lambda rtype, payload: 0), bootstrap=False)
        restore(broker, self.state.recovered())
        return broker


def entries(broker: Broker, queue: str) -> list[QueuedMessage]:
    return list(broker.vhosts["/"].queues[queue].ready)


def test_messages_come_back_in_order_with_their_delivery_counts() -> None:
    log = Log("a")
    for mid in (1, 2, 3):
        log.publish(mid, PERSISTENT, "a")
    log.add(RecordType.DELIVER, {"queue": ["/", "a"], "ids": [2]})
    log.add(RecordType.DELIVER, {"queue": ["/", "a"], "ids": [2]})
    got = entries(log.restore(), "a")
    assert [(e.message.id, e.message.body, e.delivery_count, e.redelivered) for e in got] == [
        (1, b"m1", 0, False),
        (2, b"m2", 2, True),
        (3, b"m3", 0, False),
    ]
    assert all(e.message.persistent for e in got)


def test_a_message_several_queues_hold_is_one_message() -> None:
    log = Log("a", "b")
    log.publish(1, PERSISTENT, "a", "b")
    log.publish(2, PERSISTENT, "b")
    broker = log.restore()
    a, b = entries(broker, "a"), entries(broker, "b")
    assert a[0].message is b[0].message
    assert [e.message.id for e in b] == [1, 2]


def test_equal_properties_are_decoded_once_and_shared() -> None:
    text = BasicProperties(content_type="text/plain", delivery_mode=2).encode()
    log = Log("a")
    log.publish(1, PERSISTENT, "a")
    log.publish(2, text, "a")
    log.publish(3, PERSISTENT, "a")
    first, second, third = (e.message for e in entries(log.restore(), "a"))
    assert first.properties is third.properties
    assert first.properties_raw is third.properties_raw
    assert first.properties_raw == PERSISTENT
    assert second.properties.content_type == "text/plain"
    assert second.properties_raw == text
    assert first.properties.content_type is None


def test_properties_unique_to_each_message_are_all_decoded() -> None:
    log = Log("a")
    for mid in range(1, 3001):  # more than the decoder keeps
        log.publish(mid, BasicProperties(message_id=f"id-{mid}").encode(), "a")
    got = entries(log.restore(), "a")
    assert [e.message.properties.message_id for e in got] == [f"id-{mid}" for mid in range(1, 3001)]
    assert not got[0].message.persistent


def test_priority_queue_restores_highest_priority_first() -> None:
    log = Log("p", arguments={"x-max-priority": 5})
    for mid, priority in enumerate([1, 5, 0, 5, 3], 1):
        log.publish(mid, BasicProperties(priority=priority).encode(), "p")
    queue = log.restore().vhosts["/"].queues["p"]
    assert [e.message.id for e in queue.ready] == [2, 4, 5, 1, 3]
    assert len(queue.ready) == 5 and queue.ready.bytes == 10
    assert [e.seq for e in queue.ready] == [2, 4, 5, 1, 3]


def test_ttl_counts_from_when_the_message_was_recorded() -> None:
    now_ms = int(time.time() * 1000)
    log = Log("t", arguments={"x-message-ttl": 60_000})
    log.publish(1, PERSISTENT, "t", recorded=now_ms - 50_000)
    log.publish(2, PERSISTENT, "t")  # time unknown: counts from now
    log.publish(3, BasicProperties(expiration="1000").encode(), "t", recorded=now_ms)
    log.publish(4, PERSISTENT, "t", recorded=now_ms - 70_000)  # already past
    before = time.monotonic()
    broker = log.restore()
    left = {
        e.message.id: e.expires_at - before
        for e in entries(broker, "t")
        if e.expires_at is not None
    }
    # Margins far wider than the time the test takes: these are not timings.
    assert 5 < left[1] < 15
    assert 55 < left[2] < 65
    assert 0 < left[3] < 5
    assert left[4] < 0
    assert broker.timers.next_deadline() is not None


def test_no_ttl_no_deadlines() -> None:
    log = Log("a")
    log.publish(1, PERSISTENT, "a", recorded=int(time.time() * 1000) - 10**9)
    broker = log.restore()
    assert [e.expires_at for e in entries(broker, "a")] == [None]
    assert broker.timers.next_deadline() is None
    assert broker.vhosts["/"].queues["a"].next_seq == 1


def test_a_drop_head_queue_over_its_limit_drops_the_oldest_again() -> None:
    """Dropping the oldest over x-max-length is journaled after the publish that caused it; a
    crash between the two leaves the queue over its limit in the log."""
    log = Log("capped", arguments={"x-max-length": 2})
    for mid in (1, 2, 3):
        log.publish(mid, PERSISTENT, "capped")
    assert [e.message.id for e in entries(log.restore(), "capped")] == [2, 3]
