"""Virtual host requests: add, delete (closing its connections first), list."""

from __future__ import annotations

from typing import Any

from trimq.server import info
from trimq.server.control.arguments import arg_str, arg_strings, info_items
from trimq.server.control.registry import command
from trimq.server.state import ServerState, close_connections


@command("add_vhost")
async def _add_vhost(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.add_vhost(
        arg_str(args, "vhost"), arg_str(args, "description", ""), arg_strings(args, "tags")
    )
    return {}


@command("delete_vhost")
async def _delete_vhost(state: ServerState, args: dict[str, Any]) -> Any:
    name = arg_str(args, "vhost")
    state.broker.get_vhost(name)
    inside = [c for c in state.connections if c.opened and c.vhost.name == name]
    await close_connections(inside, f"vhost '{name}' is deleted")
    state.broker.delete_vhost(name)
    return {}


@command("list_vhosts")
async def _list_vhosts(state: ServerState, args: dict[str, Any]) -> Any:
    items = info_items(args, "vhosts") or ["name"]
    return info.select(info.vhost_rows(state), items)
