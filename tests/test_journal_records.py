"""The journal schema (trimq/broker/records.py): what live changes write is exactly the layout
already on disk, and recovery loads it back through the same functions without journaling."""

from __future__ import annotations

from typing import Any

from storage import RecordType
from storage.records import decode_payload, encode_payload
from storage.replay import ReplayState
from trimq.broker.auth import HASHING_ALGORITHM
from trimq.broker.broker import Broker
from trimq.broker.journal import Journal
from trimq.broker.recovery import restore

Record = tuple[RecordType, dict[str, Any]]
ARGS = {"x-message-ttl": ("I", 5)}
ARGS_RAW = b"\x00\x00\x00\x13\rx-message-ttlI\x00\x00\x00\x05"


def _journal(records: list[Record]) -> Journal:
    def append(rtype: RecordType, payload: dict[str, Any]) -> int:
        records.append((rtype, payload))
        return len(records)

    return Journal(append)


def _build(records: list[Record]) -> Broker:
    broker = Broker(journal=_journal(records))
    broker.add_vhost("v", "a vhost", ["t"])
    broker.set_vhost_limits("v", {"max-queues": 10})
    broker.add_user("u", None, ["management"], password_hash="h")
    broker.set_permissions("v", "u", ".*", "w", "r")
    broker.set_policy("v", "p", "^q", {"max-length": 3}, 2, "queues")
    vhost = broker.get_vhost("v")
    exchange, _ = vhost.declare_exchange("x", "topic", durable=True, arguments=ARGS)
    queue, _ = vhost.declare_queue("q", None, durable=True, arguments=ARGS)
    vhost.bind(exchange, queue, "a.#", ARGS)
    return broker


def test_live_changes_write_the_layout_on_disk() -> None:
    records: list[Record] = []
    _build(records)
    defines = [p for t, p in records if t == RecordType.DEFINE][3:]  # after the bootstrap
    expected = [
        {"kind": "vhost", "key": ["v"], "value": {"description": "a vhost", "tags": ["t"]}},
        {"kind": "vhost_limits", "key": ["v"], "value": {"limits": {"max-queues": 10}}},
        {
            "kind": "user",
            "key": ["u"],
            "value": {
                "password_hash": "h",
                "tags": ["management"],
                "hashing_algorithm": HASHING_ALGORITHM,
            },
        },
        {
            "kind": "permission",
            "key": ["v", "u"],
            "value": {"configure": ".*", "write": "w", "read": "r"},
        },
        {
            "kind": "policy",
            "key": ["v", "p"],
            "value": {
                "pattern": "^q",
                "definition": {"max-length": 3},
                "priority": 2,
                "apply_to": "queues",
            },
        },
        {
            "kind": "exchange",
            "key": ["v", "x"],
            "value": {
                "type": "topic",
                "auto_delete": False,
                "internal": False,
                "arguments": ARGS_RAW,
            },
        },
        {
            "kind": "queue",
            "key": ["v", "q"],
            "value": {"auto_delete": False, "arguments": ARGS_RAW},
        },
        {
            "kind": "binding",
            "key": ["v", "x", "queue", "q", "a.#", "(('x-message-ttl', \"('I', 5)\"),)"],
            "value": {"arguments": ARGS_RAW},
        },
    ]
    assert defines == expected
    # Byte for byte, map order included: logs and checkpoints on disk hold these.
    assert [encode_payload(RecordType.DEFINE, p) for p in defines] == [
        encode_payload(RecordType.DEFINE, p) for p in expected
    ]


def test_recovery_loads_through_the_live_functions_without_journaling() -> None:
    records: list[Record] = []
    _build(records)
    replay = ReplayState()
    for lsn, (rtype, payload) in enumerate(records, 1):
        replay.apply(lsn, rtype, decode_payload(rtype, encode_payload(rtype, payload)), 10)
    again: list[Record] = []
    broker = Broker(journal=_journal(again), bootstrap=False)
    skipped: list[str] = []
    assert restore(broker, replay.recovered(), skipped) == (1, 0)
    assert again == [] and skipped == []
    vhost = broker.vhosts["v"]
    assert (vhost.description, vhost.tags, vhost.limits) == ("a vhost", ["t"], {"max-queues": 10})
    user = broker.users.users["u"]
    assert (user.password_hash, user.tags) == ("h", ["management"])
    permission = broker.users.permissions[("v", "u")]
    assert (permission.configure, permission.write, permission.read) == (".*", "w", "r")
    queue = vhost.queues["q"]
    assert queue.durable and queue.arguments == ARGS and queue.journal is broker.journal
    assert queue.policy is vhost.policies["p"]  # applied once everything was loaded
    exchange = vhost.exchanges["x"]
    assert exchange.TYPE == "topic" and exchange.arguments == ARGS
    assert [(b.destination, b.routing_key, b.arguments) for b in exchange.bindings.values()] == [
        (queue, "a.#", ARGS)
    ]
    # Deleting what was loaded journals its deletion under the same keys.
    vhost.delete_queue(queue)
    assert [(p["kind"], p["key"], p["value"]) for _, p in again] == [
        ("queue", ["v", "q"], None),
        ("binding", ["v", "x", "queue", "q", "a.#", "(('x-message-ttl', \"('I', 5)\"),)"], None),
    ]
