"""Looking at messages without taking them (beyond RabbitMQ, which can only get and requeue):
a queue's ready messages in queue order from an offset, the ones delivered and not yet acked,
and where a message with a given message_id or correlation_id is across a vhost's queues.

Nothing here delivers, marks redelivered, reorders or journals anything. Unacked messages are
held by channels, which live above the model: the caller passes them in as `Held` values
(trimq/server/held.py collects them), so the delivery path keeps no bookkeeping for this.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trimq.broker.message import QueuedMessage
from trimq.broker.message_view import json_value, message_json
from trimq.broker.queue import Queue

MAX_COUNT = 10_000  # messages one peek may return


@dataclass(frozen=True, slots=True)
class Held:
    """A message delivered from `queue` and not settled yet: who holds it."""

    entry: QueuedMessage
    queue: Queue
    channel: str  # the channel's name, as RabbitMQ names channels
    consumer_tag: str | None  # None for Basic.Get
    delivery_tag: int


def entry_json(entry: QueuedMessage, encoding: str = "auto", truncate: int | None = None) -> Any:
    message = entry.message
    return message_json(
        message.exchange,
        message.routing_key,
        message.properties,
        message.body,
        entry.redelivered,
        encoding,
        truncate,
    )


def peek_ready(
    queue: Queue, offset: int, count: int, encoding: str = "auto", truncate: int | None = None
) -> list[dict[str, Any]]:
    """Ready messages at positions offset .. offset+count-1 (0 is the next one delivered)."""
    return [
        {"position": offset + i, "state": "ready", **entry_json(entry, encoding, truncate)}
        for i, entry in enumerate(queue.ready.window(offset, min(count, MAX_COUNT)))
    ]


def held_json(held: Held) -> dict[str, Any]:
    return {
        "channel": held.channel,
        "consumer_tag": held.consumer_tag,
        "delivery_tag": held.delivery_tag,
    }


def peek_unacked(
    queue: Queue,
    held: Iterable[Held],
    offset: int,
    count: int,
    encoding: str = "auto",
    truncate: int | None = None,
) -> list[dict[str, Any]]:
    """The queue's delivered, unsettled messages in queue order, with who holds them."""
    mine = sorted((h for h in held if h.queue is queue), key=lambda h: h.entry.seq)
    return [
        {
            "position": offset + i,
            "state": "unacked",
            **held_json(h),
            **entry_json(h.entry, encoding, truncate),
        }
        for i, h in enumerate(mine[offset : offset + min(count, MAX_COUNT)])
    ]


def matcher(message_id: str | None, correlation_id: str | None) -> Any:
    """A test on a message's properties: message_id and/or correlation_id equal."""

    def match(entry: QueuedMessage) -> bool:
        properties = entry.message.properties
        return (message_id is None or properties.message_id == message_id) and (
            correlation_id is None or properties.correlation_id == correlation_id
        )

    return match


def x_death(entry: QueuedMessage) -> Any:
    """The x-death history of a dead-lettered message, else None."""
    headers = entry.message.properties.headers
    deaths = headers.get("x-death") if headers else None
    return json_value(deaths) if deaths is not None else None


def _found(queue: Queue, entry: QueuedMessage, state: str) -> dict[str, Any]:
    message = entry.message
    properties = message.properties
    return {
        "vhost": queue.vhost,
        "queue": queue.name,
        "state": state,
        "position": None,
        "channel": None,
        "consumer_tag": None,
        "delivery_tag": None,
        "message_id": properties.message_id,
        "correlation_id": properties.correlation_id,
        "redelivered": entry.redelivered,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "payload_bytes": message.size,
        "x_death": x_death(entry),
    }


def find_ready(queue: Queue, match: Any) -> list[dict[str, Any]]:
    """Matching ready messages of one queue with their positions: a walk over the queue."""
    return [
        {**_found(queue, entry, "ready"), "position": position}
        for position, entry in enumerate(queue.ready)
        if match(entry)
    ]


def find_held(held: Iterable[Held], match: Any) -> list[dict[str, Any]]:
    """Matching delivered, unsettled messages, with who holds them."""
    return [{**_found(h.queue, h.entry, "unacked"), **held_json(h)} for h in held if match(h.entry)]
