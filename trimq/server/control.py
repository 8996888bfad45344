"""The control socket: trimqctl's requests, one JSON line in and one JSON line out.

The socket lives in the data directory with owner-only permissions; see
docs/control-protocol.md for the framing and the commands.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import trio

from trimq import __version__
from trimq.admin_errors import AdminError, ErrorKind
from trimq.amqp.publish import clear_caches
from trimq.broker.definitions import export_definitions, import_definitions
from trimq.broker.deletion import DeletionRefused, Refusal, check_deletable
from trimq.broker.peek import MAX_COUNT as MAX_PEEK
from trimq.broker.vhost import VHost
from trimq.info_items import BINDING_ITEMS, CONSUMER_ITEMS, ITEMS
from trimq.server import info
from trimq.server.datadir import exposure_warning
from trimq.server.peeking import find_messages, peek_queue
from trimq.server.resources import total_memory
from trimq.server.state import ServerState, close_connections

log = structlog.get_logger("trimq.control")

CONTROL_SOCKET = "trimq.sock"
MAX_REQUEST = 64 * 2**20  # import_definitions documents can be large
REQUEST_TIMEOUT = 30.0

Handler = Callable[[ServerState, dict[str, Any]], Awaitable[Any]]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = handler
        return handler

    return register


async def serve_control(
    state: ServerState, path: Path, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Listen on the Unix socket `path` (replacing a stale one: the data directory's lock
    says no other broker runs here)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old_umask)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(_handle, state, stream)
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()
        with contextlib.suppress(OSError):
            path.unlink()


async def _handle(state: ServerState, stream: trio.SocketStream) -> None:
    """One request. Nothing a client sends may end the broker: anything unexpected is logged
    and answered as an error."""
    async with stream:
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                try:
                    request = await _read_request(stream)
                except AdminError as exc:
                    reply = _failure(exc.kind, exc.message)
                else:
                    reply = await _dispatch(state, request)
                await stream.send_all(_encode(reply))
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except Exception:  # a bug here must not take the broker down
            log.exception("control.failed")


def _failure(kind: ErrorKind, error: str) -> dict[str, Any]:
    return {"ok": False, "kind": kind, "error": error}


def _encode(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply).encode() + b"\n"
    except (TypeError, ValueError):
        log.error("control.unencodable_reply")
        return (
            json.dumps(_failure(ErrorKind.INTERNAL, "the reply could not be encoded")).encode()
            + b"\n"
        )


async def _read_request(stream: trio.SocketStream) -> Any:
    buf = bytearray()
    while b"\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_REQUEST:
            raise AdminError(ErrorKind.USAGE, "request too large")
    try:
        return json.loads(buf.split(b"\n", 1)[0])
    except (ValueError, RecursionError):  # not JSON (or not UTF-8); absurdly nested
        return None


async def _dispatch(state: ServerState, request: Any) -> dict[str, Any]:
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        return _failure(ErrorKind.USAGE, "malformed request")
    name = request["command"]
    args = request.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return _failure(ErrorKind.USAGE, f"bad arguments for {name}: args must be an object")
    handler = COMMANDS.get(name)
    if handler is None:
        return _failure(ErrorKind.USAGE, f"unknown command '{name}'")
    try:
        result = await handler(state, args)
    except AdminError as exc:
        return _failure(exc.kind, exc.message)
    except Exception as exc:  # a bug (arguments are checked above): the broker goes on
        log.exception("control.command_failed", command=name)
        return _failure(
            ErrorKind.INTERNAL,
            f"{name} failed unexpectedly ({type(exc).__name__}); see the broker log",
        )
    log.info(
        "control.command",
        command=name,
        **{k: v for k, v in args.items() if k in ("user", "vhost", "queue", "name")},
    )
    return {"ok": True, "result": result}


# -- arguments: each is checked for its type, so a malformed one is a usage error --------------


_REQUIRED: Any = object()


def _arg(args: dict[str, Any], key: str, default: Any) -> Any:
    value = args.get(key)
    if value is None:
        if default is _REQUIRED:
            raise AdminError(ErrorKind.USAGE, f"missing argument '{key}'")
        return default
    return value


def arg_str(args: dict[str, Any], key: str, default: Any = _REQUIRED) -> str:
    value = _arg(args, key, default)
    if not isinstance(value, str):
        raise AdminError(ErrorKind.USAGE, f"argument '{key}' must be a string")
    return value


def arg_int(
    args: dict[str, Any], key: str, default: Any = _REQUIRED, low: int = 0, high: int = 2**63 - 1
) -> int:
    value = _arg(args, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AdminError(
            ErrorKind.USAGE, f"argument '{key}' must be an integer from {low} to {high}"
        )
    return value


def arg_number(args: dict[str, Any], key: str, default: Any = _REQUIRED) -> float:
    value = _arg(args, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AdminError(ErrorKind.USAGE, f"argument '{key}' must be a number")
    return float(value)


def arg_bool(args: dict[str, Any], key: str) -> bool:
    value = _arg(args, key, False)
    if not isinstance(value, bool):
        raise AdminError(ErrorKind.USAGE, f"argument '{key}' must be true or false")
    return value


def arg_strings(args: dict[str, Any], key: str) -> list[str]:
    value = _arg(args, key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AdminError(ErrorKind.USAGE, f"argument '{key}' must be a list of strings")
    return list(value)


def _items(args: dict[str, Any], kind: str) -> list[str]:
    items = arg_strings(args, "items")
    unknown = [i for i in items if i not in ITEMS[kind]]
    if unknown:
        raise AdminError(ErrorKind.USAGE, f"Info key(s) {','.join(unknown)} are not supported")
    return items


# -- node ------------------------------------------------------------------------------------


@command("status")
async def _status(state: ServerState, args: dict[str, Any]) -> Any:
    broker = state.broker
    queues = [q for v in broker.vhosts.values() for q in v.queues.values()]
    return {
        "pid": os.getpid(),
        "version": __version__,
        "node": info.NODE,
        "data_dir": str(state.data_dir) if state.data_dir else "",
        "listeners": [list(address) for address in state.listeners]
        + [[host, port, "amqp/ssl"] for host, port in state.tls_listeners],
        "uptime": round(time.time() - state.started_at, 3),
        "connections": sum(1 for c in state.connections if c.opened),
        "queues": len(queues),
        "messages": sum(q.message_count for q in queues),
        "tasks": count_tasks(),
        "open_files": count_open_files(),
        "warnings": [
            w
            for w in (
                exposure_warning(state.data_dir),
                state.tls.warning() if state.tls is not None else None,
            )
            if w
        ],
        **state.resources.status(),
    }


def count_tasks() -> int:
    """Every trio task in the process: a leak shows as a count that only grows."""
    root = trio.lowlevel.current_root_task()
    pending = [root] if root is not None else []
    count = 0
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def count_open_files() -> int | None:
    """The process's open file descriptors (sockets included), where /proc shows them."""
    try:
        return sum(1 for _ in Path("/proc/self/fd").iterdir())
    except OSError:
        return None


@command("object_counts")
async def _object_counts(state: ServerState, args: dict[str, Any]) -> Any:
    """For hunting leaks: live objects by type, unless `collect` is false after emptying the
    publish decoding caches and a full collection. Holds up the broker while it walks every
    object."""
    if args.get("collect", True):
        clear_caches()
        gc.collect()
    counts = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    return {
        "gc_objects": counts.total(),
        "allocated_blocks": sys.getallocatedblocks(),
        "types": dict(counts.most_common()),
    }


@command("set_memory_high_watermark")
async def _set_memory_high_watermark(state: ServerState, args: dict[str, Any]) -> Any:
    absolute = arg_int(args, "absolute", 0)
    fraction = arg_number(args, "fraction", 0.0)
    if not absolute and not 0.0 <= fraction <= 1.0:
        raise AdminError(ErrorKind.USAGE, "The threshold should be a fraction between 0.0 and 1.0")
    state.resources.set_memory_high_watermark(fraction, absolute)
    log.info("control.memory_high_watermark", fraction=fraction, absolute=absolute)
    return {}


@command("set_disk_free_limit")
async def _set_disk_free_limit(state: ServerState, args: dict[str, Any]) -> Any:
    if "mem_relative" in args:
        relative = arg_number(args, "mem_relative")
        if not 0.0 <= relative <= 100.0:
            raise AdminError(ErrorKind.USAGE, "argument 'mem_relative' must be from 0 to 100")
        limit = int(relative * total_memory())
    else:
        limit = arg_int(args, "bytes")
    state.resources.set_disk_free_limit(limit)
    log.info("control.disk_free_limit", limit=limit)
    return {}


@command("reload_tls")
async def _reload_tls(state: ServerState, args: dict[str, Any]) -> Any:
    """Re-read the TLS certificate, key and CA files for new connections; on error the
    current ones stay and the error is the answer."""
    if state.tls is None:
        raise AdminError(ErrorKind.ERROR, "no TLS listener is configured ('tls.port' is 0)")
    error = state.tls.reload()
    if error is not None:
        raise AdminError(ErrorKind.ERROR, f"TLS certificates not reloaded: {error}")
    return {"warning": state.tls.warning()}


@command("stop")
async def _stop(state: ServerState, args: dict[str, Any]) -> Any:
    log.info("control.stop")
    state.request_stop()
    return {}


# -- users -----------------------------------------------------------------------------------


@command("add_user")
async def _add_user(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.add_user(arg_str(args, "user"), arg_str(args, "password"))
    return {}


@command("delete_user")
async def _delete_user(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.delete_user(arg_str(args, "user"))
    return {}


@command("change_password")
async def _change_password(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.change_password(arg_str(args, "user"), arg_str(args, "password"))
    return {}


@command("clear_password")
async def _clear_password(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_password(arg_str(args, "user"))
    return {}


@command("authenticate_user")
async def _authenticate_user(state: ServerState, args: dict[str, Any]) -> Any:
    name = arg_str(args, "user")
    if state.broker.users.authenticate(name, arg_str(args, "password")) is None:
        raise AdminError(ErrorKind.AUTH_FAILED, f"user '{name}' - invalid credentials")
    return {}


@command("set_user_tags")
async def _set_user_tags(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.set_user_tags(arg_str(args, "user"), arg_strings(args, "tags"))
    return {}


@command("list_users")
async def _list_users(state: ServerState, args: dict[str, Any]) -> Any:
    users = sorted(state.broker.users.users.values(), key=lambda u: u.name)
    return [{"user": u.name, "tags": list(u.tags)} for u in users]


# -- vhosts ----------------------------------------------------------------------------------


@command("add_vhost")
async def _add_vhost(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.add_vhost(
        arg_str(args, "vhost"), arg_str(args, "description", ""), arg_strings(args, "tags")
    )
    return {}


@command("delete_vhost")
async def _delete_vhost(state: ServerState, args: dict[str, Any]) -> Any:
    name = arg_str(args, "vhost")
    state.broker.get_vhost(name)
    inside = [c for c in state.connections if c.opened and c.vhost.name == name]
    await close_connections(inside, f"vhost '{name}' is deleted")
    state.broker.delete_vhost(name)
    return {}


@command("list_vhosts")
async def _list_vhosts(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "vhosts") or ["name"]
    return info.select(info.vhost_rows(state), items)


@command("set_vhost_limits")
async def _set_vhost_limits(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = arg_str(args, "vhost", "/")
    definition = _arg(args, "definition", _REQUIRED)
    state.broker.get_vhost(vhost)
    if isinstance(definition, str):
        definition = _json_argument(definition)
    state.broker.set_vhost_limits(vhost, definition)
    return {}


@command("clear_vhost_limits")
async def _clear_vhost_limits(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_vhost_limits(arg_str(args, "vhost", "/"))
    return {}


@command("list_vhost_limits")
async def _list_vhost_limits(state: ServerState, args: dict[str, Any]) -> Any:
    if arg_bool(args, "global"):
        vhosts = sorted(state.broker.vhosts.values(), key=lambda v: v.name)
    else:
        vhosts = [state.broker.get_vhost(arg_str(args, "vhost", "/"))]
    return [{"vhost": v.name, "limits": dict(v.limits)} for v in vhosts if v.limits is not None]


def _json_argument(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise AdminError(ErrorKind.ERROR, "JSON decoding error. Reason: badarg") from None


# -- permissions -----------------------------------------------------------------------------


@command("set_permissions")
async def _set_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.set_permissions(
        arg_str(args, "vhost", "/"),
        arg_str(args, "user"),
        arg_str(args, "configure"),
        arg_str(args, "write"),
        arg_str(args, "read"),
    )
    return {}


@command("clear_permissions")
async def _clear_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_permissions(arg_str(args, "vhost", "/"), arg_str(args, "user"))
    return {}


@command("list_permissions")
async def _list_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = state.broker.get_vhost(arg_str(args, "vhost", "/")).name
    return [
        {"user": user, "configure": p.configure, "write": p.write, "read": p.read}
        for (v, user), p in sorted(state.broker.users.permissions.items())
        if v == vhost
    ]


@command("list_user_permissions")
async def _list_user_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    user = state.broker.get_user(arg_str(args, "user")).name
    return [
        {"vhost": v, "configure": p.configure, "write": p.write, "read": p.read}
        for (v, u), p in sorted(state.broker.users.permissions.items())
        if u == user
    ]


# -- listings --------------------------------------------------------------------------------


def _vhost(state: ServerState, args: dict[str, Any]) -> VHost:
    return state.broker.get_vhost(arg_str(args, "vhost", "/"))


@command("list_queues")
async def _list_queues(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "queues") or ["name", "messages"]
    return info.select(info.queue_rows(state, _vhost(state, args)), items)


@command("list_exchanges")
async def _list_exchanges(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "exchanges") or ["name", "type"]
    return info.select(info.exchange_rows(_vhost(state, args)), items)


@command("list_bindings")
async def _list_bindings(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "bindings") or BINDING_ITEMS
    return info.select(info.binding_rows(_vhost(state, args)), items)


@command("list_connections")
async def _list_connections(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "connections") or ["user", "peer_host", "peer_port", "state"]
    return info.select(info.connection_rows(state), items)


@command("list_channels")
async def _list_channels(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "channels") or ["pid", "user", "consumer_count", "messages_unacknowledged"]
    return info.select(info.channel_rows(state), items)


@command("list_consumers")
async def _list_consumers(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "consumers") or [*CONSUMER_ITEMS[:6], "arguments"]
    return info.select(info.consumer_rows(state, _vhost(state, args)), items)


# -- queues and connections ------------------------------------------------------------------


@command("delete_queue")
async def _delete_queue(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = _vhost(state, args)
    name = arg_str(args, "queue")
    queue = vhost.queues.get(name)
    if queue is None:
        raise AdminError(ErrorKind.NOT_FOUND, f"queue '{name}' in vhost '{vhost.name}' not found")
    try:
        check_deletable(queue, arg_bool(args, "if_unused"), arg_bool(args, "if_empty"))
    except DeletionRefused as refused:  # rabbitmqctl's words: "in use", "is not empty"
        if refused.refusal is Refusal.IN_USE:
            raise AdminError(
                ErrorKind.IN_USE, f"queue '{name}' in vhost '{vhost.name}' in use"
            ) from None
        raise AdminError(
            ErrorKind.NOT_EMPTY, f"queue '{name}' in vhost '{vhost.name}' is not empty"
        ) from None
    return {"messages": vhost.delete_queue(queue)}


@command("purge_queue")
async def _purge_queue(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = _vhost(state, args)
    name = arg_str(args, "queue")
    queue = vhost.queues.get(name)
    if queue is None:
        raise AdminError(ErrorKind.NOT_FOUND, f"queue '{name}' in vhost '{vhost.name}' not found")
    return {"messages": queue.purge()}


def _queue(state: ServerState, args: dict[str, Any]) -> tuple[VHost, Any]:
    vhost = _vhost(state, args)
    name = arg_str(args, "queue")
    queue = vhost.queues.get(name)
    if queue is None:
        raise AdminError(ErrorKind.NOT_FOUND, f"queue '{name}' in vhost '{vhost.name}' not found")
    return vhost, queue


@command("peek_queue")
async def _peek_queue(state: ServerState, args: dict[str, Any]) -> Any:
    offset = arg_int(args, "offset", 0)
    count = arg_int(args, "count", 10, low=1, high=MAX_PEEK)
    unacked = arg_bool(args, "unacked")
    vhost, queue = _queue(state, args)
    return peek_queue(state, vhost, queue, offset, count, unacked=unacked)


@command("find_message")
async def _find_message(state: ServerState, args: dict[str, Any]) -> Any:
    message_id = arg_str(args, "message_id", None) if "message_id" in args else None
    correlation_id = arg_str(args, "correlation_id", None) if "correlation_id" in args else None
    return await find_messages(state, _vhost(state, args), message_id, correlation_id)


@command("close_connection")
async def _close_connection(state: ServerState, args: dict[str, Any]) -> Any:
    target = arg_str(args, "name")
    reason = arg_str(args, "reason", "")
    found = [
        c for c in state.connections if c.opened and target in (c.name, info.connection_pid(c))
    ]
    if not found:
        raise AdminError(ErrorKind.NOT_FOUND, f"connection '{target}' not found")
    await close_connections(found, reason or "Closed via trimqctl")
    return {}


@command("close_all_connections")
async def _close_all_connections(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = arg_str(args, "vhost", "") or None
    limit = arg_int(args, "limit", 0)
    reason = arg_str(args, "reason", "")
    found = [
        c
        for c in sorted(state.connections, key=lambda c: c.number)
        if c.opened and (vhost is None or c.vhost.name == vhost)
    ]
    if limit:
        found = found[:limit]
    await close_connections(found, reason or "Closed via trimqctl")
    return {"closed": len(found)}


# -- policies --------------------------------------------------------------------------------


@command("set_policy")
async def _set_policy(state: ServerState, args: dict[str, Any]) -> Any:
    definition = _arg(args, "definition", _REQUIRED)
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except (ValueError, RecursionError):
            raise AdminError(ErrorKind.USAGE, "JSON decoding error. Reason: badarg") from None
    state.broker.set_policy(
        arg_str(args, "vhost", "/"),
        arg_str(args, "name"),
        arg_str(args, "pattern"),
        definition,
        arg_int(args, "priority", 0, low=-(2**63)),
        arg_str(args, "apply_to", "all"),
    )
    return {}


@command("clear_policy")
async def _clear_policy(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_policy(arg_str(args, "vhost", "/"), arg_str(args, "name"))
    return {}


@command("list_policies")
async def _list_policies(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = _vhost(state, args)
    return [
        {
            "vhost": vhost.name,
            "name": p.name,
            "pattern": p.pattern,
            "apply-to": p.apply_to,
            "definition": json.dumps(p.definition, separators=(",", ":")),
            "priority": p.priority,
        }
        for p in sorted(vhost.policies.values(), key=lambda p: p.name)
    ]


# -- definitions -----------------------------------------------------------------------------


@command("export_definitions")
async def _export_definitions(state: ServerState, args: dict[str, Any]) -> Any:
    return export_definitions(state.broker)


@command("import_definitions")
async def _import_definitions(state: ServerState, args: dict[str, Any]) -> Any:
    import_definitions(state.broker, _arg(args, "definitions", _REQUIRED))
    return {}
