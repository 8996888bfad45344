"""/api/topic-permissions, /api/topic-permissions/{vhost}/{user}, and the per-user and
per-vhost lists (administrators only). A PUT sets the user's permissions on one exchange
(201 if the user had none in the vhost, else 204); DELETE clears all of them in the vhost."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from trimq.broker.broker import AdminError
from trimq.management.auth import ADMINISTRATOR
from trimq.management.context import Context
from trimq.management.errors import bad_request, not_found
from trimq.management.lists import respond_list
from trimq.management.routes import created, endpoint, no_content, route

Entry = tuple[tuple[str, str, str], tuple[str, str]]


def render(entry: Entry) -> dict[str, Any]:
    (vhost, user, exchange), (write, read) = entry
    return {"user": user, "vhost": vhost, "exchange": exchange, "write": write, "read": read}


def _answer(ctx: Context, entries: list[Entry]) -> Any:
    return respond_list(
        ctx.request.query_params,
        entries,
        render,
        name=lambda e: e[0][1],
        keys={
            "user": lambda e: e[0][1],
            "vhost": lambda e: e[0][0],
            "exchange": lambda e: e[0][2],
        },
        default_sort=("vhost", "user", "exchange"),
    )


def _all(ctx: Context) -> list[Entry]:
    return list(ctx.broker.users.topic_permissions.items())


@endpoint(ADMINISTRATOR)
async def list_all(ctx: Context) -> Any:
    return _answer(ctx, _all(ctx))


@endpoint(ADMINISTRATOR)
async def of_user(ctx: Context) -> Any:
    user = ctx.params["user"]
    if user not in ctx.broker.users.users:
        raise not_found()
    return _answer(ctx, [e for e in _all(ctx) if e[0][1] == user])


@endpoint(ADMINISTRATOR)
async def of_vhost(ctx: Context) -> Any:
    vhost = ctx.vhost().name
    return _answer(ctx, [e for e in _all(ctx) if e[0][0] == vhost])


@endpoint(ADMINISTRATOR)
async def of_user_in_vhost(ctx: Context) -> Any:
    vhost, user = ctx.params["vhost"], ctx.params["user"]
    found = [e for e in _all(ctx) if e[0][0] == vhost and e[0][1] == user]
    if not found:
        raise not_found()
    return _answer(ctx, found)


@endpoint(ADMINISTRATOR)
async def put_topic_permission(ctx: Context) -> Response:
    body = await ctx.json()
    for key in ("exchange", "write", "read"):
        if key not in body:
            raise bad_request(f"[{{key_missing,{key}}}]")
    vhost, user = ctx.params["vhost"], ctx.params["user"]
    if vhost not in ctx.broker.vhosts or user not in ctx.broker.users.users:
        raise bad_request("vhost_or_user_not_found")
    if not all(isinstance(body[k], str) for k in ("exchange", "write", "read")):
        raise bad_request("exchange, write and read must be strings")
    had = any(k[0] == vhost and k[1] == user for k in ctx.broker.users.topic_permissions)
    try:
        ctx.broker.set_topic_permissions(vhost, user, body["exchange"], body["write"], body["read"])
    except AdminError as exc:
        raise bad_request(exc.message) from None
    return no_content() if had else created()


@endpoint(ADMINISTRATOR)
async def delete_topic_permissions(ctx: Context) -> Response:
    vhost, user = ctx.params["vhost"], ctx.params["user"]
    if vhost not in ctx.broker.vhosts or user not in ctx.broker.users.users:
        raise not_found()
    if not ctx.broker.clear_topic_permissions(vhost, user):
        raise not_found()
    return no_content()


ROUTES = [
    route("/api/topic-permissions", GET=list_all),
    route(
        "/api/topic-permissions/{vhost}/{user}",
        GET=of_user_in_vhost,
        PUT=put_topic_permission,
        DELETE=delete_topic_permissions,
    ),
    route("/api/users/{user}/topic-permissions", GET=of_user),
    route("/api/vhosts/{vhost}/topic-permissions", GET=of_vhost),
]
