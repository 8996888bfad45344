"""Opening a WAL directory: newest valid checkpoint, then the segments after it, checked record
by record; a torn tail of the newest segment is cut (after a copy is kept), any other damage
stops recovery with CorruptWAL.

Only the newest segment can end in a torn write: a segment is fsynced before the next one is
created, so damage anywhere else was not left by a crash and may hit confirmed records. In the
newest segment, damage is a torn tail unless a later batch mark says the records it can have
hit had been made durable (SegmentReader.torn_tail): then it is corruption too.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from storage.checkpoint import load_newest
from storage.errors import CorruptWAL
from storage.format import SEGMENT_HEADER_SIZE, SegmentHeader
from storage.fsutil import TMP_SUFFIX, fsync_dir, replace_file, unique_path, write_new_file
from storage.records import PayloadError
from storage.replay import ReplayState
from storage.segment import SegmentBuffer, SegmentReader, TornTail, list_segments

# progress(records_done, bytes_done, bytes_total)
Progress = Callable[[int, int, int], None]
PROGRESS_EVERY = 8192


@dataclass
class SegmentInfo:
    """What the WAL knows of one segment file. header and last_lsn are None when recovery
    skipped the segment (a checkpoint covers it)."""

    base: int
    path: Path
    size: int
    header: SegmentHeader | None = None
    last_lsn: int | None = None  # LSN of its last record; 0 when it holds none


@dataclass
class Recovery:
    state: ReplayState
    segments: list[SegmentInfo]
    checkpoint_lsn: int = 0
    ignored_checkpoints: list[tuple[Path, str]] = field(default_factory=list)
    records_replayed: int = 0
    dropped_tail_bytes: int = 0
    dropped_tail_records: int = 0  # at least this many (see TornTail)
    torn_segment: Path | None = None
    torn_offset: int = 0
    broken_copy: Path | None = None


def remove_stale_temp_files(wal_dir: Path) -> None:
    """Temp files are only ever renamed into place once complete: any left over are from a
    crash and hold nothing that the real files lack."""
    for entry in os.scandir(wal_dir):
        if entry.name.endswith(TMP_SUFFIX) and entry.is_file():
            Path(entry.path).unlink()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Recovery creates millions of objects and no reference cycles: meanwhile the cyclic
    collector would run over the growing heap again and again (replay gets 2x slower)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def recover(wal_dir: Path, *, fsync: bool, progress: Progress | None = None) -> Recovery:
    """Rebuild the replay state of `wal_dir` (whose lock the caller holds)."""
    with gc_paused():
        return _recover(wal_dir, fsync, progress)


def _recover(wal_dir: Path, fsync: bool, progress: Progress | None) -> Recovery:
    remove_stale_temp_files(wal_dir)
    ckpt_lsn, loaded, ignored = load_newest(wal_dir)
    state = loaded if loaded is not None else ReplayState()
    found = list_segments(wal_dir)
    infos = [SegmentInfo(base, path, path.stat().st_size) for base, path in found]
    result = Recovery(state, infos, ckpt_lsn, ignored)

    # A segment is skipped when the checkpoint covers all of it: the next one starts at or
    # below the first LSN the checkpoint lacks. The newest segment is always read.
    if infos and loaded is not None and infos[0].base > ckpt_lsn + 1:
        # Compaction only deletes segments a checkpoint covers.
        raise CorruptWAL(
            infos[0].path,
            0,
            f"records {ckpt_lsn + 1}..{infos[0].base - 1} are missing: the "
            f"checkpoint ends at LSN {ckpt_lsn} and the first segment starts "
            f"at LSN {infos[0].base}",
        )
    to_read = [
        i for i, info in enumerate(infos) if i == len(infos) - 1 or infos[i + 1].base > ckpt_lsn + 1
    ]
    total = sum(infos[i].size for i in to_read)
    done_bytes = 0
    replayed = 0
    buffer = SegmentBuffer()
    for i in to_read:
        info = infos[i]
        newest = i == len(infos) - 1
        data = buffer.read(info.path)
        below = None if newest else infos[i + 1].base
        reader = SegmentReader(info.path, data, info.base, below_lsn=below)
        replay = state.replay
        damage = reader.damage
        last_lsn = 0  # of the last record before any damage
        # The newest segment is read to its end whatever it holds: whether damage is a torn
        # tail depends on the batch marks after it. Records after damage are not replayed.
        for off, size, lsn, rtype, payload in reader.records(
            stop_at_damage=not newest, decode=False
        ):
            if damage:
                continue
            last_lsn = lsn
            if lsn <= ckpt_lsn:
                continue
            try:
                replay(lsn, rtype, payload, size)
            except PayloadError as exc:
                # A record with a valid CRC and a wrong shape was written that way: damage
                # no crash explains, as SegmentReader reports it when it decodes.
                raise CorruptWAL(info.path, off, f"LSN {lsn}: {exc}") from exc
            replayed += 1
            if progress is not None and replayed % PROGRESS_EVERY == 0:
                progress(replayed, done_bytes + off, total)
        info.header = reader.header
        info.last_lsn = last_lsn
        if reader.header is not None:
            state.raise_floor(reader.header.next_message_id, info.base - 1)
        if damage:
            torn = reader.torn_tail() if newest else None
            if torn is None:
                raise CorruptWAL(info.path, damage[0].offset, damage[0].reason)
            _cut_torn_tail(result, info, data, torn, fsync)
        elif newest and fsync:
            # What we replayed may still be only in the page cache (a previous run without
            # fsync): make it durable before anything (a checkpoint) builds on it.
            _fsync_file(info.path)
        done_bytes += info.size
        if progress is not None:
            progress(replayed, done_bytes, total)
    state.raise_floor(0, ckpt_lsn)
    result.records_replayed = replayed
    return result


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_torn_tail(
    result: Recovery, info: SegmentInfo, data: memoryview, torn: TornTail, fsync: bool
) -> None:
    """Keep the torn bytes as <segment>.broken-<offset>, then cut them off. The records in
    them never reached an fsync that a confirm waited for, so nobody was told they were
    safe."""
    cut = torn.offset
    broken = unique_path(info.path.with_name(f"{info.path.name}.broken-{cut}"))
    write_new_file(broken, [bytes(data[cut:])], fsync)
    if cut < SEGMENT_HEADER_SIZE:
        # Not even the header survived (a crash while the segment was being created).
        header = SegmentHeader(info.base, result.state.next_message_id)
        replace_file(info.path, [header.encode()], fsync)
        info.header = header
        info.size = SEGMENT_HEADER_SIZE
    else:
        with info.path.open("r+b") as f:
            f.truncate(cut)
            if fsync:
                os.fsync(f.fileno())
        info.size = cut
    if fsync:
        fsync_dir(info.path.parent)
    result.dropped_tail_bytes = len(data) - cut
    result.dropped_tail_records = torn.records
    result.torn_segment = info.path
    result.torn_offset = cut
    result.broken_copy = broken
