"""/api/connections, /api/channels, /api/consumers (and their per-vhost and per-connection
variants): the live AMQP side, in RabbitMQ 3.10's field names. DELETE of a connection closes
it with 320 CONNECTION_FORCED and the text of the X-Reason header.

Users without the monitoring tag see only their own connections and channels (as RabbitMQ).
message_stats are added by the metrics module where it keeps them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio
from starlette.responses import Response

from trimq.amqp.state import ChannelMode, ChannelState
from trimq.broker.message_view import json_value
from trimq.broker.queue import Consumer, Queue
from trimq.management.amqp_ops import plain_table, timestamp, vhost_for
from trimq.management.context import Context
from trimq.management.errors import not_found
from trimq.management.lists import respond_list
from trimq.management.message_stats import with_message_stats
from trimq.management.routes import endpoint, no_content, route
from trimq.server.info import NODE, connection_state
from trimq.server.rates import channel_stats, idle_for
from trimq.server.tls_peer import info_fields

if TYPE_CHECKING:
    from trimq.server.channel import Channel
    from trimq.server.connection import ServerConnection

DEFAULT_REASON = "Closed via management plugin"


def render_connection(ctx: Context, connection: ServerConnection) -> dict[str, Any]:
    return {
        "auth_mechanism": connection.auth_mechanism,
        "channel_max": connection.channel_max,
        "channels": len(connection.channels),
        "client_properties": json_value(connection.client_properties or {}),
        "connected_at": int(connection.connected_at * 1000),
        "frame_max": connection.frame_max,
        "host": connection.local[0],
        "name": connection.name,
        "node": NODE,
        "peer_host": connection.peer[0],
        "peer_port": connection.peer[1],
        "port": connection.local[1],
        "protocol": "AMQP 0-9-1",
        "recv_cnt": connection.stats.recv_cnt,
        "recv_oct": connection.stats.recv_oct,
        "send_cnt": connection.stats.send_cnt,
        "send_oct": connection.stats.send_oct,
        "send_pend": len(connection.out),
        "state": connection_state(connection, ctx.state),
        "timeout": connection.heartbeat,
        "type": "network",
        "user": connection.username,
        "user_who_performed_action": connection.username,
        "vhost": connection.vhost.name,
        **info_fields(connection.tls, None),
    }


def channel_name(channel: Channel) -> str:
    return f"{channel.connection.name} ({channel.number})"


def channel_details(channel: Channel) -> dict[str, Any]:
    connection = channel.connection
    return {
        "connection_name": connection.name,
        "name": channel_name(channel),
        "node": NODE,
        "number": channel.number,
        "peer_host": connection.peer[0],
        "peer_port": connection.peer[1],
        "user": connection.username,
    }


def render_channel(channel: Channel) -> dict[str, Any]:
    connection = channel.connection
    answer: dict[str, Any] = {
        "acks_uncommitted": sum(len(taken) for taken, _ in channel.tx_acks),
        "confirm": channel.proto.mode is ChannelMode.CONFIRM,
        "connection_details": {
            "name": connection.name,
            "peer_host": connection.peer[0],
            "peer_port": connection.peer[1],
        },
        "consumer_count": len(channel.consumers),
        "global_prefetch_count": channel.prefetch_channel,
        "messages_unacknowledged": len(channel.unacked),
        "messages_uncommitted": len(channel.tx_ops),
        "messages_unconfirmed": channel.confirm_seq - channel.confirmed_upto,
        "name": channel_name(channel),
        "node": NODE,
        "number": channel.number,
        "pending_raft_commands": 0,
        "prefetch_count": channel.prefetch_consumer,
        "state": "running" if channel.proto.state is ChannelState.OPEN else "closing",
        "transactional": channel.proto.mode is ChannelMode.TX,
        "user": connection.username,
        "user_who_performed_action": connection.username,
        "vhost": connection.vhost.name,
    }
    idle = idle_for(channel, trio.current_time())
    if idle is not None:  # as RabbitMQ: only on a channel idle for a moment
        answer["idle_since"] = timestamp(time.time() - idle)
    return with_message_stats(answer, channel_stats(channel), "channel")


def consumer_activity(consumer: Consumer, queue: Queue) -> tuple[bool, str]:
    """(active, activity_status): with single active consumer, only the first consumes."""
    if not queue.settings.single_active_consumer:
        return True, "up"
    active = bool(queue.consumers) and queue.consumers[0] is consumer
    return active, "single_active" if active else "waiting"


def render_consumer(consumer: Consumer) -> dict[str, Any]:
    queue = consumer.queue
    active, status = consumer_activity(consumer, queue)
    sink: Any = consumer.sink
    return {
        "arguments": plain_table(consumer.arguments),
        "ack_required": not consumer.no_ack,
        "active": active,
        "activity_status": status,
        "channel_details": channel_details(sink),
        "consumer_tag": consumer.tag,
        "exclusive": consumer.exclusive,
        "prefetch_count": consumer.prefetch,
        "queue": {"name": queue.name, "vhost": queue.vhost},
    }


# -- what a user may see -----------------------------------------------------------------------


def visible_connections(ctx: Context, vhost: str | None = None) -> Iterator[ServerConnection]:
    everything = ctx.sees_all_vhosts()
    for connection in ctx.state.connections:
        if not connection.opened:
            continue
        if vhost is not None and connection.vhost.name != vhost:
            continue
        if everything or connection.username == ctx.user.name:
            yield connection


def visible_channels(ctx: Context, vhost: str | None = None) -> Iterator[Channel]:
    for connection in visible_connections(ctx, vhost):
        yield from connection.channels.values()


def visible_consumers(ctx: Context, vhost: str | None = None) -> Iterator[Consumer]:
    for channel in visible_channels(ctx, vhost):
        yield from channel.consumers.values()


def _connection(ctx: Context) -> ServerConnection:
    name = ctx.params["name"]
    for connection in visible_connections(ctx):
        if connection.name == name:
            return connection
    raise not_found()


def _vhost_name(ctx: Context) -> str:
    return vhost_for(ctx).name


# -- endpoints ---------------------------------------------------------------------------------


@endpoint()
async def list_connections(ctx: Context) -> Any:
    return respond_list(
        ctx.request.query_params,
        visible_connections(ctx),
        lambda c: render_connection(ctx, c),
        name=lambda c: c.name,
    )


@endpoint()
async def list_vhost_connections(ctx: Context) -> Any:
    return respond_list(
        ctx.request.query_params,
        visible_connections(ctx, _vhost_name(ctx)),
        lambda c: render_connection(ctx, c),
        name=lambda c: c.name,
    )


@endpoint()
async def get_connection(ctx: Context) -> Any:
    return render_connection(ctx, _connection(ctx))


@endpoint()
async def delete_connection(ctx: Context) -> Response:
    connection = _connection(ctx)
    connection.force_close(ctx.request.headers.get("x-reason") or DEFAULT_REASON)
    return no_content()


@endpoint()
async def connection_channels(ctx: Context) -> Any:
    connection = _connection(ctx)
    return respond_list(
        ctx.request.query_params,
        list(connection.channels.values()),
        render_channel,
        name=channel_name,
    )


@endpoint()
async def list_channels(ctx: Context) -> Any:
    return respond_list(
        ctx.request.query_params, visible_channels(ctx), render_channel, name=channel_name
    )


@endpoint()
async def list_vhost_channels(ctx: Context) -> Any:
    return respond_list(
        ctx.request.query_params,
        visible_channels(ctx, _vhost_name(ctx)),
        render_channel,
        name=channel_name,
    )


@endpoint()
async def get_channel(ctx: Context) -> Any:
    name = ctx.params["name"]
    for channel in visible_channels(ctx):
        if channel_name(channel) == name:
            return {
                **render_channel(channel),
                "consumer_details": [render_consumer(c) for c in channel.consumers.values()],
                "deliveries": [],
                "publishes": [],
            }
    raise not_found()


@endpoint()
async def list_consumers(ctx: Context) -> Any:
    return respond_list(
        ctx.request.query_params,
        visible_consumers(ctx),
        render_consumer,
        name=lambda c: c.tag,
        default_sort=(),
    )


@endpoint()
async def list_vhost_consumers(ctx: Context) -> Any:
    return respond_list(
        ctx.request.query_params,
        visible_consumers(ctx, _vhost_name(ctx)),
        render_consumer,
        name=lambda c: c.tag,
        default_sort=(),
    )


ROUTES = [
    route("/api/connections", GET=list_connections),
    route("/api/connections/{name}", GET=get_connection, DELETE=delete_connection),
    route("/api/connections/{name}/channels", GET=connection_channels),
    route("/api/vhosts/{vhost}/connections", GET=list_vhost_connections),
    route("/api/channels", GET=list_channels),
    route("/api/channels/{name}", GET=get_channel),
    route("/api/vhosts/{vhost}/channels", GET=list_vhost_channels),
    route("/api/consumers", GET=list_consumers),
    route("/api/consumers/{vhost}", GET=list_vhost_consumers),
]
