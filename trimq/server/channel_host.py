"""What a channel needs from its connection, and nothing more (`ChannelHost`).

Channel, declare.py and basic.py are typed against this interface, not ServerConnection, so
that what a channel may reach of its connection is written in one place: the model it works
on, the output it writes to and the few connection-wide facts and callbacks below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from storage import WAL
    from trimq.broker.broker import Broker
    from trimq.broker.queue import Queue
    from trimq.broker.vhost import VHost
    from trimq.server.channel import Channel


class ChannelHost(Protocol):
    """The connection as its channels see it (ServerConnection implements it)."""

    # -- what the channel works on
    broker: Broker
    wal: WAL | None  # its fsyncs release confirms
    vhost: VHost
    username: str  # permission checks, the user_id property
    peer: tuple[str, int]  # for the log
    number: int  # the connection's number, in the channel's pid
    frame_max: int  # how contents are cut into body frames
    exclusive_queues: list[Queue]  # the exclusive queues it declared, deleted with it
    publisher: bool  # set at the first publish: resource alarms block it from then on
    last_received: float  # trio's clock when bytes last came in: a channel's frames' time

    @property
    def name(self) -> str:
        """ "PEER -> LOCAL": a channel is named after its connection in listings."""
        ...

    @property
    def closing(self) -> bool:
        """It sent Connection.Close: confirms stop."""
        ...

    # -- output
    def write(self, data: bytes | memoryview) -> None: ...

    def write_delivery(self, data: bytes | memoryview) -> None: ...

    def output_full(self) -> bool: ...

    def after_durable(self, lsn: int, reply: Callable[[], None]) -> None: ...

    # -- connection-wide facts and callbacks
    def capability(self, name: str) -> bool: ...

    def broker_delete_queue(self, queue: Queue) -> int: ...

    def wal_failed(self, exc: BaseException) -> None: ...

    def drop_channel(self, channel: Channel) -> None:
        """The channel is closed (it cleaned up already): its number may be reused."""
        ...
