"""User requests: add, delete, passwords, authentication, tags, listing."""

from __future__ import annotations

from typing import Any

from trimq.admin_errors import AdminError, ErrorKind
from trimq.server.control.arguments import arg_str, arg_strings
from trimq.server.control.registry import command
from trimq.server.state import ServerState


@command("add_user")
async def _add_user(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.add_user(arg_str(args, "user"), arg_str(args, "password"))
    return {}


@command("delete_user")
async def _delete_user(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.delete_user(arg_str(args, "user"))
    return {}


@command("change_password")
async def _change_password(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.change_password(arg_str(args, "user"), arg_str(args, "password"))
    return {}


@command("clear_password")
async def _clear_password(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_password(arg_str(args, "user"))
    return {}


@command("authenticate_user")
async def _authenticate_user(state: ServerState, args: dict[str, Any]) -> Any:
    name = arg_str(args, "user")
    if state.broker.users.authenticate(name, arg_str(args, "password")) is None:
        raise AdminError(ErrorKind.AUTH_FAILED, f"user '{name}' - invalid credentials")
    return {}


@command("set_user_tags")
async def _set_user_tags(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.set_user_tags(arg_str(args, "user"), arg_strings(args, "tags"))
    return {}


@command("list_users")
async def _list_users(state: ServerState, args: dict[str, Any]) -> Any:
    users = sorted(state.broker.users.users.values(), key=lambda u: u.name)
    return [{"user": u.name, "tags": list(u.tags)} for u in users]
