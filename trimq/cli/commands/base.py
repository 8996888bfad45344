"""What a trimqctl command is, and what it is given when it runs.

A `Command` holds everything about one command, as rabbitmqctl's command modules do: its
usage texts, its switches, how its arguments are checked, the banner it prints, and `run`.
Each module in this package declares its commands and `register`s them; `ctl.py` looks them
up by name in `COMMANDS`. The order of registration is the order `__init__.py` imports the
modules in, and it matters: of two equally close suggestions for a mistyped command name, the
one registered first is offered (`help.suggest_command`).

`run` gets a `Context` (arguments, options, output streams, the control client) and returns
the exit code after printing its result; every failure is raised as `CtlExit`. Exit codes are
rabbitmqctl's (sysexits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum
from typing import Any, TextIO

from trimq.admin_errors import ErrorKind
from trimq.cli.control_client import (
    TOOL,
    BrokerError,
    ControlClient,
    NodeDown,
    RequestTimeout,
    Target,
    node_down_message,
)
from trimq.cli.output import bright, json_encode

EXIT_OK = 0
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_NOUSER = 67
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_TEMPFAIL = 75

LIST_TIMEOUT_MS = 60_000


class Section(StrEnum):
    """rabbitmqctl's help sections (the value is the title), in its help order."""

    HELP = "Help"
    NODES = "Nodes"
    USERS = "Users"
    ACCESS_CONTROL = "Access Control"
    OBSERVABILITY = "Monitoring, observability and health checks"
    POLICIES = "Policies"
    VIRTUAL_HOSTS = "Virtual hosts"
    CONFIGURATION = "Configuration and Environment"
    DEFINITIONS = "Definitions"
    OPERATIONS = "Operations"
    QUEUES = "Queues"


class CtlExit(Exception):
    """Stop with `code`, printing `message` (to stderr unless the code is 0)."""

    def __init__(self, code: int, message: str | None = None, raw: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.raw = raw  # no newline added


Runner = Callable[["Context"], int]
Validator = Callable[["Context"], "CtlExit | None"]
Banner = Callable[[Sequence[str], Mapping[str, Any]], list[str]]
Defaults = Callable[[Sequence[str], dict[str, Any]], None]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str  # the usage line after the general options
    description: str
    section: Section
    run: Runner
    _: KW_ONLY
    min_args: int = 0
    max_args: int | None = 0  # None: any number
    switches: Mapping[str, str] = field(default_factory=dict)  # name: "boolean", "string"...
    aliases: Mapping[str, str] = field(default_factory=dict)  # one letter: switch name
    usage_additional: Sequence[tuple[str, str]] = ()
    table: bool = False  # rabbitmqctl's Table formatter is the default
    has_timeout: bool = False  # a --timeout switch of its own (shown in the usage line)
    default_timeout: int | None = None  # milliseconds
    info_keys: Sequence[str] = ()  # the columns a listing may be asked for
    default_items: Sequence[str] = ()
    needs_node: bool = True  # checked (exit 69) before the banner is printed
    standalone: bool = False  # runs without the node: no connection, no banner, no dry run
    validate: Validator | None = None  # checks beyond the number of arguments
    banner: Banner | None = None  # the line(s) printed before running, from (args, opts)
    merge_defaults: Defaults | None = None  # option defaults that depend on the arguments

    def check(self, ctx: Context) -> CtlExit | None:
        """rabbitmqctl's argument validation, or None when the arguments pass."""
        if self.info_keys:
            keys = prepare_info_keys(ctx.args)
            bad = sorted(set(keys) - set(self.info_keys))
            if bad:
                return ctx.usage_error(f"Info key(s) {','.join(bad)} are not supported")
            return None
        if len(ctx.args) < self.min_args:
            return ctx.usage_error("not enough arguments.")
        if self.max_args is not None and len(ctx.args) > self.max_args:
            return ctx.usage_error("too many arguments.")
        return None if self.validate is None else self.validate(ctx)

    def banner_lines(self, args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
        return [] if self.banner is None else self.banner(args, opts)


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Make `command` known to trimqctl (called once per command, at import)."""
    if command.name in COMMANDS:
        raise ValueError(f"trimqctl command {command.name!r} registered twice")
    COMMANDS[command.name] = command
    return command


def prepare_info_keys(args: Sequence[str]) -> list[str]:
    """rabbitmqctl's InfoKeys.prepare_info_keys: split on commas, trim, de-duplicate."""
    keys: list[str] = []
    for arg in args:
        for raw in arg.split(","):
            part = raw.strip()
            if part and part not in keys:
                keys.append(part)
    return keys


def columns_usage(keys: Sequence[str]) -> tuple[str, str]:
    """The usage entry of a listing's `<column>` arguments."""
    return ("<column>", "must be one of " + ", ".join(sorted(keys)))


# -- usage texts ------------------------------------------------------------------------------

GENERAL_OPTIONS = """\
The following options are accepted by most or all commands.

short            | long          | description
-----------------|---------------|--------------------------------
-?               | --help        | displays command help
-n <node>        | --node <node> | connect to node <node> (a node name or a control socket path)
-l               | --longnames   | use long host names
-t               | --timeout <n> | for commands that support it, operation timeout in seconds
-q               | --quiet       | suppress informational messages
-s               | --silent      | suppress informational messages
                                 | and table header row
-p               | --vhost       | for commands that are scoped to a virtual host,
                 |               | virtual host to use
                 | --data-dir    | data directory holding the node's control socket
                 | --formatter   | alternative result formatter to use
                                 | if supported: json, table, csv
                                   not all commands support all (or any) alternative formatters."""


def base_usage(command: Command, tty: bool) -> str:
    timeout = " [--timeout <timeout>]" if command.has_timeout else ""
    return (
        f"\n{bright('Usage', tty)}\n\n{TOOL} [--node <node>] [--longnames] [--quiet] "
        f"{command.usage}{timeout}"
    )


def command_usage(command: Command, tty: bool) -> str:
    parts = [base_usage(command, tty), command.description + ".\n"]
    if command.usage_additional:
        lines = [f"{bright('Arguments and Options', tty)}\n"]
        lines += [f"{option}\n\t{text}\n" for option, text in command.usage_additional]
        parts.append("\n".join(lines))
    parts.append(f"{bright('General Options', tty)}\n\n{GENERAL_OPTIONS}")
    return "\n\n".join(parts) + "\n"


def stream_is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- running a command ------------------------------------------------------------------------


@dataclass
class Context:
    argv: list[str]
    command: Command
    args: list[str]
    opts: dict[str, Any]  # parsed switches, with the defaults merged in
    out: TextIO
    err: TextIO
    stdin: TextIO
    node: str = ""
    target: Target | None = None
    client: ControlClient | None = None

    @property
    def json(self) -> bool:
        return self.opts.get("formatter") == "json"

    @property
    def machine_readable(self) -> bool:
        return self.opts.get("formatter") in ("json", "csv")

    @property
    def quiet(self) -> bool:
        return bool(self.opts.get("quiet") or self.opts.get("silent"))

    @property
    def vhost(self) -> str:
        return str(self.opts.get("vhost", "/"))

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def write(self, text: str) -> None:
        self.out.write(text)

    def call(self, command: str, args: Mapping[str, Any]) -> Any:
        """The node's answer to one control request (any JSON value); BrokerError passes."""
        assert self.client is not None
        try:
            return self.client.call(command, args)
        except RequestTimeout:
            raise CtlExit(
                EXIT_TEMPFAIL,
                f"Error: operation {self.command.name} on node {self.node} timed "
                f"out. Timeout value used: {self.opts.get('timeout')}",
            ) from None
        except NodeDown as exc:
            raise CtlExit(EXIT_UNAVAILABLE, node_down_message(self.node, exc.reason)) from None

    def usage_error(self, detail: str, code: int = EXIT_USAGE) -> CtlExit:
        return CtlExit(
            code,
            f"Error (argument validation): {detail}\nArguments given:\n\t"
            f"{' '.join(self.argv)}\n" + base_usage(self.command, stream_is_tty(self.err)),
        )

    def ok(self) -> int:
        """A command that succeeded with nothing to say (`:ok`)."""
        if self.json:
            self.print(json_encode({"node": self.node, "result": "ok"}))
        return EXIT_OK

    def message(self, text: str) -> int:
        if self.json:
            self.print(json_encode({"message": text}))
        else:
            self.print(text)
        return EXIT_OK

    def json_error(self, message: str) -> CtlExit:
        return CtlExit(
            EXIT_UNAVAILABLE,
            json_encode({"message": message, "node": self.node, "result": "error"}),
        )


def error_text(text: str) -> str:
    return f"Error:\n{text}"


def default_error(ctx: Context, exc: BrokerError) -> CtlExit:
    """The exit code for a broker error kind (docs/control-protocol.md), rabbitmqctl's way."""
    if exc.kind is ErrorKind.USAGE:
        return ctx.usage_error(exc.text)
    code = {
        ErrorKind.AUTH_FAILED: EXIT_DATAERR,
        ErrorKind.USER_NOT_FOUND: EXIT_NOUSER,
        ErrorKind.VHOST_NOT_FOUND: EXIT_NOUSER,
        ErrorKind.NOT_FOUND: EXIT_NOUSER,
    }.get(exc.kind, EXIT_SOFTWARE)  # exists, in_use, not_empty, error, internal
    return CtlExit(code, error_text(exc.text))
