"""Records in, recovered state out: the meaning of the log, with no I/O.

ReplayState is the running result of applying records in LSN order. The WAL keeps one up to
date as it appends (so a checkpoint can be written at any time), recovery rebuilds one from a
checkpoint and the records after it, and compaction asks it which records are still live.

Rules (the broker depends on them):
- DEFINE sets (kind, key) to value; an update keeps the definition's place in the order, a
  deletion (value None) removes it, so a later re-definition goes to the end.
- DEFINE of kind "queue" with value None also drops every message that queue held.
- DEFINE of kind "vhost" with value None also removes every definition whose key[0] is that
  vhost (except users, whose key is just their name and which belong to no vhost) and the
  messages of that vhost's queues.
- MESSAGE puts the message at the end of each queue it names; SETTLE takes it out of one queue;
  DELIVER adds one to its delivery count in one queue. A message no queue holds is forgotten.
- Only queues whose DEFINE is live appear in the recovered state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

from storage.records import (
    Key,
    QueueKey,
    RecordType,
    check_payload,
    record_kind,
    unpack_payload,
)

DefKey = tuple[str, Key]

# Kinds that a vhost deletion leaves alone although their key[0] may equal the vhost's name.
NOT_VHOST_SCOPED = frozenset({"user"})

_MESSAGE = int(RecordType.MESSAGE)  # a plain int: compared once per record on replay
_unpackb = msgpack.unpackb


class RecoveredMessage(NamedTuple):
    """A message as one queue held it when the log ended (a named tuple: a million of them
    are built on recovery)."""

    id: int
    exchange: str
    routing_key: str
    properties: bytes
    body: bytes
    delivery_count: int
    published_at: int = 0  # when the message was recorded, ms since the epoch (0: unknown)


@dataclass
class RecoveredState:
    """What the broker rebuilds itself from after open(): the live definitions in order; for
    each defined queue, the ids of its messages in order with their delivery counts; and the
    messages those ids name.

    queues and messages are the WAL's own state, not copies (a million entries each): read
    them, never change them, and only until the next append changes them."""

    definitions: dict[DefKey, dict[str, Any]] = field(default_factory=dict)
    queues: dict[QueueKey, dict[int, int]] = field(default_factory=dict)
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    next_message_id: int = 1
    last_lsn: int = 0
    records_replayed: int = 0
    # A torn tail cut from the newest segment: how many bytes and (at least) records, where,
    # and the copy kept beside it.
    dropped_tail_bytes: int = 0
    dropped_tail_records: int = 0
    torn_segment: str = ""
    torn_offset: int = 0
    broken_copy: str = ""
    elapsed: float = 0.0
    checkpoint_lsn: int = 0  # LSN of the checkpoint recovery started from (0: none)

    def queue_messages(self, queue: QueueKey) -> list[RecoveredMessage]:
        """A queue's messages as tuples, in order: for tools and tests (the broker reads
        queues and messages directly rather than build a tuple per message)."""
        messages = self.messages
        return [
            RecoveredMessage(mid, m.exchange, m.routing_key, m.properties, m.body, count, m.time)
            for mid, count in self.queues[queue].items()
            for m in (messages[mid],)
        ]


class StoredMessage:
    """A live message: its content, when it was recorded (ms since the epoch, 0 if the record
    does not say: message TTLs count from then), the size of its record, and how many queues
    hold it."""

    __slots__ = ("body", "exchange", "properties", "refs", "routing_key", "size", "time")

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
        size: int,
        refs: int = 0,
        time: int = 0,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.time = time
        self.size = size
        self.refs = refs


class Definition:
    """A live definition; first_lsn is the DEFINE that created it (its place in the order),
    last_lsn the one that set its current value. Compaction keeps exactly those two."""

    __slots__ = ("first_lsn", "last_lsn", "size", "value")

    def __init__(self, value: dict[str, Any], first_lsn: int, last_lsn: int, size: int) -> None:
        self.value = value
        self.first_lsn = first_lsn
        self.last_lsn = last_lsn
        self.size = size


def vhost_scoped(kind: str, key: Key, vhost: Any) -> bool:
    """Whether a vhost deletion removes the definition (kind, key)."""
    return bool(key) and key[0] == vhost and kind not in NOT_VHOST_SCOPED


class ReplayState:
    """The log's meaning so far. queues maps a queue to {message id: delivery count} in publish
    order; a queue key may be present without a live DEFINE (then it is not recovered)."""

    def __init__(self) -> None:
        self.definitions: dict[DefKey, Definition] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.queues: dict[QueueKey, dict[int, int]] = {}
        self.next_message_id = 1
        self.last_lsn = 0
        # Bytes of the records that make up this state: live messages and the latest DEFINE of
        # each live definition (an estimate for the compaction trigger: SETTLE and DELIVER
        # records of live messages and the first DEFINE of an updated one are not counted).
        self.live_bytes = 0
        self._last: StoredMessage | None = None  # the last message replayed

    def apply(self, lsn: int, rtype: int, payload: dict[str, Any], size: int) -> None:
        """Apply one checked record (see records.check_payload) as its type's entry in
        records.RECORD_KINDS says; ValueError, having changed nothing, for an unknown type."""
        record_kind(rtype).apply(self, lsn, payload, size)
        self.last_lsn = max(self.last_lsn, lsn)

    def replay(self, lsn: int, rtype: int, data: bytes | memoryview, size: int) -> None:
        """Unpack, check and apply one record read back from the log; raises PayloadError
        (having applied nothing) when it does not fit its type's schema.

        Nearly all the records of a big log are MESSAGEs of a new message: _replay_message
        checks those while it takes their fields out and applies them in the same pass.
        Anything else goes through check_payload and apply."""
        try:
            payload = _unpackb(data)  # unpack_payload's first attempt, inline
        except Exception:
            payload = unpack_payload(data)  # odd map keys; or the PayloadError saying why
        if rtype != _MESSAGE or not self._replay_message(payload, size):
            check_payload(rtype, payload)
            self.apply(lsn, rtype, payload, size)
        elif lsn > self.last_lsn:
            self.last_lsn = lsn

    def _replay_message(self, p: Any, size: int) -> bool:
        """apply_message for an unpacked MESSAGE payload of a message not seen before, with
        exactly the shape and types msgpack gives for a well-formed one (so check_payload
        would pass it). False, having changed nothing, for anything else: the caller then
        checks and applies it the general way. Recovery calls this a million times: checking
        and applying in one pass costs a fraction of check_payload followed by apply."""
        try:
            mid = p["id"]
            exchange = p["exchange"]
            routing_key = p["routing_key"]
            properties = p["properties"]
            body = p["body"]
            queues = p["queues"]
            recorded = p.get("time", 0)
        except (KeyError, TypeError, AttributeError):  # a missing key, or not a map at all
            return False
        if not (
            type(mid) is int
            and mid >= 0
            and type(exchange) is str
            and type(routing_key) is str
            and type(properties) is bytes
            and type(body) is bytes
            and type(queues) is list
            and type(recorded) is int
            and recorded >= 0
            and mid not in self.messages
        ):
            return False
        for q in queues:
            if not (type(q) is list and len(q) == 2 and type(q[0]) is str and type(q[1]) is str):
                return False
        # Messages mostly repeat the routing key, the properties and (to the millisecond) the
        # time of others: one object for each value rather than one per message saves about
        # 150 bytes a message (and the page faults to map them).
        last = self._last
        if last is not None:
            if routing_key == last.routing_key:
                routing_key = last.routing_key
            if properties == last.properties:
                properties = last.properties
            if recorded == last.time:
                recorded = last.time
        # From here on, what apply_message does for a new message.
        if mid >= self.next_message_id:
            self.next_message_id = mid + 1
        msg = self._last = StoredMessage(exchange, routing_key, properties, body, size, 0, recorded)
        all_queues = self.queues
        for vhost, name in queues:
            held = all_queues.get((vhost, name))
            if held is None:
                held = all_queues[(vhost, name)] = {}
            if mid not in held:
                held[mid] = 0
                msg.refs += 1
        if msg.refs:
            self.messages[mid] = msg
            self.live_bytes += size
        return True

    def apply_define(
        self, lsn: int, kind: str, key: Key, value: dict[str, Any] | None, size: int
    ) -> None:
        k = (kind, key)
        if value is not None:
            entry = self.definitions.get(k)
            if entry is None:
                self.definitions[k] = Definition(value, lsn, lsn, size)
                self.live_bytes += size
            else:
                self.live_bytes += size - entry.size
                entry.value = value
                entry.last_lsn = lsn
                entry.size = size
            return
        self._remove_definition(k)
        if kind == "queue" and len(key) == 2:
            self._drop_queue((key[0], key[1]))
        elif kind == "vhost":
            vhost = key[0]
            for dk in [dk for dk in self.definitions if vhost_scoped(dk[0], dk[1], vhost)]:
                self._remove_definition(dk)
            for qk in [qk for qk in self.queues if qk[0] == vhost]:
                self._drop_queue(qk)

    def _remove_definition(self, k: DefKey) -> None:
        entry = self.definitions.pop(k, None)
        if entry is not None:
            self.live_bytes -= entry.size

    def _drop_queue(self, queue: QueueKey) -> None:
        held = self.queues.pop(queue, None)
        if held:
            self._release(held)

    def _release(self, ids: Any) -> None:
        messages = self.messages
        for mid in ids:
            msg = messages.get(mid)
            if msg is not None:
                msg.refs -= 1
                if msg.refs <= 0:
                    del messages[mid]
                    self.live_bytes -= msg.size

    def apply_message(
        self,
        mid: int,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
        queues: Any,
        size: int,
        time: int = 0,
    ) -> None:
        """queues: [vhost, name] pairs (lists or tuples)."""
        if mid >= self.next_message_id:
            self.next_message_id = mid + 1
        msg = self.messages.get(mid)
        if msg is None:
            if type(properties) is not bytes:
                properties = bytes(properties)
            if type(body) is not bytes:
                body = bytes(body)
            msg = StoredMessage(exchange, routing_key, properties, body, size, 0, time)
        all_queues = self.queues
        for vhost, name in queues:
            q = (vhost, name)
            held = all_queues.get(q)
            if held is None:
                held = all_queues[q] = {}
            if mid not in held:
                held[mid] = 0
                msg.refs += 1
        if msg.refs and mid not in self.messages:
            self.messages[mid] = msg
            self.live_bytes += msg.size

    def apply_settle(self, queue: QueueKey, ids: list[int]) -> None:
        held = self.queues.get(queue)
        if not held:
            return
        gone = [mid for mid in ids if held.pop(mid, None) is not None]
        if not held:
            del self.queues[queue]
        self._release(gone)

    def apply_deliver(self, queue: QueueKey, ids: list[int]) -> None:
        held = self.queues.get(queue)
        if not held:
            return
        for mid in ids:
            count = held.get(mid)
            if count is not None:
                held[mid] = count + 1

    def raise_floor(self, next_message_id: int, last_lsn: int) -> None:
        """Counters that records no longer show (compaction removed those records) but a
        segment header or checkpoint remembers."""
        self.next_message_id = max(self.next_message_id, next_message_id)
        self.last_lsn = max(self.last_lsn, last_lsn)

    def recount_live_bytes(self) -> None:
        """Recompute live_bytes (after building a state by hand, as a checkpoint load does)."""
        self.live_bytes = sum(m.size for m in self.messages.values()) + sum(
            d.size for d in self.definitions.values()
        )

    def snapshot(self) -> ReplayState:
        """A read-only copy that later appends do not change, for a checkpoint or compaction
        to work on in a thread. Cheap enough to take in the event loop: messages are shared
        (only their refs change later, and a snapshot never uses refs)."""
        copy = ReplayState()
        copy.definitions = {
            k: Definition(d.value, d.first_lsn, d.last_lsn, d.size)
            for k, d in self.definitions.items()
        }
        copy.messages = dict(self.messages)
        copy.queues = {q: dict(held) for q, held in self.queues.items()}
        copy.next_message_id = self.next_message_id
        copy.last_lsn = self.last_lsn
        copy.live_bytes = self.live_bytes
        return copy

    def recovered(self) -> RecoveredState:
        """The broker's view: live definitions in order, and each defined queue's messages."""
        state = RecoveredState(next_message_id=self.next_message_id, last_lsn=self.last_lsn)
        definitions = state.definitions
        for (kind, key), entry in self.definitions.items():
            definitions[(kind, key)] = entry.value
            if kind == "queue" and len(key) == 2:
                qk = (key[0], key[1])
                state.queues[qk] = self.queues.get(qk, {})
        state.messages = self.messages  # with those of undefined queues: never looked up
        return state
