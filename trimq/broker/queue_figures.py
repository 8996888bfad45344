"""A queue's message figures as RabbitMQ names them (the management API's queue fields and
rabbitmqctl's list_queues items): read from the counters the queue keeps as messages enter
and leave it, never from walking its messages, so a listing costs the same at any depth."""

from __future__ import annotations

from typing import Any

from trimq.broker.queue import Queue

# What a queue process costs beyond its messages, and what each message costs besides its
# body: a rough model of RabbitMQ's `memory` (trimq holds every message in memory).
QUEUE_OVERHEAD = 1024
MESSAGE_OVERHEAD = 200


def message_figures(queue: Queue) -> dict[str, Any]:
    ready = len(queue.ready)
    unacked = queue.unacked
    ready_bytes = queue.ready.bytes
    unacked_bytes = queue.unacked_bytes
    held_bytes = ready_bytes + unacked_bytes
    return {
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
        "messages_ram": ready + unacked,
        "messages_ready_ram": ready,
        "messages_unacknowledged_ram": unacked,
        "messages_persistent": queue.persistent,
        "message_bytes": held_bytes,
        "message_bytes_ready": ready_bytes,
        "message_bytes_unacknowledged": unacked_bytes,
        "message_bytes_ram": held_bytes,
        "message_bytes_persistent": queue.persistent_bytes,
        "memory": QUEUE_OVERHEAD + held_bytes + MESSAGE_OVERHEAD * (ready + unacked),
    }


def head_timestamp(queue: Queue) -> int | None:
    """RabbitMQ's head_message_timestamp: the lowest timestamp property of the first ready
    message and the oldest unacked one (those without a timestamp left out); None if none."""
    stamps = [
        entry.message.properties.timestamp
        for entry in (queue.ready.peek(), queue.oldest_unacked())
        if entry is not None and entry.message.properties.timestamp is not None
    ]
    return min(stamps) if stamps else None
