"""The write-ahead log: open (lock, recover), append, rotate, fail for good, checkpoint, close.

The WAL keeps a ReplayState of everything appended, so that a checkpoint (on close, or before
online compaction) can be written without reading the log back. The committer task owns the
active segment; appends only encode the record, apply it to that state and queue it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from storage.checkpoint import write_checkpoint
from storage.committer import Committer
from storage.compaction import CompactionResult, compact
from storage.errors import StorageError, WALClosed
from storage.format import (
    MARK_SIZE,
    SEGMENT_HEADER_SIZE,
    SegmentHeader,
    encode_batch_mark,
    encode_record,
    rewritten_header,
)
from storage.fsutil import DIR_MODE, replace_file
from storage.lock import DirLock
from storage.records import RecordType, encode_payload
from storage.recovery import Progress, SegmentInfo, gc_paused, recover
from storage.replay import RecoveredState, ReplayState
from storage.segment import SegmentWriter

WAL_DIRNAME = "wal"
DEFAULT_SEGMENT_SIZE = 64 * 2**20

# What the committer queues per record: (LSN, framed bytes, message id counter after it).
_Pending = tuple[int, bytes, int]


class WAL:
    """A durable, append-only log of storage records in DIR/wal (DIR: the data directory)."""

    def __init__(
        self, directory: Path, segment_size: int = DEFAULT_SEGMENT_SIZE, fsync: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.wal_dir = self.directory / WAL_DIRNAME
        self.segment_size = segment_size
        self.fsync = fsync
        self.checkpoint_lsn = 0
        self._lock = DirLock(self.wal_dir)
        self._state = ReplayState()
        self._committer = Committer(self._write_batch)
        self._segments: list[SegmentInfo] = []  # oldest first; the last one is active
        self._segments_lock = threading.Lock()  # the committer's and compaction's threads
        self._writer: SegmentWriter | None = None
        self._written_next_id = 1  # message id counter after the last record written
        # The highest LSN known durable (fsynced; confirmed, without fsync) by the committer's
        # thread: what the next batch mark says.
        self._durable_written = 0
        self._next_lsn = 1
        self._open = False
        self._closed = False
        self._maintenance: trio.Lock | None = None

    # -- opening --------------------------------------------------------------------------

    def open(self, progress: Progress | None = None) -> RecoveredState:
        """Lock the directory and recover: newest valid checkpoint, records after it, torn
        tail cut. Raises WALLocked, CorruptWAL (damage that is not a torn tail) or OSError."""
        if self._open or self._closed:
            raise StorageError("a WAL object can be opened once")
        started = time.monotonic()
        self.wal_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            rec = recover(self.wal_dir, fsync=self.fsync, progress=progress)
            self._state = rec.state
            self._segments = rec.segments
            self.checkpoint_lsn = rec.checkpoint_lsn
            self._next_lsn = rec.state.last_lsn + 1
            self._written_next_id = rec.state.next_message_id
            self._durable_written = rec.state.last_lsn  # recovery made what it read durable
            self._open_active_segment()
        except BaseException:
            if self._writer is not None:
                self._writer.close()
            self._lock.release()
            raise
        self._committer.reset(self._next_lsn - 1)
        self._open = True
        with gc_paused():
            result = self._state.recovered()
        result.records_replayed = rec.records_replayed
        result.dropped_tail_bytes = rec.dropped_tail_bytes
        if rec.broken_copy is not None:
            result.dropped_tail_records = rec.dropped_tail_records
            result.torn_segment = str(rec.torn_segment)
            result.torn_offset = rec.torn_offset
            result.broken_copy = str(rec.broken_copy)
        result.checkpoint_lsn = rec.checkpoint_lsn
        result.elapsed = time.monotonic() - started
        return result

    def _open_active_segment(self) -> None:
        """Continue the newest segment when it can take the next LSN; else seal it and start
        a new one. A segment from before batch marks is never continued (its damage is
        judged without them), so the first batch after an upgrade starts a new one."""
        newest = self._segments[-1] if self._segments else None
        if newest is not None:
            header = newest.header
            assert header is not None and newest.last_lsn is not None  # recovery read it
            expected = newest.last_lsn + 1 if newest.last_lsn else newest.base
            follows = not header.rewritten and expected == self._next_lsn
            if follows and header.batched and newest.size < self.segment_size:
                self._writer = SegmentWriter.reopen(newest.path, header, newest.size, self.fsync)
                return
            if follows and newest.last_lsn:
                pass  # sealed as it is: its last record is just below the next segment
            elif newest.base == self._next_lsn:
                # No records and cannot be continued (repair rewrote it, or it is from before
                # batch marks): start it afresh.
                newest.path.unlink()
                self._segments.pop()
            elif not header.rewritten or header.end_lsn != self._next_lsn - 1:
                # The next LSN does not follow its records (a checkpoint reaches further than
                # the log, or repair removed records): seal it saying where its span ends, so
                # that the LSNs skipped are not taken for lost records.
                self._seal_rewritten(newest, header)
        self._start_segment(self._next_lsn, self._state.next_message_id)

    def _seal_rewritten(self, info: SegmentInfo, header: SegmentHeader) -> None:
        with info.path.open("rb") as f:
            records = f.read(info.size)[SEGMENT_HEADER_SIZE:]
        sealed = rewritten_header(
            info.base, header.next_message_id, self._next_lsn - 1, len(records)
        )
        replace_file(info.path, [sealed.encode(), records], self.fsync)
        info.header = sealed

    def _start_segment(self, base: int, next_id: int) -> None:
        header = SegmentHeader(base, next_id)
        self._writer = SegmentWriter.create(self.wal_dir, header, self.fsync)
        with self._segments_lock:
            self._segments.append(
                SegmentInfo(base, self._writer.path, SEGMENT_HEADER_SIZE, header, 0)
            )

    # -- appending ------------------------------------------------------------------------

    def append(self, rtype: RecordType, payload: dict[str, Any]) -> int:
        """Queue one record for the committer and return its LSN. Never blocks or awaits.

        The payload is checked first (PayloadError, a ValueError, when it does not fit the
        record type) and must not be mutated afterwards. Raises WALFailed after a failure."""
        self._committer.check()
        if not self._open:
            raise WALClosed("the WAL is not open")
        data = encode_payload(rtype, payload)
        lsn = self._next_lsn
        record = encode_record(lsn, rtype, data)
        state = self._state
        state.apply(lsn, rtype, payload, len(record))
        self._next_lsn = lsn + 1
        self._committer.submit(lsn, (lsn, record, state.next_message_id), len(record))
        return lsn

    def coalesce(self, flush: Callable[[], None]) -> None:
        """Let a caller hold records back and append them together: `flush()` (which appends
        them) runs before the committer takes each batch, and whenever `flush_soon()` asks."""
        self._committer.before_commit = flush

    def flush_soon(self) -> None:
        """Records are held back (see `coalesce`): have them appended and written soon."""
        self._committer.wake()

    async def wait_durable(self, lsn: int) -> None:
        """Return once an fsync covering `lsn` completed; raises WALFailed."""
        await self._committer.wait_durable(lsn)

    @property
    def durable_lsn(self) -> int:
        return self._committer.durable_lsn

    @property
    def last_lsn(self) -> int:
        """LSN of the last record appended (durable or not)."""
        return self._next_lsn - 1

    @property
    def failed(self) -> BaseException | None:
        return self._committer.failed

    async def run_committer(
        self,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The group-commit task (`await nursery.start(wal.run_committer)`); ends after close."""
        await self._committer.run(task_status=task_status)

    def _write_batch(self, batch: list[_Pending], nbytes: int) -> None:
        """Committer thread: write the batch (one write per segment it lands in, each opened
        by a batch mark), rotating where the segment is full, then fsync."""
        writer = self._writer
        assert writer is not None
        if writer.size + MARK_SIZE + nbytes <= self.segment_size:
            parts = [item[1] for item in batch]
            parts.insert(0, encode_batch_mark(batch[0][0], batch[-1][0], self._durable_written))
            writer.write(b"".join(parts))
        else:
            chunk: list[bytes] = []
            first = last = 0
            size = writer.size + MARK_SIZE
            empty = SEGMENT_HEADER_SIZE + MARK_SIZE  # a segment with nothing in it yet
            next_id = self._written_next_id
            for lsn, record, id_after in batch:
                if size > empty and size + len(record) > self.segment_size:
                    if chunk:
                        self._write_chunk(writer, first, last, chunk)
                    writer = self._rotate(writer, lsn, next_id)
                    chunk = []
                    size = empty
                if not chunk:
                    first = lsn
                chunk.append(record)
                size += len(record)
                last = lsn
                next_id = id_after
            self._write_chunk(writer, first, last, chunk)
        writer.sync()
        self._durable_written = batch[-1][0]
        self._written_next_id = batch[-1][2]
        with self._segments_lock:
            active = self._segments[-1]
            active.size = writer.size
            active.last_lsn = batch[-1][0]

    def _write_chunk(
        self, writer: SegmentWriter, first: int, last: int, records: list[bytes]
    ) -> None:
        records.insert(0, encode_batch_mark(first, last, self._durable_written))
        writer.write(b"".join(records))

    def _rotate(self, old: SegmentWriter, base: int, next_id: int) -> SegmentWriter:
        """Seal the full segment (fsync, close) and start the next at `base` (created and
        the directory fsynced before any record goes in)."""
        old.sync()
        old.close()
        self._durable_written = base - 1
        with self._segments_lock:
            sealed = self._segments[-1]
            sealed.size = old.size
            sealed.last_lsn = base - 1
        self._start_segment(base, next_id)
        assert self._writer is not None
        return self._writer

    # -- closing --------------------------------------------------------------------------

    async def close(self, checkpoint: bool = True) -> None:
        """Write and fsync everything pending, stop the committer, write a checkpoint (so the
        next open replays little), release the lock. A failed WAL closes without writing."""
        if not self._open:
            return
        flush = self._committer.before_commit
        if flush is not None and self.failed is None:
            flush()  # what a caller holds back (see coalesce) goes in before the end
        self._open = False
        try:
            async with self._maintenance_lock():
                await self._committer.close()
                lsn = self._next_lsn - 1
                if checkpoint and self.failed is None and lsn > self.checkpoint_lsn:
                    try:
                        await trio.to_thread.run_sync(
                            write_checkpoint, self.wal_dir, self._state, lsn, self.fsync
                        )
                    except OSError as exc:
                        raise StorageError(f"could not write the checkpoint: {exc}") from exc
                    self.checkpoint_lsn = lsn
        finally:
            self._release()

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._closed = True
        self._lock.release()

    def _maintenance_lock(self) -> trio.Lock:
        if self._maintenance is None:
            self._maintenance = trio.Lock()
        return self._maintenance

    # -- maintenance ----------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Sizes for the broker's compaction trigger. live_bytes is an estimate (live messages
        and current definitions); dead_bytes is the rest, which compaction can reclaim only
        from sealed segments (all but the active one)."""
        with self._segments_lock:
            sizes = [s.size for s in self._segments]
        total = sum(sizes)
        live = min(self._state.live_bytes, total)
        return {
            "segments": len(sizes),
            "total_bytes": total,
            "active_segment_bytes": sizes[-1] if sizes else 0,
            "live_bytes": live,
            "dead_bytes": total - live,
            "live_messages": len(self._state.messages),
            "definitions": len(self._state.definitions),
            "last_lsn": self._next_lsn - 1,
            "durable_lsn": self.durable_lsn,
            "checkpoint_lsn": self.checkpoint_lsn,
            "pending_records": self._committer.pending,
            "commit_batches": self._committer.batches,
        }

    async def compact_online(self, progress: Progress | None = None) -> CompactionResult:
        """Checkpoint the current state, then compact the sealed segments it covers, in a
        worker thread (the same code as `trimq-wal compact`). Appends continue meanwhile;
        `progress` is called from that thread. Needs the committer running (it waits for the
        records so far to be durable). Raises CorruptWAL if a covered segment is damaged, or
        the OSError of a step that failed (a full disk): the log stays consistent on disk and
        in memory, appends go on, and compaction can simply be tried again later."""
        if not self._open:
            raise WALClosed("the WAL is not open")
        self._committer.check()
        async with self._maintenance_lock():
            lsn = self._next_lsn - 1
            snapshot = self._state.snapshot()
            await self._committer.wait_durable(lsn)
            with self._segments_lock:
                segments = list(self._segments)
            return await trio.to_thread.run_sync(
                self._compact_sync, snapshot, lsn, segments, progress
            )

    def _compact_sync(
        self, state: ReplayState, lsn: int, segments: list[SegmentInfo], progress: Progress | None
    ) -> CompactionResult:
        """Checkpoint at `lsn` (durable), then compact what it covers. When a step fails the
        segment list is brought back in line with the files before the error goes on, so the
        log stays usable and a later compaction can finish the job."""
        result = CompactionResult()
        try:
            if lsn > 0:
                write_checkpoint(self.wal_dir, state, lsn, self.fsync)
                self.checkpoint_lsn = lsn
            compact(
                self.wal_dir,
                [(s.base, s.path) for s in segments],
                state,
                lsn,
                self.fsync,
                progress,
                result,
            )
        except BaseException:
            self._forget_compacted(result, segments[:-1], reread=True)
            raise
        self._forget_compacted(result, segments[:-1], reread=False)
        return result

    def _forget_compacted(
        self, result: CompactionResult, sealed: list[SegmentInfo], reread: bool
    ) -> None:
        """Update the segment list after compaction: drop the segments it deleted, note the
        new size of those it rewrote. After a failure (reread) the sealed segments it was
        given are looked at again on disk, whatever step failed."""
        deleted = set(result.deleted)
        looked_at = {id(s) for s in sealed} if reread else set()
        with self._segments_lock:
            kept = []
            for s in self._segments:
                if s.path.name in deleted:
                    continue
                if id(s) in looked_at:
                    try:
                        s.size = s.path.stat().st_size
                    except FileNotFoundError:
                        continue
                    except OSError:
                        pass  # cannot tell: keep it (compaction will read it again)
                    s.header = None  # perhaps rewritten: read it again if needed
                elif s.path.name in result.rewritten:
                    s.size = result.rewritten[s.path.name]
                    s.header = None  # rewritten: read it again if needed
                kept.append(s)
            self._segments = kept


def compact_directory(
    directory: Path, progress: Progress | None = None, open_progress: Progress | None = None
) -> CompactionResult:
    """Offline compaction (`trimq-wal compact DIR`): lock and recover the directory, checkpoint
    it, compact every sealed segment, release. Raises WALLocked while a broker holds it."""
    wal = WAL(directory)
    wal.open(progress=open_progress)
    try:
        with wal._segments_lock:
            segments = list(wal._segments)
        return wal._compact_sync(wal._state, wal.last_lsn, segments, progress)
    finally:
        wal._release()
