"""The node itself: status, its resource limits (set_vm_memory_high_watermark,
set_disk_free_limit) and stop."""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trimq.cli import output
from trimq.cli.commands.base import (
    EXIT_DATAERR,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE,
    LIST_TIMEOUT_MS,
    Command,
    Context,
    CtlExit,
    Section,
    default_error,
    error_text,
    register,
    stream_is_tty,
)
from trimq.cli.config import parse_size
from trimq.cli.control_client import BrokerError, NodeDown, RequestTimeout, node_down_message

KNOWN_UNITS = {"bytes", "kb", "kilobytes", "mb", "megabytes", "gb", "gigabytes", "tb", "terabytes"}


# -- status -----------------------------------------------------------------------------------


def validate_status(ctx: Context) -> CtlExit | None:
    unit = ctx.opts.get("unit")
    if "unit" in ctx.opts and str(unit).lower() not in KNOWN_UNITS:
        return ctx.usage_error(
            json.dumps(f"unit '{unit}' is not supported. Please use one of: bytes, mb, gb")
        )
    return None


def run_status(ctx: Context) -> int:
    try:
        status = ctx.call("status", {})
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    if not isinstance(status, Mapping):
        status = {}
    os_name = platform.system() or "unknown"
    if ctx.json:
        ctx.print(output.json_encode(output.status_map(status, ctx.node, os_name), sort_keys=True))
    else:
        for line in output.status_lines(status, ctx.node, os_name, stream_is_tty(ctx.out)):
            ctx.print(line)
    return EXIT_OK


register(
    Command(
        "status",
        "status [--unit <unit>]",
        "Displays status of a node",
        Section.OBSERVABILITY,
        run_status,
        switches={"unit": "string", "timeout": "integer"},
        has_timeout=True,
        default_timeout=LIST_TIMEOUT_MS,
        usage_additional=[
            ("--unit <bytes | mb | gb>", "byte multiple (bytes, megabytes, gigabytes) to use"),
            ("--formatter <json>", "alternative formatter (JSON)"),
        ],
        validate=validate_status,
        banner=lambda args, opts: [f"Status of node {opts.get('node', '')} ..."],
    )
)


# -- resource limits --------------------------------------------------------------------------


def _fraction(text: str, high: float = 1.0) -> bool:
    try:
        return 0.0 <= float(text) <= high
    except ValueError:
        return False


def validate_watermark(ctx: Context) -> CtlExit | None:
    args = ctx.args
    if args[0] == "absolute":
        if len(args) != 2 or parse_size(args[1]) is None:
            return ctx.usage_error(
                "Bad argument: The threshold should be an integer or a "
                "string with a unit, such as 1GB",
                EXIT_DATAERR,
            )
    elif len(args) != 1 or not _fraction(args[0]):
        return ctx.usage_error(
            "Bad argument: The threshold should be a fraction between 0.0 and 1.0", EXIT_DATAERR
        )
    return None


def run_set_vm_memory_high_watermark(ctx: Context) -> int:
    request = (
        {"absolute": parse_size(ctx.args[1]) or 0}
        if ctx.args[0] == "absolute"
        else {"fraction": float(ctx.args[0])}
    )  # validate_watermark checked both
    try:
        ctx.call("set_memory_high_watermark", request)
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    return ctx.ok()


def watermark_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    node = opts.get("node", "")
    if args[0] == "absolute" and len(args) > 1:
        return [f"Setting memory threshold on {node} to {args[1]} bytes ..."]
    return [f"Setting memory threshold on {node} to {args[0]} ..."]


register(
    Command(
        "set_vm_memory_high_watermark",
        "set_vm_memory_high_watermark <fraction> | absolute <value>",
        "Sets the vm_memory_high_watermark setting",
        Section.CONFIGURATION,
        run_set_vm_memory_high_watermark,
        min_args=1,
        max_args=2,
        usage_additional=[
            ("<fraction>", "New limit as a fraction of total memory reported by the OS"),
            ("absolute <value>", "New limit as an absolute value with units, e.g. 1GB"),
        ],
        validate=validate_watermark,
        banner=watermark_banner,
    )
)


def validate_disk_free_limit(ctx: Context) -> CtlExit | None:
    args = ctx.args
    if args[0] == "mem_relative":
        if len(args) != 2 or not _fraction(args[1], high=100.0):
            return ctx.usage_error("Bad argument.", EXIT_DATAERR)
    elif len(args) != 1 or parse_size(args[0]) is None:
        return ctx.usage_error("Bad argument.", EXIT_DATAERR)
    return None


def run_set_disk_free_limit(ctx: Context) -> int:
    request = (
        {"mem_relative": float(ctx.args[1])}
        if ctx.args[0] == "mem_relative"
        else {"bytes": parse_size(ctx.args[0]) or 0}
    )
    try:
        ctx.call("set_disk_free_limit", request)
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    return ctx.ok()


def disk_free_limit_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    node = opts.get("node", "")
    if args[0] == "mem_relative" and len(args) > 1:
        return [f"Setting disk free limit on {node} to {args[1]} times the total RAM ..."]
    return [f"Setting disk free limit on {node} to {args[0]} bytes ..."]


register(
    Command(
        "set_disk_free_limit",
        "set_disk_free_limit <disk_limit> | mem_relative <fraction>",
        "Sets the disk_free_limit setting",
        Section.CONFIGURATION,
        run_set_disk_free_limit,
        min_args=1,
        max_args=2,
        usage_additional=[
            ("<disk_limit>", "New limit as an absolute value with units, e.g. 1GB"),
            (
                "mem_relative <fraction>",
                "New limit as a fraction of total memory reported by the OS",
            ),
        ],
        validate=validate_disk_free_limit,
        banner=disk_free_limit_banner,
    )
)


# -- stop -------------------------------------------------------------------------------------


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


def _wait_until_stopped(socket_path: Path, deadline: float | None) -> None:
    """The node answered `stop`; wait until its control socket is gone or dead."""
    while deadline is None or time.monotonic() < deadline:
        if not socket_path.exists():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(socket_path))
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
        raise CtlExit(
            EXIT_TEMPFAIL,
            f"Error: operation stop on node {ctx.node} timed out. Timeout value "
            f"used: {ctx.opts.get('timeout')}",
        ) from None
    timeout = ctx.opts.get("timeout")
    deadline = None if timeout is None else time.monotonic() + timeout / 1000
    _wait_until_stopped(ctx.target.socket, deadline)
    if pidfile is None:
        return ctx.ok()
    if isinstance(pid, str):
        raise CtlExit(EXIT_UNAVAILABLE, error_text(pid))
    assert pid is not None
    while _process_alive(pid) and (deadline is None or time.monotonic() < deadline):
        time.sleep(0.2)
    return ctx.message(f"process {pid} (take from pid file {pidfile}) is no longer running")


def stop_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    node = opts.get("node", "")
    if args:
        return [f"Stopping and halting node {node} (will monitor pid file {args[0]}) ..."]
    return [f"Stopping and halting node {node} ..."]


register(
    Command(
        "stop",
        "stop [--idempotent] [<pidfile>]",
        "Stops the trimq node. Waits until it has stopped; with a pid file path, also until that "
        "process has exited",
        Section.NODES,
        run_stop,
        max_args=1,
        switches={"idempotent": "boolean"},
        needs_node=False,
        usage_additional=[
            ("<pidfile>", "node PID file path to monitor"),
            ("--idempotent", "return success if target node is not running (cannot be contacted)"),
        ],
        banner=stop_banner,
    )
)


# -- reload_tls -------------------------------------------------------------------------------


def run_reload_tls(ctx: Context) -> int:
    try:
        result = ctx.call("reload_tls", {})
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    warning = result.get("warning") if isinstance(result, Mapping) else None
    if warning:
        return ctx.message(f"Warning: {warning}")
    return ctx.ok()


register(
    Command(
        "reload_tls",
        "reload_tls",
        "Re-reads the TLS certificate, key and CA files for new AMQPS connections (existing "
        "ones keep theirs); on error the files in use stay",
        Section.NODES,
        run_reload_tls,
        banner=lambda args, opts: [
            f"Reloading TLS certificates on node {opts.get('node', '')} ..."
        ],
    )
)
