"""Policy requests: set, clear, list."""

from __future__ import annotations

import json
from typing import Any

from trimq.admin_errors import AdminError, ErrorKind
from trimq.server.control.arguments import REQUIRED, arg, arg_int, arg_str, vhost_arg
from trimq.server.control.registry import command
from trimq.server.state import ServerState


@command("set_policy")
async def _set_policy(state: ServerState, args: dict[str, Any]) -> Any:
    definition = arg(args, "definition", REQUIRED)
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except (ValueError, RecursionError):
            raise AdminError(ErrorKind.USAGE, "JSON decoding error. Reason: badarg") from None
    state.broker.set_policy(
        arg_str(args, "vhost", "/"),
        arg_str(args, "name"),
        arg_str(args, "pattern"),
        definition,
        arg_int(args, "priority", 0, low=-(2**63)),
        arg_str(args, "apply_to", "all"),
    )
    return {}


@command("clear_policy")
async def _clear_policy(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_policy(arg_str(args, "vhost", "/"), arg_str(args, "name"))
    return {}


@command("list_policies")
async def _list_policies(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = vhost_arg(state, args)
    return [
        {
            "vhost": vhost.name,
            "name": p.name,
            "pattern": p.pattern,
            "apply-to": p.apply_to,
            "definition": json.dumps(p.definition, separators=(",", ":")),
            "priority": p.priority,
        }
        for p in sorted(vhost.policies.values(), key=lambda p: p.name)
    ]
