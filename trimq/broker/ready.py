"""A queue's ready messages in delivery order: FIFO, or highest priority first (FIFO within a
priority) when the queue was declared with x-max-priority.

Entries that expire or are dropped while in the middle are only marked (`in_ready` False) and
skipped when they reach the head, so removal costs O(1); the live count and bytes stay exact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from itertools import islice

from trimq.broker.message import QueuedMessage


class ReadyList:
    __slots__ = ("_levels", "_max_priority", "bytes", "count")

    def __init__(self, max_priority: int = 0) -> None:
        self._max_priority = max_priority
        self._levels: list[deque[QueuedMessage]] = [deque() for _ in range(max_priority + 1)]
        self.count = 0
        self.bytes = 0

    def _level(self, entry: QueuedMessage) -> deque[QueuedMessage]:
        if not self._max_priority:
            return self._levels[0]
        priority = entry.message.properties.priority or 0
        return self._levels[min(priority, self._max_priority)]

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def append(self, entry: QueuedMessage) -> None:
        if self._max_priority:
            self._level(entry).append(entry)
        else:
            self._levels[0].append(entry)
        entry.in_ready = True
        self.count += 1
        self.bytes += entry.message.size

    def extend(self, entries: list[QueuedMessage]) -> None:
        """append() each of them (for recovery: one call for a million entries)."""
        if self._max_priority:
            for entry in entries:
                self.append(entry)
            return
        size = 0
        for entry in entries:
            entry.in_ready = True
            size += len(entry.message.body)
        self._levels[0].extend(entries)
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

    def _pop_live(self, level: deque[QueuedMessage]) -> QueuedMessage | None:
        """The first entry of `level` still ready (expired or taken ones are dropped)."""
        while level:
            entry = level.popleft()
            if entry.in_ready:
                entry.in_ready = False
                self.count -= 1
                self.bytes -= entry.message.size
                return entry
        return None

    def peek(self) -> QueuedMessage | None:
        if not self.count:
            return None
        for level in reversed(self._levels):
            while level and not level[0].in_ready:
                level.popleft()
            if level:
                return level[0]
        return None

    def discard(self, entry: QueuedMessage) -> None:
        """Drop a live entry wherever it sits (it is skipped later)."""
        entry.in_ready = False
        self.count -= 1
        self.bytes -= entry.message.size

    def requeue(self, entries: list[QueuedMessage]) -> None:
        """Put entries back at their original positions (by sequence number)."""
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
            returned.sort(key=lambda e: e.seq)
            if not level or returned[-1].seq < level[0].seq:
                level.extendleft(reversed(returned))
            else:
                merged = sorted([*level, *returned], key=lambda e: e.seq)
                level.clear()
                level.extend(merged)

    def __iter__(self) -> Iterator[QueuedMessage]:
        for level in reversed(self._levels):
            for entry in level:
                if entry.in_ready:
                    yield entry

    def window(self, offset: int, count: int) -> list[QueuedMessage]:
        """The live entries at positions offset .. offset+count-1 of delivery order, without
        taking them. Walks the first offset+count entries (whole priority levels are skipped
        by their length), never copies the rest; in C while no entry is only marked."""
        if count <= 0 or offset >= self.count:
            return []
        if sum(len(level) for level in self._levels) == self.count:  # nothing only marked
            taken: list[QueuedMessage] = []
            for level in reversed(self._levels):
                if offset >= len(level):
                    offset -= len(level)
                    continue
                taken += islice(level, offset, offset + count - len(taken))
                offset = 0
                if len(taken) == count:
                    break
            return taken
        return list(islice(iter(self), offset, offset + count))

    def clear(self) -> list[QueuedMessage]:
        """Remove every live entry; returns them in delivery order."""
        live = list(self)
        for entry in live:
            entry.in_ready = False
        for level in self._levels:
            level.clear()
        self.count = 0
        self.bytes = 0
        return live
