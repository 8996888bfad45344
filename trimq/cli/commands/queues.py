"""One queue: delete_queue, purge_queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trimq.admin_errors import ErrorKind
from trimq.cli.commands.base import (
    EXIT_DATAERR,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Command,
    Context,
    CtlExit,
    Section,
    default_error,
    error_text,
    register,
)
from trimq.cli.control_client import BrokerError


def validate_delete_queue(ctx: Context) -> CtlExit | None:
    if ctx.args[0] == "":
        return ctx.usage_error("Bad argument: queue name cannot be an empty string", EXIT_DATAERR)
    return None


def run_delete_queue(ctx: Context) -> int:
    request = {
        "vhost": ctx.vhost,
        "queue": ctx.args[0],
        "if_unused": bool(ctx.opts.get("if_unused")),
        "if_empty": bool(ctx.opts.get("if_empty")),
    }
    try:
        result = ctx.call("delete_queue", request)
    except BrokerError as exc:
        if exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.VHOST_NOT_FOUND):
            raise CtlExit(EXIT_USAGE, error_text("Queue not found")) from None
        if exc.kind is ErrorKind.IN_USE:
            raise CtlExit(EXIT_USAGE, error_text("Queue is in use")) from None
        if exc.kind is ErrorKind.NOT_EMPTY:
            raise CtlExit(EXIT_USAGE, error_text("Queue is not empty")) from None
        raise default_error(ctx, exc) from None
    count = result.get("messages", 0) if isinstance(result, Mapping) else 0
    return ctx.message(f"Queue was successfully deleted with {count} ready messages")


def delete_queue_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    conditions = []
    if opts.get("if_empty"):
        conditions.append("if queue is empty ")
    if opts.get("if_unused"):
        conditions.append("if queue is unused ")
    return [
        f"Deleting queue '{args[0]}' on vhost '{opts.get('vhost', '/')}' "
        + "and ".join(conditions)
        + "..."
    ]


register(
    Command(
        "delete_queue",
        "delete_queue <queue_name> [--if-empty|-e] [--if-unused|-u]",
        "Deletes a queue",
        Section.QUEUES,
        run_delete_queue,
        min_args=1,
        max_args=1,
        switches={"if_empty": "boolean", "if_unused": "boolean", "timeout": "integer"},
        aliases={"e": "if_empty", "u": "if_unused", "t": "timeout"},
        has_timeout=True,
        usage_additional=[
            ("<queue_name>", "name of the queue to delete"),
            ("--if-empty", "delete the queue if it is empty (has no messages ready for delivery)"),
            ("--if-unused", "delete the queue only if it has no consumers"),
        ],
        validate=validate_delete_queue,
        banner=delete_queue_banner,
    )
)


def run_purge_queue(ctx: Context) -> int:
    try:
        ctx.call("purge_queue", {"vhost": ctx.vhost, "queue": ctx.args[0]})
    except BrokerError as exc:
        if exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.VHOST_NOT_FOUND):
            raise CtlExit(EXIT_UNAVAILABLE, error_text("not_found")) from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


register(
    Command(
        "purge_queue",
        "purge_queue <queue>",
        "Purges a queue (removes all messages in it)",
        Section.QUEUES,
        run_purge_queue,
        min_args=1,
        max_args=1,
        switches={"timeout": "integer"},
        has_timeout=True,
        usage_additional=[("<queue>", "Name of the queue to purge")],
        banner=lambda args, opts: [
            f"Purging queue '{args[0]}' in vhost '{opts.get('vhost', '/')}' ..."
        ],
    )
)
