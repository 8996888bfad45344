"""The meaning of records (storage/replay.py), without any files."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from storage.records import PayloadError, RecordType, check_payload, decode_payload, encode_payload
from storage.replay import RecoveredMessage, ReplayState


class Log:
    """Applies records to a ReplayState the way the WAL does (encoded, then decoded)."""

    def __init__(self) -> None:
        self.state = ReplayState()
        self.lsn = 0

    def add(self, rtype: RecordType, payload: dict[str, Any]) -> None:
        self.lsn += 1
        decoded = decode_payload(rtype, encode_payload(rtype, payload))
        self.state.apply(self.lsn, rtype, decoded, 10)

    def define(self, kind: str, key: list[Any], value: dict[str, Any] | None) -> None:
        self.add(RecordType.DEFINE, {"kind": kind, "key": key, "value": value})

    def publish(self, mid: int, *queues: tuple[str, str], body: bytes = b"b") -> None:
        self.add(
            RecordType.MESSAGE,
            {
                "id": mid,
                "exchange": "e",
                "routing_key": "r",
                "properties": b"p",
                "body": body,
                "queues": [list(q) for q in queues],
            },
        )

    def settle(self, queue: tuple[str, str], *ids: int) -> None:
        self.add(RecordType.SETTLE, {"queue": list(queue), "ids": list(ids)})

    def deliver(self, queue: tuple[str, str], *ids: int) -> None:
        self.add(RecordType.DELIVER, {"queue": list(queue), "ids": list(ids)})

    def ids(self, queue: tuple[str, str]) -> list[tuple[int, int]]:
        return list(self.state.recovered().queues[queue].items())


Q1, Q2 = ("/", "q1"), ("/", "q2")


def test_update_keeps_order_and_redefinition_goes_last() -> None:
    log = Log()
    log.define("exchange", ["/", "a"], {"v": 1})
    log.define("exchange", ["/", "b"], {"v": 1})
    log.define("exchange", ["/", "a"], {"v": 2})
    assert list(log.state.recovered().definitions.items()) == [
        (("exchange", ("/", "a")), {"v": 2}),
        (("exchange", ("/", "b")), {"v": 1}),
    ]
    log.define("exchange", ["/", "a"], None)
    log.define("exchange", ["/", "a"], {"v": 3})
    assert list(log.state.recovered().definitions) == [
        ("exchange", ("/", "b")),
        ("exchange", ("/", "a")),
    ]


def test_message_in_two_queues_is_settled_from_each() -> None:
    log = Log()
    log.define("queue", list(Q1), {})
    log.define("queue", list(Q2), {})
    log.publish(1, Q1, Q2)
    log.publish(2, Q1)
    log.settle(Q1, 1)
    assert log.ids(Q1) == [(2, 0)]
    assert log.ids(Q2) == [(1, 0)]
    log.settle(Q2, 1)
    assert 1 not in log.state.messages
    assert log.state.next_message_id == 3


def test_delivery_counts_are_per_queue() -> None:
    log = Log()
    log.define("queue", list(Q1), {})
    log.define("queue", list(Q2), {})
    log.publish(1, Q1, Q2)
    log.deliver(Q1, 1)
    log.deliver(Q1, 1, 99)
    assert log.ids(Q1) == [(1, 2)]
    assert log.ids(Q2) == [(1, 0)]


def test_queue_deletion_drops_its_messages_and_redeclaration_starts_empty() -> None:
    log = Log()
    log.define("queue", list(Q1), {})
    log.publish(1, Q1)
    log.define("queue", list(Q1), None)
    assert not log.state.messages
    log.define("queue", list(Q1), {})
    assert log.ids(Q1) == []


def test_vhost_deletion_cascades_but_spares_users() -> None:
    log = Log()
    log.define("vhost", ["v"], {})
    log.define("user", ["v"], {"tags": []})
    log.define("queue", ["v", "q"], {})
    log.define("binding", ["v", "x", "queue", "q", "", ""], {})
    log.define("queue", ["/", "q"], {})
    log.publish(1, ("v", "q"), ("/", "q"))
    log.define("vhost", ["v"], None)
    state = log.state.recovered()
    assert list(state.definitions) == [("user", ("v",)), ("queue", ("/", "q"))]
    assert list(state.queues[("/", "q")]) == [1]
    assert log.state.queues.keys() == {("/", "q")}


def test_messages_of_undefined_queues_are_not_recovered() -> None:
    log = Log()
    log.publish(1, Q1)
    state = log.state.recovered()
    assert state.queues == {}
    assert state.next_message_id == 2


def test_recovered_message_fields() -> None:
    log = Log()
    log.define("queue", list(Q1), {})
    log.publish(5, Q1, body=b"hello")
    assert log.state.recovered().queue_messages(Q1) == [
        RecoveredMessage(5, "e", "r", b"p", b"hello", 0)
    ]


def test_snapshot_is_independent() -> None:
    log = Log()
    log.define("queue", list(Q1), {})
    log.publish(1, Q1)
    snap = log.state.snapshot()
    log.settle(Q1, 1)
    log.define("queue", list(Q1), {"x": 1})
    assert list(snap.recovered().queues[Q1]) == [1]
    assert snap.recovered().definitions[("queue", Q1)] == {}


def test_live_bytes_follow_the_state() -> None:
    log = Log()
    log.define("queue", list(Q1), {})
    log.publish(1, Q1)
    assert log.state.live_bytes == 20
    log.settle(Q1, 1)
    assert log.state.live_bytes == 10
    log.define("queue", list(Q1), None)
    assert log.state.live_bytes == 0


@pytest.mark.parametrize(
    "rtype,payload",
    [
        (RecordType.DEFINE, {"kind": "queue", "key": ["/", "q"]}),
        (RecordType.DEFINE, {"kind": "queue", "key": [], "value": None}),
        (RecordType.DEFINE, {"kind": 1, "key": ["/"], "value": None}),
        (RecordType.DEFINE, {"kind": "q", "key": [{"a": 1}], "value": None}),
        (RecordType.DEFINE, {"kind": "q", "key": ["/"], "value": []}),
        (
            RecordType.MESSAGE,
            {
                "id": "1",
                "exchange": "",
                "routing_key": "",
                "properties": b"",
                "body": b"",
                "queues": [],
            },
        ),
        (
            RecordType.MESSAGE,
            {
                "id": 1,
                "exchange": "",
                "routing_key": "",
                "properties": "",
                "body": b"",
                "queues": [],
            },
        ),
        (
            RecordType.MESSAGE,
            {
                "id": 1,
                "exchange": "",
                "routing_key": "",
                "properties": b"",
                "body": b"",
                "queues": [["/"]],
            },
        ),
        (
            RecordType.MESSAGE,
            {
                "id": 1,
                "exchange": "",
                "routing_key": "",
                "properties": b"",
                "body": b"",
                "queues": [],
                "time": "yesterday",
            },
        ),
        (RecordType.SETTLE, {"queue": ["/", "q"], "ids": [1, "2"]}),
        (RecordType.DELIVER, {"queue": "q", "ids": [1]}),
        (RecordType.SETTLE, ["not", "a", "dict"]),
        (99, {}),
    ],
)
def test_bad_payloads_are_refused(rtype: int, payload: Any) -> None:
    with pytest.raises(PayloadError):
        check_payload(rtype, payload)


def test_decode_refuses_garbage() -> None:
    with pytest.raises(PayloadError):
        decode_payload(RecordType.SETTLE, b"\xc1")
    with pytest.raises(PayloadError):
        decode_payload(
            RecordType.SETTLE,
            encode_payload(RecordType.DELIVER, {"queue": ["/", "q"], "ids": [1]}) + b"\x00",
        )


def _records() -> list[tuple[RecordType, dict[str, Any]]]:
    """Every kind of record, with the MESSAGE shapes replay's fast path takes and leaves."""
    msg = {
        "id": 1,
        "exchange": "e",
        "routing_key": "r",
        "properties": b"p",
        "body": b"b",
        "queues": [list(Q1)],
        "time": 1700000000000,
    }
    return [
        (RecordType.DEFINE, {"kind": "queue", "key": list(Q1), "value": {}}),
        (RecordType.DEFINE, {"kind": "queue", "key": list(Q2), "value": {}}),
        (RecordType.MESSAGE, msg),
        (RecordType.MESSAGE, {**msg, "id": 2, "queues": [list(Q1), list(Q2)]}),
        (RecordType.MESSAGE, {k: v for k, v in {**msg, "id": 3}.items() if k != "time"}),
        (RecordType.MESSAGE, {**msg, "id": 4, "extra": [1, 2]}),
        (RecordType.MESSAGE, {**msg, "id": 1, "queues": [list(Q2)]}),  # the same id again
        (RecordType.MESSAGE, {**msg, "id": 5, "queues": []}),
        (RecordType.DELIVER, {"queue": list(Q1), "ids": [1, 2]}),
        (RecordType.SETTLE, {"queue": list(Q2), "ids": [2]}),
        (RecordType.DEFINE, {"kind": "queue", "key": list(Q2), "value": None}),
    ]


def _state_fields(state: ReplayState) -> Any:
    messages = {
        mid: (m.exchange, m.routing_key, m.properties, m.body, m.time, m.size, m.refs)
        for mid, m in state.messages.items()
    }
    return (
        list(state.definitions),
        messages,
        state.queues,
        state.next_message_id,
        state.last_lsn,
        state.live_bytes,
    )


def test_replay_of_encoded_records_equals_apply() -> None:
    applied, replayed = ReplayState(), ReplayState()
    for lsn, (rtype, payload) in enumerate(_records(), 1):
        data = encode_payload(rtype, payload)
        applied.apply(lsn, rtype, decode_payload(rtype, data), 10 + lsn)
        replayed.replay(lsn, rtype, memoryview(data), 10 + lsn)
        assert _state_fields(replayed) == _state_fields(applied)
    assert type(replayed.messages[1].body) is bytes


@pytest.mark.parametrize(
    "payload",
    [
        {
            "id": "1",
            "exchange": "",
            "routing_key": "",
            "properties": b"",
            "body": b"",
            "queues": [],
        },
        {"id": -1, "exchange": "", "routing_key": "", "properties": b"", "body": b"", "queues": []},
        {"id": 1, "exchange": "", "routing_key": "", "properties": "p", "body": b"", "queues": []},
        {
            "id": 1,
            "exchange": "",
            "routing_key": "",
            "properties": b"",
            "body": b"",
            "queues": [["/"]],
        },
        {
            "id": 1,
            "exchange": "",
            "routing_key": "",
            "properties": b"",
            "body": b"",
            "queues": [["/", "q"], ["/", 2]],
        },
        {
            "id": 1,
            "exchange": "",
            "routing_key": "",
            "properties": b"",
            "body": b"",
            "queues": [],
            "time": -5,
        },
        {"id": 1, "exchange": "", "routing_key": "", "properties": b"", "body": b""},
        [1, "", "", b"", b"", []],
        "not a map",
    ],
)
def test_replay_refuses_malformed_messages_and_applies_nothing(payload: Any) -> None:
    state = ReplayState()
    state.replay(
        1,
        RecordType.DEFINE,
        encode_payload(RecordType.DEFINE, {"kind": "queue", "key": ["/", "q"], "value": {}}),
        10,
    )
    before = _state_fields(state)
    with pytest.raises(PayloadError):
        state.replay(2, RecordType.MESSAGE, msgpack.packb(payload, use_bin_type=True), 10)
    with pytest.raises(PayloadError):
        state.replay(2, RecordType.SETTLE, b"\xc1", 10)
    assert _state_fields(state) == before


def test_replayed_messages_share_the_values_they_repeat() -> None:
    state = ReplayState()
    msg = {
        "id": 1,
        "exchange": "e",
        "routing_key": "r" * 20,
        "properties": b"p" * 5,
        "body": b"b",
        "queues": [list(Q1)],
        "time": 1700000000000,
    }
    for lsn, mid in enumerate((1, 2), 1):
        state.replay(
            lsn, RecordType.MESSAGE, encode_payload(RecordType.MESSAGE, {**msg, "id": mid}), 10
        )
    first, second = state.messages[1], state.messages[2]
    assert second.routing_key is first.routing_key
    assert second.properties is first.properties
    assert second.time is first.time


def test_decode_takes_map_keys_of_any_type() -> None:
    payload = {"kind": "x", "key": ["a"], "value": {1: "one", b"k": [True]}}
    assert decode_payload(RecordType.DEFINE, msgpack.packb(payload, use_bin_type=True)) == payload
