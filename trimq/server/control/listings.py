"""The info-item listings (list_queues, list_exchanges...), rows from trimq.server.info."""

from __future__ import annotations

from typing import Any

from trimq.info_items import BINDING_ITEMS, CONSUMER_ITEMS
from trimq.server import info
from trimq.server.control.arguments import info_items, vhost_arg
from trimq.server.control.registry import command
from trimq.server.state import ServerState


@command("list_queues")
async def _list_queues(state: ServerState, args: dict[str, Any]) -> Any:
    items = info_items(args, "queues") or ["name", "messages"]
    return info.select(info.queue_rows(state, vhost_arg(state, args)), items)


@command("list_exchanges")
async def _list_exchanges(state: ServerState, args: dict[str, Any]) -> Any:
    items = info_items(args, "exchanges") or ["name", "type"]
    return info.select(info.exchange_rows(vhost_arg(state, args)), items)


@command("list_bindings")
async def _list_bindings(state: ServerState, args: dict[str, Any]) -> Any:
    items = info_items(args, "bindings") or BINDING_ITEMS
    return info.select(info.binding_rows(vhost_arg(state, args)), items)


@command("list_connections")
async def _list_connections(state: ServerState, args: dict[str, Any]) -> Any:
    items = info_items(args, "connections") or ["user", "peer_host", "peer_port", "state"]
    return info.select(info.connection_rows(state), items)


@command("list_channels")
async def _list_channels(state: ServerState, args: dict[str, Any]) -> Any:
    items = info_items(args, "channels") or [
        "pid",
        "user",
        "consumer_count",
        "messages_unacknowledged",
    ]
    return info.select(info.channel_rows(state), items)


@command("list_consumers")
async def _list_consumers(state: ServerState, args: dict[str, Any]) -> Any:
    items = info_items(args, "consumers") or [*CONSUMER_ITEMS[:6], "arguments"]
    return info.select(info.consumer_rows(state, vhost_arg(state, args)), items)
