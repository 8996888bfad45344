"""RabbitMQ's consumer_timeout: a delivery left unacknowledged for longer closes its channel
with 406 PRECONDITION_FAILED (its unacked messages go back to their queues). One task looks at
every channel periodically (`Channel.check_ack_timeout`); deliveries themselves cost nothing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import structlog
import trio

if TYPE_CHECKING:
    from trimq.server.connection import ServerConnection

log = structlog.get_logger("trimq.consumer_timeout")


def check_interval(timeout_ms: int) -> float:
    """Seconds between checks: a tenth of the timeout, from 50 ms to a minute (RabbitMQ checks
    once a minute)."""
    return min(max(timeout_ms / 10_000, 0.05), 60.0)


def check_channels(
    connections: Iterable[ServerConnection],
    now: float,
    timeout_ms: int,
) -> None:
    for connection in list(connections):
        if not connection.opened or connection.closing:
            continue
        for channel in list(connection.channels.values()):
            try:
                channel.check_ack_timeout(now, timeout_ms)
            except Exception:  # a bug in one channel must not stop the checks
                log.exception("consumer_timeout.check_failed", peer=connection.peer)


async def watch_consumer_timeouts(connections: set[ServerConnection], timeout_ms: int) -> None:
    interval = check_interval(timeout_ms)
    while True:
        await trio.sleep(interval)
        check_channels(connections, trio.current_time(), timeout_ms)
