"""Dead-lettering as RabbitMQ does it: a copy of the message goes to the queue's
x-dead-letter-exchange with an x-death history (count, reason, queue, time, exchange,
routing-keys, original-expiration) and x-first-death-* headers; cycles are dropped.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from trimq.amqp.codec import Typed
from trimq.broker.message import Message, QueuedMessage

if TYPE_CHECKING:
    from trimq.broker.queue import Queue


def _routing_keys(message: Message) -> list[str]:
    keys = [message.routing_key]
    headers = message.properties.headers or {}
    cc = headers.get("CC")
    if isinstance(cc, list):
        keys += [k for k in cc if isinstance(k, str)]
    return keys


def _death(queue: Queue, message: Message, reason: str, now: float) -> dict[str, Any]:
    death: dict[str, Any] = {
        "count": Typed("l", 1),
        "reason": reason,
        "queue": queue.name,
        "time": Typed("T", datetime.fromtimestamp(int(now), UTC)),
        "exchange": message.exchange,
        "routing-keys": _routing_keys(message),
    }
    if message.properties.expiration is not None:
        death["original-expiration"] = message.properties.expiration
    return death


def dead_lettered_copy(queue: Queue, message: Message, reason: str) -> Message:
    """The message as it leaves `queue` for the dead-letter exchange: published by that
    exchange, with the dead-letter routing key when the queue sets one (then without CC)."""
    settings = queue.settings
    old = message.properties
    headers = dict(old.headers or {})
    deaths = [d for d in headers.get("x-death", []) if isinstance(d, dict)]
    now = time.time()
    for i, entry in enumerate(deaths):
        if entry.get("queue") == queue.name and entry.get("reason") == reason:
            count = entry.get("count", 0)
            count = count.value if isinstance(count, Typed) else count
            death = {
                **entry,
                "count": Typed("l", int(count) + 1),
                "time": Typed("T", datetime.fromtimestamp(int(now), UTC)),
            }
            deaths = [death, *deaths[:i], *deaths[i + 1 :]]
            break
    else:
        deaths.insert(0, _death(queue, message, reason, now))
    headers["x-death"] = deaths
    if "x-first-death-reason" not in headers:
        headers["x-first-death-reason"] = reason
        headers["x-first-death-queue"] = queue.name
        headers["x-first-death-exchange"] = message.exchange
    routing_key = message.routing_key
    if settings.dead_letter_routing_key is not None:
        routing_key = settings.dead_letter_routing_key
        headers.pop("CC", None)
    properties = old.copy()
    properties.headers = headers
    properties.expiration = None  # kept in x-death as original-expiration
    exchange = settings.dead_letter_exchange
    assert exchange is not None
    return message.with_properties(properties, exchange, routing_key)


def _cycles(queue: Queue, message: Message, target: Queue) -> bool:
    """RabbitMQ drops a dead-lettered copy that would return to a queue it already died in,
    unless one of its deaths was a rejection (a client's decision, not a loop)."""
    deaths = (message.properties.headers or {}).get("x-death") or []
    queues = {d.get("queue") for d in deaths if isinstance(d, dict)}
    rejected = any(isinstance(d, dict) and d.get("reason") == "rejected" for d in deaths)
    return target.name in queues and not rejected


def dead_letter(queue: Queue, entries: list[QueuedMessage], reason: str) -> None:
    """Publish each entry's message to the queue's dead-letter exchange."""
    settings = queue.settings
    home = queue.home
    assert home is not None and settings.dead_letter_exchange is not None
    exchange = home.exchanges.get(settings.dead_letter_exchange)
    if exchange is None:
        return  # as RabbitMQ: a missing dead-letter exchange drops the message
    for entry in entries:
        keys = (
            [settings.dead_letter_routing_key]
            if settings.dead_letter_routing_key is not None
            else _routing_keys(entry.message)
        )
        copy = dead_lettered_copy(queue, entry.message, reason)
        targets: dict[int, Queue] = {}
        for key in keys:
            for target in home.route(exchange, key, copy):
                if not _cycles(queue, copy, target):
                    targets[id(target)] = target
        if targets:
            home.publish(copy, list(targets.values()))
