"""Group commit: one task owns the log's writes, so every fsync covers as many records as
arrived while the previous one ran.

Appenders hand records over with submit() (synchronous, never blocks). The committer takes
everything pending, writes it with one write and fsyncs it once in a worker thread, so the
event loop keeps serving while the disk works; then it wakes every waiter the fsync covered.
Records submitted during an fsync form the next batch. No timer: batching comes from the time
an fsync takes, as in LavinMQ's persister.

A failed write or fsync fails the committer for good. After a failed fsync the kernel may have
dropped the dirty pages and marked them clean, so a retry could succeed without the data ever
reaching the disk (PostgreSQL's "fsyncgate"): never retry.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import trio

from storage.errors import WALClosed, WALFailed

# sink(batch, batch_bytes): write the batch's items and make them durable; runs in a thread.
Sink = Callable[[list[Any], int], None]


class Committer:
    """Pending records, the committer task, and the waiters for durability."""

    def __init__(self, sink: Sink, durable_lsn: int = 0) -> None:
        self._sink = sink
        # appends records held back to be coalesced; runs before every batch is taken
        self.before_commit: Callable[[], None] | None = None
        self.durable_lsn = durable_lsn
        self.submitted_lsn = durable_lsn
        self.failed: BaseException | None = None
        self.batches = 0  # batches written (each with one fsync, when fsync is on)
        self._pending: list[Any] = []
        self._pending_bytes = 0
        self._wake = trio.Event()
        self._waiters: list[tuple[int, int, trio.Event]] = []
        self._seq = 0
        self._closing = False
        self._closed = False
        self._running = False
        self._stopped: trio.Event | None = None

    def reset(self, durable_lsn: int) -> None:
        """Start from `durable_lsn` (after recovery)."""
        self.durable_lsn = self.submitted_lsn = durable_lsn

    def submit(self, lsn: int, item: Any, nbytes: int) -> None:
        """Queue one record (LSNs must increase); the committer picks it up soon."""
        self._pending.append(item)
        self._pending_bytes += nbytes
        self.submitted_lsn = lsn
        if not self._wake.is_set():
            self._wake.set()

    def wake(self) -> None:
        """Have the committer run soon even though nothing was submitted (so that
        `before_commit` appends what it holds back)."""
        if not self._wake.is_set():
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The committer task: returns after close() once everything pending is written."""
        if self._running:
            raise RuntimeError("the committer is already running")
        if self._closed:
            raise WALClosed("the WAL is closed")
        self._running = True
        self._stopped = trio.Event()
        task_status.started()
        try:
            while True:
                if self.before_commit is not None and self.failed is None:
                    self.before_commit()
                if self._pending and self.failed is None:
                    await self._commit()
                    continue
                if self._closing:
                    return
                await self._wake.wait()
                self._wake = trio.Event()
        finally:
            self._running = False
            self._stopped.set()

    async def _commit(self) -> None:
        batch, nbytes = self._pending, self._pending_bytes
        self._pending = []
        self._pending_bytes = 0
        last = self.submitted_lsn
        try:
            # Not abandoned on cancellation: the write completes and is accounted for below.
            await trio.to_thread.run_sync(self._sink, batch, nbytes)
        except Exception as exc:  # any failure to write leaves the log in an unknown state
            self._fail(exc)
            return
        self.batches += 1
        self.durable_lsn = last
        self._release()

    def _fail(self, exc: BaseException) -> None:
        self.failed = exc
        self._pending = []
        self._pending_bytes = 0
        self._release(everyone=True)

    def _release(self, everyone: bool = False) -> None:
        waiters = self._waiters
        while waiters and (everyone or waiters[0][0] <= self.durable_lsn):
            heapq.heappop(waiters)[2].set()

    def check(self) -> None:
        """Raise WALFailed if the log has failed."""
        if self.failed is not None:
            raise WALFailed(f"the write-ahead log has failed: {self.failed!r}") from self.failed

    async def wait_durable(self, lsn: int) -> None:
        """Return once an fsync covering `lsn` has completed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if lsn <= self.durable_lsn:
            return
        self.check()
        if lsn > self.submitted_lsn:
            raise ValueError(f"LSN {lsn} was never appended (last is {self.submitted_lsn})")
        if self._closed:
            raise WALClosed("the WAL is closed")
        self._seq += 1
        event = trio.Event()
        heapq.heappush(self._waiters, (lsn, self._seq, event))
        await event.wait()
        if lsn > self.durable_lsn:
            self.check()
            raise WALClosed("the WAL was closed before this record was written")

    async def close(self) -> None:
        """Write everything pending, stop the committer task, wake whoever still waits."""
        self._closing = True
        self._wake.set()
        if self._running:
            assert self._stopped is not None
            await self._stopped.wait()
        else:
            if self.before_commit is not None and self.failed is None:
                self.before_commit()
            if self._pending and self.failed is None:
                await self._commit()
        self._closed = True
        self._release(everyone=True)
