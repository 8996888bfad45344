"""RabbitMQ's definitions JSON: export_definitions, import_definitions."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
from trimq.cli.output import json_encode

IMPORT_STARTED = (
    "Successfully started definition import. This process is asynchronous and can take some time.\n"
)


def _format_error(ctx: Context) -> CtlExit | None:
    fmt = str(ctx.opts.get("format", "json"))
    if fmt == "erlang":
        return ctx.usage_error(
            "Bad argument: Format should be json (trimq does not use the Erlang term format)",
            EXIT_DATAERR,
        )
    if fmt not in ("json", "JSON"):
        return ctx.usage_error("Bad argument: Format should be either json or erlang", EXIT_DATAERR)
    return None


def _stdio_is_silent(args: Sequence[str], opts: dict[str, Any]) -> None:
    """Definitions on standard output or input: no banner to mix with them."""
    if list(args) == ["-"]:
        opts["silent"] = True


def _file_error(exc: OSError | UnicodeDecodeError, path: str, verb: str) -> CtlExit:
    """rabbitmqctl's texts for a definitions file it cannot `verb` ("read from", "write to")."""
    if isinstance(exc, FileNotFoundError):
        text = f"Parent directory or file {path} does not exist"
    elif isinstance(exc, NotADirectoryError):
        text = f"Parent directory of file {path} is not a directory"
    elif isinstance(exc, IsADirectoryError):
        text = f"Path {path} is a directory"
    elif isinstance(exc, PermissionError):
        text = f"No permissions to {verb} file {path} or its parent directory"
    elif isinstance(exc, OSError) and verb == "write to":
        text = f"Could not write to file {path}: {exc.strerror or exc}"
    else:
        text = f"Could not {verb} file {path}: {exc}"
    return CtlExit(EXIT_DATAERR, error_text(text))


# -- export_definitions -----------------------------------------------------------------------


def validate_export(ctx: Context) -> CtlExit | None:
    failure = _format_error(ctx)
    if failure is None and ctx.args[0] != "-":
        # The argument's own dirname (not Path.parent, which normalises it) is in the text.
        directory = os.path.dirname(ctx.args[0]) or "."  # noqa: PTH120
        if not Path(directory).exists():
            return ctx.usage_error(
                f"Bad argument: Directory {directory} does not exist", EXIT_DATAERR
            )
    return failure


def run_export_definitions(ctx: Context) -> int:
    path = ctx.args[0]
    try:
        definitions = ctx.call("export_definitions", {})
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    body = json_encode(definitions, sort_keys=True)
    if path == "-":
        ctx.write(body)
        return EXIT_OK
    target = Path(path).absolute()
    try:
        target.unlink(missing_ok=True)
        target.write_text(body, encoding="utf-8")
    except OSError as exc:
        raise _file_error(exc, path, "write to") from None
    return EXIT_OK


register(
    Command(
        "export_definitions",
        'export_definitions <file_path | "-"> [--format <json>]',
        "Exports definitions in JSON (RabbitMQ's definitions format).",
        Section.DEFINITIONS,
        run_export_definitions,
        min_args=1,
        max_args=1,
        switches={"timeout": "integer", "format": "string"},
        has_timeout=True,
        usage_additional=[
            ("<file>", "Local file path to export to. Pass a dash (-) for stdout."),
            ("--format", "output format to use: json"),
        ],
        validate=validate_export,
        merge_defaults=_stdio_is_silent,
        banner=lambda args, opts: [f'Exporting definitions in JSON to a file at "{args[0]}" ...'],
    )
)


# -- import_definitions -----------------------------------------------------------------------


def validate_import(ctx: Context) -> CtlExit | None:
    failure = _format_error(ctx)
    path = ctx.args[0] if ctx.args else "-"
    if failure is None and path != "-" and not (path and Path(path).exists()):
        return ctx.usage_error(f"Bad argument: File {ctx.args[0]} does not exist", EXIT_DATAERR)
    return failure


def _read_definitions(ctx: Context) -> str:
    if not ctx.args or ctx.args[0] == "-":
        return ctx.stdin.read()
    path = ctx.args[0]
    try:
        text = Path(path).absolute().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _file_error(exc, path, "read from") from None
    if not text:
        raise CtlExit(EXIT_DATAERR, error_text(f"File {path} is zero-sized"))
    return text


def run_import_definitions(ctx: Context) -> int:
    text = _read_definitions(ctx)
    try:
        definitions = json.loads(text)
    except ValueError as exc:
        raise CtlExit(
            EXIT_DATAERR, error_text(f"Failed to deserialise input (format: JSON) (error: {exc})")
        ) from None
    try:
        ctx.call("import_definitions", {"definitions": definitions})
    except BrokerError as exc:  # rabbitmqctl reports a failed import as {:error, _}: 69
        raise CtlExit(EXIT_UNAVAILABLE, error_text(exc.text)) from None
    if ctx.json:
        ctx.print(json_encode({"node": ctx.node, "result": "ok"}))
    elif not ctx.quiet:
        ctx.write(IMPORT_STARTED)
    return EXIT_OK


def import_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    if not args:
        return ["Importing definitions in JSON from standard input ..."]
    return [f'Importing definitions in JSON from a file at "{args[0]}" ...']


register(
    Command(
        "import_definitions",
        'import_definitions <file_path | "-"> [--format <json>]',
        "Imports definitions in JSON (RabbitMQ's definitions format).",
        Section.DEFINITIONS,
        run_import_definitions,
        max_args=1,
        switches={"timeout": "integer", "format": "string", "skip_if_unchanged": "boolean"},
        has_timeout=True,
        usage_additional=[
            (
                "[file]",
                "Local file path to import from. If omitted will be read from standard input",
            ),
            ("--format", "input format to use: json"),
        ],
        validate=validate_import,
        merge_defaults=_stdio_is_silent,
        banner=import_banner,
    )
)
