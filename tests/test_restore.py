"""trimq/broker/recovery.py restore(): the broker model rebuilt from a recovered state, in
process (no files: the state is built by applying records)."""

from __future__ import annotations

from typing import Any

from storage import RecordType
from storage.replay import ReplayState
from trimq.amqp.spec import BasicProperties
from trimq.broker.broker import Broker, BrokerConfig
from trimq.broker.journal import Journal
from trimq.broker.message import QueuedMessage
from trimq.broker.recovery import restore

PERSISTENT = BasicProperties(delivery_mode=2).encode()


class Log:
    def __init__(self, *queues: str) -> None:
        self.state = ReplayState()
        self.lsn = 0
        for name in queues:
            self.add(RecordType.DEFINE, {"kind": "queue", "key": ["/", name],
                                         "value": {"auto_delete": False, "arguments": b""}})

    def add(self, rtype: RecordType, payload: dict[str, Any]) -> None:
        self.lsn += 1
        self.state.apply(self.lsn, rtype, payload, 100)

    def publish(self, mid: int, properties: bytes, *queues: str) -> None:
        # bytes() copies: equal properties arrive as distinct objects, as from the log.
        self.add(RecordType.MESSAGE, {
            "id": mid, "exchange": "", "routing_key": queues[0], "body": b"m%d" % mid,
            "properties": bytes(bytearray(properties)), "queues": [["/", q] for q in queues]})

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
        (1, b"m1", 0, False), (2, b"m2", 2, True), (3, b"m3", 0, False)]
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
    assert [e.message.properties.message_id for e in got] == [
        f"id-{mid}" for mid in range(1, 3001)]
    assert not got[0].message.persistent
