"""Message requests: peek at a queue and find a message, without taking anything."""

from __future__ import annotations

from typing import Any

from trimq.admin_errors import AdminError, ErrorKind
from trimq.broker.peek import MAX_COUNT as MAX_PEEK
from trimq.server.control.arguments import arg_bool, arg_int, arg_str, vhost_arg
from trimq.server.control.registry import command
from trimq.server.peeking import find_messages, peek_queue
from trimq.server.state import ServerState


@command("peek_queue")
async def _peek_queue(state: ServerState, args: dict[str, Any]) -> Any:
    offset = arg_int(args, "offset", 0)
    count = arg_int(args, "count", 10, low=1, high=MAX_PEEK)
    unacked = arg_bool(args, "unacked")
    vhost = vhost_arg(state, args)
    name = arg_str(args, "queue")
    queue = vhost.queues.get(name)
    if queue is None:
        raise AdminError(ErrorKind.NOT_FOUND, f"queue '{name}' in vhost '{vhost.name}' not found")
    return peek_queue(state, vhost, queue, offset, count, unacked=unacked)


@command("find_message")
async def _find_message(state: ServerState, args: dict[str, Any]) -> Any:
    message_id = arg_str(args, "message_id", None) if "message_id" in args else None
    correlation_id = arg_str(args, "correlation_id", None) if "correlation_id" in args else None
    return await find_messages(state, vhost_arg(state, args), message_id, correlation_id)
