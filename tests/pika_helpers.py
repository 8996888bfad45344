"""Small helpers for driving pika's BlockingConnection in tests with bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pika
from pika.adapters.blocking_connection import BlockingChannel

Delivery = tuple[Any, Any, bytes]  # (method, properties, body)
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.02) -> T:
    """Poll `predicate` until it returns something true or `timeout` passes; return its last
    value, so that `assert wait_until(...)` fails with what was last seen."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


def pump(
    connection: pika.BlockingConnection, until: Callable[[], bool], timeout: float = 5.0
) -> bool:
    """Process I/O on `connection` until `until()` is true or `timeout` passes; return until()."""
    deadline = time.monotonic() + timeout
    while not until():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return until()
        connection.process_data_events(min(0.05, remaining))
    return True


def round_trip(channel: BlockingChannel, queue: str | None = None) -> None:
    """A synchronous request on `channel`, then the dispatch of every delivery, return or
    cancel that arrived before its reply: how a test shows that something did NOT happen,
    without sleeping. trimq writes a connection's frames in the order it handles what causes
    them (a publish, ack, consume or cancel dispatches at once), so once the reply is in,
    nothing the broker did before is still on its way. `queue`: the request is a passive
    declare of it, which on RabbitMQ also passes through that queue's process (never use it
    on a queue with x-expires: a declare counts as use); otherwise a passive declare of
    amq.direct."""
    if queue is None:
        channel.exchange_declare("amq.direct", "direct", passive=True)
    else:
        channel.queue_declare(queue, passive=True)
    channel.connection.process_data_events(0)


def collector(into: list[Delivery]) -> Callable[..., None]:
    """A basic_consume callback appending (method, properties, body) to `into`."""

    def on_message(_ch: BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        into.append((method, properties, body))

    return on_message


def get_all(channel: BlockingChannel, queue: str, auto_ack: bool = True) -> list[Delivery]:
    """Basic.Get until the queue is empty."""
    out = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=auto_ack)
        if method is None:
            return out
        out.append((method, properties, body))


def message_count(channel: BlockingChannel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def wait_for_count(
    channel: BlockingChannel, queue: str, expected: int, timeout: float = 5.0
) -> int:
    """Poll a queue's ready-message count until it equals `expected` (or time runs out)."""
    deadline = time.monotonic() + timeout
    while (count := message_count(channel, queue)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return count
