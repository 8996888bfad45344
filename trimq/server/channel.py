"""A channel: AMQP methods turned into broker operations, deliveries, acks, prefetch, confirms, tx.

Which methods its state and mode allow is its `ChannelMachine`'s (trimq/amqp/state.py); the
exchange and queue methods are in declare.py, the basic.* ones but publish in basic.py, and
`HANDLERS` (at the end) maps each method to its function. Methods run synchronously inside the
connection's reader task (or a queue's dispatch), so there is no task or await per message.
Replies are written to the connection's output buffer; the connection's writer sends them in
one batch. Each channel also runs its own nursery (`run()`),
whose confirm task sends publisher confirms once per batch, cumulatively.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
import trio

from storage import WALFailed
from trimq.amqp import frames, spec
from trimq.amqp.channel import ContentAssembler
from trimq.amqp.publish import content_properties, publish_args
from trimq.amqp.state import ChannelAction, ChannelEvent, ChannelMachine, ChannelMode, ChannelState
from trimq.broker import reply_to
from trimq.broker.arguments import parse_expiration
from trimq.broker.auth import topic_refusal
from trimq.broker.exchange import Exchange
from trimq.broker.message import Message, QueuedMessage
from trimq.broker.pcre import name_bytes
from trimq.broker.queue import Consumer, Queue
from trimq.broker.stats import MessageStats, count_unroutable, retire_channel
from trimq.errors import (
    ACCESS_REFUSED,
    INTERNAL_ERROR,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    AMQPError,
    ChannelError,
    ConnectionError,
)
from trimq.server import basic, declare
from trimq.server.basic import Settlement, Unacked, by_queue, delivered_properties, settle

if TYPE_CHECKING:
    from trimq.server.channel_host import ChannelHost

log = structlog.get_logger("trimq.channel")

NO_ROUTE = 312
OPEN, CLOSING = ChannelState.OPEN, ChannelState.CLOSING
TX, CONFIRM = ChannelMode.TX, ChannelMode.CONFIRM
PUBLISH_IDS = b"\x00\x3c\x00\x28"  # class 60, method 40


def with_reply_to(message: Message, address: str) -> Message:
    """The request as its replier sees it: reply_to names this channel's reply address."""
    old = message.properties
    properties = old.copy()
    properties.reply_to = address
    return message.with_properties(properties)


def without_bcc(message: Message) -> Message:
    """The message as consumers see it: BCC routed it but is never delivered."""
    old = message.properties
    properties = old.copy()
    properties.headers = {k: v for k, v in (old.headers or {}).items() if k != "BCC"}
    return message.with_properties(properties)


class PermissionCache:
    """Answers to permission checks, valid while the broker's permissions are unchanged (so a
    publish costs a dict lookup, not a regular expression)."""

    __slots__ = ("answers", "generation")

    def __init__(self) -> None:
        self.generation = -1
        self.answers: dict[tuple[str, str, str], bool] = {}


class TopicCache:
    """The topic permission patterns this channel's user has, per (kind, exchange), valid
    while the broker's topic permissions are unchanged (None: no topic permission there)."""

    __slots__ = ("generation", "patterns")

    def __init__(self) -> None:
        self.generation = -1
        self.patterns: dict[tuple[str, str], re.Pattern[bytes] | None] = {}


class Channel:
    def __init__(self, connection: ChannelHost, number: int) -> None:
        self.connection = connection
        self.number = number
        self.vhost = connection.vhost
        self.assembler = ContentAssembler(connection.broker.config.max_message_size)
        self.stats = MessageStats()
        connection.broker.totals.channels_opened += 1
        self.proto = ChannelMachine()  # open, closing or closed; plain, confirm or tx mode
        self.closed = trio.Event()  # the channel is gone: its nursery ends
        self._confirms_ready = trio.Event()
        self.consumers: dict[str, Consumer] = {}
        self.unacked: dict[int, Unacked] = {}
        self.next_delivery_tag = 0
        self.ack_marks: deque[tuple[float, int]] = deque()  # see check_ack_timeout
        self.prefetch_consumer = 0  # basic.qos global=false: applies to consumers made after it
        self.prefetch_channel = 0  # basic.qos global=true: shared by the channel
        self.unacked_limit = 0  # the channel's unacked deliveries at most (0: no limit)
        self.set_unacked_limit()
        self.last_queue: str | None = None
        # When the channel last handled a frame (trio's clock), and whether it delivered since
        # the last activity sample (rates.sample_activity): together they say since when it
        # is idle (idle_since in the management API), at no cost per delivery but a flag.
        self.active_at = connection.last_received
        self.delivered = False
        self._permitted = PermissionCache()
        self._topics = TopicCache()
        self.held_cancels: list[str] | None = None  # see on_queue_delete
        self.reply_consumer: tuple[str, str] | None = None  # direct reply-to: (tag, token)
        self.confirm_seq = 0  # last publish sequence number in confirm mode
        self.unconfirmed: deque[tuple[int, int]] = deque()  # (sequence, LSN) awaiting fsync
        self.nacked: set[int] = set()  # sequences a queue refused (x-overflow reject-publish)
        self.confirmed_upto = 0  # last sequence number acked to the publisher
        self.tx_ops: list[Callable[[], tuple[int, bool]]] = []  # publishes awaiting commit
        self.tx_acks: list[tuple[dict[int, Unacked], Settlement]] = []  # acks awaiting commit

    # -- the channel's own tasks --------------------------------------------------------

    async def run(self) -> None:
        """The channel's nursery: lives until the channel closes; cleanup runs on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._confirm_task)
                await self.closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.cleanup()
            retire_channel(self.connection.broker.totals, self.vhost, self.stats, self.confirm_seq)

    async def _confirm_task(self) -> None:
        """Confirms wait for the fsync covering their messages; one wait serves a whole batch."""
        wal = self.connection.wal
        while True:
            await self._confirms_ready.wait()
            self._confirms_ready = trio.Event()
            if self.unconfirmed and wal is not None:
                try:
                    await wal.wait_durable(self.unconfirmed[-1][1])
                except WALFailed as exc:
                    self.connection.wal_failed(exc)
                    return
            self.flush_confirms(wal.durable_lsn if wal is not None else 0)

    # -- frames in ----------------------------------------------------------------------

    def handle_frame(self, frame: frames.Frame) -> None:
        self.active_at = self.connection.last_received
        if self.proto.state is not OPEN:
            self._while_closing(frame)
            return
        try:
            command = self.assembler.feed(frame)
        except ChannelError as error:  # content over the size limit
            self.fail(error)
            return
        if command is None:
            return
        method = command.method
        try:
            if type(method) is spec.BasicPublish:
                properties = command.properties
                assert properties is not None
                self.publish(
                    method.exchange,
                    method.routing_key,
                    method.mandatory,
                    method.immediate,
                    properties,
                    command.properties_raw,
                    command.body,
                )
            else:
                handler = HANDLERS.get(type(method))
                if handler is not None:
                    handler(self, method)
                elif self.proto.method(method) is ChannelAction.CLOSE:
                    self.cleanup()  # the client closed it: clean up, then confirm
                    self.connection.drop_channel(self)
                    self.closed.set()
                    self.write_method(spec.ChannelCloseOk())
        except AMQPError as error:
            self._method_failed(error, method.CLASS_ID, method.METHOD_ID)

    @property
    def takes_publish(self) -> bool:
        """Whether a whole publish may skip frame-by-frame handling (`handle_publish`)."""
        return self.proto.state is OPEN and not self.assembler.expecting_content

    def handle_publish(self, publish: frames.Publish) -> None:
        """A whole Basic.Publish (see `FrameBuffer.next_publish`): what `handle_frame` does
        with its three frames, decoding through caches."""
        self.active_at = self.connection.last_received
        args = publish_args(publish.arguments)
        if args is None:  # as the general path: 501 FRAME_ERROR "cannot decode ..."
            frames.decode_method(PUBLISH_IDS + publish.arguments)
            raise AssertionError("publish arguments decoded only by the general path")
        decoded = content_properties(publish.properties)
        if decoded is None:
            raise ConnectionError(INTERNAL_ERROR, "")  # as decode_content_header
        exchange, routing_key, mandatory, immediate, route_raw = args
        body = publish.body
        assert body is not None
        try:
            self.publish(
                exchange, routing_key, mandatory, immediate, decoded[0], decoded[1], body, route_raw
            )
        except AMQPError as error:
            self._method_failed(error, 60, 40)

    def _method_failed(self, error: AMQPError, class_id: int, method_id: int) -> None:
        """An error handling a method: a hard one goes up to the connection, a soft one
        closes the channel; both name the method unless they name another."""
        if not error.class_id:
            error.class_id, error.method_id = class_id, method_id
        if isinstance(error, ConnectionError):
            raise error
        self.fail(error)

    def _while_closing(self, frame: frames.Frame) -> None:
        """After we sent Channel.Close only Close-Ok (or a crossing Close) matters."""
        if self.proto.state is not CLOSING:
            return
        if self.proto.while_closing(frame) is ChannelAction.CLOSE_OK:
            self.connection.write(frames.method_frame(self.number, spec.ChannelCloseOk()))
        elif self.proto.state is ChannelState.CLOSED:
            self.connection.drop_channel(self)  # the Close-Ok to our Close
            self.closed.set()

    def fail(self, error: AMQPError) -> None:
        """A soft error: close this channel with the error's code and text."""
        log.info(
            "channel.error",
            channel=self.number,
            code=error.code,
            text=error.log_text,
            peer=self.connection.peer,
        )
        if self.proto.state is OPEN:
            self.proto.event(ChannelEvent.SERVER_CLOSE)
        self.assembler.reset()
        self.cleanup()
        self.write_method(
            spec.ChannelClose(error.code, error.text, error.class_id, error.method_id)
        )

    def write_method(self, method: spec.Method) -> None:
        self.connection.write(frames.method_frame(self.number, method))

    def write_with_content(self, method: spec.Method, properties_raw: bytes, body: bytes) -> None:
        """Get-Ok, Return or a direct reply with its content; a large body is not copied."""
        connection = self.connection
        for part in frames.method_with_content_parts(
            self.number, method, properties_raw, body, connection.frame_max
        ):
            connection.write(part)

    def reply_now(self, nowait: bool, method: spec.Method) -> None:
        if not nowait:
            self.write_method(method)

    def reply(
        self, nowait: bool, method: spec.Method, then: Callable[[], None] | None = None
    ) -> None:
        """Reply to a declare, delete, bind or unbind: as RabbitMQ, a change to durable
        definitions is on disk before the client hears it was made. `then` runs right after
        the reply is written (at once with nowait)."""
        if nowait:
            if then is not None:
                then()
            return
        journal = self.connection.broker.journal
        lsn = journal.last_define_lsn if journal is not None else 0

        def send() -> None:
            self.write_method(method)
            if then is not None:
                then()

        self.connection.after_durable(lsn, send)

    def on_ignored(self, method: spec.Method) -> None:
        pass

    def on_access_request(self, method: spec.AccessRequest) -> None:
        self.write_method(spec.AccessRequestOk(1))

    def on_flow(self, method: spec.ChannelFlow) -> None:
        if not method.active:
            raise ConnectionError(NOT_IMPLEMENTED, "active=false")
        self.write_method(spec.ChannelFlowOk(True))

    # -- cleanup ------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Requeue unacked messages in order, then cancel consumers (so a single active
        consumer's successor starts from the requeued head). Synchronous: never skipped."""
        if self.proto.state is OPEN:  # our own consumers take nothing more
            self.proto.event(ChannelEvent.GONE)
        self.cancel_replies()
        pending = [item for taken, _ in self.tx_acks for item in taken.values()]
        self.requeue(sorted(pending, key=lambda u: u[0].seq) + list(self.unacked.values()))
        self.unacked.clear()
        for consumer in list(self.consumers.values()):
            self.remove_consumer(consumer)
        self.consumers.clear()
        self.tx_ops.clear()
        self.tx_acks.clear()

    def requeue(self, items: list[Unacked]) -> None:
        for queue, entries in by_queue(items):
            queue.requeue(entries)

    # -- exchanges ----------------------------------------------------------------------

    # -- permissions --------------------------------------------------------------------

    def permit(self, kind: str, resource: str, name: str) -> None:
        """RabbitMQ's configure/write/read check; the default exchange is 'amq.default'."""
        if resource == "exchange" and name == "":
            name = "amq.default"
        users = self.connection.broker.users
        cache = self._permitted
        if cache.generation != users.generation:
            cache.generation = users.generation
            cache.answers.clear()
        key = (kind, resource, name)
        allowed = cache.answers.get(key)
        if allowed is None:
            allowed = cache.answers[key] = users.allowed(
                self.vhost.name, self.connection.username, kind, name
            )
        if not allowed:
            raise ChannelError(
                ACCESS_REFUSED,
                f"access to {resource} '{name}' in vhost '{self.vhost.name}' refused for user "
                f"'{self.connection.username}'",
            )

    def permit_topic(self, kind: str, exchange: Exchange, routing_key: str) -> None:
        """RabbitMQ's topic authorisation: on a topic exchange where the user has topic
        permissions, the routing key of a publish ("write") or binding ("read") must match."""
        if exchange.TYPE != "topic":
            return
        users = self.connection.broker.users
        table = users.topic_permissions
        if not table:
            return
        cache = self._topics
        if cache.generation != table.generation:
            cache.generation = table.generation
            cache.patterns.clear()
        key = (kind, exchange.name)
        if key in cache.patterns:
            pattern = cache.patterns[key]
        else:
            pattern = cache.patterns[key] = users.topic_check(
                self.vhost.name, self.connection.username, exchange.name, kind
            )
        if pattern is not None and pattern.search(name_bytes(routing_key)) is None:
            raise ChannelError(
                ACCESS_REFUSED,
                topic_refusal(
                    routing_key, exchange.name, self.vhost.name, self.connection.username
                ),
            )

    # -- queues -------------------------------------------------------------------------

    def queue_name(self, name: str) -> str:
        """An empty queue name means the queue last declared on this channel."""
        if name:
            return name
        if self.last_queue is None:
            raise ChannelError(NOT_FOUND, "no previously declared queue")
        return self.last_queue

    # -- consumers ----------------------------------------------------------------------

    def set_unacked_limit(self) -> None:
        """The channel-wide prefetch and the broker's channel_unacked_max, the lower wins."""
        limits = [
            n
            for n in (self.prefetch_channel, self.connection.broker.config.channel_unacked_max)
            if n
        ]
        self.unacked_limit = min(limits) if limits else 0

    def cancel_replies(self) -> None:
        if self.reply_consumer is not None:
            self.connection.broker.reply_to.unregister(self.reply_consumer[1])
            self.reply_consumer = None

    def deliver_reply(self, message: Message) -> None:
        """A direct reply for this channel's reply consumer (no ack, no queue)."""
        assert self.reply_consumer is not None
        self.next_delivery_tag += 1
        method = spec.BasicDeliver(
            self.reply_consumer[0],
            self.next_delivery_tag,
            False,
            message.exchange,
            message.routing_key,
        )
        self.write_with_content(method, message.properties_raw, message.body)

    def remove_consumer(self, consumer: Consumer) -> None:
        queue = consumer.queue
        queue.remove_consumer(consumer)
        if queue.unused_auto_delete and not queue.deleted:
            self.connection.broker_delete_queue(queue)

    def consumer_cancelled(self, consumer: Consumer) -> None:
        """The queue went away: tell the client if it asked for consumer_cancel_notify
        (after the Delete-Ok when this channel is the one deleting the queue)."""
        if self.consumers.pop(consumer.tag, None) is None:
            return
        if self.held_cancels is not None:
            self.held_cancels.append(consumer.tag)
        else:
            self.notify_cancelled([consumer.tag])

    def notify_cancelled(self, tags: list[str]) -> None:
        if self.proto.state is not OPEN or not self.connection.capability("consumer_cancel_notify"):
            return
        for tag in tags:
            self.write_method(spec.BasicCancel(tag, True))

    def dispatch_consumed_queues(self) -> None:
        for queue in {id(c.queue): c.queue for c in self.consumers.values()}.values():
            queue.dispatch()

    # -- deliveries ---------------------------------------------------------------------

    def can_deliver(self, consumer: Consumer) -> bool:
        if self.proto.state is not OPEN or self.connection.output_full():
            return False
        if consumer.no_ack:
            return True
        if consumer.prefetch and consumer.unacked >= consumer.prefetch:
            return False
        limit = self.unacked_limit
        return not limit or len(self.unacked) < limit

    def deliver(self, consumer: Consumer, entry: QueuedMessage, queue: Queue) -> None:
        self.delivered = True
        self.next_delivery_tag += 1
        tag = self.next_delivery_tag
        if not consumer.no_ack:
            self.unacked[tag] = (entry, queue, consumer)
            consumer.unacked += 1
        message = entry.message
        connection = self.connection
        properties = (
            message.properties_raw
            if queue.settings.delivery_limit is None
            else delivered_properties(entry, queue)
        )
        if message.size < frames.LARGE_BODY:
            connection.write_delivery(
                frames.deliver_frames(
                    self.number,
                    consumer.encoded_tag,
                    tag,
                    entry.redelivered,
                    message.encoded_route(),
                    properties,
                    message.body,
                    connection.frame_max,
                )
            )
            return
        for part in frames.deliver_parts(
            self.number,
            consumer.encoded_tag,
            tag,
            entry.redelivered,
            message.encoded_route(),
            properties,
            message.body,
            connection.frame_max,
        ):
            connection.write_delivery(part)

    # -- acknowledgements ---------------------------------------------------------------

    def check_ack_timeout(self, now: float, timeout_ms: int) -> bool:
        """RabbitMQ's consumer_timeout, checked periodically so that deliveries carry no
        timestamp: each check records (time, newest delivery tag so far), so the oldest unacked
        delivery was made no later than the first record covering its tag. Once that is
        `timeout_ms` ago the channel closes with 406, never early (at most two check intervals
        late). Returns whether it closed."""
        marks = self.ack_marks
        if not self.unacked or self.proto.state is not OPEN:
            marks.clear()
            return False
        oldest = next(iter(self.unacked))  # tags only grow, and a rollback restores order
        while marks and marks[0][1] < oldest:
            marks.popleft()
        if marks and (now - marks[0][0]) * 1000 >= timeout_ms:
            consumer = self.unacked[oldest][2]
            log.warning(
                "channel.consumer_timeout",
                channel=self.number,
                peer=self.connection.peer,
                timeout_ms=timeout_ms,
                consumer_tag=consumer.tag if consumer is not None else None,
            )
            self.fail(
                ChannelError(
                    PRECONDITION_FAILED,
                    f"delivery acknowledgement on channel {self.number} timed "
                    f"out. Timeout value used: {timeout_ms} ms. This timeout value can be "
                    "configured, see consumers doc guide to learn more",
                )
            )
            marks.clear()
            return True
        if not marks or marks[-1][1] < self.next_delivery_tag:
            marks.append((now, self.next_delivery_tag))
        return False

    # -- publishing ---------------------------------------------------------------------

    def publish(
        self,
        exchange_name: str,
        routing_key: str,
        mandatory: bool,
        immediate: bool,
        properties: spec.BasicProperties,
        properties_raw: bytes,
        body: bytes,
        route_raw: bytes | None = None,
    ) -> None:
        """Basic.Publish with its content; route_raw is exchange and routing key as encoded."""
        self.connection.publisher = True  # resource alarms block it from now on
        if immediate:
            raise ConnectionError(NOT_IMPLEMENTED, "immediate=true")
        vhost = self.vhost
        self.permit("write", "exchange", exchange_name)
        exchange = vhost.exchanges.get(exchange_name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no exchange '{exchange_name}' in vhost '{vhost.name}'")
        if exchange.internal:
            raise ChannelError(
                ACCESS_REFUSED,
                f"cannot publish to internal exchange '{exchange.name}' in vhost '{vhost.name}'",
            )
        if exchange.TYPE == "topic":  # one comparison per publish to anything else
            self.permit_topic("write", exchange, routing_key)
        user_id = properties.user_id
        if user_id is not None and user_id != self.connection.username:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"user_id property set to '{user_id}' but authenticated user was "
                f"'{self.connection.username}'",
            )
        expiration = properties.expiration
        if expiration is not None:
            _ttl, problem = parse_expiration(expiration)
            if problem is not None:
                raise ChannelError(
                    PRECONDITION_FAILED, f"invalid expiration '{expiration}': {problem}"
                )
        message = Message(exchange_name, routing_key, properties, properties_raw, body, route_raw)
        if properties.reply_to == reply_to.PSEUDO_QUEUE:
            if self.reply_consumer is None:
                raise ChannelError(PRECONDITION_FAILED, "fast reply consumer does not exist")
            message = with_reply_to(message, self.reply_consumer[1])
        mode = self.proto.mode
        if mode is TX:
            self.tx_ops.append(lambda: self._route(message, exchange, mandatory))
            return
        lsn, refused = self._route(message, exchange, mandatory)
        if mode is CONFIRM:
            self.confirm_seq += 1
            if lsn:
                self.unconfirmed.append((self.confirm_seq, lsn))
            if refused:
                self.nacked.add(self.confirm_seq)
            self._confirms_ready.set()

    def _route(self, message: Message, exchange: Any, mandatory: bool) -> tuple[int, bool]:
        """Route and enqueue; returns the LSN that must be durable before confirming (or 0),
        and whether a queue refused the message (the publisher gets a Basic.Nack)."""
        headers = message.properties.headers
        self.stats.publish += 1
        exchange.stats.publish_in += 1
        if exchange is self.vhost.default_exchange and message.routing_key.startswith(
            reply_to.PREFIX
        ):
            target = self.connection.broker.reply_to.lookup(message.routing_key)
            if target is not None:
                target.deliver_reply(message)
                return 0, False
        queues = self.vhost.route(exchange, message.routing_key, message)
        if not queues:
            count_unroutable(self.stats, mandatory)
            if mandatory:
                self.write_with_content(
                    spec.BasicReturn(NO_ROUTE, "NO_ROUTE", message.exchange, message.routing_key),
                    message.properties_raw,
                    message.body,
                )
            return 0, False
        if headers and "BCC" in headers:
            message = without_bcc(message)
        return self.vhost.publish(message, queues)

    def flush_confirms(self, durable_lsn: int) -> None:
        """Ack every publish whose record is durable (and every one before it), as one
        cumulative ack when it covers several; refused publishes get a Basic.Nack."""
        unconfirmed = self.unconfirmed
        while unconfirmed and unconfirmed[0][1] <= durable_lsn:
            unconfirmed.popleft()
        upto = unconfirmed[0][0] - 1 if unconfirmed else self.confirm_seq
        if upto <= self.confirmed_upto or self.proto.state is not OPEN or self.connection.closing:
            return
        start = self.confirmed_upto + 1
        self.confirmed_upto = upto
        self.stats.confirm += (
            upto - start + 1 - (sum(s <= upto for s in self.nacked) if self.nacked else 0)
        )
        if not self.nacked:
            self.write_method(spec.BasicAck(upto, upto > start))
            return
        for seq in sorted(s for s in self.nacked if s <= upto):
            if seq > start:
                self.write_method(spec.BasicAck(seq - 1, seq - 1 > start))
            self.write_method(spec.BasicNack(seq, False, False))
            self.nacked.discard(seq)
            start = seq + 1
        if start <= upto:
            self.write_method(spec.BasicAck(upto, upto > start))

    # -- tx and confirm modes -----------------------------------------------------------

    def on_tx_select(self, m: spec.TxSelect) -> None:
        self.proto.select(m)
        self.write_method(spec.TxSelectOk())

    def on_tx_commit(self, m: spec.TxCommit) -> None:
        self.proto.select(m)
        ops, self.tx_ops = self.tx_ops, []
        acks, self.tx_acks = self.tx_acks, []
        lsn = max([op()[0] for op in ops], default=0)
        for items, outcome in acks:
            settle(self, items, outcome)
        # Commit-Ok only once the committed persistent messages are on disk.
        self.connection.after_durable(lsn, lambda: self.write_method(spec.TxCommitOk()))

    def on_tx_rollback(self, m: spec.TxRollback) -> None:
        self.proto.select(m)
        self.tx_ops = []
        restored = {tag: item for taken, _ in self.tx_acks for tag, item in taken.items()}
        self.tx_acks = []
        if restored:
            merged = {**restored, **self.unacked}
            self.unacked = dict(sorted(merged.items()))
        self.write_method(spec.TxRollbackOk())

    def on_confirm_select(self, m: spec.ConfirmSelect) -> None:
        self.proto.select(m)
        self.reply_now(m.nowait, spec.ConfirmSelectOk())


# Each method a channel handles, and its function (`Channel.handle_frame`); what is not here
# is the state machine's (Channel.Close, Close-Ok) or an error.
HANDLERS: dict[type[spec.Method], Callable[[Channel, Any], None]] = {
    spec.ChannelFlow: Channel.on_flow,
    spec.ChannelFlowOk: Channel.on_ignored,
    spec.AccessRequest: Channel.on_access_request,
    spec.TxSelect: Channel.on_tx_select,
    spec.TxCommit: Channel.on_tx_commit,
    spec.TxRollback: Channel.on_tx_rollback,
    spec.ConfirmSelect: Channel.on_confirm_select,
    **declare.HANDLERS,
    **basic.HANDLERS,
}
