"""A queue's message figures as RabbitMQ names them (the management API's queue fields and
rabbitmqctl's list_queues items): read from the counters the queue keeps as messages enter
and leave it, never from walking its messages, so a listing costs the same at any depth."""

from __future__ import annotations

from typing import Any

from trimq.broker.queue import Queue

# What a queue costs beyond its messages, what each message in memory costs besides its body,
# and what a paged-out one costs (its place in a run): a rough model of RabbitMQ's `memory`.
QUEUE_OVERHEAD = 1024
MESSAGE_OVERHEAD = 200
PAGED_MESSAGE_OVERHEAD = 16


def message_figures(queue: Queue) -> dict[str, Any]:
    ready_list = queue.ready
    ready = len(ready_list)
    paged = ready_list.paged_count
    unacked = queue.unacked
    ready_bytes = ready_list.bytes
    ready_ram_bytes = ready_list.ram_bytes
    unacked_bytes = queue.unacked_bytes
    in_ram = ready - paged + unacked
    return {
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
        "messages_ram": in_ram,
        "messages_ready_ram": ready - paged,
        "messages_unacknowledged_ram": unacked,
        "messages_paged_out": paged,
        "messages_persistent": queue.persistent,
        "message_bytes": ready_bytes + unacked_bytes,
        "message_bytes_ready": ready_bytes,
        "message_bytes_unacknowledged": unacked_bytes,
        "message_bytes_ram": ready_ram_bytes + unacked_bytes,
        "message_bytes_paged_out": ready_list.paged_bytes,
        "message_bytes_persistent": queue.persistent_bytes,
        "memory": QUEUE_OVERHEAD
        + ready_ram_bytes
        + unacked_bytes
        + MESSAGE_OVERHEAD * in_ram
        + PAGED_MESSAGE_OVERHEAD * paged,
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
