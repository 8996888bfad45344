"""Serving the control socket: one request per connection, answered whatever happens.

The socket lives in the data directory with owner-only permissions (docs/control-protocol.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import structlog
import trio

from storage import WALClosed, WALFailed
from trimq.admin_errors import AdminError, ErrorKind
from trimq.server.control.registry import COMMANDS, AfterReply
from trimq.server.state import ServerState

log = structlog.get_logger("trimq.control")

CONTROL_SOCKET = "trimq.sock"
MAX_REQUEST = 64 * 2**20  # import_definitions documents can be large
REQUEST_TIMEOUT = 30.0


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
        # the name goes first: once the socket refuses connections, it is gone (trimqctl stop)
        with contextlib.suppress(OSError):
            path.unlink()
        with trio.CancelScope(shield=True):
            await listener.aclose()


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
                after = reply.pop("after", None)
                try:
                    await stream.send_all(_encode(reply))
                finally:
                    if after is not None:
                        after()
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
        request = json.loads(buf.split(b"\n", 1)[0])
        json.dumps(request, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800"): nothing could store it
        raise AdminError(ErrorKind.USAGE, "request text is not valid Unicode") from None
    except (ValueError, RecursionError):  # not JSON (or not UTF-8); absurdly nested
        return None
    return request


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
    after = None
    try:
        result = await handler(state, args)
        if isinstance(result, AfterReply):
            result, after = result
    except AdminError as exc:
        return _failure(exc.kind, exc.message)
    except Exception as exc:  # a bug (handlers check their arguments): the broker goes on
        log.exception("control.command_failed", command=name)
        return _failure(
            ErrorKind.INTERNAL,
            f"{name} failed unexpectedly ({type(exc).__name__}); see the broker log",
        )
    wal = state.wal if state is not None else None
    if wal is not None and wal.last_lsn > wal.durable_lsn:
        # what the command changed is on disk before trimqctl reports it done
        try:
            await wal.wait_durable(wal.last_lsn)
        except (WALFailed, WALClosed) as exc:
            return _failure(ErrorKind.ERROR, f"{name}: the log has failed ({exc})")
    log.info(
        "control.command",
        command=name,
        **{k: v for k, v in args.items() if k in ("user", "vhost", "queue", "name")},
    )
    reply = {"ok": True, "result": result}
    if after is not None:
        reply["after"] = after  # taken off by _handle, run once the reply is sent
    return reply
