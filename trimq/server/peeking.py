"""Peek and find over the live broker: trimq/broker/peek.py given the messages channels hold
(delivered and not settled yet: unacked, or acked inside a transaction not committed yet),
read from the channels when asked, so the delivery path keeps no bookkeeping for it. The
control socket and the management API both call these."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import trio

from trimq.broker.broker import AdminError
from trimq.broker.peek import Held, find_held, find_ready, matcher, peek_ready, peek_unacked
from trimq.broker.queue import Queue
from trimq.broker.vhost import VHost
from trimq.server.state import ServerState


def channel_name(connection_name: str, number: int) -> str:
    """RabbitMQ's channel name: the connection's name and the channel number."""
    return f"{connection_name} ({number})"


def held_messages(state: ServerState, vhost: VHost) -> Iterator[Held]:
    """Every message a channel in `vhost` holds, channel by channel, in delivery-tag order."""
    for connection in state.connections:
        if not connection.opened or connection.vhost is not vhost:
            continue
        name = connection.name
        for number, channel in connection.channels.items():
            held = dict(channel.unacked)
            for taken, _outcome in channel.tx_acks:
                held.update(taken)
            for tag in sorted(held):
                entry, queue, consumer = held[tag]
                yield Held(
                    entry,
                    queue,
                    channel_name(name, number),
                    consumer.tag if consumer is not None else None,
                    tag,
                )


def peek_queue(
    state: ServerState,
    vhost: VHost,
    queue: Queue,
    offset: int,
    count: int,
    unacked: bool = False,
    encoding: str = "auto",
    truncate: int | None = None,
) -> list[dict[str, Any]]:
    """Ready messages from `offset` in queue order, or (`unacked`) the delivered ones."""
    if unacked:
        held = held_messages(state, vhost)
        return peek_unacked(queue, held, offset, count, encoding, truncate)
    return peek_ready(queue, offset, count, encoding, truncate)


async def find_messages(
    state: ServerState, vhost: VHost, message_id: str | None, correlation_id: str | None
) -> list[dict[str, Any]]:
    """Every copy of the message with this message_id and/or correlation_id in the vhost's
    queues, ready (with its position) or held by a channel. Each queue is walked in one go
    and other tasks run between queues, so the loop is held up by one queue at a time."""
    if message_id is None and correlation_id is None:
        raise AdminError("usage", "give a message_id or a correlation_id")
    match = matcher(message_id, correlation_id)
    found = []
    for queue in sorted(vhost.queues.values(), key=lambda q: q.name):
        if queue.deleted:
            continue
        if queue.ready:
            found += find_ready(queue, match)
            await trio.lowlevel.checkpoint()
    found += find_held(held_messages(state, vhost), match)
    return found
