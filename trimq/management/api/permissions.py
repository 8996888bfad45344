"""/api/permissions, /api/permissions/{vhost}/{user}, /api/users/{user}/permissions and
/api/vhosts/{vhost}/permissions (administrators only)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from trimq.broker.auth import Permission
from trimq.broker.broker import AdminError
from trimq.management.auth import ADMINISTRATOR
from trimq.management.context import Context
from trimq.management.errors import bad_request, not_found
from trimq.management.lists import respond_list
from trimq.management.routes import created, endpoint, no_content, route

Entry = tuple[tuple[str, str], Permission]


def render(entry: Entry) -> dict[str, Any]:
    (vhost, user), permission = entry
    return {
        "user": user,
        "vhost": vhost,
        "configure": permission.configure,
        "write": permission.write,
        "read": permission.read,
    }


def _answer(ctx: Context, entries: list[Entry]) -> Any:
    return respond_list(
        ctx.request.query_params,
        entries,
        render,
        name=lambda e: e[0][1],
        keys={"user": lambda e: e[0][1], "vhost": lambda e: e[0][0]},
        default_sort=("vhost", "user"),
    )


@endpoint(ADMINISTRATOR)
async def list_permissions(ctx: Context) -> Any:
    return _answer(ctx, list(ctx.broker.users.permissions.items()))


@endpoint(ADMINISTRATOR)
async def user_permissions(ctx: Context) -> Any:
    user = ctx.params["user"]
    if user not in ctx.broker.users.users:
        raise not_found()
    return _answer(ctx, [e for e in ctx.broker.users.permissions.items() if e[0][1] == user])


@endpoint(ADMINISTRATOR)
async def vhost_permissions(ctx: Context) -> Any:
    vhost = ctx.vhost().name
    return _answer(ctx, [e for e in ctx.broker.users.permissions.items() if e[0][0] == vhost])


def _key(ctx: Context) -> tuple[str, str]:
    return (ctx.params["vhost"], ctx.params["user"])


@endpoint(ADMINISTRATOR)
async def get_permission(ctx: Context) -> Any:
    permission = ctx.broker.users.permissions.get(_key(ctx))
    if permission is None:
        raise not_found()
    return render((_key(ctx), permission))


@endpoint(ADMINISTRATOR)
async def put_permission(ctx: Context) -> Response:
    body = await ctx.json()
    missing = [k for k in ("configure", "write", "read") if k not in body]
    if missing:
        raise bad_request(f"[{{key_missing,{missing[0]}}}]")
    vhost, user = _key(ctx)
    if vhost not in ctx.broker.vhosts or user not in ctx.broker.users.users:
        raise bad_request("vhost_or_user_not_found")
    exists = (vhost, user) in ctx.broker.users.permissions
    try:
        ctx.broker.set_permissions(vhost, user, body["configure"], body["write"], body["read"])
    except AdminError as exc:
        raise bad_request(exc.message) from None
    return no_content() if exists else created()


@endpoint(ADMINISTRATOR)
async def delete_permission(ctx: Context) -> Response:
    vhost, user = _key(ctx)
    if (vhost, user) not in ctx.broker.users.permissions:
        raise not_found()
    ctx.broker.clear_permissions(vhost, user)
    return no_content()


ROUTES = [
    route("/api/permissions", GET=list_permissions),
    route(
        "/api/permissions/{vhost}/{user}",
        GET=get_permission,
        PUT=put_permission,
        DELETE=delete_permission,
    ),
    route("/api/users/{user}/permissions", GET=user_permissions),
    route("/api/vhosts/{vhost}/permissions", GET=vhost_permissions),
]
