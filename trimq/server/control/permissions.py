"""Permission requests: set, clear, list by vhost or by user."""

from __future__ import annotations

from typing import Any

from trimq.server.control.arguments import arg_str
from trimq.server.control.registry import command
from trimq.server.state import ServerState


@command("set_permissions")
async def _set_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.set_permissions(
        arg_str(args, "vhost", "/"),
        arg_str(args, "user"),
        arg_str(args, "configure"),
        arg_str(args, "write"),
        arg_str(args, "read"),
    )
    return {}


@command("clear_permissions")
async def _clear_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_permissions(arg_str(args, "vhost", "/"), arg_str(args, "user"))
    return {}


@command("list_permissions")
async def _list_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = state.broker.get_vhost(arg_str(args, "vhost", "/")).name
    return [
        {"user": user, "configure": p.configure, "write": p.write, "read": p.read}
        for (v, user), p in sorted(state.broker.users.permissions.items())
        if v == vhost
    ]


@command("list_user_permissions")
async def _list_user_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    user = state.broker.get_user(arg_str(args, "user")).name
    return [
        {"vhost": v, "configure": p.configure, "write": p.write, "read": p.read}
        for (v, u), p in sorted(state.broker.users.permissions.items())
        if u == user
    ]
