"""The control socket: trimqctl's requests, one JSON line in and one JSON line out.

The socket lives in the data directory with owner-only permissions; see
docs/control-protocol.md for the framing and the commands.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import trio

from trimq import __version__
from trimq.amqp.publish import clear_caches
from trimq.broker.auth import check_regex
from trimq.broker.broker import AdminError
from trimq.broker.definitions import export_definitions, import_definitions
from trimq.info_items import BINDING_ITEMS, CONSUMER_ITEMS, ITEMS
from trimq.server import info
from trimq.server.resources import total_memory

if TYPE_CHECKING:
    from trimq.server.app import ServerState

log = structlog.get_logger("trimq.control")

CONTROL_SOCKET = "trimq.sock"
MAX_REQUEST = 64 * 2**20  # import_definitions documents can be large
REQUEST_TIMEOUT = 30.0

Handler = Callable[["ServerState", dict[str, Any]], Awaitable[Any]]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = handler
        return handler
    return register


async def serve_control(state: ServerState, path: Path,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
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
        try:
            path.unlink()
        except OSError:
            pass


async def _handle(state: ServerState, stream: trio.SocketStream) -> None:
    async with stream:
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                request = await _read_request(stream)
                reply = await _dispatch(state, request)
                await stream.send_all(json.dumps(reply).encode() + b"\n")
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def _read_request(stream: trio.SocketStream) -> Any:
    buf = bytearray()
    while b"\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_REQUEST:
            raise AdminError("usage", "request too large")
    try:
        return json.loads(buf.split(b"\n", 1)[0])
    except ValueError:
        return None


async def _dispatch(state: ServerState, request: Any) -> dict[str, Any]:
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        return {"ok": False, "kind": "usage", "error": "malformed request"}
    name = request["command"]
    args = request.get("args") or {}
    handler = COMMANDS.get(name)
    if handler is None:
        return {"ok": False, "kind": "usage", "error": f"unknown command '{name}'"}
    try:
        result = await handler(state, args)
    except AdminError as exc:
        return {"ok": False, "kind": exc.kind, "error": exc.message}
    except (KeyError, TypeError, ValueError) as exc:
        return {"ok": False, "kind": "usage", "error": f"bad arguments for {name}: {exc}"}
    log.info("control.command", command=name,
             **{k: v for k, v in args.items() if k in ("user", "vhost", "queue", "name")})
    return {"ok": True, "result": result}


def _items(args: dict[str, Any], kind: str) -> list[str]:
    items = args.get("items") or []
    unknown = [i for i in items if i not in ITEMS[kind]]
    if unknown:
        raise AdminError("usage", f"Info key(s) {','.join(unknown)} are not supported")
    return list(items)


# -- node ------------------------------------------------------------------------------------


@command("status")
async def _status(state: ServerState, args: dict[str, Any]) -> Any:
    broker = state.broker
    queues = [q for v in broker.vhosts.values() for q in v.queues.values()]
    return {
        "pid": os.getpid(), "version": __version__, "node": info.NODE,
        "data_dir": str(state.data_dir) if state.data_dir else "",
        "listeners": [list(address) for address in state.listeners],
        "uptime": round(time.time() - state.started_at, 3),
        "connections": sum(1 for c in state.connections if c.opened),
        "queues": len(queues), "messages": sum(q.message_count for q in queues),
        "tasks": count_tasks(), "open_files": count_open_files(),
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
        return len(os.listdir("/proc/self/fd"))
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
    return {"gc_objects": counts.total(), "allocated_blocks": sys.getallocatedblocks(),
            "types": dict(counts.most_common())}


@command("set_memory_high_watermark")
async def _set_memory_high_watermark(state: ServerState, args: dict[str, Any]) -> Any:
    absolute = int(args.get("absolute") or 0)
    fraction = float(args.get("fraction") or 0.0)
    if not absolute and not 0.0 <= fraction <= 1.0:
        raise AdminError("usage", "The threshold should be a fraction between 0.0 and 1.0")
    state.resources.set_memory_high_watermark(fraction, absolute)
    log.info("control.memory_high_watermark", fraction=fraction, absolute=absolute)
    return {}


@command("set_disk_free_limit")
async def _set_disk_free_limit(state: ServerState, args: dict[str, Any]) -> Any:
    if "mem_relative" in args:
        limit = int(float(args["mem_relative"]) * total_memory())
    else:
        limit = int(args["bytes"])
    state.resources.set_disk_free_limit(limit)
    log.info("control.disk_free_limit", limit=limit)
    return {}


@command("stop")
async def _stop(state: ServerState, args: dict[str, Any]) -> Any:
    log.info("control.stop")
    state.request_stop()
    return {}


# -- users -----------------------------------------------------------------------------------


@command("add_user")
async def _add_user(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.add_user(args["user"], args["password"])
    return {}


@command("delete_user")
async def _delete_user(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.delete_user(args["user"])
    return {}


@command("change_password")
async def _change_password(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.change_password(args["user"], args["password"])
    return {}


@command("clear_password")
async def _clear_password(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_password(args["user"])
    return {}


@command("authenticate_user")
async def _authenticate_user(state: ServerState, args: dict[str, Any]) -> Any:
    name = args["user"]
    if state.broker.users.authenticate(name, args["password"]) is None:
        raise AdminError("auth_failed", f"user '{name}' - invalid credentials")
    return {}


@command("set_user_tags")
async def _set_user_tags(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.set_user_tags(args["user"], list(args.get("tags") or []))
    return {}


@command("list_users")
async def _list_users(state: ServerState, args: dict[str, Any]) -> Any:
    users = sorted(state.broker.users.users.values(), key=lambda u: u.name)
    return [{"user": u.name, "tags": list(u.tags)} for u in users]


# -- vhosts ----------------------------------------------------------------------------------


@command("add_vhost")
async def _add_vhost(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.add_vhost(args["vhost"], args.get("description", ""), args.get("tags", []))
    return {}


@command("delete_vhost")
async def _delete_vhost(state: ServerState, args: dict[str, Any]) -> Any:
    from trimq.server.app import close_connections

    name = args["vhost"]
    state.broker.get_vhost(name)
    inside = [c for c in state.connections if c.opened and c.vhost.name == name]
    await close_connections(inside, f"vhost '{name}' is deleted")
    state.broker.delete_vhost(name)
    return {}


@command("list_vhosts")
async def _list_vhosts(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "vhosts") or ["name"]
    return info.select(info.vhost_rows(state), items)


# -- permissions -----------------------------------------------------------------------------


@command("set_permissions")
async def _set_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    for kind in ("configure", "write", "read"):
        problem = check_regex(args[kind])
        if problem is not None:
            raise AdminError("usage", f"invalid {kind} regular expression: {problem}")
    state.broker.set_permissions(args["vhost"], args["user"], args["configure"],
                                 args["write"], args["read"])
    return {}


@command("clear_permissions")
async def _clear_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_permissions(args["vhost"], args["user"])
    return {}


@command("list_permissions")
async def _list_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = state.broker.get_vhost(args.get("vhost", "/")).name
    return [{"user": user, "configure": p.configure, "write": p.write, "read": p.read}
            for (v, user), p in sorted(state.broker.users.permissions.items()) if v == vhost]


@command("list_user_permissions")
async def _list_user_permissions(state: ServerState, args: dict[str, Any]) -> Any:
    user = state.broker.get_user(args["user"]).name
    return [{"vhost": v, "configure": p.configure, "write": p.write, "read": p.read}
            for (v, u), p in sorted(state.broker.users.permissions.items()) if u == user]


# -- listings --------------------------------------------------------------------------------


@command("list_queues")
async def _list_queues(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "queues") or ["name", "messages"]
    vhost = state.broker.get_vhost(args.get("vhost", "/"))
    return info.select(info.queue_rows(state, vhost), items)


@command("list_exchanges")
async def _list_exchanges(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "exchanges") or ["name", "type"]
    vhost = state.broker.get_vhost(args.get("vhost", "/"))
    return info.select(info.exchange_rows(vhost), items)


@command("list_bindings")
async def _list_bindings(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "bindings") or BINDING_ITEMS
    vhost = state.broker.get_vhost(args.get("vhost", "/"))
    return info.select(info.binding_rows(vhost), items)


@command("list_connections")
async def _list_connections(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "connections") or ["user", "peer_host", "peer_port", "state"]
    return info.select(info.connection_rows(state), items)


@command("list_channels")
async def _list_channels(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "channels") or [
        "pid", "user", "consumer_count", "messages_unacknowledged"]
    return info.select(info.channel_rows(state), items)


@command("list_consumers")
async def _list_consumers(state: ServerState, args: dict[str, Any]) -> Any:
    items = _items(args, "consumers") or CONSUMER_ITEMS[:6] + ["arguments"]
    vhost = state.broker.get_vhost(args.get("vhost", "/"))
    return info.select(info.consumer_rows(state, vhost), items)


# -- queues and connections ------------------------------------------------------------------


@command("delete_queue")
async def _delete_queue(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = state.broker.get_vhost(args.get("vhost", "/"))
    name = args["queue"]
    queue = vhost.queues.get(name)
    if queue is None:
        raise AdminError("not_found", f"queue '{name}' in vhost '{vhost.name}' not found")
    if args.get("if_unused") and queue.consumers:
        raise AdminError("error", f"queue '{name}' in vhost '{vhost.name}' in use")
    if args.get("if_empty") and queue.ready:
        raise AdminError("error", f"queue '{name}' in vhost '{vhost.name}' is not empty")
    return {"messages": vhost.delete_queue(queue)}


@command("purge_queue")
async def _purge_queue(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = state.broker.get_vhost(args.get("vhost", "/"))
    name = args["queue"]
    queue = vhost.queues.get(name)
    if queue is None:
        raise AdminError("not_found", f"queue '{name}' in vhost '{vhost.name}' not found")
    return {"messages": queue.purge()}


@command("close_connection")
async def _close_connection(state: ServerState, args: dict[str, Any]) -> Any:
    from trimq.server.app import close_connections

    target = args["name"]
    found = [c for c in state.connections
             if c.opened and target in (c.name, info.connection_pid(c))]
    if not found:
        raise AdminError("not_found", f"connection '{target}' not found")
    await close_connections(found, args.get("reason") or "Closed via trimqctl")
    return {}


@command("close_all_connections")
async def _close_all_connections(state: ServerState, args: dict[str, Any]) -> Any:
    from trimq.server.app import close_connections

    vhost = args.get("vhost")
    found = [c for c in sorted(state.connections, key=lambda c: c.number)
             if c.opened and (vhost is None or c.vhost.name == vhost)]
    limit = args.get("limit")
    if limit:
        found = found[: int(limit)]
    await close_connections(found, args.get("reason") or "Closed via trimqctl")
    return {"closed": len(found)}


# -- policies --------------------------------------------------------------------------------


@command("set_policy")
async def _set_policy(state: ServerState, args: dict[str, Any]) -> Any:
    definition = args["definition"]
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except ValueError:
            raise AdminError("usage", "JSON decoding error. Reason: badarg") from None
    state.broker.set_policy(args.get("vhost", "/"), args["name"], args["pattern"], definition,
                            int(args.get("priority", 0)), args.get("apply_to", "all"))
    return {}


@command("clear_policy")
async def _clear_policy(state: ServerState, args: dict[str, Any]) -> Any:
    state.broker.clear_policy(args.get("vhost", "/"), args["name"])
    return {}


@command("list_policies")
async def _list_policies(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = state.broker.get_vhost(args.get("vhost", "/"))
    return [{
        "vhost": vhost.name, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to,
        "definition": json.dumps(p.definition, separators=(",", ":")), "priority": p.priority,
    } for p in sorted(vhost.policies.values(), key=lambda p: p.name)]


# -- definitions -----------------------------------------------------------------------------


@command("export_definitions")
async def _export_definitions(state: ServerState, args: dict[str, Any]) -> Any:
    return export_definitions(state.broker)


@command("import_definitions")
async def _import_definitions(state: ServerState, args: dict[str, Any]) -> Any:
    import_definitions(state.broker, args["definitions"])
    return {}
