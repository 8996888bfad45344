"""GET /api/overview, /api/whoami, /api/cluster-name, /api/extensions and /api/auth."""

from __future__ import annotations

import socket
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trimq import __version__
from trimq.broker.stats import message_stats, total
from trimq.broker.vhost import VHost
from trimq.management.auth import MONITORING, has_level
from trimq.management.context import Context
from trimq.management.routes import endpoint, route
from trimq.server.connection import ServerConnection
from trimq.server.info import NODE
from trimq.server.rates import overview_stats, vhost_stats

# The RabbitMQ release whose management API trimq answers like: tools parse it as a version.
RABBITMQ_API_VERSION = "3.10.8"
CLUSTER_NAME = f"trimq@{socket.gethostname()}"

EXCHANGE_TYPES = [
    {
        "name": kind,
        "description": f"AMQP {kind} exchange, as per the AMQP specification",
        "enabled": True,
    }
    for kind in ("direct", "fanout", "headers", "topic")
]


def totals(ctx: Context) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
    """object_totals, queue_totals and message_stats over what the user may see. The counts
    of objects are read live (RabbitMQ counts a new queue at once); what is summed over
    every queue and channel comes from `sampled`."""
    vhosts = ctx.visible_vhosts()
    names = {v.name for v in vhosts}
    own_only = not ctx.sees_all_vhosts()
    connections = [
        c
        for c in ctx.state.connections
        if c.opened and (c.username == ctx.user.name if own_only else c.vhost.name in names)
    ]
    consumers, queue_totals, counted = sampled(ctx, vhosts, connections)
    objects = {
        "channels": sum(len(c.channels) for c in connections),
        "connections": len(connections),
        "exchanges": sum(len(v.exchanges) + 1 for v in vhosts),  # + the default exchange
        "queues": sum(len(v.queues) for v in vhosts),
    }
    if not own_only:
        objects["consumers"] = consumers
    return objects, queue_totals, counted


def sampled(
    ctx: Context, vhosts: list[VHost], connections: list[ServerConnection]
) -> tuple[int, dict[str, int], dict[str, Any]]:
    """Consumers, queue_totals and message_stats: walks of every queue and channel, done once
    per rate sample (every 5 s) for each view (the whole broker, or a user's vhosts) and
    reused meanwhile, as RabbitMQ computes them from the statistics it emits every 5 s. A
    dashboard polling the overview then costs one walk per interval, not one per request."""
    key = None if ctx.sees_all_vhosts() else ctx.user.name
    stamp = (ctx.state.rate_samples, ctx.broker.users.generation)
    cache: dict[str | None, tuple[Any, ...]] = ctx.request.app.state.overview_cache
    kept = cache.get(key)
    if kept is not None and kept[0] == stamp:
        return kept[1], kept[2], kept[3]
    unacked = sum(
        len(ch.unacked) + sum(len(taken) for taken, _ in ch.tx_acks)
        for c in connections
        for ch in c.channels.values()
    )
    ready = consumers = 0
    for vhost in vhosts:
        for queue in vhost.queues.values():
            ready += queue.message_count
            consumers += queue.consumer_count
    queue_totals = {
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    }
    counted = overview_message_stats(ctx)
    cache[key] = (stamp, consumers, queue_totals, counted)
    return consumers, queue_totals, counted


def listeners(ctx: Context) -> list[dict[str, Any]]:
    amqp = [("amqp", host, port) for host, port in ctx.state.listeners]
    amqp += [("amqp/ssl", host, port) for host, port in ctx.state.tls_listeners]
    return [
        {"node": NODE, "protocol": protocol, "ip_address": host, "port": port}
        for protocol, host, port in (*amqp, *ctx.state.service_listeners)
    ]


def overview_message_stats(ctx: Context) -> dict[str, Any]:
    """The broker's message counters and rates, or those of the user's vhosts."""
    if ctx.sees_all_vhosts():
        counted = overview_stats(ctx.state)
    else:
        counted = total(vhost_stats(ctx.state, v) for v in ctx.visible_vhosts())
    return message_stats(counted, "overview")


@endpoint()
async def get_overview(ctx: Context) -> dict[str, Any]:
    objects, queue_totals, counted = totals(ctx)
    answer: dict[str, Any] = {
        "management_version": RABBITMQ_API_VERSION,
        "rates_mode": "basic",
        "exchange_types": EXCHANGE_TYPES,
        "product_version": __version__,
        "product_name": "trimq",
        "rabbitmq_version": RABBITMQ_API_VERSION,
        "cluster_name": CLUSTER_NAME,
        "disable_stats": False,
        "enable_queue_totals": False,
        "message_stats": counted,
        "queue_totals": queue_totals,
        "object_totals": objects,
        "statistics_db_event_queue": 0,
    }
    if has_level(ctx.user, MONITORING):
        answer["node"] = NODE
        answer["listeners"] = listeners(ctx)
    return answer


@endpoint()
async def get_whoami(ctx: Context) -> dict[str, Any]:
    return {"name": ctx.user.name, "tags": list(ctx.user.tags)}


@endpoint()
async def get_cluster_name(ctx: Context) -> dict[str, Any]:
    return {"name": CLUSTER_NAME}


@endpoint()
async def get_extensions(ctx: Context) -> list[Any]:
    """The web UI's plugin scripts: trimq has none."""
    return []


async def get_auth(request: Request) -> Response:
    """What the web UI asks before login: no OAuth 2 (UAA) sign-in, basic auth only."""
    return JSONResponse({"enable_uaa": False, "uaa_client_id": "", "uaa_location": ""})


ROUTES = [
    route("/api/overview", GET=get_overview),
    route("/api/whoami", GET=get_whoami),
    route("/api/cluster-name", GET=get_cluster_name),
    route("/api/extensions", GET=get_extensions),
    Route("/api/auth", get_auth, methods=["GET"]),
]
