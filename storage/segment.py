"""One segment file: create it, append batches to it, and read it back with damage detection.

A segment is named by its base LSN (20 digits, so names sort like LSNs) and starts with a
SegmentHeader. Reading checks each record's CRC and LSN continuity: consecutive from the base,
or merely increasing in a segment rewritten by compaction or repair. When the framing breaks
(short header, impossible length, CRC mismatch) the reader searches the rest of the segment
for a valid record and goes on from there. Batch marks (storage/format.py) are checked and
collected, never yielded; with them torn_tail() tells damage in writes no later write calls
durable (a crash can tear those: recovery cuts them) from damage in records that were
durable (corruption: recovery refuses).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from crc32c import crc32c

from storage import fsync_hook
from storage.format import (
    BATCH_MARK,
    MASK_DELTA,
    MAX_PAYLOAD,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    HeaderError,
    SegmentHeader,
    decode_batch_mark,
    decode_segment_header,
    record_crc_ok,
    unpack_record_header,
)
from storage.fsutil import FILE_MODE, fsync_dir, write_all
from storage.records import RECORD_TYPES, PayloadError, decode_payload

SEGMENT_SUFFIX = ".seg"
_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")
# A record's type byte sits 16 bytes into its header: candidates for a resync search (batch
# marks included: after damage, valid records may resume with one).
_TYPE_BYTE = re.compile(
    b"[" + b"".join(bytes([t]) for t in sorted(RECORD_TYPES | {BATCH_MARK})) + b"]"
)
# Test-only (storage/fsync_hook.py): None unless TRIMQ_TEST_FSYNC_DIR is set.
_FSYNC_HOOK = fsync_hook.from_environment()

# What a reader yields per record: (offset, size, lsn, record type, decoded payload; or its
# bytes, see SegmentReader.records).
Record = tuple[int, int, int, int, Any]


def segment_name(base_lsn: int) -> str:
    return f"{base_lsn:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The base LSN a segment file name encodes, or None for any other file."""
    m = _SEGMENT_NAME.match(name)
    return int(m.group(1)) if m else None


def list_segments(wal_dir: Path) -> list[tuple[int, Path]]:
    """(base LSN, path) of every segment in the directory, oldest first."""
    found = []
    for entry in os.scandir(wal_dir):
        base = parse_segment_name(entry.name)
        if base is not None and entry.is_file():
            found.append((base, Path(entry.path)))
    found.sort()
    return found


class SegmentWriter:
    """The open, appendable segment; only the committer's thread writes to it."""

    def __init__(self, path: Path, fd: int, header: SegmentHeader, size: int, fsync: bool):
        self.path = path
        self.fd = fd
        self.header = header
        self.size = size
        self.fsync = fsync

    @classmethod
    def create(cls, wal_dir: Path, header: SegmentHeader, fsync: bool) -> SegmentWriter:
        """Create the file with its header, fsync it, then fsync the directory so the new name
        survives a crash."""
        path = wal_dir / segment_name(header.base_lsn)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE)
        try:
            write_all(fd, header.encode())
            if fsync:
                os.fsync(fd)
                fsync_dir(wal_dir)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, header, SEGMENT_HEADER_SIZE, fsync)

    @classmethod
    def reopen(cls, path: Path, header: SegmentHeader, size: int, fsync: bool) -> SegmentWriter:
        """Continue appending to an existing segment of `size` valid bytes."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        return cls(path, fd, header, size, fsync)

    def write(self, data: bytes) -> None:
        write_all(self.fd, data)
        self.size += len(data)

    def sync(self) -> None:
        if self.fsync:
            if _FSYNC_HOOK is None:
                os.fsync(self.fd)
            else:
                _FSYNC_HOOK(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class Damage:
    """Bytes of a segment that are not valid records.

    framing: the bytes could not be parsed as records (as a torn write leaves them), as opposed
    to a well-formed record with a valid CRC that is wrong (LSN out of order, bad payload).
    at_end: no valid record follows in this segment.
    foreign: a whole record, CRC right, of a type this version does not know: a newer
    version wrote it. No crash leaves one, so it is never cut as a torn tail: the log is
    refused (CorruptWAL names the file, the offset and the type) until a version that knows
    the type opens it.
    """

    offset: int
    length: int
    reason: str
    framing: bool
    at_end: bool
    foreign: bool = False

    @property
    def torn(self) -> bool:
        """What a crash during a write can leave: unparseable bytes running to the end."""
        return self.framing and self.at_end


class BatchMark(NamedTuple):
    """A batch mark read back (see storage/format.py): where it is, the LSNs of the write it
    opens, and the highest LSN known durable when that write was made."""

    offset: int
    first_lsn: int
    last_lsn: int
    durable_lsn: int


@dataclass(frozen=True)
class TornTail:
    """The end of the newest segment that recovery cuts: from `offset` to the end of the file
    (`length` bytes), holding at least `records` records (as far as the batch marks and the
    records that survive tell). None of them was ever confirmed."""

    offset: int
    length: int
    reason: str
    records: int


def find_valid_record(
    data: bytes | memoryview, start: int, min_lsn: int, below_lsn: int | None = None
) -> int | None:
    """Offset of the first position >= start where a whole record with a valid CRC, a known
    type (or a well-formed batch mark) and an LSN in [min_lsn, below_lsn) begins, or None."""
    n = len(data)
    last = n - RECORD_HEADER_SIZE
    if start > last:
        return None
    for m in _TYPE_BYTE.finditer(data, start + 16):
        p = m.start() - 16
        if p > last:
            break
        crc, length, lsn, rtype = unpack_record_header(data, p)
        if lsn < min_lsn or (below_lsn is not None and lsn >= below_lsn):
            continue
        if length > MAX_PAYLOAD or p + RECORD_HEADER_SIZE + length > n:
            continue
        if record_crc_ok(data, p, crc, length):
            if (
                rtype == BATCH_MARK
                and decode_batch_mark(
                    lsn, data[p + RECORD_HEADER_SIZE : p + RECORD_HEADER_SIZE + length]
                )
                is None
            ):
                continue
            return p
    return None


class SegmentReader:
    """Reads the records of one segment's bytes, recording damage instead of raising.

    min_lsn: the lowest LSN this segment may hold (one above what came before).
    below_lsn: the next segment's base, which every LSN here must stay under.
    After iterating, `damage` lists what was found, `marks` the batch marks read (which are
    checked but never yielded), and `valid_end` is the offset just after the last valid record
    (or the header). `first_damaged_lsn` is the lowest LSN the first damage can have hit.
    """

    def __init__(
        self,
        path: Path,
        data: bytes | memoryview,
        base_lsn: int,
        *,
        min_lsn: int = 1,
        below_lsn: int | None = None,
    ) -> None:
        self.path = path
        self.data = data
        self.size = len(data)
        self.base_lsn = base_lsn
        self.min_lsn = max(min_lsn, base_lsn)
        self.below_lsn = below_lsn
        self.header: SegmentHeader | None = None
        self.damage: list[Damage] = []
        self.marks: list[BatchMark] = []
        self.first_damaged_lsn = 0
        self.valid_end = 0
        self.last_lsn = 0  # LSN of the last valid record (0: none)

    def _damaged(self, damage: Damage, lowest_lsn: int) -> None:
        """Note damage; `lowest_lsn` is the lowest LSN it can have hit."""
        if not self.damage:
            self.first_damaged_lsn = lowest_lsn
        self.damage.append(damage)

    def _search(self, offset: int, end: int, reason: str, prev_lsn: int) -> int | None:
        """Record framing damage at `offset`; return where valid records resume, if they do."""
        lowest = max(prev_lsn + 1, self.min_lsn)
        resume = find_valid_record(memoryview(self.data)[:end], offset + 1, lowest, self.below_lsn)
        stop = end if resume is None else resume
        self._damaged(Damage(offset, stop - offset, reason, True, resume is None), lowest)
        return resume

    def records(self, *, stop_at_damage: bool = False, decode: bool = True) -> Iterator[Record]:
        """Yield every valid record in order; on damage, stop (stop_at_damage) or resume at the
        next valid record. After the last record, check that nothing is missing at the end.
        With decode=False every payload is yielded as the memoryview of its bytes, unpacked
        and unchecked (recovery does both in one pass, ReplayState.replay, and skips those a
        checkpoint covers): a payload that does not fit its schema is then the caller's to
        report."""
        data = self.data
        view = memoryview(data)
        n = len(data)
        prev = self.min_lsn - 1
        end_lsn = None  # the last LSN a rewritten segment's header says it covers
        try:
            header = decode_segment_header(data)
        except HeaderError as exc:
            resume = self._search(0, n, str(exc), prev)
            if resume is None or stop_at_damage:
                return
            off = resume
            consecutive = False  # the header's word is lost: do not insist on it
        else:
            self.header = header
            off = self.valid_end = SEGMENT_HEADER_SIZE
            consecutive = not header.rewritten
            if header.base_lsn != self.base_lsn:
                self._damaged(
                    Damage(
                        0,
                        SEGMENT_HEADER_SIZE,
                        f"header says base LSN {header.base_lsn}, file name says {self.base_lsn}",
                        False,
                        False,
                    ),
                    self.min_lsn,
                )
                if stop_at_damage:
                    return
                consecutive = False
            elif header.rewritten:
                end_lsn = header.end_lsn
                if header.sealed_size != n:
                    # Rewritten segments are written whole and never change size.
                    self._damaged(
                        Damage(
                            min(n, header.sealed_size),
                            abs(n - header.sealed_size),
                            f"segment is {n} bytes, its header says {header.sealed_size}",
                            False,
                            True,
                        ),
                        self.min_lsn,
                    )
                    if stop_at_damage:
                        return
                    n = min(n, header.sealed_size)
        expected = self.base_lsn if consecutive else None
        below = self.below_lsn
        # Highest LSN allowed here: under the next segment's base, within a rewritten span.
        high = min(
            below - 1 if below is not None else 1 << 64, end_lsn if end_lsn is not None else 1 << 64
        )
        unpack = unpack_record_header
        last = self.last_lsn
        mark_alone: int | None = None  # offset of a batch mark no record has followed yet
        try:
            while off < n:
                # The fast path: one record, whole, CRC right, LSN where it belongs.
                if n - off >= RECORD_HEADER_SIZE:
                    crc, length, lsn, rtype = unpack(data, off)
                    end = off + RECORD_HEADER_SIZE + length
                    # mask_crc, inlined: this runs for every record of the log.
                    c = crc32c(view[off + 4 : end])
                    if (
                        end <= n
                        and crc == (((c >> 15 | c << 17) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF
                    ):
                        if (
                            rtype in RECORD_TYPES
                            and prev < lsn <= high
                            and (expected is None or lsn == expected)
                        ):
                            problem = None
                            payload: Any
                            if not decode:
                                payload = view[off + RECORD_HEADER_SIZE : end]
                            else:
                                try:
                                    payload = decode_payload(
                                        rtype, view[off + RECORD_HEADER_SIZE : end]
                                    )
                                except PayloadError as exc:
                                    problem = f"LSN {lsn}: {exc}"
                            if problem is None:
                                yield off, end - off, lsn, rtype, payload
                                prev = last = lsn
                                if consecutive:
                                    expected = lsn + 1
                                off = self.valid_end = end
                                mark_alone = None
                                continue
                            # In its place, only its payload is wrong: the records after it
                            # still follow on from its LSN.
                            lowest = lsn
                            prev = lsn
                            if consecutive:
                                expected = lsn + 1
                        elif rtype == BATCH_MARK:
                            problem = self._read_mark(view, off, end, lsn, prev, expected, high)
                            lowest = prev + 1
                            if problem is None:
                                if mark_alone is not None:
                                    self._damaged(
                                        Damage(
                                            mark_alone,
                                            off - mark_alone,
                                            "records missing: a batch mark followed by none of "
                                            "its records",
                                            False,
                                            False,
                                        ),
                                        prev + 1,
                                    )
                                    if stop_at_damage:
                                        return
                                mark_alone = off
                                off = end
                                continue
                        else:
                            problem = self._misplaced(rtype, lsn, prev, expected, high)
                            lowest = prev + 1
                        # A whole record with a valid CRC, but wrong: skip just that record.
                        self._damaged(
                            Damage(
                                off,
                                end - off,
                                problem,
                                False,
                                end >= n,
                                rtype not in RECORD_TYPES and rtype != BATCH_MARK,
                            ),
                            lowest,
                        )
                        mark_alone = None
                        if stop_at_damage:
                            return
                        off = end
                        continue
                    if end > n:
                        reason = f"record length {length} runs past the end of the segment"
                    else:
                        reason = "CRC mismatch"
                else:
                    reason = f"truncated record header ({n - off} bytes)"
                mark_alone = None
                resume = self._search(off, n, reason, prev)
                if resume is None or stop_at_damage:
                    return
                off = resume
                expected = None  # records were lost in the damage: accept the gap once
        finally:
            self.last_lsn = last
        if mark_alone is not None:
            # The write it opened ends right after it: torn, as far as anyone can tell.
            self._damaged(
                Damage(
                    mark_alone,
                    n - mark_alone,
                    "records missing: a batch mark followed by none of its records",
                    True,
                    True,
                ),
                prev + 1,
            )
            return
        self._check_end(n, end_lsn)

    def _read_mark(
        self,
        view: memoryview,
        off: int,
        end: int,
        lsn: int,
        prev: int,
        expected: int | None,
        high: int,
    ) -> str | None:
        """Check a batch mark whose CRC is right and note it; or say what is wrong with it."""
        if expected is not None and lsn != expected:
            return f"batch mark for LSN {lsn} where LSN {expected} was expected"
        if lsn <= prev or lsn > high:
            return f"batch mark for LSN {lsn} out of place (after LSN {prev})"
        mark = decode_batch_mark(lsn, view[off + RECORD_HEADER_SIZE : end])
        if mark is None:
            return f"batch mark for LSN {lsn} is malformed"
        self.marks.append(BatchMark(off, lsn, mark[0], mark[1]))
        return None

    def _misplaced(self, rtype: int, lsn: int, prev: int, expected: int | None, high: int) -> str:
        """Why a record with a valid CRC does not belong where it is."""
        if rtype not in RECORD_TYPES:
            return f"unknown record type {rtype}"
        if expected is not None and lsn != expected:
            return f"LSN {lsn} where {expected} was expected"
        if lsn <= prev:
            return f"LSN {lsn} does not follow LSN {prev}"
        if self.below_lsn is not None and lsn >= self.below_lsn:
            return f"LSN {lsn} is not below the next segment's base {self.below_lsn}"
        return f"LSN {lsn} is beyond the segment's end LSN {high}"

    def _check_end(self, n: int, end_lsn: int | None) -> None:
        """A sealed segment must reach the LSN just below the next segment's base: its last
        record does (plain segment) or its header says so (rewritten segment)."""
        if self.below_lsn is None or self.header is None or self.damage:
            return
        if end_lsn is not None and end_lsn >= self.below_lsn:
            # An empty segment was extended over the next ones, which compaction was about to
            # delete when it stopped: they are still whole and replay as they are.
            return
        reached = end_lsn if end_lsn is not None else (self.last_lsn or self.base_lsn - 1)
        if reached != self.below_lsn - 1:
            self._damaged(
                Damage(
                    n,
                    len(self.data) - n,
                    f"records missing: the segment ends at LSN {reached} but the next one starts "
                    f"at LSN {self.below_lsn}",
                    False,
                    True,
                ),
                reached + 1,
            )

    def first_damage(self) -> Damage | None:
        return self.damage[0] if self.damage else None

    def torn_tail(self) -> TornTail | None:
        """The damage, if all of it is what a crash can have left at the end of the newest
        segment (the caller asks only of that one; read it to the end first, without
        stop_at_damage). Nothing written after the damage may prove it durable:

        - In a segment with batch marks: no mark after the first damage vouches for a record
          the damage can have hit (a durable LSN at or above it). The damage then lies in
          the last write, or in writes that nothing later calls durable (a disk may write the
          pages of a write in any order): all of it is cut, valid records after it included.
        - Otherwise (a segment from before batch marks, a damaged header): the damage must be
          one stretch of unparseable bytes running to the end of the file.

        A rewritten segment is written whole and renamed into place: never torn. Nor is a
        record of a type this version does not know (Damage.foreign): a newer one wrote it."""
        if not self.damage or any(d.foreign for d in self.damage):
            return None
        first = self.damage[0]
        header = self.header
        if header is not None and header.rewritten:
            return None
        if header is None or not header.batched or first.offset < SEGMENT_HEADER_SIZE:
            if len(self.damage) != 1 or not first.torn:
                return None
            return TornTail(first.offset, first.length, first.reason, 0)
        lowest = self.first_damaged_lsn
        if any(m.offset > first.offset and m.durable_lsn >= lowest for m in self.marks):
            return None
        # A mark none of whose records precede the damage goes with them.
        cut = first.offset
        before = [m for m in self.marks if m.offset < cut]
        if before and before[-1].first_lsn >= lowest:
            cut = before[-1].offset
        # How many records the cut takes, as far as the marks and the survivors tell.
        known = max([self.last_lsn, *(m.last_lsn for m in self.marks)])
        return TornTail(cut, self.size - cut, first.reason, max(0, known - lowest + 1))


def read_segment(path: Path) -> bytes:
    """The whole file (segments are bounded by the segment size)."""
    with path.open("rb") as f:
        return f.read()


class SegmentBuffer:
    """Reads segments one after another into the same memory. Reading each into a new bytes
    object would have the kernel map fresh pages for every one: a page fault per 4 KiB, some
    16,000 per 64 MiB segment at a few microseconds each."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def read(self, path: Path) -> memoryview:
        """The whole file, valid until the next read."""
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > len(self._buffer):
                # A new buffer rather than a resize: views of the old one may still exist.
                self._buffer = bytearray(size)
            view = memoryview(self._buffer)
            done = 0
            while done < size:
                got = f.readinto(view[done:size])
                if not got:  # the file shrank meanwhile (it is locked: it does not grow)
                    break
                done += got
            return view[:done]
