"""`trimqctl`: administer a running trimq broker, with rabbitmqctl's commands, options, output
and exit codes.

It talks to the broker over the control socket `DATA_DIR/trimq.sock` (see
docs/control-protocol.md): one JSON request line, one JSON reply line. `-n/--node` takes a node
name (`trimq@host`: the local node, reached through the data directory's socket) or a socket
path; `--data-dir` picks the data directory.

Exit codes are rabbitmqctl's (sysexits): 0 success, 64 usage, 65 data error (failed
authentication), 67 no such user, 69 node unavailable, 70 software error, 75 timeout.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from trimq.cli import output
from trimq.cli.config import parse_size
from trimq.cli.output import bright, erl_atom, json_encode
from trimq.info_items import (
    BINDING_ITEMS,
    CHANNEL_ITEMS,
    CONNECTION_ITEMS,
    CONSUMER_ITEMS,
    EXCHANGE_ITEMS,
    QUEUE_ITEMS,
    VHOST_ITEMS,
)

TOOL = "trimqctl"
SOCKET_NAME = "trimq.sock"
NODE_NAME = "trimq"

EXIT_OK = 0
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_NOUSER = 67
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_TEMPFAIL = 75

LIST_TIMEOUT_MS = 60_000

ADD_USER_DONE = ("Done. Don't forget to grant the user permissions to some virtual hosts! "
                 f"See '{TOOL} help set_permissions' to learn more.")
IMPORT_STARTED = ("Successfully started definition import. "
                  "This process is asynchronous and can take some time.\n")


def default_data_dir() -> Path:
    """The data directory trimq-server would use: its configuration file's `data_dir`
    (DATA_DIR/trimq.toml or /etc/trimq/trimq.toml), TRIMQ_DATA_DIR, else ~/.local/share/trimq."""
    from trimq.cli import config

    fallback = Path(os.environ.get("TRIMQ_DATA_DIR", str(config.DEFAULT_DATA_DIR))).expanduser()
    try:
        return Path(config.load(None, os.environ, {}).data_dir).expanduser()
    except Exception:  # an unreadable or invalid file: the broker would not start with it
        return fallback


# -- commands ---------------------------------------------------------------------------------

GLOBAL_SWITCHES: dict[str, str] = {
    "node": "string", "quiet": "boolean", "silent": "boolean", "dry_run": "boolean",
    "vhost": "string", "timeout": "integer", "longnames": "boolean", "formatter": "string",
    "data_dir": "string", "help": "boolean", "print_stacktrace": "boolean",
}
GLOBAL_ALIASES: dict[str, str] = {
    "p": "vhost", "n": "node", "q": "quiet", "s": "silent", "l": "longnames", "t": "timeout",
    "?": "help",
}
TABLE_SWITCHES: dict[str, str] = {"table_headers": "boolean", "pad_to_header": "boolean"}


SECTIONS = [  # (key, title) in rabbitmqctl's help order
    ("help", "Help"), ("node_management", "Nodes"), ("user_management", "Users"),
    ("access_control", "Access Control"),
    ("observability_and_health_checks", "Monitoring, observability and health checks"),
    ("policies", "Policies"), ("virtual_hosts", "Virtual hosts"),
    ("configuration", "Configuration and Environment"), ("definitions", "Definitions"),
    ("operations", "Operations"), ("queues", "Queues"),
]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    description: str
    section: str
    min_args: int = 0
    max_args: int | None = 0
    switches: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    usage_additional: Sequence[tuple[str, str]] = ()
    table: bool = False  # rabbitmqctl's Table formatter is the default
    has_timeout: bool = False  # a --timeout switch of its own (shown in the usage line)
    default_timeout: int | None = None  # milliseconds
    info_keys: Sequence[str] = ()
    default_items: Sequence[str] = ()
    needs_node: bool = True  # checked (exit 69) before the banner is printed


def _columns(keys: Sequence[str]) -> tuple[str, str]:
    return ("<column>", "must be one of " + ", ".join(sorted(keys)))


def _list_command(name: str, usage: str, description: str, keys: Sequence[str],
                  default: Sequence[str], section: str = "observability_and_health_checks",
                  **extra: Any) -> Command:
    return Command(name, usage, description, section, max_args=None, table=True,
                   has_timeout=True, default_timeout=LIST_TIMEOUT_MS, info_keys=keys,
                   default_items=default, usage_additional=[_columns(keys)],
                   switches={"timeout": "integer", **extra.pop("switches", {})}, **extra)


COMMAND_LIST = [
    Command("help", "help (<command> | [--list-commands])",
            "Displays usage information for a command", "help", max_args=1,
            switches={"list_commands": "boolean"},
            usage_additional=[("--list-commands", "only output a list of discovered commands")],
            needs_node=False),
    Command("status", "status [--unit <unit>]", "Displays status of a node",
            "observability_and_health_checks", switches={"unit": "string", "timeout": "integer"},
            has_timeout=True, default_timeout=LIST_TIMEOUT_MS,
            usage_additional=[
                ("--unit <bytes | mb | gb>",
                 "byte multiple (bytes, megabytes, gigabytes) to use"),
                ("--formatter <json>", "alternative formatter (JSON)")]),
    Command("set_vm_memory_high_watermark",
            "set_vm_memory_high_watermark <fraction> | absolute <value>",
            "Sets the vm_memory_high_watermark setting", "configuration", min_args=1,
            max_args=2, usage_additional=[
                ("<fraction>", "New limit as a fraction of total memory reported by the OS"),
                ("absolute <value>", "New limit as an absolute value with units, e.g. 1GB")]),
    Command("set_disk_free_limit", "set_disk_free_limit <disk_limit> | mem_relative <fraction>",
            "Sets the disk_free_limit setting", "configuration", min_args=1, max_args=2,
            usage_additional=[
                ("<disk_limit>", "New limit as an absolute value with units, e.g. 1GB"),
                ("mem_relative <fraction>",
                 "New limit as a fraction of total memory reported by the OS")]),
    Command("stop", "stop [--idempotent] [<pidfile>]",
            "Stops the trimq node. Waits until it has stopped; with a pid file path, also "
            "until that process has exited", "node_management", max_args=1,
            switches={"idempotent": "boolean"}, needs_node=False,
            usage_additional=[
                ("<pidfile>", "node PID file path to monitor"),
                ("--idempotent",
                 "return success if target node is not running (cannot be contacted)")]),
    Command("add_user", "add_user <username> <password>",
            "Creates a new user in the internal database. This user will have no permissions "
            "for any virtual hosts by default.", "user_management", min_args=1, max_args=2,
            usage_additional=[
                ("<username>", "Self-explanatory"),
                ("<password>", "Password this user will authenticate with. Use a blank string "
                               "to disable password-based authentication.")]),
    Command("delete_user", "delete_user <username>",
            "Removes a user from the internal database. Has no effect on users provided by "
            "external backends such as LDAP", "user_management", min_args=1, max_args=1,
            usage_additional=[("<username>", "Name of the user to delete.")]),
    Command("change_password", "change_password <username> <password>",
            "Changes the user password", "user_management", min_args=1, max_args=2,
            usage_additional=[
                ("<username>", "Name of the user whose password should be changed"),
                ("<password>", "New password to set")]),
    Command("clear_password", "clear_password <username>",
            "Clears (resets) password and disables password login for a user",
            "user_management", min_args=1, max_args=1,
            usage_additional=[("<username>", "Name of the user whose password should be "
                                             "cleared")]),
    Command("authenticate_user", "authenticate_user <username> <password>",
            "Attempts to authenticate a user. Exits with a non-zero code if authentication "
            "fails.", "user_management", min_args=1, max_args=2,
            usage_additional=[
                ("<username>", "Username to use"),
                ("<password>", "Password to use. Can be entered via stdin in interactive "
                               "mode.")]),
    Command("set_user_tags", "set_user_tags <username> <tag> [...]", "Sets user tags",
            "user_management", min_args=1, max_args=None,
            usage_additional=[("<username>", "Self-explanatory"),
                              ("<tags>", "Space separated list of tags")]),
    Command("list_users", "list_users [--no-table-headers]", "List user names and tags",
            "user_management", table=True, has_timeout=True, default_timeout=LIST_TIMEOUT_MS,
            switches={"timeout": "integer"}),
    Command("add_vhost",
            'add_vhost <vhost> [--description <description> --tags "<tag1>,<tag2>,<...>" '
            "--default-queue-type <quorum|classic|stream>]",
            "Creates a virtual host", "virtual_hosts", min_args=1, max_args=1,
            switches={"description": "string", "tags": "string",
                      "default_queue_type": "string"},
            aliases={"d": "description"},
            usage_additional=[
                ("<vhost>", "Virtual host name"),
                ("--description <description>", "Virtual host description"),
                ("--tags <tags>", "Command separated list of tags"),
                ("--default-queue-type <quorum|classic|stream>",
                 "Queue type to use if no type is explicitly provided by the client")]),
    Command("delete_vhost", "delete_vhost <vhost>", "Deletes a virtual host", "virtual_hosts",
            min_args=1, max_args=1,
            usage_additional=[("<vhost>", "Name of the virtual host to delete.")]),
    _list_command("list_vhosts", "list_vhosts [--no-table-headers] [<column> ...]",
                  "Lists virtual hosts", VHOST_ITEMS, ["name"], section="access_control"),
    Command("set_vhost_limits", "set_vhost_limits [--vhost <vhost>] <definition>",
            "Sets virtual host limits", "virtual_hosts", min_args=1, max_args=1,
            usage_additional=[
                ("<definition>", "Limit definitions, must be a valid JSON document: "
                                 '{"max-connections": N, "max-queues": N} (negative: no '
                                 "limit)")]),
    Command("clear_vhost_limits", "clear_vhost_limits [--vhost <vhost>]",
            "Clears virtual host limits", "virtual_hosts"),
    Command("list_vhost_limits",
            "list_vhost_limits [--vhost <vhost>] [--global] [--no-table-headers]",
            "Displays configured virtual host limits", "virtual_hosts", table=True,
            switches={"global": "boolean"},
            usage_additional=[("--global", "list the limits of every virtual host")]),
    Command("set_permissions",
            "set_permissions [--vhost <vhost>] <username> <conf> <write> <read>",
            "Sets user permissions for a vhost", "access_control", min_args=4, max_args=4,
            usage_additional=[
                ("<username>", "Self-explanatory"),
                ("<conf>", "Configuration permission pattern"),
                ("<write>", "Write permission pattern"),
                ("<read>", "Read permission pattern")]),
    Command("clear_permissions", "clear_permissions [--vhost <vhost>] <username>",
            "Revokes user permissions for a vhost", "access_control", min_args=1, max_args=1,
            usage_additional=[("<username>", "Name of the user whose permissions should be "
                                             "revoked")]),
    Command("list_permissions", "list_permissions [--vhost <vhost>] [--no-table-headers]",
            "Lists user permissions in a virtual host", "access_control", table=True,
            has_timeout=True, default_timeout=LIST_TIMEOUT_MS, switches={"timeout": "integer"}),
    Command("list_user_permissions", "list_user_permissions [--no-table-headers] <username>",
            "Lists permissions of a user across all virtual hosts", "access_control",
            min_args=1, max_args=1, table=True, has_timeout=True,
            default_timeout=LIST_TIMEOUT_MS, switches={"timeout": "integer"},
            aliases={"t": "timeout"}, usage_additional=[("<username>", "Name of the user")]),
    _list_command("list_queues",
                  "list_queues [--vhost <vhost>] [--online] [--offline] [--local] "
                  "[--no-table-headers] [<column>, ...]",
                  "Lists queues and their properties", QUEUE_ITEMS, ["name", "messages"],
                  switches={"offline": "boolean", "online": "boolean", "local": "boolean"}),
    _list_command("list_exchanges",
                  "list_exchanges [--vhost <vhost>] [--no-table-headers] [<column> ...]",
                  "Lists exchanges", EXCHANGE_ITEMS, ["name", "type"]),
    _list_command("list_bindings",
                  "list_bindings [--vhost <vhost>] [--no-table-headers] [<column> ...]",
                  "Lists all bindings on a vhost", BINDING_ITEMS, BINDING_ITEMS),
    _list_command("list_connections", "list_connections [--no-table-headers] [<column> ...]",
                  "Lists AMQP 0.9.1 connections for the node", CONNECTION_ITEMS,
                  ["user", "peer_host", "peer_port", "state"]),
    _list_command("list_channels", "list_channels [--no-table-headers] [<column> ...]",
                  "Lists all channels in the node", CHANNEL_ITEMS,
                  ["pid", "user", "consumer_count", "messages_unacknowledged"]),
    _list_command("list_consumers",
                  "list_consumers [--vhost <vhost>] [--no-table-headers] [<column> ...]",
                  "Lists all consumers for a vhost", CONSUMER_ITEMS,
                  [i for i in CONSUMER_ITEMS if i != "activity_status"]),
    Command("set_policy",
            "set_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] "
            "<name> <pattern> <definition>",
            "Sets or updates a policy", "policies", min_args=3, max_args=3,
            switches={"priority": "integer", "apply_to": "string"},
            usage_additional=[
                ("<name>", "Policy name (identifier)"),
                ("<pattern>", "Regular expression pattern that will be used to match queues, "
                              "exchanges, etc"),
                ("<definition>", "Policy definition (arguments). Must be a valid JSON "
                                 "document"),
                ("--priority", "Policy priority"),
                ("--apply-to", "Policy should only apply to queues, exchanges, or all "
                               "entities (both of the above)")]),
    Command("clear_policy", "clear_policy [--vhost <vhost>] <name>",
            "Clears (removes) a policy", "policies", min_args=1, max_args=1,
            usage_additional=[("<name>", "Name of policy to clear (remove)")]),
    Command("list_policies", "list_policies [--vhost <vhost>] [--no-table-headers]",
            "Lists all policies in a virtual host", "policies", table=True),
    Command("delete_queue", "delete_queue <queue_name> [--if-empty|-e] [--if-unused|-u]",
            "Deletes a queue", "queues", min_args=1, max_args=1,
            switches={"if_empty": "boolean", "if_unused": "boolean", "timeout": "integer"},
            aliases={"e": "if_empty", "u": "if_unused", "t": "timeout"}, has_timeout=True,
            usage_additional=[
                ("<queue_name>", "name of the queue to delete"),
                ("--if-empty",
                 "delete the queue if it is empty (has no messages ready for delivery)"),
                ("--if-unused", "delete the queue only if it has no consumers")]),
    Command("purge_queue", "purge_queue <queue>",
            "Purges a queue (removes all messages in it)", "queues", min_args=1, max_args=1,
            switches={"timeout": "integer"}, has_timeout=True,
            usage_additional=[("<queue>", "Name of the queue to purge")]),
    Command("close_connection", "close_connection <connection pid> <explanation>",
            "Instructs the broker to close the connection associated with the process id",
            "operations", min_args=2, max_args=2,
            usage_additional=[
                ("<connection pid>",
                 "connection identifier (its pid or name), see list_connections"),
                ("<explanation>", "reason for connection closure")]),
    Command("close_all_connections",
            "close_all_connections [--vhost <vhost> --limit <limit>] [-n <node> --global] "
            "[--per-connection-delay <delay>] <explanation>",
            "Instructs the broker to close all connections for the specified vhost or entire "
            "trimq node", "operations", min_args=1, max_args=1,
            switches={"global": "boolean", "per_connection_delay": "integer",
                      "limit": "integer"},
            usage_additional=[
                ("--global", "consider connections across all virtual hosts"),
                ("--limit <number>", "close up to this many connections"),
                ("--per-connection-delay <milliseconds>", "inject a delay between closures")]),
    Command("export_definitions", 'export_definitions <file_path | "-"> [--format <json>]',
            "Exports definitions in JSON (RabbitMQ's definitions format).", "definitions",
            min_args=1, max_args=1, switches={"timeout": "integer", "format": "string"},
            has_timeout=True,
            usage_additional=[
                ("<file>", "Local file path to export to. Pass a dash (-) for stdout."),
                ("--format", "output format to use: json")]),
    Command("import_definitions", 'import_definitions <file_path | "-"> [--format <json>]',
            "Imports definitions in JSON (RabbitMQ's definitions format).", "definitions",
            max_args=1,
            switches={"timeout": "integer", "format": "string",
                      "skip_if_unchanged": "boolean"},
            has_timeout=True,
            usage_additional=[
                ("[file]", "Local file path to import from. If omitted will be read from "
                           "standard input"),
                ("--format", "input format to use: json")]),
]
COMMANDS = {c.name: c for c in COMMAND_LIST}

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


# -- errors -----------------------------------------------------------------------------------


class CtlExit(Exception):
    """Stop with `code`, printing `message` (to stderr unless the code is 0)."""

    def __init__(self, code: int, message: str | None = None, raw: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.raw = raw  # no newline added


class NodeDown(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RequestTimeout(Exception):
    pass


class BrokerError(Exception):
    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


# -- option parsing (Elixir's OptionParser, strict, as rabbitmqctl uses it) -------------------


def _looks_negative_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return token.startswith("-")


def parse_options(argv: Sequence[str], switches: Mapping[str, str],
                  aliases: Mapping[str, str]) -> tuple[dict[str, Any], list[str],
                                                       list[tuple[str, str | None]]]:
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
        if key is not None and key not in switches and key.startswith("no_") \
                and switches.get(key[3:]) == "boolean":
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
            if i < len(argv) and (not argv[i].startswith("-") or argv[i] == "-"
                                  or _looks_negative_number(argv[i])):
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


def prepare_info_keys(args: Sequence[str]) -> list[str]:
    """rabbitmqctl's InfoKeys.prepare_info_keys: split on commas, trim, de-duplicate."""
    keys: list[str] = []
    for arg in args:
        for part in arg.split(","):
            part = part.strip()
            if part and part not in keys:
                keys.append(part)
    return keys


def jaro_distance(a: str, b: str) -> float:
    """Elixir's String.jaro_distance."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(len(a), len(b)) // 2 - 1
    a_matched = [False] * len(a)
    b_matched = [False] * len(b)
    matches = 0
    for i, ca in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not b_matched[j] and b[j] == ca:
                a_matched[i] = b_matched[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    a_chars = [c for c, m in zip(a, a_matched, strict=True) if m]
    b_chars = [c for c, m in zip(b, b_matched, strict=True) if m]
    transpositions = sum(x != y for x, y in zip(a_chars, b_chars, strict=True)) / 2
    return (matches / len(a) + matches / len(b) + (matches - transpositions) / matches) / 3


def suggest_command(typed: str) -> str | None:
    best = max(COMMANDS, key=lambda name: jaro_distance(name, typed))
    return best if jaro_distance(best, typed) >= 0.77 else None


# -- usage texts ------------------------------------------------------------------------------


def all_usage(tty: bool) -> str:
    return (f"\n{bright('Usage', tty)}\n\n{TOOL} [--node <node>] [--timeout <timeout>] "
            "[--longnames] [--quiet] <command> [<command options>]"
            "\n\nAvailable commands:\n" + commands_description(tty)
            + f"Use '{TOOL} help <command>' to learn more about a specific command")


def commands_description(tty: bool) -> str:
    pad = max(len(name) for name in COMMANDS)
    parts = []
    for key, title in SECTIONS:
        names = sorted(c.name for c in COMMAND_LIST if c.section == key)
        if not names:
            continue
        parts.append(f"\n{bright(title, tty)}:\n\n")
        for name in names:
            parts.append(f"   {name.ljust(pad)}  {COMMANDS[name].description}\n")
    return "".join(parts) + "\n"


def base_usage(command: Command, tty: bool) -> str:
    timeout = " [--timeout <timeout>]" if command.has_timeout else ""
    return (f"\n{bright('Usage', tty)}\n\n{TOOL} [--node <node>] [--longnames] [--quiet] "
            f"{command.usage}{timeout}")


def command_usage(command: Command, tty: bool) -> str:
    parts = [base_usage(command, tty), command.description + ".\n"]
    if command.usage_additional:
        lines = [f"{bright('Arguments and Options', tty)}\n"]
        lines += [f"{option}\n\t{text}\n" for option, text in command.usage_additional]
        parts.append("\n".join(lines))
    parts.append(f"{bright('General Options', tty)}\n\n{GENERAL_OPTIONS}")
    return "\n\n".join(parts) + "\n"


# -- the control socket -----------------------------------------------------------------------


def _local_hosts() -> set[str]:
    names = {"localhost", "127.0.0.1", "::1"}
    hostname = socket.gethostname()
    names |= {hostname.lower(), hostname.split(".")[0].lower()}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:
        pass
    return names


def host_name(longnames: bool) -> str:
    hostname = socket.gethostname()
    if longnames:
        fqdn = socket.getfqdn()
        return fqdn if "." in fqdn else hostname
    return hostname.split(".")[0]


@dataclass
class Target:
    node: str  # as shown in banners and errors
    socket: Path
    problem: str | None = None  # why this node cannot be reached at all


def resolve_target(node_opt: str | None, data_dir: Path, longnames: bool) -> Target:
    host = host_name(longnames)
    default_socket = data_dir / SOCKET_NAME
    if node_opt is None:
        return Target(f"{NODE_NAME}@{host}", default_socket)
    if "/" in node_opt or node_opt.endswith(".sock"):
        path = Path(node_opt).expanduser()
        if path.is_dir():
            path = path / SOCKET_NAME
        return Target(node_opt, path)
    node = node_opt if "@" in node_opt else f"{node_opt}@{host}"
    name, _, node_host = node.partition("@")
    if name != NODE_NAME or node_host.lower() not in _local_hosts():
        return Target(node, default_socket,
                      f"{TOOL} reaches only the local node {NODE_NAME}@{host}, through the "
                      "control socket of its data directory (or pass --node <socket path>)")
    return Target(node, default_socket)


class ControlClient:
    """One request per connection: connect (to know the node is up), then call()."""

    def __init__(self, target: Target, timeout_ms: int | None) -> None:
        self.target = target
        self.timeout = None if timeout_ms is None else timeout_ms / 1000
        self.sock: socket.socket | None = None

    def connect(self) -> None:
        if self.target.problem:
            raise NodeDown(self.target.problem)
        path = self.target.socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10.0 if self.timeout is None else min(self.timeout, 10.0))
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            sock.close()
            raise NodeDown(f"control socket {path} does not exist (is the node running with "
                           "this data directory?)") from None
        except ConnectionRefusedError:
            sock.close()
            raise NodeDown(f"control socket {path} refused the connection (the node is not "
                           "running; the socket file is stale)") from None
        except PermissionError:
            sock.close()
            raise NodeDown(f"no permission to open the control socket {path} (run as the "
                           "user the node runs as)") from None
        except OSError as exc:
            sock.close()
            raise NodeDown(f"cannot connect to the control socket {path}: "
                           f"{exc.strerror or exc}") from None
        self.sock = sock

    def call(self, command: str, args: Mapping[str, Any]) -> Any:
        if self.sock is None:
            self.connect()
        sock = self.sock
        assert sock is not None
        self.sock = None
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        request = json.dumps({"command": command, "args": dict(args)}) + "\n"
        buf = bytearray()
        try:
            with sock:
                sock.settimeout(self.timeout)
                sock.sendall(request.encode())
                while b"\n" not in buf:
                    if deadline is not None:
                        sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except TimeoutError:
            raise RequestTimeout() from None
        except OSError as exc:
            raise NodeDown(f"the control connection failed: {exc.strerror or exc}") from None
        line = bytes(buf).split(b"\n", 1)[0]
        if not line.strip():
            raise NodeDown("the node closed the control connection without a reply")
        try:
            reply = json.loads(line)
        except ValueError:
            raise NodeDown("the node sent a reply that is not JSON") from None
        if not isinstance(reply, dict):
            raise NodeDown("the node sent a malformed reply")
        if reply.get("ok"):
            return reply.get("result")
        raise BrokerError(str(reply.get("kind") or "error"), str(reply.get("error") or ""))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def node_down_message(node: str, reason: str) -> str:
    """rabbitmqctl's "unable to perform an operation" text, with trimq's diagnostics."""
    return (
        f"Error: unable to perform an operation on node '{node}'. Please see diagnostics "
        "information and suggestions below.\n"
        "\n"
        "Most common reasons for this are:\n"
        "\n"
        " * Target node is not running\n"
        " * Target node uses another data directory (use --data-dir, or --node with the path "
        "of its control socket)\n"
        " * CLI tool may not open the node's control socket (it is accessible only to the "
        "user the node runs as)\n"
        "\n"
        "In addition to the diagnostics info below:\n"
        "\n"
        f" * Consult server logs on node {node}\n"
        "\n"
        "DIAGNOSTICS\n"
        "===========\n"
        "\n"
        f"attempted to contact: [{erl_atom(node)}]\n"
        "\n"
        f"{node}:\n"
        f"  * {reason}\n"
    )


# -- running a command ------------------------------------------------------------------------


def _stream_is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class Context:
    argv: list[str]
    command: Command
    args: list[str]
    opts: dict[str, Any]
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
        assert self.client is not None
        try:
            return self.client.call(command, args)
        except RequestTimeout:
            raise CtlExit(EXIT_TEMPFAIL,
                          f"Error: operation {self.command.name} on node {self.node} timed "
                          f"out. Timeout value used: {self.opts.get('timeout')}") from None
        except NodeDown as exc:
            raise CtlExit(EXIT_UNAVAILABLE, node_down_message(self.node, exc.reason)) from None

    def usage_error(self, detail: str, code: int = EXIT_USAGE) -> CtlExit:
        return CtlExit(code, f"Error (argument validation): {detail}\nArguments given:\n\t"
                             f"{' '.join(self.argv)}\n"
                             + base_usage(self.command, _stream_is_tty(self.err)))

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
        return CtlExit(EXIT_UNAVAILABLE, json_encode(
            {"message": message, "node": self.node, "result": "error"}))


def error_text(text: str) -> str:
    return f"Error:\n{text}"


def default_error(ctx: Context, exc: BrokerError) -> CtlExit:
    """The exit code for a broker error kind (docs/control-protocol.md), rabbitmqctl's way."""
    if exc.kind == "usage":
        return ctx.usage_error(exc.text)
    code = {
        "auth_failed": EXIT_DATAERR, "user_not_found": EXIT_NOUSER,
        "vhost_not_found": EXIT_NOUSER, "not_found": EXIT_NOUSER, "exists": EXIT_SOFTWARE,
    }.get(exc.kind, EXIT_SOFTWARE)
    return CtlExit(code, error_text(exc.text))


def read_password(ctx: Context) -> str | None:
    if not ctx.quiet:
        ctx.print("Password: ")
        ctx.out.flush()
    line = ctx.stdin.readline()
    password = line.strip()
    return password or None


def _password(ctx: Context, missing_code: int) -> str:
    if len(ctx.args) > 1:
        return ctx.args[1]
    password = read_password(ctx)
    if password is None:
        raise CtlExit(missing_code, error_text("Password is not provided via argument or stdin"))
    return password


# Each runner returns the exit code after printing its result; errors raise CtlExit.


def run_list(ctx: Context) -> int:
    command = ctx.command
    name = command.name
    fixed = {"list_users": ["user", "tags"],
             "list_policies": ["vhost", "name", "pattern", "apply-to", "definition",
                               "priority"],
             "list_permissions": ["user", "configure", "write", "read"],
             "list_user_permissions": ["vhost", "configure", "write", "read"]}
    items = fixed.get(name) or prepare_info_keys(ctx.args) or list(command.default_items)
    request: dict[str, Any] = {}
    if name in ("list_queues", "list_exchanges", "list_bindings", "list_consumers",
                "list_permissions", "list_policies"):
        request["vhost"] = ctx.vhost
    if name == "list_user_permissions":
        request["user"] = ctx.args[0]
    if command.info_keys:
        request["items"] = items
    offline_only = (name == "list_queues" and ctx.opts.get("offline")
                    and not ctx.opts.get("online"))
    try:
        rows = [] if offline_only else ctx.call(name, request)
    except BrokerError as exc:
        rows = list_error(ctx, exc)
    if not isinstance(rows, list):
        rows = []
    rows = [row for row in rows if isinstance(row, Mapping)]
    drop_missing = name == "list_vhosts"
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


def list_error(ctx: Context, exc: BrokerError) -> list[Any]:
    name = ctx.command.name
    if exc.kind == "vhost_not_found" and name in ("list_queues", "list_exchanges",
                                                  "list_bindings", "list_consumers"):
        return []  # rabbitmqctl lists nothing for a vhost that does not exist
    if exc.kind == "vhost_not_found" and name == "list_permissions":
        raise CtlExit(EXIT_DATAERR, f"Virtual host '{ctx.vhost}' does not exist")
    if exc.kind == "user_not_found" and name == "list_user_permissions":
        raise CtlExit(EXIT_UNAVAILABLE, error_text(f'{{:no_such_user, "{ctx.args[0]}"}}'))
    raise default_error(ctx, exc)


def run_status(ctx: Context) -> int:
    try:
        status = ctx.call("status", {})
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    if not isinstance(status, Mapping):
        status = {}
    os_name = platform.system() or "unknown"
    if ctx.json:
        ctx.print(json_encode(output.status_map(status, ctx.node, os_name), sort_keys=True))
    else:
        for line in output.status_lines(status, ctx.node, os_name, _stream_is_tty(ctx.out)):
            ctx.print(line)
    return EXIT_OK


def _read_pid(path: str) -> int | str:
    """The pid in a pid file, or the reason it could not be read (rabbitmqctl's texts)."""
    try:
        contents = Path(path).read_text()
    except FileNotFoundError:
        return f"could not read pid from file {path}. Error: enoent"
    except OSError as exc:
        return f"could not read pid from file {path}. Error: {exc.strerror or exc}"
    match = re.match(r"\s*(\d+)", contents)
    if match is None:
        return f"could not read pid from file {path}. File contents: {contents}"
    return int(match.group(1))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_until_stopped(target: Target, deadline: float | None) -> None:
    """The node answered `stop`; wait until its control socket is gone or dead."""
    while deadline is None or time.monotonic() < deadline:
        if not target.socket.exists():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(target.socket))
        except OSError:
            return
        finally:
            probe.close()
        time.sleep(0.1)


def run_stop(ctx: Context) -> int:
    assert ctx.client is not None and ctx.target is not None
    pidfile = ctx.args[0] if ctx.args else None
    pid = _read_pid(pidfile) if pidfile else None
    try:
        ctx.client.connect()
    except NodeDown as exc:
        if ctx.opts.get("idempotent"):
            return ctx.message(f"Node {ctx.node} is no longer running")
        raise CtlExit(EXIT_UNAVAILABLE, node_down_message(ctx.node, exc.reason)) from None
    try:
        ctx.client.call("stop", {})
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    except NodeDown:
        pass  # it went away before answering: stopped all the same
    except RequestTimeout:
        raise CtlExit(EXIT_TEMPFAIL,
                      f"Error: operation stop on node {ctx.node} timed out. Timeout value "
                      f"used: {ctx.opts.get('timeout')}") from None
    timeout = ctx.opts.get("timeout")
    deadline = None if timeout is None else time.monotonic() + timeout / 1000
    _wait_until_stopped(ctx.target, deadline)
    if pidfile is None:
        return ctx.ok()
    if isinstance(pid, str):
        raise CtlExit(EXIT_UNAVAILABLE, error_text(pid))
    assert pid is not None
    while _process_alive(pid) and (deadline is None or time.monotonic() < deadline):
        time.sleep(0.2)
    return ctx.message(f"process {pid} (take from pid file {pidfile}) is no longer running")


def run_add_user(ctx: Context) -> int:
    user = ctx.args[0]
    password = _password(ctx, EXIT_DATAERR)
    try:
        ctx.call("add_user", {"user": user, "password": password})
    except BrokerError as exc:
        if exc.kind == "exists":
            if ctx.json:
                raise ctx.json_error(f"User {user} already exists") from None
            raise CtlExit(EXIT_SOFTWARE, error_text(f'User "{user}" already exists')) from None
        raise default_error(ctx, exc) from None
    if ctx.json:
        ctx.print(json_encode({"message": ADD_USER_DONE, "node": ctx.node, "status": "ok"}))
    elif not ctx.quiet:
        ctx.print(ADD_USER_DONE)
    return EXIT_OK


def _user_command(ctx: Context, request: dict[str, Any]) -> int:
    """delete_user, change_password, set_user_tags: a missing user is 67."""
    user = ctx.args[0]
    try:
        ctx.call(ctx.command.name, request)
    except BrokerError as exc:
        if exc.kind == "user_not_found":
            if ctx.json:
                raise ctx.json_error(f"User {user} does not exists") from None
            raise CtlExit(EXIT_NOUSER, error_text(f'User "{user}" does not exist')) from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


def run_delete_user(ctx: Context) -> int:
    return _user_command(ctx, {"user": ctx.args[0]})


def run_change_password(ctx: Context) -> int:
    password = _password(ctx, EXIT_SOFTWARE)
    return _user_command(ctx, {"user": ctx.args[0], "password": password})


def run_set_user_tags(ctx: Context) -> int:
    return _user_command(ctx, {"user": ctx.args[0], "tags": ctx.args[1:]})


def run_clear_password(ctx: Context) -> int:
    user = ctx.args[0]
    try:
        ctx.call("clear_password", {"user": user})
    except BrokerError as exc:
        if exc.kind == "user_not_found":
            raise CtlExit(EXIT_UNAVAILABLE, error_text(f'{{:no_such_user, "{user}"}}')) from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


def run_authenticate_user(ctx: Context) -> int:
    user = ctx.args[0]
    password = _password(ctx, EXIT_SOFTWARE)
    try:
        ctx.call("authenticate_user", {"user": user, "password": password})
    except BrokerError as exc:
        if exc.kind in ("auth_failed", "user_not_found"):
            detail = exc.text if exc.kind == "auth_failed" and exc.text \
                else f"user '{user}' - invalid credentials"
            raise CtlExit(EXIT_DATAERR, error_text(
                f'Error: failed to authenticate user "{user}"\n{detail}')) from None
        raise default_error(ctx, exc) from None
    return ctx.message("Success")


def run_add_vhost(ctx: Context) -> int:
    request: dict[str, Any] = {"vhost": ctx.args[0]}
    if "description" in ctx.opts:
        request["description"] = ctx.opts["description"]
    if "tags" in ctx.opts:
        request["tags"] = [t.strip() for t in str(ctx.opts["tags"]).split(",") if t.strip()]
    if "default_queue_type" in ctx.opts:
        request["default_queue_type"] = ctx.opts["default_queue_type"]
    try:
        ctx.call("add_vhost", request)
    except BrokerError as exc:
        if exc.kind != "exists":  # rabbitmqctl: adding an existing vhost succeeds quietly
            raise default_error(ctx, exc) from None
    return ctx.ok()


def run_delete_vhost(ctx: Context) -> int:
    vhost = ctx.args[0]
    try:
        ctx.call("delete_vhost", {"vhost": vhost})
    except BrokerError as exc:
        if exc.kind == "vhost_not_found":
            raise CtlExit(EXIT_DATAERR, f"Virtual host '{vhost}' does not exist") from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


def _permissions_command(ctx: Context, request: dict[str, Any]) -> int:
    user = ctx.args[0]
    try:
        ctx.call(ctx.command.name, request)
    except BrokerError as exc:
        if exc.kind == "user_not_found":
            if ctx.json:
                raise ctx.json_error(f"User {user} does not exist") from None
            raise CtlExit(EXIT_NOUSER, error_text(f"User {user} does not exist")) from None
        if exc.kind == "vhost_not_found":
            text = f"Virtual host {ctx.vhost} does not exist"
            if ctx.json:
                raise ctx.json_error(text) from None
            raise CtlExit(EXIT_UNAVAILABLE, error_text(text)) from None
        if exc.kind == "error":  # an expression that cannot be used: rabbitmqctl exits 69
            raise CtlExit(EXIT_UNAVAILABLE, error_text(exc.text)) from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


def run_set_vhost_limits(ctx: Context) -> int:
    try:
        ctx.call("set_vhost_limits", {"vhost": ctx.vhost, "definition": ctx.args[0]})
    except BrokerError as exc:
        raise _vhost_limits_error(ctx, exc) from None
    return ctx.ok()


def run_clear_vhost_limits(ctx: Context) -> int:
    try:
        ctx.call("clear_vhost_limits", {"vhost": ctx.vhost})
    except BrokerError as exc:
        raise _vhost_limits_error(ctx, exc) from None
    return ctx.ok()


def run_list_vhost_limits(ctx: Context) -> int:
    everywhere = bool(ctx.opts.get("global"))
    request: dict[str, Any] = {"global": True} if everywhere else {"vhost": ctx.vhost}
    try:
        rows = ctx.call("list_vhost_limits", request)
    except BrokerError as exc:
        raise _vhost_limits_error(ctx, exc) from None
    rows = [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []
    for line in output.vhost_limits_lines(rows, everywhere, ctx.node,
                                          str(ctx.opts.get("formatter")),
                                          headers=bool(ctx.opts.get("table_headers", True))
                                          and not ctx.opts.get("silent")):
        ctx.print(line)
    return EXIT_OK


def _vhost_limits_error(ctx: Context, exc: BrokerError) -> CtlExit:
    """rabbitmqctl's: a missing vhost is 65 without "Error:", the rest 69."""
    if exc.kind == "vhost_not_found":
        return CtlExit(EXIT_DATAERR, f"Virtual host '{ctx.vhost}' does not exist")
    if exc.kind == "usage":
        return default_error(ctx, exc)
    return CtlExit(EXIT_UNAVAILABLE, error_text(exc.text))


def run_set_policy(ctx: Context) -> int:
    name, pattern, definition = ctx.args
    request = {"vhost": ctx.vhost, "name": name, "pattern": pattern, "definition": definition,
               "priority": int(ctx.opts.get("priority") or 0),
               "apply_to": ctx.opts.get("apply_to") or "all"}
    try:
        ctx.call("set_policy", request)
    except BrokerError as exc:  # rabbitmqctl exits 69 when a policy does not validate
        raise CtlExit(EXIT_UNAVAILABLE, error_text(exc.text)) from None
    return ctx.ok()


def run_clear_policy(ctx: Context) -> int:
    try:
        ctx.call("clear_policy", {"vhost": ctx.vhost, "name": ctx.args[0]})
    except BrokerError as exc:
        raise CtlExit(EXIT_SOFTWARE, error_text(exc.text)) from None
    return ctx.ok()


def run_set_vm_memory_high_watermark(ctx: Context) -> int:
    request = ({"absolute": parse_size(ctx.args[1]) or 0} if ctx.args[0] == "absolute"
               else {"fraction": float(ctx.args[0])})  # validate() checked both
    try:
        ctx.call("set_memory_high_watermark", request)
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    return ctx.ok()


def run_set_disk_free_limit(ctx: Context) -> int:
    request = ({"mem_relative": float(ctx.args[1])} if ctx.args[0] == "mem_relative"
               else {"bytes": parse_size(ctx.args[0]) or 0})
    try:
        ctx.call("set_disk_free_limit", request)
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    return ctx.ok()


def run_set_permissions(ctx: Context) -> int:
    user, configure, write, read = ctx.args
    return _permissions_command(ctx, {"vhost": ctx.vhost, "user": user, "configure": configure,
                                      "write": write, "read": read})


def run_clear_permissions(ctx: Context) -> int:
    return _permissions_command(ctx, {"vhost": ctx.vhost, "user": ctx.args[0]})


def run_delete_queue(ctx: Context) -> int:
    request = {"vhost": ctx.vhost, "queue": ctx.args[0],
               "if_unused": bool(ctx.opts.get("if_unused")),
               "if_empty": bool(ctx.opts.get("if_empty"))}
    try:
        result = ctx.call("delete_queue", request)
    except BrokerError as exc:
        text = exc.text.lower()
        if exc.kind in ("not_found", "vhost_not_found"):
            raise CtlExit(EXIT_USAGE, error_text("Queue not found")) from None
        if exc.kind == "in_use" or (exc.kind == "error" and text.endswith("in use")):
            raise CtlExit(EXIT_USAGE, error_text("Queue is in use")) from None
        if exc.kind == "not_empty" or (exc.kind == "error" and text.endswith("not empty")):
            raise CtlExit(EXIT_USAGE, error_text("Queue is not empty")) from None
        raise default_error(ctx, exc) from None
    count = result.get("messages", 0) if isinstance(result, Mapping) else 0
    return ctx.message(f"Queue was successfully deleted with {count} ready messages")


def run_purge_queue(ctx: Context) -> int:
    try:
        ctx.call("purge_queue", {"vhost": ctx.vhost, "queue": ctx.args[0]})
    except BrokerError as exc:
        if exc.kind in ("not_found", "vhost_not_found"):
            raise CtlExit(EXIT_UNAVAILABLE, error_text("not_found")) from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


def run_close_connection(ctx: Context) -> int:
    try:
        ctx.call("close_connection", {"name": ctx.args[0], "reason": ctx.args[1]})
    except BrokerError as exc:
        if exc.kind != "not_found":  # rabbitmqctl: closing an unknown connection is a no-op
            raise default_error(ctx, exc) from None
    return ctx.ok()


def run_close_all_connections(ctx: Context) -> int:
    request: dict[str, Any] = {"reason": ctx.args[0], "limit": int(ctx.opts.get("limit", 0))}
    if not ctx.opts.get("global"):
        request["vhost"] = ctx.vhost
    try:
        result = ctx.call("close_all_connections", request)
    except BrokerError as exc:
        if exc.kind != "vhost_not_found":
            raise default_error(ctx, exc) from None
        result = {"closed": 0}
    closed = result.get("closed", 0) if isinstance(result, Mapping) else 0
    return ctx.message(f"Closed {closed} connections")


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
        raise CtlExit(EXIT_DATAERR, error_text(
            f"Failed to deserialise input (format: JSON) (error: {exc})")) from None
    try:
        ctx.call("import_definitions", {"definitions": definitions})
    except BrokerError as exc:  # rabbitmqctl reports a failed import as {:error, _}: 69
        raise CtlExit(EXIT_UNAVAILABLE, error_text(exc.text)) from None
    if ctx.json:
        ctx.print(json_encode({"node": ctx.node, "result": "ok"}))
    elif not ctx.quiet:
        ctx.write(IMPORT_STARTED)
    return EXIT_OK


def run_help(ctx: Context) -> int:
    tty = _stream_is_tty(ctx.out)
    if ctx.args:
        name = ctx.args[0]
        command = COMMANDS.get(name)
        if command is None:
            suggestion = suggest_command(name)
            if suggestion:
                raise CtlExit(EXIT_USAGE, error_text(
                    f"\nCommand '{name}' not found. \nDid you mean '{suggestion}'? \n"))
            raise CtlExit(EXIT_USAGE, error_text(f"\nCommand '{name}' not found."))
        ctx.print(command_usage(command, tty))
        return EXIT_OK
    if ctx.opts.get("list_commands"):
        ctx.print(commands_description(tty))
    else:
        ctx.print(all_usage(tty))
    return EXIT_OK


RUNNERS: dict[str, Callable[[Context], int]] = {
    "help": run_help, "status": run_status, "stop": run_stop, "add_user": run_add_user,
    "delete_user": run_delete_user, "change_password": run_change_password,
    "clear_password": run_clear_password, "authenticate_user": run_authenticate_user,
    "set_user_tags": run_set_user_tags, "add_vhost": run_add_vhost,
    "delete_vhost": run_delete_vhost, "set_permissions": run_set_permissions,
    "clear_permissions": run_clear_permissions, "delete_queue": run_delete_queue,
    "purge_queue": run_purge_queue, "close_connection": run_close_connection,
    "close_all_connections": run_close_all_connections,
    "export_definitions": run_export_definitions,
    "import_definitions": run_import_definitions,
    "set_vm_memory_high_watermark": run_set_vm_memory_high_watermark,
    "set_disk_free_limit": run_set_disk_free_limit,
    "set_policy": run_set_policy, "clear_policy": run_clear_policy,
}
for _command in COMMAND_LIST:
    if _command.name.startswith("list_"):
        RUNNERS[_command.name] = run_list
RUNNERS.update({"set_vhost_limits": run_set_vhost_limits,
                "clear_vhost_limits": run_clear_vhost_limits,
                "list_vhost_limits": run_list_vhost_limits})


KNOWN_UNITS = {"bytes", "kb", "kilobytes", "mb", "megabytes", "gb", "gigabytes", "tb",
               "terabytes"}


def _fraction(text: str, high: float = 1.0) -> bool:
    try:
        return 0.0 <= float(text) <= high
    except ValueError:
        return False


def validate(ctx: Context) -> CtlExit | None:
    """rabbitmqctl's argument validation for the command, or None when the arguments pass."""
    command, args, opts = ctx.command, ctx.args, ctx.opts
    if command.info_keys:
        keys = prepare_info_keys(args)
        bad = sorted(set(keys) - set(command.info_keys))
        if bad:
            return ctx.usage_error(f"Info key(s) {','.join(bad)} are not supported")
        return None
    if len(args) < command.min_args:
        return ctx.usage_error("not enough arguments.")
    if command.max_args is not None and len(args) > command.max_args:
        return ctx.usage_error("too many arguments.")
    name = command.name
    if name == "add_user" and len(args) == 2 and args[0] == "":
        return ctx.usage_error("Bad argument: user cannot be an empty string", EXIT_DATAERR)
    if name == "delete_queue" and args[0] == "":
        return ctx.usage_error("Bad argument: queue name cannot be an empty string",
                               EXIT_DATAERR)
    if name == "set_vm_memory_high_watermark":
        if args[0] == "absolute":
            if len(args) != 2 or parse_size(args[1]) is None:
                return ctx.usage_error("Bad argument: The threshold should be an integer or a "
                                       "string with a unit, such as 1GB", EXIT_DATAERR)
        elif len(args) != 1 or not _fraction(args[0]):
            return ctx.usage_error("Bad argument: The threshold should be a fraction between "
                                   "0.0 and 1.0", EXIT_DATAERR)
    if name == "set_disk_free_limit":
        if args[0] == "mem_relative":
            if len(args) != 2 or not _fraction(args[1], high=100.0):
                return ctx.usage_error("Bad argument.", EXIT_DATAERR)
        elif len(args) != 1 or parse_size(args[0]) is None:
            return ctx.usage_error("Bad argument.", EXIT_DATAERR)
    if name == "status" and "unit" in opts and str(opts["unit"]).lower() not in KNOWN_UNITS:
        return ctx.usage_error(json.dumps(f"unit '{opts['unit']}' is not supported. Please use "
                                          "one of: bytes, mb, gb"))
    if name in ("export_definitions", "import_definitions"):
        fmt = str(opts.get("format", "json"))
        if fmt == "erlang":
            return ctx.usage_error("Bad argument: Format should be json (trimq does not use the "
                                   "Erlang term format)", EXIT_DATAERR)
        if fmt not in ("json", "JSON"):
            return ctx.usage_error("Bad argument: Format should be either json or erlang",
                                   EXIT_DATAERR)
        if name == "export_definitions" and args[0] != "-":
            directory = os.path.dirname(args[0]) or "."
            if not os.path.exists(directory):
                return ctx.usage_error(f"Bad argument: Directory {directory} does not exist",
                                       EXIT_DATAERR)
        if name == "import_definitions" and args and args[0] != "-" \
                and not os.path.exists(args[0]):
            return ctx.usage_error(f"Bad argument: File {args[0]} does not exist",
                                   EXIT_DATAERR)
    return None


def effective_formatter(command: Command, requested: str | None) -> str:
    """json and table everywhere, csv for listings; anything else: the command's own."""
    if requested in ("json", "table") or requested == "csv" and command.table:
        return requested
    return "table" if command.table else "string"


def execute(argv: list[str], out: TextIO, err: TextIO, stdin: TextIO) -> int:
    if not argv:
        raise CtlExit(EXIT_USAGE, all_usage(_stream_is_tty(err)))
    if argv == ["--help"]:
        out.write(all_usage(_stream_is_tty(out)) + "\n")
        return EXIT_OK
    global_opts, global_args, _ = parse_options(argv, GLOBAL_SWITCHES, GLOBAL_ALIASES)
    name = global_args[0] if global_args else ""
    command = COMMANDS.get(name)
    if command is None:
        if not name:
            raise CtlExit(EXIT_USAGE, all_usage(_stream_is_tty(err)))
        suggestion = suggest_command(name)
        if suggestion:
            raise CtlExit(EXIT_USAGE,
                          f"\nCommand '{name}' not found. \nDid you mean '{suggestion}'? \n")
        raise CtlExit(EXIT_USAGE,
                      f"\nCommand '{name}' not found. \n" + all_usage(_stream_is_tty(err)))

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
        detail = "\n".join(["Invalid options for this command:"]
                           + [f"{key} : {value or ''}" for key, value in invalid])
        raise ctx.usage_error(detail)
    if opts.get("help"):
        out.write(command_usage(command, _stream_is_tty(out)) + "\n")
        return EXIT_OK

    # defaults, as the commands' merge_defaults set them
    opts.setdefault("vhost", "/")
    if "timeout" in opts:
        opts["timeout"] = int(opts["timeout"]) * 1000
    elif command.default_timeout is not None:
        opts["timeout"] = command.default_timeout
    if name == "export_definitions" and args == ["-"] or \
            name == "import_definitions" and args == ["-"]:
        opts["silent"] = True
    data_dir = Path(opts["data_dir"]).expanduser() if "data_dir" in opts \
        else default_data_dir()
    target = resolve_target(opts.get("node"), data_dir, bool(opts.get("longnames")))
    ctx.node = target.node
    ctx.target = target
    opts["node"] = target.node

    failure = validate(ctx)
    if failure is not None:
        raise failure
    if name == "help":
        return run_help(ctx)

    ctx.client = ControlClient(target, opts.get("timeout"))
    try:
        if command.needs_node:
            try:
                ctx.client.connect()
            except NodeDown as exc:
                raise CtlExit(EXIT_UNAVAILABLE, node_down_message(target.node, exc.reason)) \
                    from None
        if not ctx.quiet and not ctx.machine_readable:
            for line in output.banner(name, args, opts):
                ctx.print(line)
        if opts.get("dry_run"):
            return EXIT_OK
        return RUNNERS[name](ctx)
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
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        code = 128 + 13
    except KeyboardInterrupt:
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())
