"""What a Prometheus scrape reads of the broker, as plain rows (tuples of strings and
numbers): read on the event loop, the only place broker objects may be read, a slice of
objects at a time with a checkpoint between slices, so that a scrape of 10,000 queues never
holds the loop for long. Everything after (sums, metric families, the text) works on the rows
alone, in a worker thread.

Between two slices the broker goes on: a queue deleted meanwhile is left out, one declared
meanwhile may be missed, as RabbitMQ's figures are each as of their own last emission.
"""

from __future__ import annotations

import resource
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import trio

from trimq.amqp.state import ChannelMode
from trimq.broker.queue_figures import head_timestamp
from trimq.broker.stats import MessageStats, channel_totals
from trimq.server.control.node import count_open_files
from trimq.server.info import channel_pid, connection_pid
from trimq.server.rates import channel_stats

if TYPE_CHECKING:
    from trimq.broker.queue import Queue
    from trimq.server.channel import Channel
    from trimq.server.connection import ServerConnection
    from trimq.server.state import ServerState

SLICE = 250  # objects read between two checkpoints
T = TypeVar("T")

# The channel counters reported per channel, in ChannelRow.counters' order.
CHANNEL_COUNTER_FIELDS = (
    "publish",
    "confirm",
    "return_unroutable",
    "drop_unroutable",
    "get",
    "get_no_ack",
    "deliver",
    "deliver_no_ack",
    "redeliver",
    "ack",
    "get_empty",
)


class QueueRow(NamedTuple):
    vhost: str
    name: str
    ready: int
    unacked: int
    consumers: int
    ready_bytes: int
    published: int
    # the lower timestamp property of the first ready message and the oldest unacked one;
    # NaN if neither has one
    head_timestamp: float
    unacked_bytes: int
    persistent: int
    persistent_bytes: int
    paged: int  # of `ready`, on disk
    paged_bytes: int


class ChannelRow(NamedTuple):
    pid: str
    vhost: str
    consumers: int
    unacked: int
    unconfirmed: int
    uncommitted: int
    acks_uncommitted: int
    prefetch_consumer: int
    prefetch_channel: int
    counters: tuple[int, ...]  # CHANNEL_COUNTER_FIELDS


class ConnectionRow(NamedTuple):
    pid: str
    recv_oct: int
    send_oct: int
    recv_cnt: int
    send_cnt: int
    pending: int
    channels: int


class ExchangeRow(NamedTuple):
    vhost: str
    name: str
    type: str
    bindings: int


class NodeRow(NamedTuple):
    started_at: float
    uptime: float  # seconds
    memory_alarm: bool
    disk_alarm: bool
    connections_opened: int
    connections_closed: int
    channels_opened: int
    channels_closed: int
    queues_declared: int
    queues_created: int
    queues_deleted: int
    open_fds: int
    client_sockets: int  # AMQP and AMQPS, from accept to close
    memory_used: int
    disk_free: int
    max_fds: int
    memory_limit: int
    disk_free_limit: int
    logins: tuple[tuple[str, int, int], ...]  # (protocol, succeeded, failed)


class Rows(NamedTuple):
    node: NodeRow
    queues: list[QueueRow]
    channels: list[ChannelRow]
    connections: list[ConnectionRow]
    exchanges: list[ExchangeRow]  # only when asked for (not internal, not the default one)
    vhosts: list[str]
    global_stats: MessageStats | None  # the broker's message counters, when asked for


async def slices(items: Sequence[T], size: int = SLICE) -> AsyncIterator[Sequence[T]]:
    """`items` a slice at a time, with a checkpoint before every slice but the first."""
    for start in range(0, len(items), size):
        if start:
            await trio.sleep(0)
        yield items[start : start + size]


def node_row(state: ServerState) -> NodeRow:
    resources = state.resources
    totals = state.broker.totals
    return NodeRow(
        started_at=int(state.started_at),
        uptime=time.time() - state.started_at,
        memory_alarm="memory" in resources.alarms,
        disk_alarm="disk" in resources.alarms,
        connections_opened=totals.connections_opened,
        connections_closed=totals.connections_closed,
        channels_opened=totals.channels_opened,
        channels_closed=totals.channels_closed,
        queues_declared=totals.queues_declared,
        queues_created=totals.queues_created,
        queues_deleted=totals.queues_deleted,
        open_fds=count_open_files() or 0,
        client_sockets=len(state.connections),
        memory_used=resources.memory_used or 0,
        disk_free=resources.disk_free or 0,
        max_fds=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        memory_limit=resources.memory_limit,
        disk_free_limit=resources.disk_free_limit,
        logins=tuple(
            (protocol, succeeded, totals.auth_failed.get(protocol, 0))
            for protocol, succeeded in totals.auth_succeeded.items()
        ),
    )


def _queue_row(queue: Queue) -> QueueRow:
    """From the counters the queue keeps (trimq.broker.queue_figures): no walk of messages."""
    ready = queue.ready
    stamp = head_timestamp(queue)
    return QueueRow(
        queue.vhost,
        queue.name,
        len(ready),
        queue.unacked,
        len(queue.consumers),
        ready.bytes,
        queue.counters().publish,
        float("nan") if stamp is None else float(stamp),
        queue.unacked_bytes,
        queue.persistent,
        queue.persistent_bytes,
        ready.paged_count,
        ready.paged_bytes,
    )


def _channel_row(channel: Channel) -> ChannelRow:
    stats = channel.stats
    return ChannelRow(
        channel_pid(channel),
        channel.vhost.name,
        len(channel.consumers),
        len(channel.unacked),
        channel.confirm_seq - channel.confirmed_upto
        if channel.proto.mode is ChannelMode.CONFIRM
        else 0,
        len(channel.tx_ops),
        sum(len(taken) for taken, _ in channel.tx_acks),
        channel.prefetch_consumer,
        channel.prefetch_channel,
        tuple(getattr(stats, name) for name in CHANNEL_COUNTER_FIELDS),
    )


def _connection_row(connection: ServerConnection) -> ConnectionRow:
    stats = connection.stats
    return ConnectionRow(
        connection_pid(connection),
        stats.recv_oct,
        stats.send_oct,
        stats.recv_cnt,
        stats.send_cnt,
        len(connection.out),
        len(connection.channels),
    )


async def broker_stats(state: ServerState) -> MessageStats:
    """The broker's message counters (live in RabbitMQ, so read at every scrape): the
    channels' sums, open and closed (`trimq.broker.stats.channel_totals`: no walk over the
    queues), and the copies routed out of every exchange, a slice of exchanges at a time."""
    broker = state.broker
    channels = [channel_stats(c) for conn in state.connections for c in conn.channels.values()]
    result = channel_totals(broker.totals, channels)
    routed = broker.totals.retired.publish_out
    for vhost in list(broker.vhosts.values()):
        routed += vhost.stats.publish_out  # its deleted exchanges'
        exchanges = [x.stats for x in vhost.exchanges.values()]
        async for part in slices(exchanges, SLICE * 4):
            routed += sum(x.publish_out for x in part)
    result.publish_out = routed
    return result


async def read_broker(
    state: ServerState,
    *,
    queues: bool = True,
    channels: bool = True,
    exchanges: bool = False,
    global_stats: bool = True,
) -> Rows:
    """Every row a scrape needs, read a slice at a time: `queues`, `channels` (and
    connections), `exchanges` and `global_stats` only when the scrape
    reports them."""
    broker = state.broker
    connections = [c for c in state.connections if c.opened]
    open_channels = [ch for c in connections for ch in c.channels.values()]
    every_queue: list[Queue] = (
        [q for v in broker.vhosts.values() for q in v.queues.values()] if queues else []
    )
    queue_rows: list[QueueRow] = []
    async for some_queues in slices(every_queue):
        queue_rows.extend(_queue_row(q) for q in some_queues if not q.deleted)
    if not channels:
        connections, open_channels = [], []
    channel_rows: list[ChannelRow] = []
    async for some_channels in slices(open_channels):
        channel_rows.extend(map(_channel_row, some_channels))
    connection_rows: list[ConnectionRow] = []
    async for some_connections in slices(connections):
        connection_rows.extend(_connection_row(c) for c in some_connections if c.opened)
    exchange_rows: list[ExchangeRow] = []
    if exchanges:
        every = [x for v in broker.vhosts.values() for x in v.exchanges.values()]
        async for some_exchanges in slices(every):
            exchange_rows.extend(
                ExchangeRow(x.vhost, x.name, x.TYPE, len(x.bindings))
                for x in some_exchanges
                if x.name and not x.internal and not x.deleted
            )
    await trio.sleep(0)
    return Rows(
        node_row(state),
        queue_rows,
        channel_rows,
        connection_rows,
        exchange_rows,
        list(broker.vhosts),
        await broker_stats(state) if global_stats else None,
    )
