"""The commands not yet in a module of their own, with the name-keyed tables they used to
share in ctl.py (runners, validation, banners)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from trimq.cli import output
from trimq.cli.commands.base import (
    EXIT_DATAERR,
    EXIT_NOUSER,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    LIST_TIMEOUT_MS,
    Command,
    Context,
    CtlExit,
    Section,
    columns_usage,
    default_error,
    error_text,
    prepare_info_keys,
    register,
)
from trimq.cli.control_client import BrokerError
from trimq.cli.output import json_encode
from trimq.info_items import (
    BINDING_ITEMS,
    CHANNEL_ITEMS,
    CONNECTION_ITEMS,
    CONSUMER_ITEMS,
    EXCHANGE_ITEMS,
    QUEUE_ITEMS,
    VHOST_ITEMS,
)

IMPORT_STARTED = ("Successfully started definition import. "
                  "This process is asynchronous and can take some time.\n")

_SECTIONS = {
    "access_control": Section.ACCESS_CONTROL, "observability_and_health_checks":
    Section.OBSERVABILITY, "policies": Section.POLICIES, "virtual_hosts": Section.VIRTUAL_HOSTS,
    "definitions": Section.DEFINITIONS, "operations": Section.OPERATIONS,
    "queues": Section.QUEUES,
}


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


RUNNERS: dict[str, Callable[[Context], int]] = {
    "add_vhost": run_add_vhost, "delete_vhost": run_delete_vhost,
    "set_permissions": run_set_permissions, "clear_permissions": run_clear_permissions,
    "delete_queue": run_delete_queue, "purge_queue": run_purge_queue,
    "close_connection": run_close_connection,
    "close_all_connections": run_close_all_connections,
    "export_definitions": run_export_definitions,
    "import_definitions": run_import_definitions,
    "set_policy": run_set_policy, "clear_policy": run_clear_policy,
    "set_vhost_limits": run_set_vhost_limits, "clear_vhost_limits": run_clear_vhost_limits,
    "list_vhost_limits": run_list_vhost_limits,
}


def _run(ctx: Context) -> int:
    name = ctx.command.name
    return RUNNERS.get(name, run_list)(ctx)


def _validate(ctx: Context) -> CtlExit | None:
    """rabbitmqctl's argument validation for the command, or None when the arguments pass."""
    name, args, opts = ctx.command.name, ctx.args, ctx.opts
    if name == "delete_queue" and args[0] == "":
        return ctx.usage_error("Bad argument: queue name cannot be an empty string",
                               EXIT_DATAERR)
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


def _stdout_is_silent(args: Sequence[str], opts: dict[str, Any]) -> None:
    if list(args) == ["-"]:
        opts["silent"] = True


def _command(name: str, usage: str, description: str, section: str, **fields: Any) -> Command:
    if name in ("export_definitions", "import_definitions"):
        fields["merge_defaults"] = _stdout_is_silent
    return Command(name, usage, description, _SECTIONS[section], _run, validate=_validate,
                   banner=partial(output.banner, name), **fields)


def _list_command(name: str, usage: str, description: str, keys: Sequence[str],
                  default: Sequence[str], section: str = "observability_and_health_checks",
                  **extra: Any) -> Command:
    return _command(name, usage, description, section, max_args=None, table=True,
                    has_timeout=True, default_timeout=LIST_TIMEOUT_MS, info_keys=keys,
                    default_items=default, usage_additional=[columns_usage(keys)],
                    switches={"timeout": "integer", **extra.pop("switches", {})}, **extra)


for _command_ in [
    _command("add_vhost",
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
    _command("delete_vhost", "delete_vhost <vhost>", "Deletes a virtual host", "virtual_hosts",
            min_args=1, max_args=1,
            usage_additional=[("<vhost>", "Name of the virtual host to delete.")]),
    _list_command("list_vhosts", "list_vhosts [--no-table-headers] [<column> ...]",
                  "Lists virtual hosts", VHOST_ITEMS, ["name"], section="access_control"),
    _command("set_vhost_limits", "set_vhost_limits [--vhost <vhost>] <definition>",
            "Sets virtual host limits", "virtual_hosts", min_args=1, max_args=1,
            usage_additional=[
                ("<definition>", "Limit definitions, must be a valid JSON document: "
                                 '{"max-connections": N, "max-queues": N} (negative: no '
                                 "limit)")]),
    _command("clear_vhost_limits", "clear_vhost_limits [--vhost <vhost>]",
            "Clears virtual host limits", "virtual_hosts"),
    _command("list_vhost_limits",
            "list_vhost_limits [--vhost <vhost>] [--global] [--no-table-headers]",
            "Displays configured virtual host limits", "virtual_hosts", table=True,
            switches={"global": "boolean"},
            usage_additional=[("--global", "list the limits of every virtual host")]),
    _command("set_permissions",
            "set_permissions [--vhost <vhost>] <username> <conf> <write> <read>",
            "Sets user permissions for a vhost", "access_control", min_args=4, max_args=4,
            usage_additional=[
                ("<username>", "Self-explanatory"),
                ("<conf>", "Configuration permission pattern"),
                ("<write>", "Write permission pattern"),
                ("<read>", "Read permission pattern")]),
    _command("clear_permissions", "clear_permissions [--vhost <vhost>] <username>",
            "Revokes user permissions for a vhost", "access_control", min_args=1, max_args=1,
            usage_additional=[("<username>", "Name of the user whose permissions should be "
                                             "revoked")]),
    _command("list_permissions", "list_permissions [--vhost <vhost>] [--no-table-headers]",
            "Lists user permissions in a virtual host", "access_control", table=True,
            has_timeout=True, default_timeout=LIST_TIMEOUT_MS, switches={"timeout": "integer"}),
    _command("list_user_permissions", "list_user_permissions [--no-table-headers] <username>",
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
    _command("set_policy",
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
    _command("clear_policy", "clear_policy [--vhost <vhost>] <name>",
            "Clears (removes) a policy", "policies", min_args=1, max_args=1,
            usage_additional=[("<name>", "Name of policy to clear (remove)")]),
    _command("list_policies", "list_policies [--vhost <vhost>] [--no-table-headers]",
            "Lists all policies in a virtual host", "policies", table=True),
    _command("delete_queue", "delete_queue <queue_name> [--if-empty|-e] [--if-unused|-u]",
            "Deletes a queue", "queues", min_args=1, max_args=1,
            switches={"if_empty": "boolean", "if_unused": "boolean", "timeout": "integer"},
            aliases={"e": "if_empty", "u": "if_unused", "t": "timeout"}, has_timeout=True,
            usage_additional=[
                ("<queue_name>", "name of the queue to delete"),
                ("--if-empty",
                 "delete the queue if it is empty (has no messages ready for delivery)"),
                ("--if-unused", "delete the queue only if it has no consumers")]),
    _command("purge_queue", "purge_queue <queue>",
            "Purges a queue (removes all messages in it)", "queues", min_args=1, max_args=1,
            switches={"timeout": "integer"}, has_timeout=True,
            usage_additional=[("<queue>", "Name of the queue to purge")]),
    _command("close_connection", "close_connection <connection pid> <explanation>",
            "Instructs the broker to close the connection associated with the process id",
            "operations", min_args=2, max_args=2,
            usage_additional=[
                ("<connection pid>",
                 "connection identifier (its pid or name), see list_connections"),
                ("<explanation>", "reason for connection closure")]),
    _command("close_all_connections",
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
    _command("export_definitions", 'export_definitions <file_path | "-"> [--format <json>]',
            "Exports definitions in JSON (RabbitMQ's definitions format).", "definitions",
            min_args=1, max_args=1, switches={"timeout": "integer", "format": "string"},
            has_timeout=True,
            usage_additional=[
                ("<file>", "Local file path to export to. Pass a dash (-) for stdout."),
                ("--format", "output format to use: json")]),
    _command("import_definitions", 'import_definitions <file_path | "-"> [--format <json>]',
            "Imports definitions in JSON (RabbitMQ's definitions format).", "definitions",
            max_args=1,
            switches={"timeout": "integer", "format": "string",
                      "skip_if_unchanged": "boolean"},
            has_timeout=True,
            usage_additional=[
                ("[file]", "Local file path to import from. If omitted will be read from "
                           "standard input"),
                ("--format", "input format to use: json")]),
]:
    register(_command_)
