"""The journal's deliveries: held back and recorded once per queue when the log asks (before
each commit batch), or at once without a log that coalesces."""

from __future__ import annotations

from typing import Any

from storage import RecordType, WALClosed
from trimq.broker.journal import Journal
from trimq.broker.queue import Queue


def test_deliveries_are_held_and_recorded_once_per_queue() -> None:
    records: list[tuple[RecordType, dict[str, Any]]] = []
    wakes: list[int] = []
    journal = Journal(
        lambda t, p: records.append((t, p)) or len(records), flush_soon=lambda: wakes.append(1)
    )
    q1, q2 = Queue("q1", "/", durable=True), Queue("q2", "/", durable=True)
    journal.deliver(q1, [1, 2])
    journal.deliver(q2, [3])
    journal.deliver(q1, [4])
    assert records == [] and wakes == [1]  # one wake-up for the whole batch
    journal.flush()
    assert records == [
        (RecordType.DELIVER, {"queue": ["/", "q1"], "ids": [1, 2, 4]}),
        (RecordType.DELIVER, {"queue": ["/", "q2"], "ids": [3]}),
    ]
    journal.flush()
    assert len(records) == 2
    journal.deliver(q2, [5])
    assert wakes == [1, 1]


def test_without_coalescing_deliveries_are_recorded_at_once() -> None:
    records: list[tuple[RecordType, dict[str, Any]]] = []
    journal = Journal(lambda t, p: records.append((t, p)) or len(records))
    journal.deliver(Queue("q", "/", durable=True), [7])
    assert records == [(RecordType.DELIVER, {"queue": ["/", "q"], "ids": [7]})]


def test_deliveries_held_when_the_log_closed_are_dropped() -> None:
    attempts: list[dict[str, Any]] = []
    wakes: list[int] = []

    def closed(_t: RecordType, payload: dict[str, Any]) -> int:
        attempts.append(payload)
        raise WALClosed("closed")

    journal = Journal(closed, flush_soon=lambda: wakes.append(1))
    journal.deliver(Queue("q1", "/", durable=True), [1])
    journal.deliver(Queue("q2", "/", durable=True), [2])
    journal.flush()  # best effort: no exception into the committer
    assert attempts == [{"queue": ["/", "q1"], "ids": [1]}]  # it stops at the first refusal
    journal.flush()
    assert len(attempts) == 1  # dropped, not held for another try
    journal.deliver(Queue("q3", "/", durable=True), [3])
    assert wakes == [1, 1]  # nothing was left held: the next delivery starts a new batch
