"""The pager: keeps the message bodies held in memory under a broker-wide budget by writing the
middle of the longest queues to their page files, and reads paged runs back ahead of the head
(trimq/broker/paging.py and ready.py hold the model's side).

Every tick (and when a queue's head runs low) it sums the ready bytes in memory over all queues;
above the budget (the memory watermark times `paging_ratio`, as RabbitMQ's
vm_memory_high_watermark_paging_ratio, or `paging_budget` bytes when set) it pages out what lies
beyond the head window of the largest queues until the sum is back under it. Queues in lazy
mode are paged beyond their head window whatever the budget. Encoding, writing and reading run
in worker threads: the event loop only moves lists of entries.

A page write that fails (a full disk) keeps the messages in memory and raises the disk alarm,
which blocks publishers; the pager tries again every RETRY seconds and clears it once a write
succeeds.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import time
from pathlib import Path

import structlog
import trio

from trimq.broker import paging
from trimq.broker.broker import Broker
from trimq.broker.message import QueuedMessage
from trimq.broker.paging import PageFile, Run
from trimq.broker.queue import Queue
from trimq.server.resources import Resources

log = structlog.get_logger("trimq.pager")

PAGING_DIR = "paging"
TICK = 0.1  # seconds between looks at the budget
RETRY = 1.0  # seconds between page-out attempts after a failed write
THREADS = 4  # page writes and reads at once
PARALLEL = 3  # runs of one queue being written at once
TRIM_AFTER = 32 * 2**20  # bytes paged out after which free heap pages go back to the system


def _encode(entries: list[QueuedMessage]) -> bytes:
    return paging.encode_run(entries)


def _write(path: Path, offset: int, data: bytes) -> None:
    paging.write_at(path, offset, data)  # looked up at each call: tests replace it


def _read(path: Path, offset: int, length: int) -> list[QueuedMessage]:
    return paging.decode_run(paging.read_at(path, offset, length))


class Pager:
    def __init__(self, broker: Broker, resources: Resources, data_dir: Path) -> None:
        self.broker = broker
        self.resources = resources
        self.directory = data_dir / PAGING_DIR
        config = broker.config
        self.head_messages = config.paging_head_messages
        self.head_bytes = config.paging_head_bytes
        self.run_bytes = config.paging_run_bytes
        self._wake = trio.Event()
        self._paging: set[int] = set()  # ids of the queues with a page-out under way
        self._names = itertools.count(1)
        self._limiter = trio.CapacityLimiter(THREADS)
        self._failed_at: float | None = None  # when the last page write failed
        self._freed = 0  # bytes paged out since the last trim
        self._trimming = False

    def wake(self) -> None:
        self._wake.set()

    @property
    def budget(self) -> int:
        config = self.broker.config
        if config.paging_budget:
            return config.paging_budget
        return int(self.resources.memory_limit * config.paging_ratio)

    def clear_directory(self) -> None:
        """Page files are never replayed: whatever a previous run left goes."""
        shutil.rmtree(self.directory, ignore_errors=True)

    async def run(self) -> None:
        self.clear_directory()
        async with trio.open_nursery() as nursery:
            while True:
                with trio.move_on_after(TICK):
                    await self._wake.wait()
                self._wake = trio.Event()
                self.tick(nursery)

    def tick(self, nursery: trio.Nursery) -> None:
        queues = [q for vhost in self.broker.vhosts.values() for q in vhost.queues.values()]
        total = 0
        for queue in queues:
            ready = queue.ready
            total += ready.ram_bytes
            if ready.paged_count:
                for run in ready.to_prefetch():
                    nursery.start_soon(self._prefetch, queue, run)
        if self._freed >= TRIM_AFTER and not self._trimming:
            self._freed = 0
            self._trimming = True
            nursery.start_soon(self._trim)
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY:
            return
        for queue in queues:
            if queue.settings.queue_mode == "lazy" and self._beyond_window(queue):
                self._page_out(nursery, queue, None)
        over = self.over_budget(total)
        if over <= 0:
            return
        for queue in sorted(queues, key=lambda q: q.ready.ram_bytes, reverse=True):
            if over <= 0:
                break
            if not self._beyond_window(queue):
                continue
            share = min(over, queue.ready.ram_bytes)
            over -= share
            self._page_out(nursery, queue, share)

    def over_budget(self, in_memory: int) -> int:
        """Bytes of ready messages to page out: what is in memory beyond the budget, or all
        of it once the process's RSS (what the memory alarm compares) passes the watermark
        times the ratio, as RabbitMQ pages once its memory reaches that point (freed bodies
        do not all leave the RSS at once: paging only the excess lets a fast publisher reach
        the alarm). With `paging_budget` set, only the bytes count."""
        over = in_memory - self.budget
        used = self.resources.memory_used
        config = self.broker.config
        if (
            used is not None
            and not config.paging_budget
            and used > self.resources.memory_limit * config.paging_ratio
        ):
            return in_memory
        return over

    async def _trim(self) -> None:
        """Freed bodies stay in the allocator's free lists, and so in the RSS the memory
        alarm compares, until handed back."""
        try:
            await trio.to_thread.run_sync(self.resources.trim, limiter=self._limiter)
        finally:
            self._trimming = False

    def _beyond_window(self, queue: Queue) -> bool:
        ready = queue.ready
        return (
            ready.count - ready.paged_count > self.head_messages
            or ready.ram_bytes > self.head_bytes
        )

    def _page_out(self, nursery: trio.Nursery, queue: Queue, limit: int | None) -> None:
        if id(queue) in self._paging or queue.deleted:
            return
        if queue.ready.pages is None:
            name = hashlib.sha1(f"{queue.vhost}\0{queue.name}".encode()).hexdigest()[:16]
            queue.start_paging(
                PageFile(self.directory, f"{next(self._names)}-{name}"),
                self.wake,
                max(1, self.head_messages // 2),
            )
        self._paging.add(id(queue))
        nursery.start_soon(self._page_out_task, queue, limit)

    async def _page_out_task(self, queue: Queue, limit: int | None) -> None:
        """Write runs of `queue` (about `limit` bytes of messages; None: all beyond the
        head window), PARALLEL at a time: each is two thread hops, so one at a time falls
        behind a fast publisher."""
        taken = [0]
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(PARALLEL):
                    nursery.start_soon(self._page_out_runs, queue, limit, taken)
        finally:
            self._paging.discard(id(queue))

    async def _page_out_runs(self, queue: Queue, limit: int | None, taken: list[int]) -> None:
        while limit is None or taken[0] < limit:
            ready = queue.ready
            pages = ready.pages
            if queue.deleted or pages is None:
                return
            run = ready.take_run(self.head_messages, self.head_bytes, self.run_bytes)
            if run is None:
                return
            assert run.entries is not None
            taken[0] += sum(entry.message.size for entry in run.entries)
            if not await self._write_run(queue, pages, run):
                return

    async def _write_run(self, queue: Queue, pages: PageFile, run: Run) -> bool:
        entries = run.entries
        assert entries is not None
        data = await trio.to_thread.run_sync(_encode, entries, limiter=self._limiter)
        if queue.ready.pages is not pages or run.detached:
            run.busy = False
            return False
        segment, offset = pages.reserve(len(data))
        try:
            await trio.to_thread.run_sync(_write, segment.path, offset, data, limiter=self._limiter)
        except OSError as exc:
            if queue.ready.pages is pages:
                queue.ready.write_failed(run, segment)
            else:
                pages.written(segment, kept=False)
            self._failed(exc, queue)
            return False
        if queue.ready.pages is not pages:  # the queue went meanwhile
            run.busy = False
            pages.written(segment, kept=False)
            return False
        if queue.paged_out(run, segment, offset, len(data)):
            self._freed += run.bytes
        if self._failed_at is not None:
            self._failed_at = None
            self.resources.set_paging_failed(False)
            log.info("pager.write_recovered", queue=queue.name, vhost=queue.vhost)
        return True

    def _failed(self, exc: OSError, queue: Queue) -> None:
        first = self._failed_at is None
        self._failed_at = time.monotonic()
        if first:
            log.error(
                "pager.write_failed",
                queue=queue.name,
                vhost=queue.vhost,
                error=str(exc),
                message="a page write failed: the messages stay in memory and publishers "
                "are blocked (disk alarm) until a page write succeeds",
            )
            self.resources.set_paging_failed(True)

    async def _prefetch(self, queue: Queue, run: Run) -> None:
        segment = run.segment
        entries: list[QueuedMessage] | None = None
        if segment is not None:
            try:
                entries = await trio.to_thread.run_sync(
                    _read, segment.path, run.offset, run.length, limiter=self._limiter
                )
            except OSError as exc:
                if not run.detached and run.entries is None:
                    log.error("pager.read_failed", queue=queue.name, error=str(exc))
        queue.ready.prefetched(run, entries)
