"""/api/queues: list (every visible vhost, one vhost, and `/api/queues//` as the vhost `/`,
which Celery's default broker URL makes Flower ask for), one queue (GET, PUT with RabbitMQ's
201/204, DELETE with if-empty/if-unused), purge (DELETE .../contents), get (POST .../get),
a queue's bindings, and trimq's own peek (GET .../messages, nothing is taken).

A list renders only the page asked for: counts come from counters the queues keep
(queue_figures: ready, unacked and persistent counts and bytes), never from walking their
messages. message_stats are added
by the metrics module where it keeps them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from starlette.responses import Response

from trimq.broker.deletion import DeletionRefused, check_deletable
from trimq.broker.queue import Queue
from trimq.broker.queue_figures import head_timestamp, message_figures
from trimq.broker.vhost import VHost
from trimq.errors import AMQPError
from trimq.management.amqp_ops import (
    VHOST_NOT_FOUND,
    http_error,
    json_table,
    permit,
    plain_table,
    timestamp,
    vhost_for,
)
from trimq.management.api.bindings import queue_bindings
from trimq.management.api.connections import render_consumer
from trimq.management.api.get import get_messages
from trimq.management.context import Context, as_bool, as_int
from trimq.management.errors import ApiError, bad_request, not_authorised, not_found
from trimq.management.lists import respond_list
from trimq.management.message_stats import with_message_stats
from trimq.management.routes import created, endpoint, no_content, route
from trimq.server.info import NODE
from trimq.server.peeking import peek_queue

PEEK_DEFAULT_COUNT = 100


def render_queue(queue: Queue) -> dict[str, Any]:
    consumers = queue.consumers
    settings = queue.settings
    exclusive_consumer = next((c.tag for c in consumers if c.exclusive), None)
    idle = time.time() - (time.monotonic() - queue.last_used)
    answer: dict[str, Any] = {
        "arguments": plain_table(queue.arguments),
        "auto_delete": queue.auto_delete,
        "consumer_capacity": 1.0 if consumers else 0,
        "consumer_utilisation": 1.0 if consumers else 0,  # consumers never wait in trimq
        "consumers": len(consumers),
        "durable": queue.durable,
        "effective_policy_definition": dict(queue.policy.definition) if queue.policy else {},
        "exclusive": queue.exclusive,
        "exclusive_consumer_tag": exclusive_consumer,
        "head_message_timestamp": head_timestamp(queue),
        "idle_since": timestamp(idle),
        **message_figures(queue),
        "name": queue.name,
        "node": NODE,
        "operator_policy": None,
        "policy": queue.policy.name if queue.policy else None,
        "recoverable_slaves": None,
        "single_active_consumer_tag": (
            consumers[0].tag if settings.single_active_consumer and consumers else None
        ),
        "state": "running",
        "type": "classic",
        "vhost": queue.vhost,
    }
    return with_message_stats(answer, queue.counters(), "queue")


def _visible_queues(ctx: Context, vhosts: list[VHost]) -> Iterator[Queue]:
    for vhost in vhosts:
        yield from vhost.queues.values()


def _list(ctx: Context, vhosts: list[VHost]) -> Any:
    return respond_list(
        ctx.request.query_params,
        _visible_queues(ctx, vhosts),
        render_queue,
        name=lambda q: q.name,
        keys={"vhost": lambda q: q.vhost, "messages": lambda q: len(q.ready) + q.unacked},
        default_sort=("vhost", "name"),
    )


def _queue(ctx: Context) -> tuple[VHost, Queue]:
    vhost = vhost_for(ctx)
    queue = vhost.queues.get(ctx.params["name"])
    if queue is None:
        raise not_found()
    return vhost, queue


@endpoint()
async def list_queues(ctx: Context) -> Any:
    return _list(ctx, ctx.visible_vhosts())


@endpoint()
async def list_vhost_queues(ctx: Context) -> Any:
    return _list(ctx, [vhost_for(ctx)])


@endpoint()
async def list_default_vhost_queues(ctx: Context) -> Any:
    """`/api/queues//`: Celery's broker URL `amqp://host//` names the vhost `/`."""
    return _list(ctx, [vhost_for(ctx, "/")])


@endpoint()
async def get_queue(ctx: Context) -> Any:
    queue = _queue(ctx)[1]
    return {
        **render_queue(queue),
        "consumer_details": [render_consumer(c) for c in queue.consumers],
        "deliveries": [],
        "incoming": [],
    }


@endpoint()
async def put_queue(ctx: Context) -> Response:
    vhost = vhost_for(ctx, missing=VHOST_NOT_FOUND)
    name = ctx.params["name"]
    body = await ctx.json()
    permit(ctx, vhost.name, "configure", name)
    try:
        made = vhost.declare_queue(
            name,
            None,
            durable=as_bool(body.get("durable")),
            auto_delete=as_bool(body.get("auto_delete")),
            arguments=json_table(body.get("arguments")),
        )[1]
    except AMQPError as exc:
        raise http_error(exc) from None
    return created() if made else no_content()


@endpoint()
async def delete_queue(ctx: Context) -> Response:
    vhost, queue = _queue(ctx)
    permit(ctx, vhost.name, "configure", queue.name)
    try:  # the rule Queue.Delete and trimqctl delete_queue follow
        check_deletable(queue, as_bool(ctx.query("if-unused")), as_bool(ctx.query("if-empty")))
    except DeletionRefused as refused:
        raise bad_request(f"{vhost.describe('queue', queue.name)} {refused.refusal}") from None
    vhost.delete_queue(queue)
    return no_content()


@endpoint()
async def purge_queue(ctx: Context) -> Response:
    vhost, queue = _queue(ctx)
    permit(ctx, vhost.name, "read", queue.name)
    queue.purge()
    return no_content()


@endpoint()
async def get_from_queue(ctx: Context) -> Any:
    # as a publish: a vhost that does not exist is refused as one not permitted
    vhost = vhost_for(ctx, missing=not_authorised("Access refused."))
    name = ctx.params["name"]
    body = await ctx.json()
    queue = vhost.queues.get(name)
    if queue is None:
        raise ApiError(404, "not_found", f"NOT_FOUND - no queue '{name}' in vhost '{vhost.name}'")
    if not ctx.broker.users.allowed(vhost.name, ctx.user.name, "read", name):
        raise not_authorised(
            f"ACCESS_REFUSED - access to queue '{name}' in vhost '{vhost.name}' refused for "
            f"user '{ctx.user.name}'"
        )
    return get_messages(queue, body, ctx.broker.totals.direct)


@endpoint()
async def peek_messages(ctx: Context) -> Any:
    vhost, queue = _queue(ctx)
    permit(ctx, vhost.name, "read", queue.name)
    state = ctx.query("state") or "ready"
    if state not in ("ready", "unacked"):
        raise bad_request("state must be ready or unacked")
    offset = as_int(ctx.query("offset") or 0, "offset")
    count = as_int(ctx.query("count") or PEEK_DEFAULT_COUNT, "count")
    if offset < 0 or not 1 <= count <= 10_000:
        raise bad_request("offset must be 0 or more and count from 1 to 10000")
    encoding = ctx.query("encoding") or "auto"
    if encoding not in ("auto", "base64"):
        raise bad_request("Unsupported encoding. Please use auto or base64.")
    truncate_text = ctx.query("truncate")
    truncate = as_int(truncate_text, "truncate") if truncate_text else None
    return peek_queue(
        ctx.state, vhost, queue, offset, count, state == "unacked", encoding, truncate
    )


@endpoint()
async def bindings_of_queue(ctx: Context) -> Any:
    vhost, queue = _queue(ctx)
    return queue_bindings(vhost, queue)


ROUTES = [
    route("/api/queues", GET=list_queues),
    route("/api/queues//", GET=list_default_vhost_queues),
    route("/api/queues/{vhost}", GET=list_vhost_queues),
    route("/api/queues/{vhost}/{name}", GET=get_queue, PUT=put_queue, DELETE=delete_queue),
    route("/api/queues/{vhost}/{name}/contents", DELETE=purge_queue),
    route("/api/queues/{vhost}/{name}/get", POST=get_from_queue),
    route("/api/queues/{vhost}/{name}/messages", GET=peek_messages),
    route("/api/queues/{vhost}/{name}/bindings", GET=bindings_of_queue),
]
