"""Small helpers for driving pika's BlockingConnection in tests with bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

Delivery = tuple[Any, Any, bytes]  # (method, properties, body)


def pump(connection: pika.BlockingConnection, until: Callable[[], bool],
         timeout: float = 5.0) -> bool:
    """Process I/O on `connection` until `until()` is true or `timeout` passes; return until()."""
    deadline = time.monotonic() + timeout
    while not until():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return until()
        connection.process_data_events(min(0.05, remaining))
    return True


def settle(connection: pika.BlockingConnection, seconds: float = 0.3) -> None:
    """Process I/O for a fixed time (to show that nothing more arrives)."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        connection.process_data_events(min(0.05, remaining))


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


def wait_for_count(channel: BlockingChannel, queue: str, expected: int,
                   timeout: float = 5.0) -> int:
    """Poll a queue's ready-message count until it equals `expected` (or time runs out)."""
    deadline = time.monotonic() + timeout
    while (count := message_count(channel, queue)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return count
