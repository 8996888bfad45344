"""Queues: the ready messages in order, the consumers, and round-robin dispatch between them.

Dispatch is synchronous and per batch: when a queue gains messages or a consumer gains credit,
`dispatch()` hands messages to consumers that can take them until either side runs out. The
consumer's channel (a `DeliverySink`) encodes the delivery into its connection's output buffer.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from trimq.broker.journal import Journal
from trimq.broker.message import Message, QueuedMessage


class DeliverySink(Protocol):
    """What a queue needs from the channel a consumer lives on."""

    def can_deliver(self, consumer: Consumer) -> bool: ...

    def deliver(self, consumer: Consumer, entry: QueuedMessage, queue: Queue) -> None: ...

    def consumer_cancelled(self, consumer: Consumer) -> None:
        """The broker cancelled the consumer (its queue was deleted)."""


class Consumer:
    __slots__ = (
        "tag", "queue", "sink", "no_ack", "exclusive", "arguments", "prefetch", "unacked",
    )

    def __init__(
        self,
        tag: str,
        queue: Queue,
        sink: DeliverySink,
        no_ack: bool,
        exclusive: bool,
        arguments: dict[str, Any],
        prefetch: int,
    ) -> None:
        self.tag = tag
        self.queue = queue
        self.sink = sink
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.arguments = arguments
        self.prefetch = prefetch  # per-consumer limit (basic.qos global=false); 0 = none
        self.unacked = 0

    def has_credit(self) -> bool:
        return self.no_ack or not self.prefetch or self.unacked < self.prefetch


class Queue:
    def __init__(
        self,
        name: str,
        vhost: str,
        durable: bool = False,
        exclusive_owner: object | None = None,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner  # the connection that owns an exclusive queue
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = arguments or {}  # typed-decoded
        self.ready: deque[QueuedMessage] = deque()
        self.consumers: deque[Consumer] = deque()
        self.unacked = 0
        self.next_seq = 0
        self.deleted = False
        self.had_consumers = False
        self.journal: Journal | None = None  # set for durable queues when storage is on

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} in {self.vhost!r}>"

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def message_count(self) -> int:
        return len(self.ready)

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    def enqueue(self, message: Message) -> None:
        self.next_seq += 1
        self.ready.append(QueuedMessage(message, self.next_seq))
        if self.consumers:
            self.dispatch()

    def dispatch(self) -> None:
        """Hand ready messages to consumers round-robin, skipping those without credit."""
        ready = self.ready
        consumers = self.consumers
        journal = self.journal
        delivered: list[int] = []
        settled: list[int] = []
        while ready and consumers:
            for _ in range(len(consumers)):
                consumer = consumers[0]
                consumers.rotate(-1)
                if consumer.sink.can_deliver(consumer):
                    break
            else:
                break
            entry = ready.popleft()
            if not consumer.no_ack:
                self.unacked += 1
            if journal is not None and entry.message.id:
                (settled if consumer.no_ack else delivered).append(entry.message.id)
            consumer.sink.deliver(consumer, entry, self)
        if delivered:
            journal.deliver(self, delivered)  # type: ignore[union-attr]
        if settled:
            journal.settle(self, settled)  # type: ignore[union-attr]

    def get(self, no_ack: bool) -> QueuedMessage | None:
        """Take the next ready message for Basic.Get."""
        if not self.ready:
            return None
        entry = self.ready.popleft()
        if no_ack:
            self._journal_settle([entry])
        else:
            self.unacked += 1
            if self.journal is not None and entry.message.id:
                self.journal.deliver(self, [entry.message.id])
        return entry

    def settle(self, entries: list[QueuedMessage]) -> None:
        """Messages delivered with ack required were acked, or rejected without requeue."""
        self.unacked -= len(entries)
        self._journal_settle(entries)

    def _journal_settle(self, entries: list[QueuedMessage]) -> None:
        if self.journal is not None and not self.deleted:
            ids = [e.message.id for e in entries if e.message.id]
            if ids:
                self.journal.settle(self, ids)

    def requeue(self, entries: list[QueuedMessage]) -> None:
        """Put unacked messages back, in their original order, flagged redelivered."""
        if self.deleted:
            return
        self.unacked -= len(entries)
        for entry in entries:
            entry.redelivered = True
        entries = sorted(entries, key=lambda e: e.seq)
        ready = self.ready
        if not ready or entries[-1].seq < ready[0].seq:
            ready.extendleft(reversed(entries))
        else:
            merged = sorted([*ready, *entries], key=lambda e: e.seq)
            ready.clear()
            ready.extend(merged)
        self.dispatch()

    def purge(self) -> int:
        count = len(self.ready)
        self._journal_settle(list(self.ready))
        self.ready.clear()
        return count

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self.had_consumers = True
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        try:
            self.consumers.remove(consumer)
        except ValueError:
            pass

    @property
    def unused_auto_delete(self) -> bool:
        """An auto-delete queue whose last consumer went away is deleted (as RabbitMQ)."""
        return self.auto_delete and self.had_consumers and not self.consumers
