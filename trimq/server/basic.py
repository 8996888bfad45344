"""The basic.* methods but publish (qos, consume, cancel, get, ack, nack, reject, recover):
consumers, prefetch and the settlement of deliveries.

Apart from channel.py so that the channel keeps only its state, its hot paths (publish,
deliver) and its own tasks; an ack costs the same calls as before (the channel's method table
holds these functions). `HANDLERS` is merged into that table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from trimq.amqp import spec
from trimq.amqp.codec import Typed
from trimq.amqp.state import ChannelMode
from trimq.broker import reply_to
from trimq.broker.message import Message, QueuedMessage
from trimq.broker.queue import Consumer, Queue
from trimq.broker.vhost import generated_name
from trimq.errors import (
    ACCESS_REFUSED,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    ChannelError,
    ConnectionError,
)

if TYPE_CHECKING:
    from trimq.server.channel import Channel


class Settlement(StrEnum):
    """What becomes of acknowledged deliveries."""

    ACK = "ack"  # settled: gone from the queue
    REQUEUE = "requeue"  # back to the queue, in their place, redelivered
    REJECT = "reject"  # dropped, or dead-lettered if the queue says so


_REQUEUE, _REJECT = Settlement.REQUEUE, Settlement.REJECT
TX = ChannelMode.TX


# A delivery awaiting its ack: the queue entry, its queue, and the consumer (None for basic.get).
Unacked = tuple[QueuedMessage, Queue, Consumer | None]


def delivered_properties(entry: QueuedMessage, queue: Queue) -> bytes:
    """The encoded properties a delivery carries: the publisher's, plus x-delivery-count
    (0 on the first delivery, as quorum queues) on queues with a delivery limit."""
    if queue.settings.delivery_limit is None:
        return entry.message.properties_raw
    return with_delivery_count(entry.message, entry.delivery_count - 1)


def with_delivery_count(message: Message, count: int) -> bytes:
    """Properties carrying x-delivery-count: how often the message was delivered before."""
    old = message.properties
    properties = old.copy()
    properties.headers = {**(old.headers or {}), "x-delivery-count": Typed("l", count)}
    return properties.encode()


def by_queue(items: list[Unacked]) -> list[tuple[Queue, list[QueuedMessage]]]:
    """Deliveries that are settled or come back, grouped by queue in their order; their
    consumers get the credit back."""
    if not items:
        return []
    for consumer, count in Counter(map(_CONSUMER, items)).items():
        if consumer is not None:
            consumer.unacked -= count
    first = items[0][1]
    if all(queue is first for queue in map(_QUEUE, items)):  # the usual case: one queue
        return [(first, list(map(_ENTRY, items)))]
    by_queue: dict[int, tuple[Queue, list[QueuedMessage]]] = {}
    for entry, queue, _consumer in items:
        by_queue.setdefault(id(queue), (queue, []))[1].append(entry)
    return list(by_queue.values())


_ENTRY, _QUEUE, _CONSUMER = itemgetter(0), itemgetter(1), itemgetter(2)


def on_qos(channel: Channel, m: spec.BasicQos) -> None:
    if m.prefetch_size:
        raise ConnectionError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({m.prefetch_size})")
    if m.global_qos:
        channel.prefetch_channel = m.prefetch_count
    else:  # as RabbitMQ 3.x: a per-consumer qos also lifts the channel-wide limit
        channel.prefetch_consumer = m.prefetch_count
        channel.prefetch_channel = 0
    channel.set_unacked_limit()
    channel.write_method(spec.BasicQosOk())
    channel.dispatch_consumed_queues()


def on_consume(channel: Channel, m: spec.BasicConsume) -> None:
    if m.queue == reply_to.PSEUDO_QUEUE:
        consume_replies(channel, m)
        return
    channel.permit("read", "queue", channel.queue_name(m.queue))
    queue = channel.vhost.get_queue(channel.queue_name(m.queue), channel.connection)
    tag = m.consumer_tag or generated_name("amq.ctag-")
    if tag in channel.consumers:
        raise ConnectionError(530, f"attempt to reuse consumer tag '{tag}'")
    if queue.consumers and (m.exclusive or any(c.exclusive for c in queue.consumers)):
        raise ChannelError(
            ACCESS_REFUSED, f"{channel.vhost.describe('queue', queue.name)} in exclusive use"
        )
    consumer = Consumer(
        tag, queue, channel, m.no_ack, m.exclusive, m.arguments, channel.prefetch_consumer
    )
    channel.consumers[tag] = consumer
    channel.reply_now(m.nowait, spec.BasicConsumeOk(tag))  # before any delivery to it
    queue.add_consumer(consumer)


def consume_replies(channel: Channel, m: spec.BasicConsume) -> None:
    """Direct reply-to: this channel's replies come to consumer `tag`, never acked."""
    if not m.no_ack:
        raise ChannelError(PRECONDITION_FAILED, "reply consumer cannot acknowledge")
    if channel.reply_consumer is not None:
        raise ChannelError(PRECONDITION_FAILED, "reply consumer already set")
    tag = m.consumer_tag or generated_name("amq.ctag-")
    channel.reply_consumer = (tag, channel.connection.broker.reply_to.register(channel))
    channel.reply(m.nowait, spec.BasicConsumeOk(tag))


def on_cancel(channel: Channel, m: spec.BasicCancel) -> None:
    if channel.reply_consumer is not None and m.consumer_tag == channel.reply_consumer[0]:
        channel.cancel_replies()
        channel.reply(m.nowait, spec.BasicCancelOk(m.consumer_tag))
        return
    consumer = channel.consumers.pop(m.consumer_tag, None)
    if consumer is not None:
        channel.remove_consumer(consumer)
    channel.reply_now(m.nowait, spec.BasicCancelOk(m.consumer_tag))


def on_get(channel: Channel, m: spec.BasicGet) -> None:
    channel.permit("read", "queue", channel.queue_name(m.queue))
    queue = channel.vhost.get_queue(channel.queue_name(m.queue), channel.connection)
    entry = queue.get(m.no_ack, channel.stats)
    if entry is None:
        channel.write_method(spec.BasicGetEmpty())
        return
    channel.next_delivery_tag += 1
    tag = channel.next_delivery_tag
    if not m.no_ack:
        channel.unacked[tag] = (entry, queue, None)
    message = entry.message
    method = spec.BasicGetOk(
        tag, entry.redelivered, message.exchange, message.routing_key, queue.message_count
    )
    channel.write_with_content(method, delivered_properties(entry, queue), message.body)


def take_unacked(channel: Channel, tag: int, multiple: bool) -> dict[int, Unacked]:
    """Remove the acked deliveries; as RabbitMQ, the tag itself must be outstanding
    (multiple with tag 0 means every outstanding delivery)."""
    unacked = channel.unacked
    if multiple and tag == 0:
        channel.unacked = {}
        return unacked
    if tag not in unacked:
        raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
    if not multiple:
        return {tag: unacked.pop(tag)}
    # Delivery tags only grow: the deliveries acknowledged are the oldest ones.
    count = 0
    for key in unacked:
        count += 1
        if key == tag:
            break
    taken = dict(islice(unacked.items(), count))
    for key in taken:
        del unacked[key]
    return taken


def settle(channel: Channel, taken: dict[int, Unacked], outcome: Settlement) -> None:
    """Acked, requeued, or rejected without requeue (dead-lettered if the queue says so)."""
    items = list(taken.values())
    groups = by_queue(items)
    for queue, entries in groups:
        if outcome is Settlement.ACK:
            queue.settle(entries, channel.stats)
        elif outcome is Settlement.REQUEUE:
            queue.requeue(entries)
        else:
            queue.reject(entries)
    if channel.unacked_limit:
        channel.dispatch_consumed_queues()
    else:  # the consumers' queues (not those of Basic.Get's deliveries)
        consumers = {id(item[2]): item[2] for item in items}
        for queue, _ in groups:
            if any(c is not None and c.queue is queue for c in consumers.values()):
                queue.dispatch()


def acknowledge(channel: Channel, tag: int, multiple: bool, outcome: Settlement) -> None:
    items = take_unacked(channel, tag, multiple)
    if channel.proto.mode is TX:
        # Taken now (a second ack fails at once, as RabbitMQ), settled at commit,
        # put back as unacked by a rollback, requeued if the channel closes first.
        channel.tx_acks.append((items, outcome))
    else:
        settle(channel, items, outcome)


def on_ack(channel: Channel, m: spec.BasicAck) -> None:
    acknowledge(channel, m.delivery_tag, m.multiple, Settlement.ACK)


def on_nack(channel: Channel, m: spec.BasicNack) -> None:
    acknowledge(channel, m.delivery_tag, m.multiple, _REQUEUE if m.requeue else _REJECT)


def on_reject(channel: Channel, m: spec.BasicReject) -> None:
    acknowledge(channel, m.delivery_tag, False, _REQUEUE if m.requeue else _REJECT)


def on_recover(channel: Channel, m: spec.BasicRecover | spec.BasicRecoverAsync) -> None:
    if not m.requeue:
        raise ConnectionError(NOT_IMPLEMENTED, "requeue=false")
    items = list(channel.unacked.values())
    channel.unacked = {}
    channel.requeue(items)
    if type(m) is spec.BasicRecover:
        channel.write_method(spec.BasicRecoverOk())


HANDLERS: dict[type[spec.Method], Callable[[Channel, Any], None]] = {
    spec.BasicQos: on_qos,
    spec.BasicConsume: on_consume,
    spec.BasicCancel: on_cancel,
    spec.BasicGet: on_get,
    spec.BasicAck: on_ack,
    spec.BasicNack: on_nack,
    spec.BasicReject: on_reject,
    spec.BasicRecover: on_recover,
    spec.BasicRecoverAsync: on_recover,
}
