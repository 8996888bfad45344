"""Checkpoints: the replay state at one LSN, so that opening the log replays only what came
after it.

A checkpoint is DIR/wal/checkpoint-<lsn>.ckpt, written atomically (temp file, fsync, rename,
fsync the directory) and protected by a masked CRC32C. It is an optimisation, never the only
copy of anything: compaction keeps every live record in the segments, so when a checkpoint is
unreadable recovery falls back to replaying the segments and loses nothing.

File: magic "TRIMQCKP" | version u16 | reserved u16 | LSN u64 | payload length u64 | crc u32,
then a msgpack map holding the state (see _encode_state). Version 2 is written; version 1 is
still read. A version this code does not know makes the checkpoint invalid: ignored.
"""

from __future__ import annotations

import os
import re
import struct
from collections import Counter
from itertools import chain
from pathlib import Path
from typing import Any

import crc32c
import msgpack

from storage.format import mask_crc
from storage.fsutil import fsync_dir, replace_file
from storage.records import freeze_key
from storage.replay import Definition, ReplayState, StoredMessage

CHECKPOINT_MAGIC = b"TRIMQCKP"
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})
_HEADER = struct.Struct("<8sHHQQ")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size + _CRC.size
_NAME = re.compile(r"^checkpoint-(\d{20})\.ckpt$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (the reason is the message)."""


def checkpoint_name(lsn: int) -> str:
    return f"checkpoint-{lsn:020d}.ckpt"


def list_checkpoints(wal_dir: Path) -> list[tuple[int, Path]]:
    """(LSN, path) of every checkpoint file, oldest first."""
    found = []
    for entry in os.scandir(wal_dir):
        m = _NAME.match(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), Path(entry.path)))
    found.sort()
    return found


def _encode_state(state: ReplayState, lsn: int) -> bytes:
    """Version 2, laid out for a quick load of millions of messages: every message is seven
    entries of one flat array (no array per message), and what messages repeat (exchange,
    routing key, properties, time) is stored once in "values" and referred to by index
    (small integers cost msgpack next to nothing to decode, and the loaded messages share one
    object per value). Each queue's messages are one flat array of id, delivery count pairs.
    How many queues hold a message is not stored: it follows from the queues."""
    index: dict[Any, int] = {}
    values: list[Any] = []

    def value_index(value: Any) -> int:
        found = index.get(value)
        if found is None:
            found = index[value] = len(values)
            values.append(value)
        return found

    messages: list[Any] = []
    add = messages.extend
    for mid, m in state.messages.items():
        add(
            (
                mid,
                value_index(m.exchange),
                value_index(m.routing_key),
                value_index(m.properties),
                m.body,
                m.size,
                value_index(m.time),
            )
        )
    queues = []
    for (vhost, name), held in state.queues.items():
        pairs: list[int] = []
        for item in held.items():
            pairs.extend(item)
        queues.append([vhost, name, pairs])
    body = {
        "lsn": lsn,
        "next_message_id": state.next_message_id,
        "definitions": [
            [kind, key, d.value, d.first_lsn, d.last_lsn, d.size]
            for (kind, key), d in state.definitions.items()
        ],
        "values": values,
        "messages": messages,
        "queues": queues,
    }
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def encode_checkpoint(state: ReplayState, lsn: int) -> list[bytes]:
    """The file's bytes as chunks (header, payload), to write without copying the payload."""
    payload = _encode_state(state, lsn)
    head = _HEADER.pack(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, 0, lsn, len(payload))
    crc = mask_crc(crc32c.crc32c(payload, crc32c.crc32c(head)))
    return [head + _CRC.pack(crc), payload]


def decode_checkpoint(data: bytes) -> tuple[int, ReplayState]:
    """(LSN, state) from a checkpoint file's bytes; raises CheckpointError."""
    if len(data) < HEADER_SIZE:
        raise CheckpointError("truncated header")
    magic, version, _reserved, lsn, length = _HEADER.unpack_from(data, 0)
    (crc,) = _CRC.unpack_from(data, _HEADER.size)
    if magic != CHECKPOINT_MAGIC:
        raise CheckpointError("bad magic")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"unsupported version {version}")
    if len(data) != HEADER_SIZE + length:
        raise CheckpointError(f"length {len(data) - HEADER_SIZE}, header says {length}")
    payload = memoryview(data)[HEADER_SIZE:]
    if crc != mask_crc(crc32c.crc32c(payload, crc32c.crc32c(data[: _HEADER.size]))):
        raise CheckpointError("CRC mismatch")
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        if body["lsn"] != lsn:
            raise CheckpointError(f"payload LSN {body['lsn']} differs from header LSN {lsn}")
        state = ReplayState()
        state.last_lsn = lsn
        state.next_message_id = int(body["next_message_id"])
        for kind, key, value, first, last, size in body["definitions"]:
            state.definitions[(kind, freeze_key(key))] = Definition(value, first, last, size)
        (_decode_v1 if version == 1 else _decode_v2)(body, state)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise CheckpointError(f"bad content: {exc}") from exc
    state.recount_live_bytes()
    return lsn, state


def _decode_v2(body: Any, state: ReplayState) -> None:
    """Messages and queues of a version 2 checkpoint (see _encode_state)."""
    queues = state.queues
    for vhost, name, pairs in body["queues"]:
        it = iter(pairs)
        queues[(vhost, name)] = dict(zip(it, it, strict=True))
    refs = Counter(chain.from_iterable(queues.values()))
    values = body["values"]
    messages = state.messages
    it = iter(body["messages"])
    for mid, exchange, routing_key, properties, msg_body, size, recorded in zip(
        it, it, it, it, it, it, it, strict=True
    ):
        held_by = refs[mid]
        if not held_by:
            raise CheckpointError(f"message {mid} is in no queue")
        messages[mid] = StoredMessage(
            values[exchange],
            values[routing_key],
            values[properties],
            msg_body,
            size,
            held_by,
            values[recorded],
        )
    if len(messages) != len(refs):
        raise CheckpointError("queues hold messages that are not in the checkpoint")


def _decode_v1(body: Any, state: ReplayState) -> None:
    """Messages and queues of a version 1 checkpoint: an array per message, with the values
    themselves; each queue's messages as [id, delivery count] arrays."""
    for mid, exchange, routing_key, properties, msg_body, size, *rest in body["messages"]:
        # Checkpoints written before messages kept their time have six fields.
        state.messages[mid] = StoredMessage(
            exchange, routing_key, properties, msg_body, size, 0, rest[0] if rest else 0
        )
    messages = state.messages
    for vhost, name, held in body["queues"]:
        ids = dict(held)
        state.queues[(vhost, name)] = ids
        for mid in ids:
            messages[mid].refs += 1


def load_checkpoint(path: Path) -> tuple[int, ReplayState]:
    """Read and check one checkpoint file; raises CheckpointError (or OSError)."""
    lsn, state = decode_checkpoint(path.read_bytes())
    m = _NAME.match(path.name)
    if m is None or int(m.group(1)) != lsn:
        raise CheckpointError(f"file name does not match its LSN {lsn}")
    return lsn, state


def load_newest(wal_dir: Path) -> tuple[int, ReplayState | None, list[tuple[Path, str]]]:
    """The newest valid checkpoint as (LSN, state), (0, None) if there is none; and the
    newer checkpoints that were ignored as invalid, with the reason."""
    ignored: list[tuple[Path, str]] = []
    for _lsn, path in reversed(list_checkpoints(wal_dir)):
        try:
            lsn, state = load_checkpoint(path)
        except (CheckpointError, OSError) as exc:
            ignored.append((path, str(exc)))
            continue
        return lsn, state, ignored
    return 0, None, ignored


def write_checkpoint(wal_dir: Path, state: ReplayState, lsn: int, fsync: bool) -> Path:
    """Write the checkpoint for `state` (which holds exactly the records up to `lsn`, all of
    them durable) atomically, then remove older checkpoints."""
    path = wal_dir / checkpoint_name(lsn)
    replace_file(path, encode_checkpoint(state, lsn), fsync)
    remove_older_checkpoints(wal_dir, lsn, fsync)
    return path


def remove_older_checkpoints(wal_dir: Path, lsn: int, fsync: bool) -> None:
    """Remove every checkpoint below `lsn`. Compaction calls this before it drops records: an
    older checkpoint would then no longer combine with the records after it."""
    removed = False
    for old_lsn, path in list_checkpoints(wal_dir):
        if old_lsn < lsn:
            path.unlink()
            removed = True
    if removed and fsync:
        fsync_dir(wal_dir)
