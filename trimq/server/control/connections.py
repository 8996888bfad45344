"""Closing client connections: one by name, or all (of a vhost, up to a limit)."""

from __future__ import annotations

from typing import Any

from trimq.admin_errors import AdminError, ErrorKind
from trimq.server import info
from trimq.server.control.arguments import arg_int, arg_str
from trimq.server.control.registry import command
from trimq.server.state import ServerState, close_connections


@command("close_connection")
async def _close_connection(state: ServerState, args: dict[str, Any]) -> Any:
    target = arg_str(args, "name")
    reason = arg_str(args, "reason", "")
    found = [
        c for c in state.connections if c.opened and target in (c.name, info.connection_pid(c))
    ]
    if not found:
        raise AdminError(ErrorKind.NOT_FOUND, f"connection '{target}' not found")
    await close_connections(found, reason or "Closed via trimqctl")
    return {}


@command("close_all_connections")
async def _close_all_connections(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = arg_str(args, "vhost", "") or None
    limit = arg_int(args, "limit", 0)
    reason = arg_str(args, "reason", "")
    found = [
        c
        for c in sorted(state.connections, key=lambda c: c.number)
        if c.opened and (vhost is None or c.vhost.name == vhost)
    ]
    if limit:
        found = found[:limit]
    await close_connections(found, reason or "Closed via trimqctl")
    return {"closed": len(found)}
