"""Definitions export and import (the JSON documents of rabbitmqctl's commands)."""

from __future__ import annotations

from typing import Any

from trimq.broker.definitions import export_definitions, import_definitions
from trimq.server.control.arguments import REQUIRED, arg
from trimq.server.control.registry import command
from trimq.server.state import ServerState


@command("export_definitions")
async def _export_definitions(state: ServerState, args: dict[str, Any]) -> Any:
    return export_definitions(state.broker)


@command("import_definitions")
async def _import_definitions(state: ServerState, args: dict[str, Any]) -> Any:
    import_definitions(state.broker, arg(args, "definitions", REQUIRED))
    return {}
