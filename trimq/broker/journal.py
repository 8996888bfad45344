"""What the broker model writes to storage: durable definitions, persistent messages, and the
settlements and deliveries that change which messages a durable queue holds.

The model calls these synchronously; `append` hands a record to the WAL's committer and returns
its LSN without waiting. Transient entities (non-durable exchanges and queues, exclusive queues,
transient messages) never reach the journal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from storage import RecordType, WALClosed, WALFailed
from trimq.errors import INTERNAL_ERROR, ConnectionError

if TYPE_CHECKING:
    from trimq.broker.message import Message
    from trimq.broker.queue import Queue
    from trimq.broker.records import Definition

Append = Callable[[RecordType, dict[str, Any]], int]


class Journal:
    """Definitions and messages must reach the log: if it has failed they are refused with
    541 (the client is told, nothing is confirmed). Settlements and deliveries are best
    effort: losing one only makes a message come back (redelivered) after a restart."""

    def __init__(
        self, append: Append, next_message_id: int = 1, flush_soon: Callable[[], None] | None = None
    ) -> None:
        self._append_record = append
        self.next_message_id = next_message_id
        self.last_define_lsn = 0  # replies to declarations wait until this is durable
        # With flush_soon, deliveries are held back and recorded together by flush() (which
        # the log calls before writing each batch): one DELIVER record per queue and batch
        # instead of one per dispatch, which is one per message when consumers keep up.
        self._flush_soon = flush_soon
        self._deliveries: dict[int, tuple[Queue, list[int]]] = {}

    def _append(self, rtype: RecordType, payload: dict[str, Any]) -> int:
        try:
            return self._append_record(rtype, payload)
        except WALFailed as exc:
            raise ConnectionError(
                INTERNAL_ERROR, f"the write-ahead log has failed ({exc}); see the broker log"
            ) from exc

    def _append_quietly(self, rtype: RecordType, payload: dict[str, Any]) -> int:
        try:
            return self._append_record(rtype, payload)
        except WALFailed:
            return 0

    def _define(self, kind: str, key: list[str], value: dict[str, Any] | None) -> int:
        """Record the latest state of a definition; None records its deletion. Only through
        put and drop, so every key and value follows trimq/broker/records.py."""
        lsn = self._append(RecordType.DEFINE, {"kind": kind, "key": key, "value": value})
        self.last_define_lsn = lsn
        return lsn

    def put(self, record: Definition) -> int:
        """Record a definition's latest state (its kind's schema: trimq/broker/records.py)."""
        return self._define(record.KIND, record.key(), record.value())

    def drop(self, kind: str, key: list[str]) -> int:
        """Record a definition's deletion (`key` from its kind's make_key)."""
        return self._define(kind, key, None)

    def message(self, message: Message, queues: Iterable[Queue]) -> int:
        """Record a persistent message once, with every durable queue it reached, and when (its
        TTL deadline is kept across a restart by counting from then)."""
        message.id = self.next_message_id
        self.next_message_id += 1
        return self._append(
            RecordType.MESSAGE,
            {
                "id": message.id,
                "exchange": message.exchange,
                "routing_key": message.routing_key,
                "properties": message.properties_raw,
                "body": message.body,
                "queues": [[q.vhost, q.name] for q in queues],
                "time": int(time.time() * 1000),
            },
        )

    def settle(self, queue: Queue, ids: list[int]) -> int:
        """These messages left the queue: acked, rejected, purged or dropped."""
        return self._append_quietly(
            RecordType.SETTLE, {"queue": [queue.vhost, queue.name], "ids": ids}
        )

    def deliver(self, queue: Queue, ids: list[int]) -> None:
        """These messages were delivered once more (they come back redelivered)."""
        if self._flush_soon is None:
            self._append_quietly(
                RecordType.DELIVER, {"queue": [queue.vhost, queue.name], "ids": ids}
            )
            return
        pending = self._deliveries
        if not pending:
            self._flush_soon()
        held = pending.get(id(queue))
        if held is None:
            pending[id(queue)] = (queue, list(ids))
        else:
            held[1].extend(ids)

    def flush(self) -> None:
        """Record the deliveries held back. Their records may follow the settlements of the
        same messages; replay ignores deliveries of messages a queue no longer holds."""
        pending, self._deliveries = self._deliveries, {}
        for queue, ids in pending.values():
            try:
                self._append_record(
                    RecordType.DELIVER, {"queue": [queue.vhost, queue.name], "ids": ids}
                )
            except (WALFailed, WALClosed):  # best effort, as every delivery record
                return
