"""/api/bindings: every binding (the default exchange's implicit ones first, as RabbitMQ lists
them), those between an exchange and a queue or another exchange, creating one (201 with a
Location naming its properties_key) and reading or deleting one by its properties_key.

A properties_key is the routing key, percent-encoded as RabbitMQ encodes it (`a%2Fb+c%25`;
`~` when empty), followed for a binding with arguments by `~` and a short hash of them.
Clients only read it back from lists and Location headers, so the hash is trimq's own.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

from starlette.responses import Response

from trimq.broker.exchange import Binding, Exchange
from trimq.broker.queue import Queue
from trimq.broker.vhost import VHost
from trimq.errors import AMQPError
from trimq.management.amqp_ops import (
    http_error,
    json_table,
    permit,
    plain_table,
    vhost_for,
)
from trimq.management.context import Context
from trimq.management.errors import not_authorised, not_found
from trimq.management.lists import respond_list
from trimq.management.routes import endpoint, no_content, route


def _quoted(routing_key: str) -> str:
    """RabbitMQ's quoting of a routing key in a properties_key: only letters, digits and
    `-_.` stay as they are, a space is `+` (so `~` never appears in it)."""
    return quote_plus(routing_key, safe="").replace("~", "%7E")


def _arguments_hash(arguments: dict[str, Any]) -> str:
    canonical = json.dumps(plain_table(arguments), sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).digest()[:4]
    return base64.urlsafe_b64encode(digest).decode()[:6]


def properties_key(routing_key: str, arguments: dict[str, Any]) -> str:
    if not arguments:
        return _quoted(routing_key) if routing_key else "~"
    return f"{_quoted(routing_key)}~{_arguments_hash(arguments)}"


def names_binding(key: str, binding: Binding) -> bool:
    """Whether a properties_key from a path names `binding`. As RabbitMQ, the routing key
    part is unquoted first, so `orders.*` names the key RabbitMQ writes `orders.%2A`."""
    quoted, _, digest = key.partition("~")
    if unquote_plus(quoted) != binding.routing_key:
        return False
    return digest == (_arguments_hash(binding.arguments) if binding.arguments else "")


def render(vhost: str, source: str, binding: Binding) -> dict[str, Any]:
    destination = binding.destination
    return {
        "source": source,
        "vhost": vhost,
        "destination": destination.name,
        "destination_type": "exchange" if isinstance(destination, Exchange) else "queue",
        "routing_key": binding.routing_key,
        "arguments": plain_table(binding.arguments),
        "properties_key": properties_key(binding.routing_key, binding.arguments),
    }


def default_binding(queue: Queue) -> dict[str, Any]:
    """The implicit binding of every queue to the default exchange, by its name."""
    return {
        "source": "",
        "vhost": queue.vhost,
        "destination": queue.name,
        "destination_type": "queue",
        "routing_key": queue.name,
        "arguments": {},
        "properties_key": _quoted(queue.name) or "~",
    }


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        rows,
        key=lambda r: (
            r["source"],
            r["destination_type"],
            r["destination"],
            r["routing_key"],
            r["properties_key"],
        ),
    )


def vhost_bindings(vhost: VHost) -> list[dict[str, Any]]:
    implicit = [default_binding(q) for q in sorted(vhost.queues.values(), key=lambda q: q.name)]
    explicit = [
        render(vhost.name, exchange.name, binding)
        for exchange in vhost.exchanges.values()
        for binding in exchange.bindings.values()
    ]
    return implicit + _sorted(explicit)


def queue_bindings(vhost: VHost, queue: Queue) -> list[dict[str, Any]]:
    explicit = [render(vhost.name, src.name, b) for src, b in queue.bound_by.values()]
    return [default_binding(queue), *_sorted(explicit)]


def source_bindings(vhost: VHost, exchange: Exchange) -> list[dict[str, Any]]:
    return _sorted([render(vhost.name, exchange.name, b) for b in exchange.bindings.values()])


def destination_bindings(vhost: VHost, exchange: Exchange) -> list[dict[str, Any]]:
    return _sorted([render(vhost.name, src.name, b) for src, b in exchange.bound_by.values()])


# -- endpoints ---------------------------------------------------------------------------------


def _kind(ctx: Context) -> str:
    """The destination's kind in the path: q (a queue) or e (an exchange), else 404."""
    kind = ctx.params["kind"]
    if kind not in ("q", "e"):
        raise not_found()
    return "queue" if kind == "q" else "exchange"


def _pair(ctx: Context) -> tuple[VHost, Exchange | None, Queue | Exchange | None]:
    """The source exchange and the destination named by the path (None where missing)."""
    vhost = vhost_for(ctx)
    _kind(ctx)
    source = vhost.exchanges.get(ctx.params["source"]) if ctx.params["source"] != "" else None
    name = ctx.params["destination"]
    destination: Queue | Exchange | None = (
        vhost.queues.get(name) if ctx.params["kind"] == "q" else vhost.exchanges.get(name)
    )
    return vhost, source, destination


def _between(source: Exchange | None, destination: Queue | Exchange | None) -> Iterator[Binding]:
    if source is None or destination is None:
        return
    for binding in source.bindings.values():
        if binding.destination is destination:
            yield binding


def _one(ctx: Context) -> tuple[VHost, Exchange, Binding]:
    vhost, source, destination = _pair(ctx)
    wanted = ctx.params["props"]
    for binding in _between(source, destination):
        if names_binding(wanted, binding):
            assert source is not None
            return vhost, source, binding
    raise not_found()


def _list(ctx: Context, rows: list[dict[str, Any]]) -> Any:
    return respond_list(
        ctx.request.query_params,
        rows,
        lambda row: row,
        name=lambda row: str(row["destination"]),
        default_sort=(),
    )


@endpoint()
async def list_bindings(ctx: Context) -> Any:
    rows = [row for vhost in ctx.visible_vhosts() for row in vhost_bindings(vhost)]
    return _list(ctx, rows)


@endpoint()
async def list_vhost_bindings(ctx: Context) -> Any:
    return _list(ctx, vhost_bindings(vhost_for(ctx)))


@endpoint()
async def list_pair(ctx: Context) -> Any:
    vhost, source, destination = _pair(ctx)
    return _sorted([render(vhost.name, b.source, b) for b in _between(source, destination)])


@endpoint()
async def create_binding(ctx: Context) -> Response:
    vhost = vhost_for(ctx)
    body = await ctx.json()
    source_name = ctx.params["source"]
    kind = _kind(ctx)
    destination_name = ctx.params["destination"]
    if source_name in ("", "amq.default"):
        raise not_authorised("Access refused.")
    routing_key = body.get("routing_key", "")
    if not isinstance(routing_key, str):
        routing_key = str(routing_key)
    arguments = json_table(body.get("arguments"))
    permit(ctx, vhost.name, "write", destination_name)
    permit(ctx, vhost.name, "read", source_name)
    try:
        source = vhost.get_exchange(source_name)
        destination: Queue | Exchange = (
            vhost.get_queue(destination_name)
            if kind == "queue"
            else vhost.get_exchange(destination_name)
        )
        vhost.bind(source, destination, routing_key, arguments)
    except AMQPError as exc:
        raise http_error(exc) from None
    key = properties_key(routing_key, arguments)
    location = f"{quote(destination_name, safe='')}/{quote(key, safe='')}"
    return Response(status_code=201, headers={"location": location})


@endpoint()
async def get_binding(ctx: Context) -> Any:
    vhost, source, binding = _one(ctx)
    return render(vhost.name, source.name, binding)


@endpoint()
async def delete_binding(ctx: Context) -> Response:
    vhost, source, binding = _one(ctx)
    permit(ctx, vhost.name, "write", binding.destination.name)
    permit(ctx, vhost.name, "read", source.name)
    try:
        vhost.unbind(source, binding.destination, binding.routing_key, binding.arguments)
    except AMQPError as exc:
        raise http_error(exc) from None
    return no_content()


PAIR = "/api/bindings/{vhost}/e/{source}/{kind}/{destination}"

ROUTES = [
    route("/api/bindings", GET=list_bindings),
    route("/api/bindings/{vhost}", GET=list_vhost_bindings),
    route(PAIR, GET=list_pair, POST=create_binding),
    route(PAIR + "/{props}", GET=get_binding, DELETE=delete_binding),
]
