"""Record types and their msgpack payload schemas.

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
from enum import IntEnum
from typing import Any

import msgpack


class RecordType(IntEnum):
    DEFINE = 1
    MESSAGE = 2
    SETTLE = 3
    DELIVER = 4


RECORD_TYPES = frozenset(int(t) for t in RecordType)

Key = tuple[Any, ...]
QueueKey = tuple[str, str]


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


_CHECKS: dict[int, Callable[[dict[str, Any]], None]] = {
    RecordType.DEFINE: _check_define,
    RecordType.MESSAGE: _check_message,
    RecordType.SETTLE: _check_queue_ids,
    RecordType.DELIVER: _check_queue_ids,
}


def check_payload(rtype: int, payload: Any) -> None:
    """Raise PayloadError unless `payload` fits `rtype`'s schema."""
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a dict, not {type(payload).__name__}")
    check = _CHECKS.get(rtype)
    if check is None:
        raise PayloadError(f"unknown record type {rtype}")
    check(payload)


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
    if rtype == RecordType.DEFINE:
        return f"{payload['kind']} {':'.join(str(k) for k in payload['key'])}", []
    if rtype == RecordType.MESSAGE:
        queues = ",".join(f"{v}:{n}" for v, n in payload["queues"])
        return queues, [payload["id"]]
    if rtype in (RecordType.SETTLE, RecordType.DELIVER):
        vhost, name = payload["queue"]
        return f"{vhost}:{name}", list(payload["ids"])
    return f"unknown record type {rtype}", []
