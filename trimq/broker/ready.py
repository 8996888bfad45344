"""A queue's ready messages in delivery order: FIFO, or highest priority first (FIFO within a
priority) when the queue was declared with x-max-priority.

Entries that expire or are dropped while in the middle are only marked (`in_ready` False) and
skipped when they reach the head, so removal costs O(1); the live count and bytes stay exact.

Each priority level is a head (a deque of entries), then runs (trimq/broker/paging.py: in
memory or paged out to disk), then a tail (a deque): until the queue is paged, the runs and the
tail are empty and everything is in the head, as before paging existed. Paging moves what lies
beyond the head window into runs; the pager (trimq/server/pager.py) writes them out and reads
them back ahead of need. A run reached by the head before it was read back is read at once.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import islice

from trimq.broker.message import QueuedMessage
from trimq.broker.paging import PageFile, Run, Segment, decode_run, read_at

PREFETCH_RUNS = 2  # runs read back ahead of the head, per priority level


class Level:
    """One priority level: head, runs, tail (the tail is empty while there are no runs)."""

    __slots__ = ("head", "runs", "tail")

    def __init__(self) -> None:
        self.head: deque[QueuedMessage] = deque()
        self.runs: deque[Run] = deque()
        self.tail: deque[QueuedMessage] = deque()


def _read(run: Run) -> list[QueuedMessage]:
    segment = run.segment
    assert segment is not None
    return decode_run(read_at(segment.path, run.offset, run.length))


class ReadyList:
    __slots__ = (
        "_levels",
        "_max_priority",
        "bytes",
        "count",
        "low",
        "on_loaded",
        "paged_bytes",
        "paged_count",
        "pages",
        "wake",
    )

    def __init__(self, max_priority: int = 0) -> None:
        self._max_priority = max_priority
        self._levels: list[Level] = [Level() for _ in range(max_priority + 1)]
        self.count = 0
        self.bytes = 0
        self.paged_count = 0  # of count and bytes, what is on disk
        self.paged_bytes = 0
        self.pages: PageFile | None = None  # set by the pager when it first pages the queue
        # entries read back from disk (the queue schedules their expiry); the pager's wake-up
        self.on_loaded: Callable[[list[QueuedMessage]], None] | None = None
        self.wake: Callable[[], None] | None = None
        self.low = 0  # fewer entries than this at the head: read ahead

    def _level(self, entry: QueuedMessage) -> Level:
        if not self._max_priority:
            return self._levels[0]
        priority = entry.message.properties.priority or 0
        return self._levels[min(priority, self._max_priority)]

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def ram_bytes(self) -> int:
        return self.bytes - self.paged_bytes

    def append(self, entry: QueuedMessage) -> None:
        level = self._level(entry) if self._max_priority else self._levels[0]
        (level.tail if level.runs else level.head).append(entry)
        entry.in_ready = True
        self.count += 1
        self.bytes += entry.message.size

    def extend(self, entries: list[QueuedMessage]) -> None:
        """append() each of them (for recovery: one call for a million entries)."""
        level = self._levels[0]
        if self._max_priority or level.runs:
            for entry in entries:
                self.append(entry)
            return
        size = 0
        for entry in entries:
            entry.in_ready = True
            size += len(entry.message.body)
        level.head.extend(entries)
        self.count += len(entries)
        self.bytes += size

    def popleft(self) -> QueuedMessage | None:
        """The next live entry, or None."""
        if not self.count:
            return None
        if not self._max_priority:  # one level: no loop over levels
            return self._pop_live(self._levels[0])
        for level in reversed(self._levels):
            entry = self._pop_live(level)
            if entry is not None:
                return entry
        return None

    def _pop_live(self, level: Level) -> QueuedMessage | None:
        """The first entry of `level` still ready (expired or taken ones are dropped)."""
        while True:
            head = level.head
            while head:
                entry = head.popleft()
                if entry.in_ready:
                    entry.in_ready = False
                    self.count -= 1
                    self.bytes -= entry.message.size
                    return entry
            if not level.runs and not level.tail:
                return None
            self._next_run(level)

    def _next_run(self, level: Level) -> None:
        """The head ran out: the next run (read now if it is still on disk) becomes the head,
        and with the last run the tail joins it."""
        if level.runs:
            run = level.runs[0]
            entries = run.entries if run.entries is not None else self._load(run)
            level.runs.popleft()
            run.detached = True
            level.head.extend(entries)
        if not level.runs:
            level.head.extend(level.tail)
            level.tail.clear()
        elif level.runs[0].paged and self.wake is not None:
            self.wake()

    def _load(self, run: Run) -> list[QueuedMessage]:
        """Read a paged run back now (on the event loop: its prefetch did not come first)."""
        entries = _read(run)
        self._paged_in(run, entries)
        return entries

    def _paged_in(self, run: Run, entries: list[QueuedMessage]) -> None:
        self.paged_count -= run.count
        self.paged_bytes -= run.bytes
        segment = run.segment
        run.page_in(entries)
        if segment is not None and self.pages is not None:
            self.pages.release(segment)
        if self.on_loaded is not None:
            self.on_loaded(entries)

    def peek(self) -> QueuedMessage | None:
        if not self.count:
            return None
        for level in reversed(self._levels):
            while level.head and not level.head[0].in_ready:
                level.head.popleft()
            if level.head:
                return level.head[0]
            for run in level.runs:
                entries = run.entries if run.entries is not None else self._load(run)
                for entry in entries:
                    if entry.in_ready:
                        return entry
            for entry in level.tail:
                if entry.in_ready:
                    return entry
        return None

    def discard(self, entry: QueuedMessage) -> None:
        """Drop a live entry wherever it sits (it is skipped later)."""
        entry.in_ready = False
        self.count -= 1
        self.bytes -= entry.message.size

    def requeue(self, entries: list[QueuedMessage]) -> None:
        """Put entries back at their original positions (by sequence number). They were
        taken from the head, so they all come before every run and the tail."""
        by_level: dict[int, list[QueuedMessage]] = {}
        for entry in entries:
            level = self._level(entry)
            by_level.setdefault(id(level), []).append(entry)
            entry.in_ready = True
            self.count += 1
            self.bytes += entry.message.size
        for level in self._levels:
            returned = by_level.get(id(level))
            if not returned:
                continue
            head = level.head
            returned.sort(key=lambda e: e.seq)
            if not head or returned[-1].seq < head[0].seq:
                head.extendleft(reversed(returned))
            else:
                merged = sorted([*head, *returned], key=lambda e: e.seq)
                head.clear()
                head.extend(merged)

    def _chunks(self, level: Level) -> Iterator[Sequence[QueuedMessage] | Run]:
        yield level.head
        yield from level.runs
        yield level.tail

    def __iter__(self) -> Iterator[QueuedMessage]:
        """Every live entry in delivery order; paged runs are read (not taken back)."""
        for level in reversed(self._levels):
            for chunk in self._chunks(level):
                if isinstance(chunk, Run) and chunk.entries is None:
                    yield from _read(chunk)
                    continue
                for entry in chunk.entries if isinstance(chunk, Run) else chunk:  # type: ignore[union-attr]
                    if entry.in_ready:
                        yield entry

    def _stored(self) -> int:
        """Entries held, live or only marked (equal to count when none is only marked)."""
        total = 0
        for level in self._levels:
            total += len(level.head) + len(level.tail)
            for run in level.runs:
                total += run.count if run.entries is None else len(run.entries)
        return total

    def window(self, offset: int, count: int) -> list[QueuedMessage]:
        """The live entries at positions offset .. offset+count-1 of delivery order, without
        taking them. Walks the first offset+count entries (whole chunks are skipped by their
        length while no entry is only marked), reading paged runs only where they are
        needed."""
        if count <= 0 or offset >= self.count:
            return []
        if self._stored() != self.count:
            return list(islice(iter(self), offset, offset + count))
        taken: list[QueuedMessage] = []
        for level in reversed(self._levels):
            for chunk in self._chunks(level):
                if isinstance(chunk, Run):
                    size = chunk.count if chunk.entries is None else len(chunk.entries)
                    if offset >= size:
                        offset -= size
                        continue
                    entries: Sequence[QueuedMessage] = (
                        chunk.entries if chunk.entries is not None else _read(chunk)
                    )
                else:
                    if offset >= len(chunk):
                        offset -= len(chunk)
                        continue
                    entries = chunk
                taken += islice(entries, offset, offset + count - len(taken))
                offset = 0
                if len(taken) == count:
                    return taken
        return taken

    def persistent(self) -> tuple[int, int]:
        """How many persistent messages are ready, and their bytes."""
        count = size = 0
        for level in self._levels:
            for chunk in self._chunks(level):
                if isinstance(chunk, Run) and chunk.entries is None:
                    count += chunk.persistent
                    size += chunk.persistent_bytes
                    continue
                for entry in chunk.entries if isinstance(chunk, Run) else chunk:  # type: ignore[union-attr]
                    if entry.in_ready and entry.message.persistent:
                        count += 1
                        size += entry.message.size
        return count, size

    def clear(self) -> tuple[list[QueuedMessage], array[int]]:
        """Remove every live entry; returns those in memory in delivery order and the log
        ids of the persistent ones that were paged out."""
        live: list[QueuedMessage] = []
        ids: array[int] = array("Q")
        for level in reversed(self._levels):
            for chunk in self._chunks(level):
                if isinstance(chunk, Run):
                    chunk.detached = True
                    if chunk.entries is None:
                        ids += chunk.ids
                        if chunk.segment is not None and self.pages is not None:
                            self.pages.release(chunk.segment)
                        chunk.segment = None
                        continue
                    live += [entry for entry in chunk.entries if entry.in_ready]
                else:
                    live += [entry for entry in chunk if entry.in_ready]
        for entry in live:
            entry.in_ready = False
        for level in self._levels:
            level.head.clear()
            level.runs.clear()
            level.tail.clear()
        self.count = 0
        self.bytes = 0
        self.paged_count = 0
        self.paged_bytes = 0
        return live, ids

    def close_pages(self) -> None:
        """The queue is gone: its page file with it."""
        if self.pages is not None:
            self.pages.close()
        self.pages = None
        self.on_loaded = None
        self.wake = None

    # -- paging (the pager's side) --------------------------------------------------------

    def take_run(self, head_count: int, head_bytes: int, run_bytes: int) -> Run | None:
        """The next run to write out, marked busy: a run in memory beyond those read ahead,
        else the oldest entries beyond the head window (at most `run_bytes` of them); None
        when nothing lies beyond the window."""
        for level in reversed(self._levels):
            for run in islice(level.runs, PREFETCH_RUNS, None):
                if run.entries is not None and not run.busy:
                    run.entries = run.live()
                    if run.entries:
                        run.busy = True
                        return run
            if not level.runs:
                self._split_head(level, head_count, head_bytes)
            tail = level.tail
            entries: list[QueuedMessage] = []
            size = 0
            while tail and size < run_bytes:
                entry = tail.popleft()
                if entry.in_ready:
                    entries.append(entry)
                    size += entry.message.size
            if entries:
                run = Run(entries)
                run.busy = True
                level.runs.append(run)
                return run
        return None

    def _split_head(self, level: Level, head_count: int, head_bytes: int) -> None:
        """Move what lies beyond the head window into the (empty) tail."""
        head = level.head
        kept = size = 0
        for entry in head:
            if kept >= head_count or size >= head_bytes:
                break
            kept += 1
            size += entry.message.size
        beyond = len(head) - kept
        if beyond > 0:
            moved = [head.pop() for _ in range(beyond)]
            moved.reverse()
            level.tail.extend(moved)

    def paged_out(self, run: Run, segment: Segment, offset: int, length: int) -> bool:
        """The write of `run` ended well: drop its entries from memory. False (the run stays
        in memory) when it left the list meanwhile or one of its entries expired."""
        run.busy = False
        pages = self.pages
        assert run.entries is not None
        if (
            pages is None
            or run.detached
            or not all(entry.in_ready for entry in run.entries)
            or not run.entries
        ):
            if pages is not None:
                pages.written(segment, kept=False)
            return False
        pages.written(segment, kept=True)
        run.page_out(segment, offset, length)
        self.paged_count += run.count
        self.paged_bytes += run.bytes
        return True

    def write_failed(self, run: Run, segment: Segment) -> None:
        """The write of `run` failed: it stays in memory."""
        run.busy = False
        if self.pages is not None:
            self.pages.written(segment, kept=False)

    def to_prefetch(self) -> list[Run]:
        """Paged runs to read back now, marked busy: the first ones of each level whose head
        holds fewer than `low` entries."""
        low = self.low
        runs: list[Run] = []
        for level in self._levels:
            if not level.runs or len(level.head) >= low:
                continue
            for run in islice(level.runs, PREFETCH_RUNS):
                if run.entries is None and not run.busy:
                    run.busy = True
                    runs.append(run)
        return runs

    def wants_prefetch(self) -> bool:
        """Whether `to_prefetch` would find a run (for the queue to wake the pager)."""
        low = self.low
        for level in self._levels:
            runs = level.runs
            if runs and len(level.head) < low and runs[0].entries is None and not runs[0].busy:
                return True
        return False

    def prefetched(self, run: Run, entries: list[QueuedMessage] | None) -> None:
        """A read-ahead of `run` ended (entries None: it failed; the head reads it later)."""
        run.busy = False
        if entries is None or run.detached or run.entries is not None:
            return
        self._paged_in(run, entries)

    def due_runs(self, now: float) -> list[Run]:
        """Paged runs holding a message whose deadline passed: read back now, so it expires
        where it sits."""
        due: list[Run] = []
        for level in self._levels:
            for run in level.runs:
                if run.entries is None and run.min_expires is not None and run.min_expires <= now:
                    self._load(run)
                    due.append(run)
        return due

    def next_run_deadline(self) -> float | None:
        """The earliest deadline among paged runs."""
        deadlines = [
            run.min_expires
            for level in self._levels
            for run in level.runs
            if run.entries is None and run.min_expires is not None
        ]
        return min(deadlines) if deadlines else None
