"""Exchange and queue methods (exchange.declare/delete/bind/unbind, queue.declare/bind/unbind/
purge/delete): permission checks and the vhost's declaration rules, then the reply.

They are the channel's definition handlers, apart from channel.py so that the channel keeps
only its state, its hot paths (publish, deliver) and its own tasks. `HANDLERS` is merged into
the channel's method table; a new definition method is a function and an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trimq.amqp import spec
from trimq.broker.deletion import DeletionRefused, check_deletable
from trimq.broker.vhost import generated_name
from trimq.errors import PRECONDITION_FAILED, ChannelError

if TYPE_CHECKING:
    from trimq.server.channel import Channel


def may_forward(channel: Channel, kind: str, name: str) -> Callable[[str], None]:
    """The check for the exchange a new queue dead-letters to, or a new exchange passes
    unrouted messages to: as RabbitMQ, the declarer must be allowed to read `name` and
    to write to that exchange (else it could publish there by proxy)."""

    def check(target: str) -> None:
        channel.permit("read", kind, name)
        channel.permit("write", "exchange", target)

    return check


def on_exchange_declare(channel: Channel, m: spec.ExchangeDeclare) -> None:
    if not m.passive:
        channel.permit("configure", "exchange", m.exchange)
    channel.vhost.declare_exchange(
        m.exchange,
        m.type,
        m.passive,
        m.durable,
        m.auto_delete,
        m.internal,
        m.arguments,
        may_forward(channel, "exchange", m.exchange),
    )
    channel.reply(m.nowait, spec.ExchangeDeclareOk())


def on_exchange_delete(channel: Channel, m: spec.ExchangeDelete) -> None:
    channel.permit("configure", "exchange", m.exchange)
    channel.vhost.delete_exchange(m.exchange, m.if_unused)
    channel.reply(m.nowait, spec.ExchangeDeleteOk())


def on_exchange_bind(channel: Channel, m: spec.ExchangeBind) -> None:
    channel.permit("write", "exchange", m.destination)
    channel.permit("read", "exchange", m.source)
    channel.vhost.check_bindable(m.source)
    channel.vhost.check_bindable(m.destination)
    source = channel.vhost.get_exchange(m.source)
    destination = channel.vhost.get_exchange(m.destination)
    channel.permit_topic("read", source, m.routing_key)
    channel.vhost.bind(source, destination, m.routing_key, m.arguments)
    channel.reply(m.nowait, spec.ExchangeBindOk())


def on_exchange_unbind(channel: Channel, m: spec.ExchangeUnbind) -> None:
    channel.permit("write", "exchange", m.destination)
    channel.permit("read", "exchange", m.source)
    channel.vhost.check_bindable(m.source)
    channel.vhost.check_bindable(m.destination)
    source = channel.vhost.exchanges.get(m.source)
    destination = channel.vhost.exchanges.get(m.destination)
    if source is not None:
        channel.permit_topic("read", source, m.routing_key)
    if source is not None and destination is not None:  # as RabbitMQ: missing is fine
        channel.vhost.unbind(source, destination, m.routing_key, m.arguments)
    channel.reply(m.nowait, spec.ExchangeUnbindOk())


def on_queue_declare(channel: Channel, m: spec.QueueDeclare) -> None:
    name = m.queue
    server_named = not name and not m.passive
    if server_named:
        name = generated_name("amq.gen-")
    if not m.passive:
        channel.permit("configure", "queue", name)
    queue, created = channel.vhost.declare_queue(
        name,
        channel.connection,
        m.passive,
        m.durable,
        m.exclusive,
        m.auto_delete,
        m.arguments,
        server_named,
        may_forward=may_forward(channel, "queue", name),
    )
    if created and queue.exclusive:
        channel.connection.exclusive_queues.append(queue)
    channel.last_queue = queue.name
    channel.reply(
        m.nowait, spec.QueueDeclareOk(queue.name, queue.message_count, queue.consumer_count)
    )


def on_queue_bind(channel: Channel, m: spec.QueueBind) -> None:
    channel.permit("write", "queue", channel.queue_name(m.queue))
    channel.permit("read", "exchange", m.exchange)
    channel.vhost.check_bindable(m.exchange)
    exchange = channel.vhost.get_exchange(m.exchange)
    queue = channel.vhost.get_queue(channel.queue_name(m.queue), channel.connection)
    routing_key = m.routing_key if m.queue or m.routing_key else queue.name
    channel.permit_topic("read", exchange, routing_key)
    channel.vhost.bind(exchange, queue, routing_key, m.arguments)
    channel.reply(m.nowait, spec.QueueBindOk())


def on_queue_unbind(channel: Channel, m: spec.QueueUnbind) -> None:
    channel.permit("write", "queue", channel.queue_name(m.queue))
    channel.permit("read", "exchange", m.exchange)
    channel.vhost.check_bindable(m.exchange)
    exchange = channel.vhost.exchanges.get(m.exchange)
    queue = channel.vhost.queues.get(channel.queue_name(m.queue))
    if exchange is not None:
        channel.permit_topic("read", exchange, m.routing_key)
    if exchange is not None and queue is not None:  # as RabbitMQ: missing is fine
        channel.vhost.check_exclusive(queue, channel.connection)
        channel.vhost.unbind(exchange, queue, m.routing_key, m.arguments)
    channel.reply(False, spec.QueueUnbindOk())


def on_queue_purge(channel: Channel, m: spec.QueuePurge) -> None:
    channel.permit("read", "queue", channel.queue_name(m.queue))
    queue = channel.vhost.get_queue(channel.queue_name(m.queue), channel.connection)
    channel.reply_now(m.nowait, spec.QueuePurgeOk(queue.purge()))


def on_queue_delete(channel: Channel, m: spec.QueueDelete) -> None:
    name = channel.queue_name(m.queue)
    channel.permit("configure", "queue", name)
    queue = channel.vhost.queues.get(name)
    if queue is None:
        channel.reply(m.nowait, spec.QueueDeleteOk(0))  # RabbitMQ: deleting nothing succeeds
        return
    channel.vhost.check_exclusive(queue, channel.connection)
    try:
        check_deletable(queue, m.if_unused, m.if_empty)
    except DeletionRefused as refused:  # RabbitMQ's "queue 'q' in vhost '/' in use"
        what = channel.vhost.describe("queue", name)
        raise ChannelError(PRECONDITION_FAILED, f"{what} {refused.refusal}") from None
    # As RabbitMQ: Delete-Ok first, then Basic.Cancel to this channel's own consumers of
    # the queue (py-amqp would raise ConsumerCancelled inside queue_delete otherwise).
    held: list[str] = []
    channel.held_cancels = held
    try:
        count = channel.connection.broker_delete_queue(queue)
    finally:
        channel.held_cancels = None
    channel.reply(m.nowait, spec.QueueDeleteOk(count), then=lambda: channel.notify_cancelled(held))


HANDLERS: dict[type[spec.Method], Callable[[Channel, Any], None]] = {
    spec.ExchangeDeclare: on_exchange_declare,
    spec.ExchangeDelete: on_exchange_delete,
    spec.ExchangeBind: on_exchange_bind,
    spec.ExchangeUnbind: on_exchange_unbind,
    spec.QueueDeclare: on_queue_declare,
    spec.QueueBind: on_queue_bind,
    spec.QueueUnbind: on_queue_unbind,
    spec.QueuePurge: on_queue_purge,
    spec.QueueDelete: on_queue_delete,
}
