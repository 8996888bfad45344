"""What the list_* commands share: their rows printed as a table, JSON or CSV, and the shape
of a listing whose columns are chosen among info items (list_queues, list_vhosts...)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trimq.admin_errors import ErrorKind
from trimq.cli import output
from trimq.cli.commands.base import (
    EXIT_OK,
    LIST_TIMEOUT_MS,
    Banner,
    Command,
    Context,
    Runner,
    Section,
    columns_usage,
    default_error,
    prepare_info_keys,
)
from trimq.cli.control_client import BrokerError


def print_rows(
    ctx: Context,
    rows: Any,
    items: Sequence[str],
    *,
    drop_missing: bool = False,
    header: bool = True,
    whole_list: bool = False,
) -> int:
    """Print the rows (dicts; anything else is ignored) of a listing, `items` as columns
    (`header`: False for the listings rabbitmqctl prints without a header line;
    `whole_list`: the command answers a list, not a stream of rows: rabbitmqctl prints none
    as an empty line, or `[]` in JSON)."""
    if not isinstance(rows, list):
        rows = []
    rows = [row for row in rows if isinstance(row, Mapping)]
    if ctx.json:
        lines = output.json_lines(rows, items, drop_missing=drop_missing)
        if not rows and whole_list:
            lines = ["[]"]
    elif ctx.opts.get("formatter") == "csv":
        lines = output.csv_lines(rows, items)
    else:
        headers = (
            header and bool(ctx.opts.get("table_headers", True)) and not ctx.opts.get("silent")
        )
        lines = output.table_lines(
            rows,
            items,
            headers=headers,
            pad_to_header=bool(ctx.opts.get("pad_to_header")),
            drop_missing=drop_missing,
        )
        if not rows and whole_list:
            lines = [""]
    for line in lines:
        ctx.print(line)
    return EXIT_OK


# -- listings of info items -------------------------------------------------------------------


def info_list_command(
    name: str,
    usage: str,
    description: str,
    keys: Sequence[str],
    default: Sequence[str],
    run: Runner,
    *,
    banner: Banner,
    section: Section = Section.OBSERVABILITY,
    switches: Mapping[str, str] | None = None,
) -> Command:
    """A listing whose columns are info items: any of `keys`, `default` when none is given."""
    return Command(
        name,
        usage,
        description,
        section,
        run,
        max_args=None,
        table=True,
        has_timeout=True,
        default_timeout=LIST_TIMEOUT_MS,
        info_keys=keys,
        default_items=default,
        usage_additional=[columns_usage(keys)],
        switches={"timeout": "integer", **(switches or {})},
        banner=banner,
    )


def requested_items(ctx: Context) -> list[str]:
    """The columns asked for on the command line, else the command's default ones."""
    return prepare_info_keys(ctx.args) or list(ctx.command.default_items)


def run_info_list(ctx: Context, *, in_vhost: bool = False, drop_missing: bool = False) -> int:
    """Ask the node for the command's rows with the requested columns and print them.

    `in_vhost`: the listing is of one vhost, and a vhost that does not exist lists nothing
    (as rabbitmqctl). `drop_missing`: columns a row has no value for are left out of it."""
    items = requested_items(ctx)
    request: dict[str, Any] = {"vhost": ctx.vhost, "items": items} if in_vhost else {"items": items}
    try:
        rows = ctx.call(ctx.command.name, request)
    except BrokerError as exc:
        if not (in_vhost and exc.kind is ErrorKind.VHOST_NOT_FOUND):
            raise default_error(ctx, exc) from None
        rows = []
    return print_rows(ctx, rows, items, drop_missing=drop_missing)
