"""Node requests: status, object counts, resource limits, stop."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import structlog
import trio

from trimq import __version__
from trimq.admin_errors import AdminError, ErrorKind
from trimq.amqp.publish import clear_caches
from trimq.server import info
from trimq.server.control.arguments import arg_int, arg_number
from trimq.server.control.registry import AfterReply, command
from trimq.server.datadir import exposure_warning
from trimq.server.resources import total_memory
from trimq.server.state import ServerState

log = structlog.get_logger("trimq.control")


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
    return AfterReply({}, state.request_stop)
