"""What the messaging endpoint tests share: waiting for the management API to show a state
(RabbitMQ refreshes its figures every few seconds, trimq at once), and the name of a pika
connection as the broker lists it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pika

T = TypeVar("T")

WAIT = 20.0  # RabbitMQ emits queue, connection and channel figures every 5 s


def eventually(read: Callable[[], T], check: Callable[[T], bool], timeout: float = WAIT) -> T:
    """read() until check() holds for its value; the last value otherwise (the caller's
    assertion then shows it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if check(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def connection_name(connection: pika.BlockingConnection) -> str:
    """ "127.0.0.1:40001 -> 127.0.0.1:5672": the client's end, then the broker's."""
    sock: Any = connection._impl._transport._sock
    local = sock.getsockname()
    peer = sock.getpeername()
    return f"{local[0]}:{local[1]} -> {peer[0]}:{peer[1]}"
