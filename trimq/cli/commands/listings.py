"""The node's entities, with the columns asked for: list_queues, list_exchanges,
list_bindings, list_connections, list_channels, list_consumers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from trimq.cli.commands.base import Context, register
from trimq.cli.commands.rows import (
    info_list_command,
    print_rows,
    requested_items,
    run_info_list,
)
from trimq.cli.output import timeout_seconds
from trimq.info_items import (
    BINDING_ITEMS,
    CHANNEL_ITEMS,
    CONNECTION_ITEMS,
    CONSUMER_ITEMS,
    EXCHANGE_ITEMS,
    QUEUE_ITEMS,
)

run_in_vhost = partial(run_info_list, in_vhost=True)


def run_list_queues(ctx: Context) -> int:
    if ctx.opts.get("offline") and not ctx.opts.get("online"):
        return print_rows(ctx, [], requested_items(ctx))  # trimq's queues are all online
    return run_in_vhost(ctx)


def list_queues_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    return [
        f"Timeout: {timeout_seconds(opts['timeout'])} seconds ...",
        f"Listing queues for vhost {opts.get('vhost', '/')} ...",
    ]


register(
    info_list_command(
        "list_queues",
        "list_queues [--vhost <vhost>] [--online] [--offline] [--local] [--no-table-headers] "
        "[<column>, ...]",
        "Lists queues and their properties",
        QUEUE_ITEMS,
        ["name", "messages"],
        run_list_queues,
        switches={"offline": "boolean", "online": "boolean", "local": "boolean"},
        banner=list_queues_banner,
    )
)

register(
    info_list_command(
        "list_exchanges",
        "list_exchanges [--vhost <vhost>] [--no-table-headers] [<column> ...]",
        "Lists exchanges",
        EXCHANGE_ITEMS,
        ["name", "type"],
        run_in_vhost,
        banner=lambda args, opts: [f"Listing exchanges for vhost {opts.get('vhost', '/')} ..."],
    )
)

register(
    info_list_command(
        "list_bindings",
        "list_bindings [--vhost <vhost>] [--no-table-headers] [<column> ...]",
        "Lists all bindings on a vhost",
        BINDING_ITEMS,
        BINDING_ITEMS,
        run_in_vhost,
        banner=lambda args, opts: [f"Listing bindings for vhost {opts.get('vhost', '/')}..."],
    )
)

register(
    info_list_command(
        "list_connections",
        "list_connections [--no-table-headers] [<column> ...]",
        "Lists AMQP 0.9.1 connections for the node",
        CONNECTION_ITEMS,
        ["user", "peer_host", "peer_port", "state"],
        run_info_list,
        banner=lambda args, opts: ["Listing connections ..."],
    )
)

register(
    info_list_command(
        "list_channels",
        "list_channels [--no-table-headers] [<column> ...]",
        "Lists all channels in the node",
        CHANNEL_ITEMS,
        ["pid", "user", "consumer_count", "messages_unacknowledged"],
        run_info_list,
        banner=lambda args, opts: ["Listing channels ..."],
    )
)

register(
    info_list_command(
        "list_consumers",
        "list_consumers [--vhost <vhost>] [--no-table-headers] [<column> ...]",
        "Lists all consumers for a vhost",
        CONSUMER_ITEMS,
        [i for i in CONSUMER_ITEMS if i != "activity_status"],
        run_in_vhost,
        banner=lambda args, opts: [f"Listing consumers in vhost {opts.get('vhost', '/')} ..."],
    )
)
