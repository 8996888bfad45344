"""Queue requests: delete (if_unused, if_empty) and purge."""

from __future__ import annotations

from typing import Any

from trimq.admin_errors import AdminError, ErrorKind
from trimq.broker.deletion import DeletionRefused, Refusal, check_deletable
from trimq.server.control.arguments import arg_bool, arg_str, vhost_arg
from trimq.server.control.registry import command
from trimq.server.state import ServerState


@command("delete_queue")
async def _delete_queue(state: ServerState, args: dict[str, Any]) -> Any:
    vhost = vhost_arg(state, args)
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
    vhost = vhost_arg(state, args)
    name = arg_str(args, "queue")
    queue = vhost.queues.get(name)
    if queue is None:
        raise AdminError(ErrorKind.NOT_FOUND, f"queue '{name}' in vhost '{vhost.name}' not found")
    return {"messages": queue.purge()}
