"""Virtual host limits (max-connections, max-queues): set, clear, list."""

from __future__ import annotations

import json
from typing import Any

from trimq.admin_errors import AdminError, ErrorKind
from trimq.server.control.arguments import REQUIRED, arg, arg_bool, arg_str
from trimq.server.control.registry import command
from trimq.server.state import ServerState


@command("set_vhost_limits")
async def _set_vhost_limits(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = arg_str(args, "vhost", "/")
    definition = arg(args, "definition", REQUIRED)
    state.broker.get_vhost(vhost)
    if isinstance(definition, str):
        definition = _json_argument(definition)
    state.broker.set_vhost_limits(vhost, definition)
    return {}


@command("clear_vhost_limits")
async def _clear_vhost_limits(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_vhost_limits(arg_str(args, "vhost", "/"))
    return {}


@command("list_vhost_limits")
async def _list_vhost_limits(state: ServerState, args: dict[str, Any]) -> Any:
    if arg_bool(args, "global"):
        vhosts = sorted(state.broker.vhosts.values(), key=lambda v: v.name)
    else:
        vhosts = [state.broker.get_vhost(arg_str(args, "vhost", "/"))]
    return [{"vhost": v.name, "limits": dict(v.limits)} for v in vhosts if v.limits is not None]


def _json_argument(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise AdminError(ErrorKind.ERROR, "JSON decoding error. Reason: badarg") from None
