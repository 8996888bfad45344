"""Permission and topic permission requests: set, clear, list by vhost or by user."""

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


# -- topic permissions: the broker's store, as the management API and definitions use it -------


@command("set_topic_permissions")
async def _set_topic_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.set_topic_permissions(
        arg_str(args, "vhost", "/"),
        arg_str(args, "user"),
        arg_str(args, "exchange"),
        arg_str(args, "write"),
        arg_str(args, "read"),
    )
    return {}


@command("clear_topic_permissions")
async def _clear_topic_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    exchange = args.get("exchange")
    state.broker.clear_topic_permissions(
        arg_str(args, "vhost", "/"),
        arg_str(args, "user"),
        arg_str(args, "exchange") if exchange is not None else None,
    )
    return {}


@command("list_topic_permissions")
async def _list_topic_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = state.broker.get_vhost(arg_str(args, "vhost", "/")).name
    return [
        {"user": user, "exchange": exchange, "write": write, "read": read}
        for (v, user, exchange), (write, read) in sorted(
            state.broker.users.topic_permissions.items()
        )
        if v == vhost
    ]


@command("list_user_topic_permissions")
async def _list_user_topic_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    user = state.broker.get_user(arg_str(args, "user")).name
    return [
        {"vhost": vhost, "exchange": exchange, "write": write, "read": read}
        for (vhost, u, exchange), (write, read) in sorted(
            state.broker.users.topic_permissions.items()
        )
        if u == user
    ]
