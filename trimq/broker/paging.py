"""Message paging: the ready messages of a long queue that live on disk, not in memory.

A run of a queue's ready messages is written with one sequential write to the queue's page
file and then held as a `Run`: where its records are, how many messages and bytes it has, the
earliest expiry among them and the log ids of its persistent messages (for a purge), in arrays:
8 bytes per persistent message, none per transient one, never a Python object per message.
Reading a run back decodes its records into QueuedMessage objects again.

Page files are never replayed: persistent messages stay recoverable from the write-ahead log as
before (paging journals nothing), and the server removes the whole paging directory at start.
A queue's page file is cut into segments; a segment whose runs were all read back (or dropped)
is deleted, the one being written is truncated, so the disk space follows the backlog.

The file I/O here is synchronous (os.pread/os.pwrite on a descriptor opened per call): the
server runs it in worker threads (trimq/server/pager.py); the model calls `read` itself only
when a run is needed at once (the head of the queue reached it before its prefetch did, peek).
"""

from __future__ import annotations

import contextlib
import os
import struct
from array import array
from pathlib import Path

from trimq.amqp.publish import content_properties
from trimq.amqp.spec import BasicProperties
from trimq.broker.message import Message, QueuedMessage

# seq, message id (0: transient or not journaled), delivery count, flags, expires_at
# (monotonic; page files never outlive the process), route, properties and body lengths
RECORD = struct.Struct("<QQIBdHII")
REDELIVERED = 1
EXPIRES = 2
PERSISTENT = 4
SEGMENT_SIZE = 64 * 2**20  # a page file segment is closed once this big


def encode_run(entries: list[QueuedMessage]) -> bytes:
    """The records of `entries`, in order, as one byte string."""
    parts: list[bytes] = []
    pack = RECORD.pack
    for entry in entries:
        message = entry.message
        route = message.encoded_route()
        properties = message.properties_raw
        body = message.body
        expires_at = entry.expires_at
        flags = (
            (REDELIVERED if entry.redelivered else 0)
            | (EXPIRES if expires_at is not None else 0)
            | (PERSISTENT if message.persistent else 0)
        )
        parts.append(
            pack(
                entry.seq,
                message.id,
                entry.delivery_count,
                flags,
                expires_at or 0.0,
                len(route),
                len(properties),
                len(body),
            )
        )
        parts += (route, properties, body)
    return b"".join(parts)


def _shortstr(data: bytes, at: int) -> tuple[str, int]:
    end = at + 1 + data[at]
    return data[at + 1 : end].decode("utf-8", "surrogateescape"), end


def decode_run(data: bytes) -> list[QueuedMessage]:
    """The QueuedMessage objects of records written by `encode_run`, marked ready."""
    entries: list[QueuedMessage] = []
    view = memoryview(data)
    at = 0
    size = len(data)
    unpack = RECORD.unpack_from
    header = RECORD.size
    while at < size:
        seq, message_id, delivery_count, flags, expires_at, route_len, props_len, body_len = unpack(
            data, at
        )
        at += header
        route = bytes(view[at : at + route_len])
        exchange, key_at = _shortstr(route, 0)
        routing_key, _ = _shortstr(route, key_at)
        at += route_len
        properties_raw = bytes(view[at : at + props_len])
        at += props_len
        body = bytes(view[at : at + body_len])
        at += body_len
        decoded = content_properties(properties_raw)
        properties = decoded[0] if decoded is not None else BasicProperties()
        message = Message(exchange, routing_key, properties, properties_raw, body, route)
        message.id = message_id
        entry = QueuedMessage(
            message,
            seq,
            bool(flags & REDELIVERED),
            delivery_count,
            expires_at if flags & EXPIRES else None,
        )
        entry.in_ready = True
        entries.append(entry)
    return entries


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Write `data` at `offset` of an existing page file (in a worker thread)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written
    finally:
        os.close(fd)


def read_at(path: Path, offset: int, length: int) -> bytes:
    """`length` bytes at `offset` of a page file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, offset)
        while len(data) < length:
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                raise OSError(f"page file {path} is short at offset {offset}")
            data += more
        return data
    finally:
        os.close(fd)


class Segment:
    """One file of a queue's page file: its allocated size, the runs paged into it and the
    writes not yet finished (it is neither truncated nor deleted while any is pending)."""

    __slots__ = ("live", "path", "size", "writing")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.live = 0
        self.writing = 0


class PageFile:
    """A queue's page file: segments `<stem>.<n>.pg` in the paging directory."""

    def __init__(self, directory: Path, stem: str, segment_size: int = SEGMENT_SIZE) -> None:
        self.directory = directory
        self.stem = stem
        self.segment_size = segment_size
        self._number = 0
        self.current: Segment | None = None
        self.segments: set[Segment] = set()
        self.closed = False

    def _new_segment(self) -> Segment:
        self._number += 1
        path = self.directory / f"{self.stem}.{self._number}.pg"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        segment = Segment(path)
        self.segments.add(segment)
        return segment

    def reserve(self, length: int) -> tuple[Segment, int]:
        """Where the next `length` bytes go: the end of the current segment (a new one once
        it reached the segment size). The caller writes them and then calls `written`."""
        current = self.current
        if current is None or current.size >= self.segment_size:
            if current is not None:
                self._drop_if_unused(current, rotating=True)
            current = self.current = self._new_segment()
        offset = current.size
        current.size += length
        current.writing += 1
        return current, offset

    def written(self, segment: Segment, kept: bool) -> None:
        """A write into `segment` ended; `kept`: a run now refers to it."""
        segment.writing -= 1
        if kept:
            segment.live += 1
        else:
            self._drop_if_unused(segment)

    def release(self, segment: Segment) -> None:
        """A run in `segment` was read back or dropped."""
        segment.live -= 1
        self._drop_if_unused(segment)

    def _drop_if_unused(self, segment: Segment, rotating: bool = False) -> None:
        if segment.live or segment.writing:
            return
        if segment is self.current and not rotating and not self.closed:
            if segment.size:
                segment.size = 0
                try:
                    os.truncate(segment.path, 0)
                except OSError:
                    self.current = None  # start a new segment next time
                    self._unlink(segment)
            return
        if segment is self.current:
            self.current = None
        self._unlink(segment)

    def _unlink(self, segment: Segment) -> None:
        self.segments.discard(segment)
        with contextlib.suppress(OSError):
            segment.path.unlink()

    def close(self) -> None:
        """The queue is gone: delete every segment no write is pending on (the others go
        when their write ends)."""
        self.closed = True
        for segment in list(self.segments):
            if not segment.writing:
                self._unlink(segment)
        if self.current is not None and not self.current.writing:
            self.current = None

    def disk_bytes(self) -> int:
        return sum(segment.size for segment in self.segments)


class Run:
    """Consecutive ready messages of one priority level, in memory (`entries`) or paged out
    (`segment`, `offset`, `length`). `busy`: a write or read of it is under way; `detached`:
    it left the ready list (taken to the head, purged)."""

    __slots__ = (
        "busy",
        "bytes",
        "count",
        "detached",
        "entries",
        "ids",
        "length",
        "min_expires",
        "offset",
        "persistent",
        "persistent_bytes",
        "segment",
    )

    def __init__(self, entries: list[QueuedMessage]) -> None:
        self.entries: list[QueuedMessage] | None = entries
        self.segment: Segment | None = None
        self.offset = 0
        self.length = 0
        self.count = 0
        self.bytes = 0
        self.persistent = 0
        self.persistent_bytes = 0
        self.ids = array("Q")
        self.min_expires: float | None = None
        self.busy = False
        self.detached = False

    @property
    def paged(self) -> bool:
        return self.entries is None

    def live(self) -> list[QueuedMessage]:
        """The entries still ready (in memory only)."""
        assert self.entries is not None
        return [entry for entry in self.entries if entry.in_ready]

    def page_out(self, segment: Segment, offset: int, length: int) -> None:
        """Its records are written: forget the entries, keep what is needed without them."""
        entries = self.entries
        assert entries is not None
        self.segment = segment
        self.offset = offset
        self.length = length
        self.count = len(entries)
        size = persistent = persistent_bytes = 0
        ids = array("Q")
        min_expires: float | None = None
        for entry in entries:
            message = entry.message
            size += message.size
            if message.persistent:
                persistent += 1
                persistent_bytes += message.size
            if message.id:
                ids.append(message.id)
            expires_at = entry.expires_at
            if expires_at is not None and (min_expires is None or expires_at < min_expires):
                min_expires = expires_at
        self.bytes = size
        self.persistent = persistent
        self.persistent_bytes = persistent_bytes
        self.ids = ids
        self.min_expires = min_expires
        self.entries = None

    def page_in(self, entries: list[QueuedMessage]) -> None:
        """Its records were read back as `entries`."""
        self.entries = entries
        self.segment = None
        self.ids = array("Q")
        self.min_expires = None
