"""Queues: the ready messages in order, the consumers, and round-robin dispatch between them,
with the x-arguments RabbitMQ applications rely on: message TTL (expired wherever a message
sits, through a deadline heap), max length with overflow, priorities, single active consumer,
consumer priorities, delivery limits, dead-lettering and unused-queue expiry.

Dispatch is synchronous and per batch: when a queue gains messages or a consumer gains credit,
`dispatch()` hands messages to consumers that can take them until either side runs out. The
consumer's channel (a `DeliverySink`) encodes the delivery into its connection's output buffer.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from trimq.amqp.codec import TypedTable, encode_shortstr
from trimq.broker.arguments import Overflow, queue_settings
from trimq.broker.deadletter import dead_letter
from trimq.broker.journal import Journal
from trimq.broker.message import Message, QueuedMessage
from trimq.broker.paging import PageFile, Run, Segment
from trimq.broker.policy import Policy
from trimq.broker.ready import ReadyList
from trimq.broker.stats import MessageStats
from trimq.broker.timers import Timers

if TYPE_CHECKING:
    from trimq.broker.exchange import Binding, BoundByKey, Exchange
    from trimq.broker.vhost import VHost


class DeliverySink(Protocol):
    """What a queue needs from the channel a consumer lives on."""

    stats: MessageStats  # the channel's message counters

    def can_deliver(self, consumer: Consumer) -> bool: ...

    def deliver(self, consumer: Consumer, entry: QueuedMessage, queue: Queue) -> None: ...

    def consumer_cancelled(self, consumer: Consumer) -> None:
        """The broker cancelled the consumer (its queue was deleted)."""


class Consumer:
    __slots__ = (
        "arguments",
        "encoded_tag",
        "exclusive",
        "no_ack",
        "prefetch",
        "priority",
        "queue",
        "sink",
        "stats",
        "tag",
        "unacked",
    )

    def __init__(
        self,
        tag: str,
        queue: Queue,
        sink: DeliverySink,
        no_ack: bool,
        exclusive: bool,
        arguments: TypedTable,
        prefetch: int,
    ) -> None:
        self.tag = tag
        self.encoded_tag = encode_shortstr(tag)  # as every delivery to it carries the tag
        self.queue = queue
        self.sink = sink
        self.stats = sink.stats  # its channel's counters, counted as it is delivered to
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.arguments = arguments
        self.prefetch = prefetch  # per-consumer limit (basic.qos global=false); 0 = none
        self.unacked = 0
        typed = arguments.get("x-priority")
        self.priority = typed[1] if typed is not None and isinstance(typed[1], int) else 0

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
        arguments: TypedTable | None = None,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner  # the connection that owns an exclusive queue
        self.auto_delete = auto_delete
        self.arguments: TypedTable = arguments or {}
        self.settings = queue_settings(self.arguments)
        self.policy: Policy | None = None
        self.ready = ReadyList(self.settings.max_priority)
        self.consumers: list[Consumer] = []  # in the order they came (single active: first)
        self._groups: list[tuple[int, deque[Consumer]]] = []  # by consumer priority, highest first
        self.unacked = 0
        self.unacked_bytes = 0  # the bodies of the unacked messages
        # The unacked entries, for the oldest one (head_message_timestamp): those delivered in
        # sequence order (most are) in a deque, the others (redeliveries) in a heap; settled
        # ones stay until they reach the front, or both are rebuilt when mostly settled.
        self._out: deque[QueuedMessage] = deque()
        self._out_late: list[QueuedMessage] = []
        # Persistent messages held (ready or unacked) and their bytes; as RabbitMQ, only a
        # durable queue keeps a message persistent. Counted where messages enter and leave.
        self.persistent = 0
        self.persistent_bytes = 0
        self.next_seq = 0
        self._unpublished = 0  # sequence numbers not taken by a publish (see counters())
        self.deleted = False
        # The bindings routing to it, by (id(source), binding key) (see Exchange.bound_by).
        self.bound_by: dict[BoundByKey, tuple[Exchange, Binding]] = {}
        self.had_consumers = False
        self.journal: Journal | None = None  # set for durable queues when storage is on
        self.home: VHost | None = None  # the vhost holding it: dead-lettering routes there
        self.timers: Timers | None = None
        self._expiry: list[tuple[float, QueuedMessage]] = []  # (deadline, entry) heap
        self._retiring: Consumer | None = None  # a cancelled single active consumer
        self.last_used = time.monotonic()
        self.stats = MessageStats()  # read through counters()

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} in {self.vhost!r}>"

    def counters(self) -> MessageStats:
        """The queue's message counters. Publishes are not counted one by one: every one
        takes a sequence number, so their count is derived from those."""
        stats = self.stats
        stats.publish = self.next_seq - self._unpublished
        return stats

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def message_count(self) -> int:
        return len(self.ready)

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    def apply_policy(self, policy: Policy | None) -> None:
        """Settings from its arguments and the policy that applies (arguments.queue_settings)."""
        if policy is self.policy:
            return
        self.policy = policy
        self.settings = queue_settings(self.arguments, policy.definition if policy else None)
        if self.settings.bounded and self.settings.overflow is Overflow.DROP_HEAD:
            self._drop_over_limit()
        self.touch()

    def attach(self, home: VHost, timers: Timers | None) -> None:
        """Join a vhost: dead-lettering and timers work from now on."""
        self.home = home
        self.timers = timers
        self.touch()

    # -- publishing -----------------------------------------------------------------------

    def enqueue(self, message: Message) -> bool:
        """Add a routed message; False when x-overflow reject-publish refused it."""
        settings = self.settings
        if settings.bounded and settings.overflow is not Overflow.DROP_HEAD and self._full(message):
            if settings.overflow is Overflow.REJECT_PUBLISH_DLX:
                self.next_seq += 1
                self._unpublished += 1
                self._dead_letter([QueuedMessage(message, self.next_seq)], "maxlen")
            return False
        self.next_seq += 1
        entry = QueuedMessage(message, self.next_seq)
        ttl = None if message.ttl is None and settings.message_ttl is None else self._ttl(message)
        if ttl:
            self._schedule_expiry(entry, time.monotonic() + ttl / 1000)
        self.ready.append(entry)
        if message.persistent and self.durable:
            self.persistent += 1
            self.persistent_bytes += message.size
        if self.consumers:
            self.dispatch()
        if ttl == 0 and entry.in_ready:  # only a consumer waiting right now gets it
            self.ready.discard(entry)
            self._expire(entry)
        if settings.bounded:
            self._drop_over_limit()
        return True

    def restore(
        self, recovered: Iterable[tuple[Message, int, int]], clock: tuple[float, float]
    ) -> None:
        """Put back the messages recovered from the log, in order, each given as (message, how
        often it was delivered, when it was recorded). A TTL counts from when the message was
        recorded (ms since the epoch; 0 if unknown: then from now), so a restart neither
        resets nor extends it; clock is (time.monotonic(), time.time()) taken once for the
        recovery. One already past its deadline expires (and is dead-lettered) on the first
        timer tick. All at once because there may be a million of them."""
        monotonic_now, wall_now = clock
        queue_ttl = self.settings.message_ttl
        seq = self.next_seq
        entries = []
        for message, delivery_count, recorded_ms in recovered:
            seq += 1
            entry = QueuedMessage(message, seq, delivery_count > 0, delivery_count)
            if queue_ttl is not None or message.ttl is not None:
                ttl = self._ttl(message)
                assert ttl is not None
                left = ttl / 1000 if not recorded_ms else (recorded_ms + ttl) / 1000 - wall_now
                self._schedule_expiry(entry, monotonic_now + min(left, ttl / 1000))
            entries.append(entry)
            if message.persistent and self.durable:
                self.persistent += 1
                self.persistent_bytes += message.size
        self._unpublished += seq - self.next_seq
        self.next_seq = seq
        self.ready.extend(entries)
        if self.settings.bounded and self.settings.overflow is Overflow.DROP_HEAD:
            self._drop_over_limit()  # a drop the log did not keep before a crash happens again

    def _ttl(self, message: Message) -> int | None:
        queue_ttl = self.settings.message_ttl
        message_ttl = message.ttl
        if message_ttl is None:
            return queue_ttl
        return message_ttl if queue_ttl is None else min(queue_ttl, message_ttl)

    def _full(self, message: Message) -> bool:
        settings = self.settings
        return (settings.max_length is not None and len(self.ready) >= settings.max_length) or (
            settings.max_length_bytes is not None
            and self.ready.bytes + message.size > settings.max_length_bytes
        )

    def _drop_over_limit(self) -> None:
        settings = self.settings
        dropped = []
        while self.ready and (
            (settings.max_length is not None and len(self.ready) > settings.max_length)
            or (
                settings.max_length_bytes is not None
                and self.ready.bytes > settings.max_length_bytes
            )
        ):
            entry = self.ready.popleft()
            assert entry is not None
            dropped.append(entry)
        if dropped:
            self._discard(dropped, "maxlen")

    # -- delivering -----------------------------------------------------------------------

    def dispatch(self) -> None:
        """Hand ready messages to consumers round-robin (highest consumer priority first,
        only the first consumer when single-active), skipping those without credit."""
        ready = self.ready
        consumers = self.consumers
        if not ready or not consumers:
            return
        journal = self.journal
        delivered: list[int] = []
        settled: list[int] = []
        # Deliveries to `only` are counted once per batch (on the queue and its channel);
        # others as they happen.
        to_only = redelivered_to_only = 0
        # Most queues have one consumer: no round-robin to do (it can be cancelled meanwhile).
        only = (
            consumers[0]
            if len(consumers) == 1 and not self.settings.single_active_consumer
            else None
        )
        while ready and consumers:
            if only is not None and len(consumers) == 1 and consumers[0] is only:
                consumer = only if only.sink.can_deliver(only) else None
            else:
                consumer = self._next_consumer()
            if consumer is None:
                break
            entry = ready.popleft()
            if entry is None:
                break
            if entry.expires_at is not None and entry.expires_at <= time.monotonic():
                self._expire(entry)
                continue
            entry.delivery_count += 1
            if consumer.no_ack:
                if entry.message.persistent and self.durable:
                    self._gone([entry])
            else:
                self.unacked += 1
                self.unacked_bytes += entry.message.size
                self._went_out(entry)
            if consumer is only:
                to_only += 1
                if entry.redelivered:
                    redelivered_to_only += 1
            else:
                self._count_delivery(consumer, entry.redelivered)
            if journal is not None and entry.message.id:
                (settled if consumer.no_ack else delivered).append(entry.message.id)
            consumer.sink.deliver(consumer, entry, self)
        if ready.paged_count and ready.wake is not None and ready.wants_prefetch():
            ready.wake()
        if to_only:
            assert only is not None
            for stats in (self.stats, only.stats):
                if only.no_ack:
                    stats.deliver_no_ack += to_only
                else:
                    stats.deliver += to_only
                if redelivered_to_only:
                    stats.redeliver += redelivered_to_only
        if delivered:
            journal.deliver(self, delivered)  # type: ignore[union-attr]
        if settled:
            journal.settle(self, settled)  # type: ignore[union-attr]

    def _count_delivery(self, consumer: Consumer, redelivered: bool) -> None:
        """A delivery in a dispatch among several consumers: on the queue and the
        consumer's channel."""
        for stats in (self.stats, consumer.stats):
            if consumer.no_ack:
                stats.deliver_no_ack += 1
            else:
                stats.deliver += 1
            if redelivered:
                stats.redeliver += 1

    def _next_consumer(self) -> Consumer | None:
        if self.settings.single_active_consumer:
            retiring = self._retiring
            if retiring is not None:
                if retiring.unacked > 0:
                    return None  # as RabbitMQ: the successor starts once these come back
                self._retiring = None
            active = self.consumers[0]
            return active if active.sink.can_deliver(active) else None
        for _priority, group in self._groups:
            for _ in range(len(group)):
                consumer = group[0]
                group.rotate(-1)
                if consumer.sink.can_deliver(consumer):
                    return consumer
        return None

    def get(self, no_ack: bool, channel: MessageStats | None = None) -> QueuedMessage | None:
        """Take the next ready message for Basic.Get (on a channel with these counters)."""
        self.touch()
        while True:
            entry = self.ready.popleft()
            if entry is None:
                self._count_get(channel, "get_empty", False)
                return None
            if entry.expires_at is not None and entry.expires_at <= time.monotonic():
                self._expire(entry)
                continue
            break
        entry.delivery_count += 1
        self._count_get(channel, "get_no_ack" if no_ack else "get", entry.redelivered)
        if no_ack:
            self._gone([entry])
            self._journal_settle([entry])
        else:
            self.unacked += 1
            self.unacked_bytes += entry.message.size
            self._went_out(entry)
            if self.journal is not None and entry.message.id:
                self.journal.deliver(self, [entry.message.id])
        return entry

    def _count_get(self, channel: MessageStats | None, name: str, redelivered: bool) -> None:
        for stats in (self.stats, channel):
            if stats is not None:
                setattr(stats, name, getattr(stats, name) + 1)
                if redelivered:
                    stats.redeliver += 1

    # -- acknowledgements -----------------------------------------------------------------

    def settle(self, entries: list[QueuedMessage], channel: MessageStats | None = None) -> None:
        """Messages delivered with ack required were acked (on a channel with these
        counters)."""
        count = len(entries)
        self.stats.ack += count
        if channel is not None:
            channel.ack += count
        self._returned(entries)
        self._gone(entries)
        self._journal_settle(entries)

    def reject(self, entries: list[QueuedMessage]) -> None:
        """Rejected or nacked without requeue: gone, dead-lettered if the queue says so."""
        self._returned(entries)
        self._discard(entries, "rejected")

    def _returned(self, entries: list[QueuedMessage]) -> None:
        """Unacked entries come back from their channel (settled, rejected or requeued)."""
        self.unacked -= len(entries)
        size = 0
        for entry in entries:
            size += entry.message.size
            entry.out = False
        self.unacked_bytes -= size
        # settled entries are not kept (their bodies with them) for oldest_unacked's sake
        if not self.unacked:
            self._out.clear()
            self._out_late.clear()
        else:
            out = self._out
            while out and not out[0].out:
                out.popleft()

    def _went_out(self, entry: QueuedMessage) -> None:
        """An entry was delivered with ack required."""
        entry.out = True
        out = self._out
        if not out or out[-1].seq < entry.seq:
            out.append(entry)
        else:
            heapq.heappush(self._out_late, entry)
        if len(out) + len(self._out_late) > 2 * self.unacked + 64:  # mostly settled: prune
            self._out = deque(e for e in out if e.out)
            late = self._out_late = [e for e in self._out_late if e.out]
            heapq.heapify(late)

    def oldest_unacked(self) -> QueuedMessage | None:
        """The unacked entry with the lowest sequence number (RabbitMQ's oldest pending ack)."""
        out, late = self._out, self._out_late
        while out and not out[0].out:
            out.popleft()
        while late and not late[0].out:
            heapq.heappop(late)
        if not late:
            return out[0] if out else None
        return late[0] if not out or late[0].seq < out[0].seq else out[0]

    def _gone(self, entries: list[QueuedMessage]) -> None:
        """Entries leave the queue for good: the persistent counts follow."""
        if not self.durable or not self.persistent:
            return
        for entry in entries:
            message = entry.message
            if message.persistent:
                self.persistent -= 1
                self.persistent_bytes -= message.size

    def _journal_settle(self, entries: list[QueuedMessage]) -> None:
        if self.journal is not None and not self.deleted:
            ids = [e.message.id for e in entries if e.message.id]
            if ids:
                self.journal.settle(self, ids)

    def requeue(self, entries: list[QueuedMessage]) -> None:
        """Put unacked messages back, in their original order, flagged redelivered; those past
        x-delivery-limit are dead-lettered instead."""
        if self.deleted:
            return
        self._returned(entries)
        limit = self.settings.delivery_limit
        if limit is not None:
            over = [e for e in entries if e.delivery_count > limit]
            if over:
                entries = [e for e in entries if e.delivery_count <= limit]
                self._discard(over, "delivery_limit")
        now = time.monotonic()
        expired = [e for e in entries if e.expires_at is not None and e.expires_at <= now]
        if expired:
            entries = [e for e in entries if e.expires_at is None or e.expires_at > now]
            self._discard(expired, "expired")
        for entry in entries:
            entry.redelivered = True
            if entry.expires_at is not None:  # its heap item may be gone while it was out
                self._schedule_expiry(entry, entry.expires_at)
        self.ready.requeue(entries)
        if self.settings.bounded and self.settings.overflow is Overflow.DROP_HEAD:
            self._drop_over_limit()
        self.dispatch()

    def purge(self) -> int:
        count = len(self.ready)
        if self.durable and self.persistent:  # paged-out ones included
            persistent, persistent_bytes = self.ready.persistent()
            self.persistent -= persistent
            self.persistent_bytes -= persistent_bytes
        entries, paged_ids = self.ready.clear()
        self._expiry.clear()
        self._journal_settle(entries)
        if paged_ids and self.journal is not None and not self.deleted:
            self.journal.settle(self, list(paged_ids))
        return count

    # -- paging (trimq/server/pager.py drives it) -------------------------------------------

    def start_paging(self, pages: PageFile, wake: Callable[[], None], low: int) -> None:
        """Page this queue from now on into `pages`; `wake` asks the pager to read ahead
        once the head holds fewer than `low` entries."""
        ready = self.ready
        ready.pages = pages
        ready.wake = wake
        ready.low = low
        ready.on_loaded = self._paged_in

    def _paged_in(self, entries: list[QueuedMessage]) -> None:
        """Entries read back from disk: their deadlines count again."""
        for entry in entries:
            if entry.expires_at is not None:
                self._schedule_expiry(entry, entry.expires_at)

    def paged_out(self, run: Run, segment: Segment, offset: int, length: int) -> bool:
        """The run's records are on disk: its entries leave memory (and the expiry heap; the
        run's earliest deadline is scheduled instead)."""
        entries = run.entries
        assert entries is not None
        if not self.ready.paged_out(run, segment, offset, length):
            return False
        if self._expiry and run.min_expires is not None:
            gone = {id(entry) for entry in entries}
            self._expiry = [item for item in self._expiry if id(item[1]) not in gone]
            heapq.heapify(self._expiry)
        if run.min_expires is not None and self.timers is not None:
            self.timers.schedule(run.min_expires, self)
        return True

    # -- expiry ---------------------------------------------------------------------------

    def _schedule_expiry(self, entry: QueuedMessage, deadline: float) -> None:
        entry.expires_at = deadline
        expiry = self._expiry
        if (not expiry or deadline < expiry[0][0]) and self.timers is not None:
            self.timers.schedule(deadline, self)
        heapq.heappush(expiry, (deadline, entry))

    def expire_due(self, now: float) -> None:
        """Expire every ready message whose deadline passed, wherever it sits (a paged run
        holding one is read back first)."""
        if self.ready.paged_count:
            self.ready.due_runs(now)
        expiry = self._expiry
        expired = []
        while expiry and expiry[0][0] <= now:
            _, entry = heapq.heappop(expiry)
            if entry.in_ready:
                self.ready.discard(entry)
                expired.append(entry)
        try:
            if expired:
                self._discard(expired, "expired")
        finally:  # dead-lettering can fail (the log has failed): later deadlines still count
            if expiry and self.timers is not None:
                self.timers.schedule(expiry[0][0], self)
            if self.ready.paged_count and self.timers is not None:
                deadline = self.ready.next_run_deadline()
                if deadline is not None:
                    self.timers.schedule(deadline, self)

    def _expire(self, entry: QueuedMessage) -> None:
        """An expired entry met at the head (already out of the ready list)."""
        self._discard([entry], "expired")

    def touch(self) -> None:
        """The queue was used (declared, consumed, got from): x-expires starts again."""
        self.last_used = now = time.monotonic()
        if self.settings.expires is not None and self.timers is not None:
            self.timers.schedule(now + self.settings.expires / 1000, self)

    def on_timer(self, now: float) -> None:
        self.expire_due(now)
        expires = self.settings.expires
        if (
            expires is not None
            and not self.consumers
            and self.home is not None
            and now >= self.last_used + expires / 1000
        ):
            self.home.delete_queue(self)

    def _discard(self, entries: list[QueuedMessage], reason: str) -> None:
        """Entries leave the queue for `reason`: dead-lettered (when the queue has a DLX)
        before their settlement is journaled, so the log never holds the settlement without
        the copies (records become durable in order)."""
        self._gone(entries)
        self._dead_letter(entries, reason)
        self._journal_settle(entries)

    def _dead_letter(self, entries: list[QueuedMessage], reason: str) -> None:
        if self.settings.dead_letter_exchange is not None and self.home is not None:
            dead_letter(self, entries, reason)

    # -- consumers ------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        for priority, group in self._groups:
            if priority == consumer.priority:
                group.append(consumer)
                break
        else:
            self._groups.append((consumer.priority, deque([consumer])))
            self._groups.sort(key=lambda g: -g[0])
        self.had_consumers = True
        self.touch()
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer not in self.consumers:
            return
        if (
            self.settings.single_active_consumer
            and consumer is self.consumers[0]
            and consumer.unacked > 0
        ):
            self._retiring = consumer
        self.consumers.remove(consumer)
        for priority, group in self._groups:
            if priority == consumer.priority:
                group.remove(consumer)
                if not group:
                    self._groups.remove((priority, group))
                break
        self.touch()
        if self.settings.single_active_consumer and self.consumers:
            self.dispatch()  # the next consumer in line takes over

    @property
    def unused_auto_delete(self) -> bool:
        """An auto-delete queue whose last consumer went away is deleted (as RabbitMQ)."""
        return self.auto_delete and self.had_consumers and not self.consumers
