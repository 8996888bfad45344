"""/api/vhost-limits[/{vhost}[/{name}]]: per-vhost max-connections and max-queues. Lists for
every management user (the vhosts it may see); setting (always 204, as RabbitMQ) and clearing
one limit for administrators, with the broker's validation (the texts of trimqctl
set_vhost_limits)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from trimq.broker.broker import AdminError
from trimq.broker.vhost import VHost
from trimq.management.auth import ADMINISTRATOR
from trimq.management.context import Context
from trimq.management.errors import ApiError, bad_request
from trimq.management.routes import endpoint, no_content, route


def _rows(vhosts: list[VHost]) -> list[dict[str, Any]]:
    return [
        {"vhost": v.name, "value": dict(v.limits)}
        for v in sorted(vhosts, key=lambda v: v.name.encode())
        if v.limits
    ]


@endpoint()
async def list_limits(ctx: Context) -> Any:
    return _rows(ctx.visible_vhosts())


@endpoint()
async def vhost_limits(ctx: Context) -> Any:
    return _rows([ctx.accessible_vhost()])


@endpoint(ADMINISTRATOR)
async def put_limit(ctx: Context) -> Response:
    vhost = ctx.broker.vhosts.get(ctx.params["vhost"])
    if vhost is None:
        raise ApiError(404, "not_found", "vhost_not_found")
    body = await ctx.json()
    if "value" not in body:
        raise bad_request("[{key_missing,value}]")
    limits: dict[str, Any] = dict(vhost.limits or {})
    limits[ctx.params["name"]] = body["value"]
    try:
        ctx.broker.set_vhost_limits(vhost.name, limits)
    except AdminError as exc:
        raise bad_request(exc.message) from None
    return no_content()


@endpoint(ADMINISTRATOR)
async def delete_limit(ctx: Context) -> Response:
    vhost = ctx.vhost()
    limits = dict(vhost.limits or {})
    if limits.pop(ctx.params["name"], None) is not None:
        if limits:
            ctx.broker.set_vhost_limits(vhost.name, limits)
        else:
            ctx.broker.clear_vhost_limits(vhost.name)
    return no_content()


ROUTES = [
    route("/api/vhost-limits", GET=list_limits),
    route("/api/vhost-limits/{vhost}", GET=vhost_limits),
    route("/api/vhost-limits/{vhost}/{name}", PUT=put_limit, DELETE=delete_limit),
]
