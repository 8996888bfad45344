"""Record types: their msgpack payload schemas, and everything storage does with each.

`RECORD_KINDS` has one `RecordKind` per type, the one place a type is defined: its schema
check, its inspection line, how replay applies it to a ReplayState (replay.py) and when
compaction keeps it (compaction.Liveness). Replay and compaction look a type up there and
refuse one it lacks (`unknown record type N`), so an unknown type never falls into another
type's path; a segment reader refuses it first (an older binary reading a newer log raises
CorruptWAL naming the file, offset and type, and changes nothing).

Payloads are msgpack maps (strings as str, bytes as bin). They are checked when appended, so a
malformed record never reaches the disk, and again when read back, so a record with a valid CRC
but an unexpected shape is reported instead of crashing replay.

- DEFINE  {"kind": str, "key": list, "value": dict | None}: the latest DEFINE per (kind, key)
  wins; None deletes it.
- MESSAGE {"id": int, "exchange": str, "routing_key": str, "properties": bytes, "body": bytes,
           "queues": [[vhost, name], ...], "time": int (optional)}: one record per persistent
  message; time is when it was recorded, in ms since the epoch (message TTLs count from it).
- SETTLE  {"queue": [vhost, name], "ids": [int, ...]}: these messages left that queue.
- DELIVER {"queue": [vhost, name], "ids": [int, ...]}: these messages were delivered again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:
    from storage.compaction import Liveness
    from storage.replay import ReplayState


class RecordType(IntEnum):
    DEFINE = 1
    MESSAGE = 2
    SETTLE = 3
    DELIVER = 4


Key = tuple[Any, ...]
QueueKey = tuple[str, str]
Payload = dict[str, Any]  # a checked payload (msgpack's values: Any by nature)
Description = tuple[str | None, list[int]]  # what a record is about, and the ids it names


class PayloadError(ValueError):
    """A payload that does not match its record type's schema."""


def freeze_key(key: Any) -> Key:
    """A definition key as a hashable tuple (nested lists become tuples too)."""
    if not isinstance(key, (list, tuple)):
        raise PayloadError(f"key must be a list, not {type(key).__name__}")
    out: list[Any] = []
    for part in key:
        if isinstance(part, (list, tuple)):
            out.append(freeze_key(part))
        elif isinstance(part, (str, int, bytes, bool, float)) or part is None:
            out.append(part)
        else:
            raise PayloadError(f"key parts must be str, int, bytes or lists, not {part!r}")
    return tuple(out)


def queue_key(value: Any) -> QueueKey:
    """A queue reference [vhost, name] as a tuple."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], str)
    ):
        return (value[0], value[1])
    raise PayloadError(f"a queue is [vhost, name] (two str), not {value!r}")


def _ids(value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise PayloadError(f"ids must be a list of int, not {value!r}")
    for i in value:
        if type(i) is not int or i < 0:
            raise PayloadError(f"ids must be a list of int, not {value!r}")
    return list(value)


def _check_define(p: dict[str, Any]) -> None:
    if not isinstance(p.get("kind"), str):
        raise PayloadError("DEFINE needs a str 'kind'")
    if not p.get("key"):
        raise PayloadError("DEFINE needs a non-empty 'key' list")
    freeze_key(p["key"])
    if "value" not in p or not (p["value"] is None or isinstance(p["value"], dict)):
        raise PayloadError("DEFINE needs a 'value' that is a dict or None")


_BYTES = (bytes, bytearray, memoryview)
_SEQ = (list, tuple)


def _check_message(p: dict[str, Any]) -> None:
    # On the replay path for every message: few calls, no enum or helper lookups.
    get = p.get
    mid = get("id")
    if type(mid) is not int or mid < 0:
        raise PayloadError("MESSAGE needs an int 'id'")
    if not isinstance(get("exchange"), str) or not isinstance(get("routing_key"), str):
        raise PayloadError("MESSAGE needs str 'exchange' and 'routing_key'")
    if not isinstance(get("properties"), _BYTES) or not isinstance(get("body"), _BYTES):
        raise PayloadError("MESSAGE needs bytes 'properties' and 'body'")
    recorded = get("time", 0)
    if type(recorded) is not int or recorded < 0:
        raise PayloadError("MESSAGE 'time' must be an int (ms since the epoch)")
    queues = get("queues")
    if not isinstance(queues, _SEQ):
        raise PayloadError("MESSAGE needs a 'queues' list")
    for q in queues:
        if not (
            isinstance(q, _SEQ) and len(q) == 2 and isinstance(q[0], str) and isinstance(q[1], str)
        ):
            raise PayloadError(f"a queue is [vhost, name] (two str), not {q!r}")


def _check_queue_ids(p: dict[str, Any]) -> None:
    queue_key(p.get("queue"))
    _ids(p.get("ids"))


# -- inspection ---------------------------------------------------------------------------------


def _describe_define(p: Payload) -> Description:
    return f"{p['kind']} {':'.join(str(k) for k in p['key'])}", []


def _describe_message(p: Payload) -> Description:
    return ",".join(f"{v}:{n}" for v, n in p["queues"]), [p["id"]]


def _describe_queue_ids(p: Payload) -> Description:
    vhost, name = p["queue"]
    return f"{vhost}:{name}", list(p["ids"])


# -- replay (the rules: replay.py's docstring) ----------------------------------------------------


def _apply_define(state: ReplayState, lsn: int, p: Payload, size: int) -> None:
    state.apply_define(lsn, p["kind"], freeze_key(p["key"]), p["value"], size)


def _apply_message(state: ReplayState, lsn: int, p: Payload, size: int) -> None:
    state.apply_message(
        p["id"],
        p["exchange"],
        p["routing_key"],
        p["properties"],
        p["body"],
        p["queues"],
        size,
        p.get("time", 0),
    )


def _apply_settle(state: ReplayState, lsn: int, p: Payload, size: int) -> None:
    q = p["queue"]
    state.apply_settle((q[0], q[1]), p["ids"])


def _apply_deliver(state: ReplayState, lsn: int, p: Payload, size: int) -> None:
    q = p["queue"]
    state.apply_deliver((q[0], q[1]), p["ids"])


# -- compaction (the rules: compaction.py's docstring) --------------------------------------------


def _define_is_live(live: Liveness, lsn: int, p: Payload) -> bool:
    kind = p["kind"]
    key = freeze_key(p["key"])
    if p["value"] is not None:
        entry = live.final.definitions.get((kind, key))
        return entry is not None and lsn in (entry.first_lsn, entry.last_lsn)
    defs, queues = live.cleared_by(kind, key)
    return bool(defs or queues)


def _define_present(live: Liveness, lsn: int, p: Payload) -> None:
    kind = p["kind"]
    key = freeze_key(p["key"])
    if p["value"] is not None:
        live.defined.add((kind, key))
        return
    defs, queues = live.cleared_by(kind, key)
    live.defined.difference_update(defs)
    live.named.difference_update(queues)


def _message_is_live(live: Liveness, lsn: int, p: Payload) -> bool:
    return p["id"] in live.final.messages


def _message_present(live: Liveness, lsn: int, p: Payload) -> None:
    live.named.update((q[0], q[1]) for q in p["queues"])
    if p["id"] not in live.final.messages:
        live.dead_ids.add(p["id"])


def _ids_are_live(live: Liveness, lsn: int, p: Payload) -> bool:
    """A SETTLE or DELIVER while a message it names is live, or present though dead."""
    messages = live.final.messages
    dead = live.dead_ids
    return any(mid in messages or mid in dead for mid in p["ids"])


def _nothing_to_note(live: Liveness, lsn: int, p: Payload) -> None:
    return None


def _never(p: Payload) -> bool:
    return False


def _define_is_deletion(p: Payload) -> bool:
    return p["value"] is None


# -- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordKind:
    """One record type: everything storage does with it.

    - check: raise PayloadError unless the payload fits the schema (on append and on read);
    - describe: what it is about (a queue or definition) and the message ids it names;
    - apply: what replay does to the state, in LSN order;
    - is_live: whether compaction keeps it, given the records marked present before it;
    - present: note, for the records after it, that it stays in the log;
    - deletion: whether its liveness depends on which records before it stay (it is then
      left out of the bytes that decide whether a segment is rewritten).
    """

    type: RecordType
    check: Callable[[Payload], None]
    describe: Callable[[Payload], Description]
    apply: Callable[[ReplayState, int, Payload, int], None]
    is_live: Callable[[Liveness, int, Payload], bool]
    present: Callable[[Liveness, int, Payload], None]
    deletion: Callable[[Payload], bool] = _never


RECORD_KINDS: dict[int, RecordKind] = {
    kind.type: kind
    for kind in (
        RecordKind(
            RecordType.DEFINE,
            _check_define,
            _describe_define,
            _apply_define,
            _define_is_live,
            _define_present,
            deletion=_define_is_deletion,
        ),
        RecordKind(
            RecordType.MESSAGE,
            _check_message,
            _describe_message,
            _apply_message,
            _message_is_live,
            _message_present,
        ),
        RecordKind(
            RecordType.SETTLE,
            _check_queue_ids,
            _describe_queue_ids,
            _apply_settle,
            _ids_are_live,
            _nothing_to_note,
        ),
        RecordKind(
            RecordType.DELIVER,
            _check_queue_ids,
            _describe_queue_ids,
            _apply_deliver,
            _ids_are_live,
            _nothing_to_note,
        ),
    )
}
RECORD_TYPES = frozenset(RECORD_KINDS)


def record_kind(rtype: int) -> RecordKind:
    """The kind of a record type; ValueError for a type this version does not know."""
    kind = RECORD_KINDS.get(rtype)
    if kind is None:
        raise ValueError(f"unknown record type {rtype}")
    return kind


def check_payload(rtype: int, payload: Any) -> None:
    """Raise PayloadError unless `payload` fits `rtype`'s schema."""
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a dict, not {type(payload).__name__}")
    kind = RECORD_KINDS.get(rtype)
    if kind is None:
        raise PayloadError(f"unknown record type {rtype}")
    kind.check(payload)


_packer = msgpack.Packer(use_bin_type=True)
_unpackb = msgpack.unpackb


def encode_payload(rtype: int, payload: dict[str, Any]) -> bytes:
    """Check and pack a payload."""
    check_payload(rtype, payload)
    try:
        packed: bytes = _packer.pack(payload)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"payload cannot be encoded: {exc}") from exc
    return packed


def unpack_payload(data: bytes | memoryview) -> Any:
    """Unpack a payload read from disk, unchecked; raises PayloadError.

    First with msgpack's defaults (strings as str, map keys str or bytes only), because any
    keyword argument makes each call some 10% slower; only when that fails, again allowing
    map keys of any type."""
    try:
        return _unpackb(data)
    except Exception:  # msgpack raises several unrelated types for bad input
        pass
    try:
        return _unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise PayloadError(f"payload is not valid msgpack: {exc}") from exc


def decode_payload(rtype: int, data: bytes | memoryview) -> dict[str, Any]:
    """Unpack and check a payload read from disk; raises PayloadError."""
    payload = unpack_payload(data)
    check_payload(rtype, payload)
    return payload  # type: ignore[no-any-return]


def describe(rtype: int, payload: dict[str, Any]) -> tuple[str | None, list[int]]:
    """(queues or definition this record is about, as vhost:name, and the message ids it
    names), for inspection."""
    kind = RECORD_KINDS.get(rtype)
    if kind is None:
        return f"unknown record type {rtype}", []
    return kind.describe(payload)
