"""What the running server shares between its tasks: the broker, the log, the registry of
live connections, the listeners and the stop request.

A module of its own so that the control socket (control.py, info.py) and the process
(app.py) both read it without importing each other: app.py imports control.py, and both
import this module, never the other way round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from storage import WAL
from trimq.broker.broker import Broker
from trimq.server.connection import ServerConnection
from trimq.server.notify import Notifier
from trimq.server.resources import Resources
from trimq.server.tls import TLSContexts

SHUTDOWN_GRACE = 3.0  # seconds closed clients get to answer Connection.Close


@dataclass
class ServerState:
    broker: Broker
    wal: WAL | None = None
    connections: set[ServerConnection] = field(default_factory=set)
    stopping: bool = False
    stop_requested: trio.Event = field(default_factory=trio.Event)
    started_at: float = field(default_factory=time.time)
    listeners: list[tuple[str, int]] = field(default_factory=list)
    tls_listeners: list[tuple[str, int]] = field(default_factory=list)  # AMQPS
    tls: TLSContexts | None = None  # the AMQPS listener's context, when it has one
    # what the services beside AMQP listen on: (protocol, host, port), e.g. ("http", ...)
    service_listeners: list[tuple[str, str, int]] = field(default_factory=list)
    data_dir: Path | None = None
    notifier: Notifier = field(default_factory=Notifier)
    resources: Resources = field(default_factory=Resources)
    # rate samples taken so far (trimq/server/rates.py): what is summed from every object's
    # counters may be reused until this changes, as RabbitMQ's statistics change every 5 s
    rate_samples: int = 0

    def request_stop(self) -> None:
        """Ask the server to shut down cleanly (a signal, or `trimqctl stop`)."""
        self.stop_requested.set()


async def close_connections(connections: list[ServerConnection], detail: str) -> None:
    """Close these clients with 320 CONNECTION_FORCED and give them a moment to answer."""
    for connection in connections:
        if connection.opened:
            connection.force_close(detail)
    with trio.move_on_after(SHUTDOWN_GRACE):
        while any(c.opened and not c.finished for c in connections):
            await trio.sleep(0.02)
