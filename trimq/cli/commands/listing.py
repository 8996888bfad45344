"""What the list_* commands share: rows printed as a table, JSON or CSV, and the shape of a
listing whose columns are chosen from info items (list_queues, list_vhosts...)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
    prepare_info_keys,
)


def print_rows(ctx: Context, rows: Any, items: Sequence[str], *,
               drop_missing: bool = False) -> int:
    """Print the rows (dicts; anything else is ignored) of a listing, `items` as columns."""
    if not isinstance(rows, list):
        rows = []
    rows = [row for row in rows if isinstance(row, Mapping)]
    if ctx.json:
        lines = output.json_lines(rows, items, drop_missing=drop_missing)
    elif ctx.opts.get("formatter") == "csv":
        lines = output.csv_lines(rows, items)
    else:
        headers = bool(ctx.opts.get("table_headers", True)) and not ctx.opts.get("silent")
        lines = output.table_lines(rows, items, headers=headers,
                                   pad_to_header=bool(ctx.opts.get("pad_to_header")),
                                   drop_missing=drop_missing)
    for line in lines:
        ctx.print(line)
    return EXIT_OK


def requested_items(ctx: Context) -> list[str]:
    """The columns asked for on the command line, else the command's default ones."""
    return prepare_info_keys(ctx.args) or list(ctx.command.default_items)


def info_list_command(name: str, usage: str, description: str, keys: Sequence[str],
                      default: Sequence[str], run: Runner, *, banner: Banner,
                      section: Section = Section.OBSERVABILITY,
                      switches: Mapping[str, str] | None = None) -> Command:
    """A listing whose columns are info items: any of `keys`, `default` when none is given."""
    return Command(name, usage, description, section, run, max_args=None, table=True,
                   has_timeout=True, default_timeout=LIST_TIMEOUT_MS, info_keys=keys,
                   default_items=default, usage_additional=[columns_usage(keys)],
                   switches={"timeout": "integer", **(switches or {})}, banner=banner)
