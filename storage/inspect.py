"""Looking at a WAL directory no broker holds: inspect (per segment and per record), verify,
and repair. Everything returns data; the command line (storage/cli.py) prints it.

Inspection reads every segment to its end, resynchronising after damage (as Kafka's
DumpLogSegments reports "invalid bytes at end"), then judges liveness against a full replay of
the valid records. Repair, run only on the operator's word, moves each damaged byte range to
DIR/wal/quarantine/ and rewrites the segment without it, and reports exactly what it set aside.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from storage.checkpoint import list_checkpoints, load_checkpoint
from storage.compaction import Liveness
from storage.errors import StorageError
from storage.format import (
    BATCH_MARK,
    MARK_SIZE,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    decode_record_header,
    rewritten_header,
)
from storage.fsutil import DIR_MODE, fsync_dir, replace_file, unique_path, write_new_file
from storage.lock import DirLock
from storage.records import RecordType, describe
from storage.recovery import Progress
from storage.replay import ReplayState
from storage.segment import Damage, SegmentReader, list_segments, read_segment

QUARANTINE_DIRNAME = "quarantine"


@dataclass
class RecordEntry:
    """One record (or one damaged stretch, with crc "BAD") as --records lists it."""

    segment: str
    offset: int
    size: int
    lsn: int | None
    type: str
    crc: str  # "ok" or "BAD"
    subject: str | None = None  # the queue(s) or definition it is about
    message_ids: list[int] = field(default_factory=list)
    live: bool | None = None
    problem: str | None = None


@dataclass
class DamageEntry:
    offset: int
    length: int
    reason: str
    torn_tail: bool  # in a torn tail of the newest segment: cut at startup


@dataclass
class SegmentReport:
    name: str
    base_lsn: int
    size: int
    newest: bool
    header_ok: bool
    rewritten: bool
    records: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    first_lsn: int | None = None
    last_lsn: int | None = None
    live_bytes: int = 0
    dead_bytes: int = 0
    batches: int = 0  # batch marks (one per write appended since format version 2)
    crc_errors: int = 0
    invalid_bytes_at_end: int = 0
    damage: list[DamageEntry] = field(default_factory=list)
    # The torn tail startup cuts: from this offset to the end, at least this many records.
    torn_tail_offset: int | None = None
    torn_tail_records: int = 0

    @property
    def corrupt(self) -> bool:
        return any(not d.torn_tail for d in self.damage)


@dataclass
class CheckpointReport:
    name: str
    lsn: int
    valid: bool
    detail: str = ""


@dataclass
class InspectReport:
    directory: str
    segments: list[SegmentReport] = field(default_factory=list)
    checkpoints: list[CheckpointReport] = field(default_factory=list)
    records: list[RecordEntry] | None = None
    live_messages: int = 0
    definitions: int = 0

    @property
    def corrupt(self) -> bool:
        """Damage that would stop the broker from starting, or an unreadable checkpoint."""
        return any(s.corrupt for s in self.segments) or any(not c.valid for c in self.checkpoints)

    @property
    def torn_tail_bytes(self) -> int:
        return sum(
            s.size - s.torn_tail_offset for s in self.segments if s.torn_tail_offset is not None
        )

    def problems(self) -> list[str]:
        """One line per thing that is wrong, for people."""
        out = []
        for s in self.segments:
            if s.torn_tail_offset is not None:
                out.append(
                    f"{s.name} offset {s.torn_tail_offset}: torn tail (cut at startup): "
                    f"{s.size - s.torn_tail_offset} bytes, at least "
                    f"{s.torn_tail_records} records never confirmed"
                )
            for d in s.damage:
                what = "in the torn tail" if d.torn_tail else "CORRUPT"
                out.append(f"{s.name} offset {d.offset}: {what}: {d.reason} ({d.length} bytes)")
        for c in self.checkpoints:
            if not c.valid:
                out.append(f"{c.name}: invalid checkpoint: {c.detail}")
        return out

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["corrupt"] = self.corrupt
        out["torn_tail_bytes"] = self.torn_tail_bytes
        out["problems"] = self.problems()
        for seg, report in zip(out["segments"], self.segments, strict=True):
            seg["corrupt"] = report.corrupt
        return out


@contextmanager
def locked(data_dir: Path) -> Iterator[Path | None]:
    """Hold the lock of DIR/wal for the duration; yields that directory, or None when there is
    no WAL there yet. Raises WALLocked while a broker (or another tool) holds it."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise StorageError(f"{data_dir} is not a directory")
    wal_dir = data_dir / "wal"
    if not wal_dir.is_dir():
        yield None
        return
    lock = DirLock(wal_dir)
    lock.acquire()
    try:
        yield wal_dir
    finally:
        lock.release()


def _claimed(data: bytes, damage: Damage) -> tuple[int | None, str]:
    """What a damaged stretch's first header claims (LSN, type), for the listing."""
    if not damage.length:
        return None, "-"
    if damage.offset >= SEGMENT_HEADER_SIZE and len(data) - damage.offset >= RECORD_HEADER_SIZE:
        head = decode_record_header(data, damage.offset)
        if head.rtype == BATCH_MARK:
            return head.lsn, "BATCH"
        try:
            return head.lsn, RecordType(head.rtype).name
        except ValueError:
            return head.lsn, f"type {head.rtype}"
    return None, "segment header" if damage.offset < SEGMENT_HEADER_SIZE else "?"


def inspect_directory(
    data_dir: Path,
    *,
    records: bool = False,
    liveness: bool = True,
    progress: Progress | None = None,
) -> InspectReport:
    """Report on every segment and checkpoint of DIR/wal (DIR: the broker's data directory).

    records: also list every record. liveness: compute live and dead bytes (a second pass)."""
    report = InspectReport(str(data_dir))
    with locked(data_dir) as wal_dir:
        if wal_dir is None:
            return report
        segments = list_segments(wal_dir)
        total = sum(p.stat().st_size for _, p in segments) * (2 if liveness else 1)
        done = [0, 0]  # records, bytes

        def tick(nbytes: int, nrecords: int) -> None:
            done[0] += nrecords
            done[1] += nbytes
            if progress is not None:
                progress(done[0], done[1], total)

        # Pass 1: check every segment and replay what is valid (what recovery would keep).
        final = ReplayState()
        cuts: dict[int, int] = {}  # segment index -> where startup cuts its torn tail
        for i, (base, path) in enumerate(segments):
            data = read_segment(path)
            newest = i == len(segments) - 1
            below = None if newest else segments[i + 1][0]
            reader = SegmentReader(path, data, base, below_lsn=below)
            seg = SegmentReport(path.name, base, len(data), newest, False, False)
            found = list(reader.records())
            torn = reader.torn_tail() if newest else None
            if torn is not None:
                cuts[i] = torn.offset
                seg.torn_tail_offset = torn.offset
                seg.torn_tail_records = torn.records
                seg.invalid_bytes_at_end = torn.length
            for off, size, lsn, rtype, payload in found:
                if torn is not None and off >= torn.offset:
                    continue
                final.apply(lsn, rtype, payload, size)
                name = RecordType(rtype).name
                seg.by_type[name] = seg.by_type.get(name, 0) + 1
                seg.records += 1
                if seg.first_lsn is None:
                    seg.first_lsn = lsn
                seg.last_lsn = lsn
            seg.batches = len(reader.marks)
            if reader.header is not None:
                seg.header_ok = True
                seg.rewritten = reader.header.rewritten
                final.raise_floor(reader.header.next_message_id, base - 1)
            for d in reader.damage:
                seg.damage.append(
                    DamageEntry(
                        d.offset, d.length, d.reason, torn is not None and d.offset >= torn.offset
                    )
                )
                if d.framing:
                    seg.crc_errors += 1
                if d.at_end and d.framing and torn is None:
                    seg.invalid_bytes_at_end = d.length
            seg.dead_bytes = len(data) - SEGMENT_HEADER_SIZE
            report.segments.append(seg)
            tick(len(data), seg.records)
        report.live_messages = len(final.messages)
        report.definitions = len(final.definitions)

        # Pass 2: liveness of each record against the final state, and the listing.
        if liveness or records:
            judge = Liveness(final)
            listing: list[RecordEntry] = []
            for i, (base, path) in enumerate(segments):
                seg = report.segments[i]
                data = read_segment(path)
                below = None if seg.newest else segments[i + 1][0]
                reader = SegmentReader(path, data, base, below_lsn=below)
                live_bytes = 0
                cut = cuts.get(i)
                for off, size, lsn, rtype, payload in reader.records():
                    if cut is not None and off >= cut:
                        if records:
                            subject, ids = describe(rtype, payload)
                            listing.append(
                                RecordEntry(
                                    path.name,
                                    off,
                                    size,
                                    lsn,
                                    RecordType(rtype).name,
                                    "ok",
                                    subject,
                                    ids,
                                    False,
                                    "in the torn tail: cut at startup",
                                )
                            )
                        continue
                    # As if compaction rewrote every segment: what it would keep.
                    live = judge.is_live(lsn, rtype, payload)
                    if live:
                        live_bytes += size
                        judge.present(lsn, rtype, payload)
                    if records:
                        subject, ids = describe(rtype, payload)
                        listing.append(
                            RecordEntry(
                                path.name,
                                off,
                                size,
                                lsn,
                                RecordType(rtype).name,
                                "ok",
                                subject,
                                ids,
                                live,
                            )
                        )
                if records:
                    for mark in reader.marks:
                        listing.append(
                            RecordEntry(
                                path.name,
                                mark.offset,
                                MARK_SIZE,
                                mark.first_lsn,
                                "BATCH",
                                "ok",
                                f"batch LSN {mark.first_lsn}..{mark.last_lsn}, durable up to "
                                f"LSN {mark.durable_lsn} when written",
                            )
                        )
                    for d in reader.damage:
                        lsn_claimed, kind = _claimed(data, d)
                        listing.append(
                            RecordEntry(
                                path.name,
                                d.offset,
                                d.length,
                                lsn_claimed,
                                kind,
                                "BAD" if d.framing else "ok",
                                problem=d.reason,
                            )
                        )
                seg.live_bytes = live_bytes
                seg.dead_bytes = max(0, seg.size - SEGMENT_HEADER_SIZE - live_bytes)
                tick(len(data), 0)
            if records:
                listing.sort(key=lambda r: (r.segment, r.offset))
                report.records = listing

        for lsn, path in list_checkpoints(wal_dir):
            try:
                load_checkpoint(path)
            except (ValueError, OSError) as exc:
                report.checkpoints.append(CheckpointReport(path.name, lsn, False, str(exc)))
            else:
                report.checkpoints.append(CheckpointReport(path.name, lsn, True))
    return report


def verify_directory(data_dir: Path, progress: Progress | None = None) -> InspectReport:
    """The check alone: damage and checkpoints, without the liveness pass."""
    return inspect_directory(data_dir, liveness=False, progress=progress)


@dataclass
class QuarantinedItem:
    """One stretch of bytes repair set aside, and where it went."""

    segment: str
    offset: int
    length: int
    reason: str
    lsn: int | None  # the LSN its header claims, when it has one
    type: str
    quarantine_file: str | None  # None in a dry run


@dataclass
class RepairReport:
    directory: str
    dry_run: bool
    items: list[QuarantinedItem] = field(default_factory=list)
    segments_rewritten: list[str] = field(default_factory=list)
    segments_truncated: list[str] = field(default_factory=list)
    checkpoints_quarantined: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.items or self.checkpoints_quarantined)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def repair_directory(data_dir: Path, *, dry_run: bool = False) -> RepairReport:
    """Make DIR/wal replayable by moving every damaged byte range and unreadable checkpoint to
    DIR/wal/quarantine/. Valid records are kept byte for byte; a segment that loses records
    from its middle is marked rewritten (its LSNs may skip). Quarantine files are written and
    fsynced before any segment changes, and each segment is replaced atomically."""
    report = RepairReport(str(data_dir), dry_run)
    with locked(data_dir) as wal_dir:
        if wal_dir is None:
            return report
        quarantine = wal_dir / QUARANTINE_DIRNAME
        segments = list_segments(wal_dir)
        for i, (base, path) in enumerate(segments):
            data = read_segment(path)
            below = None if i == len(segments) - 1 else segments[i + 1][0]
            reader = SegmentReader(path, data, base, below_lsn=below)
            keep = [(off, size) for off, size, _lsn, _t, _p in reader.records()]
            if not reader.damage:
                continue
            if not dry_run:
                quarantine.mkdir(mode=DIR_MODE, exist_ok=True)
            torn = reader.torn_tail() if below is None else None
            if torn is not None and torn.offset < SEGMENT_HEADER_SIZE:
                torn = None  # no header left: rewritten below, as any other damage
            # A torn tail goes aside whole (valid records after damage in it included), as
            # open() would cut it; any other damage stretch by stretch.
            stretches = (
                [(torn.offset, torn.length, f"torn tail: {torn.reason}")]
                if torn is not None
                else [(d.offset, d.length, d.reason) for d in reader.damage]
            )
            for offset, length, reason in stretches:
                lsn, kind = _claimed(data, Damage(offset, length, reason, True, True))
                target = None
                if not dry_run and length:
                    target = unique_path(quarantine / f"{path.name}.{offset}.bad")
                    write_new_file(target, [data[offset : offset + length]], True)
                report.items.append(
                    QuarantinedItem(
                        path.name,
                        offset,
                        length,
                        reason,
                        lsn,
                        kind,
                        str(target) if target else None,
                    )
                )
            if dry_run:
                continue
            fsync_dir(quarantine)
            fsync_dir(wal_dir)
            if torn is not None:
                # What open() would do: cut the torn tail of the newest segment.
                with path.open("r+b") as f:
                    f.truncate(torn.offset)
                    os.fsync(f.fileno())
                report.segments_truncated.append(path.name)
                continue
            kept = [data[off : off + size] for off, size in keep]
            last = reader.last_lsn or base - 1
            header = rewritten_header(
                base,
                reader.header.next_message_id if reader.header else 1,
                last if below is None else below - 1,
                sum(len(k) for k in kept),
            )
            replace_file(path, [header.encode(), *kept], True)
            report.segments_rewritten.append(path.name)
        for _lsn, path in list_checkpoints(wal_dir):
            try:
                load_checkpoint(path)
            except (ValueError, OSError):
                report.checkpoints_quarantined.append(path.name)
                if not dry_run:
                    quarantine.mkdir(mode=DIR_MODE, exist_ok=True)
                    path.replace(unique_path(quarantine / path.name))
                    fsync_dir(quarantine)
                    fsync_dir(wal_dir)
    return report
