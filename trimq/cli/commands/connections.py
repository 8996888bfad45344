"""Closing client connections: close_connection, close_all_connections."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trimq.admin_errors import ErrorKind
from trimq.cli.commands.base import Command, Context, Section, default_error, register
from trimq.cli.control_client import BrokerError


def run_close_connection(ctx: Context) -> int:
    try:
        ctx.call("close_connection", {"name": ctx.args[0], "reason": ctx.args[1]})
    except BrokerError as exc:
        # rabbitmqctl: closing an unknown connection is a no-op
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise default_error(ctx, exc) from None
    return ctx.ok()


register(
    Command(
        "close_connection",
        "close_connection <connection pid> <explanation>",
        "Instructs the broker to close the connection associated with the process id",
        Section.OPERATIONS,
        run_close_connection,
        min_args=2,
        max_args=2,
        usage_additional=[
            ("<connection pid>", "connection identifier (its pid or name), see list_connections"),
            ("<explanation>", "reason for connection closure"),
        ],
        banner=lambda args, opts: [f"Closing connection {args[0]}, reason: {args[1]}..."],
    )
)


def run_close_all_connections(ctx: Context) -> int:
    request: dict[str, Any] = {"reason": ctx.args[0], "limit": int(ctx.opts.get("limit", 0))}
    if not ctx.opts.get("global"):
        request["vhost"] = ctx.vhost
    try:
        result = ctx.call("close_all_connections", request)
    except BrokerError as exc:
        if exc.kind is not ErrorKind.VHOST_NOT_FOUND:
            raise default_error(ctx, exc) from None
        result = {"closed": 0}
    closed = result.get("closed", 0) if isinstance(result, Mapping) else 0
    return ctx.message(f"Closed {closed} connections")


def close_all_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    reason = args[0]
    if opts.get("global"):
        return [
            f"Closing all connections to node {opts.get('node', '')} (across all vhosts), "
            f"reason: {reason}..."
        ]
    vhost = opts.get("vhost", "/")
    limit = opts.get("limit", 0)
    if not limit:
        return [f"Closing all connections in vhost {vhost}, reason: {reason}..."]
    return [f"Closing {limit} connections in vhost {vhost}, reason: {reason}..."]


register(
    Command(
        "close_all_connections",
        "close_all_connections [--vhost <vhost> --limit <limit>] [-n <node> --global] "
        "[--per-connection-delay <delay>] <explanation>",
        "Instructs the broker to close all connections for the specified vhost or entire trimq "
        "node",
        Section.OPERATIONS,
        run_close_all_connections,
        min_args=1,
        max_args=1,
        switches={"global": "boolean", "per_connection_delay": "integer", "limit": "integer"},
        usage_additional=[
            ("--global", "consider connections across all virtual hosts"),
            ("--limit <number>", "close up to this many connections"),
            ("--per-connection-delay <milliseconds>", "inject a delay between closures"),
        ],
        banner=close_all_banner,
    )
)
