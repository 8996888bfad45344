"""`trimqctl`: administer a running trimq broker, with rabbitmqctl's commands, options, output
and exit codes.

This module is the entry point: it parses the options every command shares, finds the command
in the registry (trimq/cli/commands/, one module per command or family: usage, validation,
banner and run together), resolves the node, connects to its control socket and turns the
outcome into the exit code and the text on stdout or stderr.

It talks to the broker over the control socket `DATA_DIR/trimq.sock` (see
docs/control-protocol.md): one JSON request line, one JSON reply line. `-n/--node` takes a node
name (`trimq@host`: the local node, reached through the data directory's socket) or a socket
path; `--data-dir` picks the data directory.

Exit codes are rabbitmqctl's (sysexits): 0 success, 64 usage, 65 data error (failed
authentication), 67 no such user, 69 node unavailable, 70 software error, 75 timeout.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from trimq.cli import config
from trimq.cli.commands import COMMANDS
from trimq.cli.commands.base import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Command,
    Context,
    CtlExit,
    command_usage,
    stream_is_tty,
)
from trimq.cli.commands.help import all_usage, suggest_command
from trimq.cli.control_client import ControlClient, NodeDown, node_down_message, resolve_target


def default_data_dir() -> Path:
    """The data directory trimq-server would use: its configuration file's `data_dir`
    (DATA_DIR/trimq.toml or /etc/trimq/trimq.toml), TRIMQ_DATA_DIR, else ~/.local/share/trimq."""
    fallback = Path(os.environ.get("TRIMQ_DATA_DIR", str(config.DEFAULT_DATA_DIR))).expanduser()
    try:
        return Path(config.load(None, os.environ, {}).data_dir).expanduser()
    except Exception:  # an unreadable or invalid file: the broker would not start with it
        return fallback


# -- options shared by every command ----------------------------------------------------------

GLOBAL_SWITCHES: dict[str, str] = {
    "node": "string",
    "quiet": "boolean",
    "silent": "boolean",
    "dry_run": "boolean",
    "vhost": "string",
    "timeout": "integer",
    "longnames": "boolean",
    "formatter": "string",
    "data_dir": "string",
    "help": "boolean",
    "print_stacktrace": "boolean",
}
GLOBAL_ALIASES: dict[str, str] = {
    "p": "vhost",
    "n": "node",
    "q": "quiet",
    "s": "silent",
    "l": "longnames",
    "t": "timeout",
    "?": "help",
}
TABLE_SWITCHES: dict[str, str] = {"table_headers": "boolean", "pad_to_header": "boolean"}


# -- option parsing (Elixir's OptionParser, strict, as rabbitmqctl uses it) -------------------


def _looks_negative_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return token.startswith("-")


def parse_options(
    argv: Sequence[str], switches: Mapping[str, str], aliases: Mapping[str, str]
) -> tuple[dict[str, Any], list[str], list[tuple[str, str | None]]]:
    """Switches anywhere in `argv`; returns (options, positional arguments, invalid)."""
    opts: dict[str, Any] = {}
    args: list[str] = []
    invalid: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            args.extend(argv[i:])
            break
        if not token.startswith("-") or token == "-" or _looks_negative_number(token):
            args.append(token)
            continue
        value: str | None = None
        if token.startswith("--"):
            name, eq, raw_value = token[2:].partition("=")
            if eq:
                value = raw_value
            key: str | None = name.replace("-", "_")
            switch = token.partition("=")[0]
        else:
            switch = token
            key = aliases.get(token[1:])
        negated = False
        if (
            key is not None
            and key not in switches
            and key.startswith("no_")
            and switches.get(key[3:]) == "boolean"
        ):
            key, negated = key[3:], True
        kind = switches.get(key) if key is not None else None
        if key is None or kind is None:
            invalid.append((switch, value))
            continue
        if kind == "boolean":
            if value is None:
                opts[key] = not negated
            elif value in ("true", "false") and not negated:
                opts[key] = value == "true"
            else:
                invalid.append((switch, value))
            continue
        if value is None:
            if i < len(argv) and (
                not argv[i].startswith("-") or argv[i] == "-" or _looks_negative_number(argv[i])
            ):
                value = argv[i]
                i += 1
            else:
                invalid.append((switch, None))
                continue
        if kind == "integer":
            try:
                opts[key] = int(value)
            except ValueError:
                invalid.append((switch, value))
        else:
            opts[key] = value
    return opts, args, invalid


# -- running a command ------------------------------------------------------------------------


def effective_formatter(command: Command, requested: str | None) -> str:
    """json and table everywhere, csv for listings; anything else: the command's own."""
    if requested in ("json", "table") or (requested == "csv" and command.table):
        return requested
    return "table" if command.table else "string"


def execute(argv: list[str], out: TextIO, err: TextIO, stdin: TextIO) -> int:
    if not argv:
        raise CtlExit(EXIT_USAGE, all_usage(stream_is_tty(err)))
    if argv == ["--help"]:
        out.write(all_usage(stream_is_tty(out)) + "\n")
        return EXIT_OK
    global_opts, global_args, _ = parse_options(argv, GLOBAL_SWITCHES, GLOBAL_ALIASES)
    name = global_args[0] if global_args else ""
    command = COMMANDS.get(name)
    if command is None:
        if not name:
            raise CtlExit(EXIT_USAGE, all_usage(stream_is_tty(err)))
        suggestion = suggest_command(name)
        if suggestion:
            raise CtlExit(
                EXIT_USAGE, f"\nCommand '{name}' not found. \nDid you mean '{suggestion}'? \n"
            )
        raise CtlExit(
            EXIT_USAGE, f"\nCommand '{name}' not found. \n" + all_usage(stream_is_tty(err))
        )

    formatter = effective_formatter(command, global_opts.get("formatter"))
    switches = dict(GLOBAL_SWITCHES)
    if formatter == "table":
        switches.update(TABLE_SWITCHES)
    switches.update(command.switches)
    aliases = {**GLOBAL_ALIASES, **command.aliases}
    opts, args, invalid = parse_options(argv, switches, aliases)
    args = args[1:]  # the command name
    opts["formatter"] = formatter
    ctx = Context(argv, command, args, opts, out, err, stdin)
    if invalid:
        detail = "\n".join(
            ["Invalid options for this command:"]
            + [f"{key} : {value or ''}" for key, value in invalid]
        )
        raise ctx.usage_error(detail)
    if opts.get("help"):
        out.write(command_usage(command, stream_is_tty(out)) + "\n")
        return EXIT_OK

    # defaults, as rabbitmqctl's merge_defaults set them
    opts.setdefault("vhost", "/")
    if "timeout" in opts:
        opts["timeout"] = int(opts["timeout"]) * 1000
    elif command.default_timeout is not None:
        opts["timeout"] = command.default_timeout
    if command.merge_defaults is not None:
        command.merge_defaults(args, opts)
    data_dir = Path(opts["data_dir"]).expanduser() if "data_dir" in opts else default_data_dir()
    target = resolve_target(opts.get("node"), data_dir, bool(opts.get("longnames")))
    ctx.node = target.node
    ctx.target = target
    opts["node"] = target.node

    failure = command.check(ctx)
    if failure is not None:
        raise failure
    if command.standalone:
        return command.run(ctx)

    ctx.client = ControlClient(target, opts.get("timeout"))
    try:
        if command.needs_node:
            try:
                ctx.client.connect()
            except NodeDown as exc:
                raise CtlExit(
                    EXIT_UNAVAILABLE, node_down_message(target.node, exc.reason)
                ) from None
        if not ctx.quiet and not ctx.machine_readable:
            for line in command.banner_lines(args, opts):
                ctx.print(line)
        if opts.get("dry_run"):
            return EXIT_OK
        return command.run(ctx)
    finally:
        ctx.client.close()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    try:
        code = execute(argv, out, err, sys.stdin)
        out.flush()
    except CtlExit as exc:
        code = exc.code
        if exc.message is not None:
            stream = out if code == EXIT_OK else err
            stream.write(exc.message if exc.raw else exc.message + "\n")
    except BrokenPipeError:  # `trimqctl list_queues | head`: stop quietly
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        code = 128 + 13
    except KeyboardInterrupt:
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())
