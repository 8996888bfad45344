"""Looking at messages without taking them (trimq's own, rabbitmqctl has none): peek_queue,
find_message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trimq.cli.commands.base import (
    Command,
    Context,
    CtlExit,
    Section,
    default_error,
    register,
)
from trimq.cli.commands.rows import print_rows
from trimq.cli.control_client import BrokerError
from trimq.cli.output import json_encode

MAX_COUNT = 10_000  # as the node allows (trimq/broker/peek.py)

PEEK_COLUMNS = [
    "position",
    "redelivered",
    "exchange",
    "routing_key",
    "payload_bytes",
    "payload_encoding",
    "payload",
]
UNACKED_COLUMNS = ["channel", "consumer_tag", "delivery_tag"]
PEEK_JSON = [
    "position",
    "state",
    "payload_bytes",
    "redelivered",
    "exchange",
    "routing_key",
    "properties",
    "payload",
    "payload_encoding",
]
FIND_COLUMNS = [
    "queue",
    "state",
    "position",
    *UNACKED_COLUMNS,
    "message_id",
    "correlation_id",
    "redelivered",
    "x_death",
]
FIND_JSON = [
    "vhost",
    "queue",
    "state",
    "position",
    *UNACKED_COLUMNS,
    "message_id",
    "correlation_id",
    "redelivered",
    "exchange",
    "routing_key",
    "payload_bytes",
    "x_death",
]

_ESCAPES = {i: f"\\x{i:02x}" for i in range(32)} | {
    ord("\\"): "\\\\",
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}


def one_line(text: str) -> str:
    """A value as one table cell: control characters escaped, so a row stays one line."""
    return text.translate(_ESCAPES)


def _table_rows(rows: Any, columns: Sequence[str]) -> list[dict[str, Any]]:
    table = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, Mapping):
            continue
        cells = dict(row)
        for column in columns:
            value = cells.get(column)
            if isinstance(value, (list, Mapping)):
                cells[column] = json_encode(value)
            elif isinstance(value, str):
                cells[column] = one_line(value)
        table.append(cells)
    return table


def _print(ctx: Context, rows: Any, columns: list[str], json_columns: list[str]) -> int:
    if ctx.json:
        return print_rows(ctx, rows, json_columns)
    return print_rows(ctx, _table_rows(rows, columns), columns)


def validate_peek(ctx: Context) -> CtlExit | None:
    offset = ctx.opts.get("offset", 0)
    count = ctx.opts.get("count", 10)
    if offset < 0:
        return ctx.usage_error("offset must be 0 or more")
    if not 1 <= count <= MAX_COUNT:
        return ctx.usage_error(f"count must be from 1 to {MAX_COUNT}")
    return None


def run_peek_queue(ctx: Context) -> int:
    unacked = bool(ctx.opts.get("unacked"))
    request = {
        "vhost": ctx.vhost,
        "queue": ctx.args[0],
        "offset": int(ctx.opts.get("offset", 0)),
        "count": int(ctx.opts.get("count", 10)),
        "unacked": unacked,
    }
    try:
        rows = ctx.call("peek_queue", request)
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    if unacked:
        return _print(
            ctx,
            rows,
            [*PEEK_COLUMNS[:1], *UNACKED_COLUMNS, *PEEK_COLUMNS[1:]],
            [*PEEK_JSON[:2], *UNACKED_COLUMNS, *PEEK_JSON[2:]],
        )
    return _print(ctx, rows, PEEK_COLUMNS, PEEK_JSON)


def peek_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    which = "unacknowledged messages" if opts.get("unacked") else "messages"
    return [
        f"Peeking at {which} of queue '{args[0]}' in vhost '{opts.get('vhost', '/')}' "
        f"from position {opts.get('offset', 0)} ..."
    ]


register(
    Command(
        "peek_queue",
        "peek_queue [--vhost <vhost>] <queue> [--offset <offset>] [--count <count>] [--unacked]",
        "Shows a queue's messages in queue order without taking them "
        "(nothing is delivered or marked redelivered)",
        Section.QUEUES,
        run_peek_queue,
        min_args=1,
        max_args=1,
        switches={
            "offset": "integer",
            "count": "integer",
            "unacked": "boolean",
            "timeout": "integer",
        },
        has_timeout=True,
        usage_additional=[
            ("<queue>", "name of the queue"),
            ("--offset", "position of the first message shown, 0 for the head (default 0)"),
            ("--count", f"how many messages to show, 1 to {MAX_COUNT} (default 10)"),
            (
                "--unacked",
                "show the messages delivered and not acknowledged yet, with the channel and "
                "consumer tag holding each",
            ),
        ],
        validate=validate_peek,
        banner=peek_banner,
    )
)


def validate_find(ctx: Context) -> CtlExit | None:
    if ctx.opts.get("message_id") is None and ctx.opts.get("correlation_id") is None:
        return ctx.usage_error("give --message-id or --correlation-id")
    return None


def run_find_message(ctx: Context) -> int:
    request: dict[str, Any] = {"vhost": ctx.vhost}
    for key in ("message_id", "correlation_id"):
        if ctx.opts.get(key) is not None:
            request[key] = str(ctx.opts[key])
    try:
        rows = ctx.call("find_message", request)
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    return _print(ctx, rows, FIND_COLUMNS, FIND_JSON)


def find_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    wanted = " and ".join(
        f"{key} '{opts[key]}'" for key in ("message_id", "correlation_id") if key in opts
    )
    return [f"Finding messages with {wanted} in vhost '{opts.get('vhost', '/')}' ..."]


register(
    Command(
        "find_message",
        "find_message [--vhost <vhost>] (--message-id <id> | --correlation-id <id>)",
        "Finds the messages with a message_id or correlation_id in a virtual host's queues: "
        "which queue, which position, ready or unacknowledged and by whom, and the x-death "
        "history of a dead-lettered one",
        Section.QUEUES,
        run_find_message,
        switches={"message_id": "string", "correlation_id": "string", "timeout": "integer"},
        has_timeout=True,
        usage_additional=[
            ("--message-id", "the message_id property to look for"),
            ("--correlation-id", "the correlation_id property to look for"),
        ],
        validate=validate_find,
        banner=find_banner,
    )
)
