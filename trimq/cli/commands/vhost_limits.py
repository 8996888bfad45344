"""Per-vhost limits: set_vhost_limits, clear_vhost_limits, list_vhost_limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trimq.admin_errors import ErrorKind
from trimq.cli import output
from trimq.cli.commands.base import (
    EXIT_DATAERR,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    Command,
    Context,
    CtlExit,
    Section,
    default_error,
    error_text,
    register,
)
from trimq.cli.control_client import BrokerError


def _vhost_limits_error(ctx: Context, exc: BrokerError) -> CtlExit:
    """rabbitmqctl's: a missing vhost is 65 without "Error:", the rest 69."""
    if exc.kind is ErrorKind.VHOST_NOT_FOUND:
        return CtlExit(EXIT_DATAERR, f"Virtual host '{ctx.vhost}' does not exist")
    if exc.kind is ErrorKind.USAGE:
        return default_error(ctx, exc)
    return CtlExit(EXIT_UNAVAILABLE, error_text(exc.text))


def run_set_vhost_limits(ctx: Context) -> int:
    try:
        ctx.call("set_vhost_limits", {"vhost": ctx.vhost, "definition": ctx.args[0]})
    except BrokerError as exc:
        raise _vhost_limits_error(ctx, exc) from None
    return ctx.ok()


register(
    Command(
        "set_vhost_limits",
        "set_vhost_limits [--vhost <vhost>] <definition>",
        "Sets virtual host limits",
        Section.VIRTUAL_HOSTS,
        run_set_vhost_limits,
        min_args=1,
        max_args=1,
        usage_additional=[
            (
                "<definition>",
                "Limit definitions, must be a valid JSON document: "
                '{"max-connections": N, "max-queues": N} (negative: no limit)',
            )
        ],
        banner=lambda args, opts: [
            f'Setting vhost limits to "{args[0]}" for vhost "{opts.get("vhost", "/")}" ...'
        ],
    )
)


def run_clear_vhost_limits(ctx: Context) -> int:
    try:
        ctx.call("clear_vhost_limits", {"vhost": ctx.vhost})
    except BrokerError as exc:
        raise _vhost_limits_error(ctx, exc) from None
    return ctx.ok()


register(
    Command(
        "clear_vhost_limits",
        "clear_vhost_limits [--vhost <vhost>]",
        "Clears virtual host limits",
        Section.VIRTUAL_HOSTS,
        run_clear_vhost_limits,
        banner=lambda args, opts: [f'Clearing vhost "{opts.get("vhost", "/")}" limits ...'],
    )
)


def run_list_vhost_limits(ctx: Context) -> int:
    everywhere = bool(ctx.opts.get("global"))
    request: dict[str, Any] = {"global": True} if everywhere else {"vhost": ctx.vhost}
    try:
        rows = ctx.call("list_vhost_limits", request)
    except BrokerError as exc:
        raise _vhost_limits_error(ctx, exc) from None
    rows = [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []
    for line in output.vhost_limits_lines(
        rows,
        everywhere,
        ctx.node,
        str(ctx.opts.get("formatter")),
        headers=bool(ctx.opts.get("table_headers", True)) and not ctx.opts.get("silent"),
    ):
        ctx.print(line)
    return EXIT_OK


def list_vhost_limits_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    if opts.get("global"):
        return ["Listing limits for all vhosts ..."]
    return [f'Listing limits for vhost "{opts.get("vhost", "/")}" ...']


register(
    Command(
        "list_vhost_limits",
        "list_vhost_limits [--vhost <vhost>] [--global] [--no-table-headers]",
        "Displays configured virtual host limits",
        Section.VIRTUAL_HOSTS,
        run_list_vhost_limits,
        table=True,
        switches={"global": "boolean"},
        usage_additional=[("--global", "list the limits of every virtual host")],
        banner=list_vhost_limits_banner,
    )
)
