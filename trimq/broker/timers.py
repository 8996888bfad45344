"""Deadlines for the whole broker: message expiry and unused-queue expiry.

Queues schedule their earliest deadline here; the server's timer task sleeps until the next one
and calls `run_due`. Stale heap items (a queue rescheduled or deleted) are skipped.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

from trimq.errors import AMQPError


class Timed(Protocol):
    deleted: bool

    def on_timer(self, now: float) -> None: ...


class Timers:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Timed]] = []
        self._order = itertools.count()
        self.on_earlier: Callable[[], None] = lambda: None  # the server wakes its timer task

    def schedule(self, deadline: float, target: Timed) -> None:
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (deadline, next(self._order), target))
        if earliest is None or deadline < earliest:
            self.on_earlier()

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run_due(self, now: float | None = None) -> list[AMQPError]:
        """Fire every due deadline. A target that fails (dead-lettering a persistent message
        after the log has failed) does not stop the others; its error is returned to log."""
        now = self.clock() if now is None else now
        heap = self._heap
        seen: set[int] = set()
        errors: list[AMQPError] = []
        while heap and heap[0][0] <= now:
            _, _, target = heapq.heappop(heap)
            if not target.deleted and id(target) not in seen:
                seen.add(id(target))
                try:
                    target.on_timer(now)
                except AMQPError as exc:
                    errors.append(exc)
        return errors
