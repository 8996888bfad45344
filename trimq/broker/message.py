"""Messages as the broker holds them: routed once, referenced by every queue they reach."""

from __future__ import annotations

from trimq.amqp.spec import BasicProperties


class Message:
    """A published message. Its encoded properties are kept so delivery re-sends them as is."""

    __slots__ = (
        "exchange", "routing_key", "properties", "properties_raw", "body", "persistent", "id",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        properties: BasicProperties,
        properties_raw: bytes,
        body: bytes,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.properties_raw = properties_raw
        self.body = body
        self.persistent = properties.delivery_mode == 2
        self.id = 0  # set when the journal records it (persistent, reached a durable queue)

    @property
    def size(self) -> int:
        return len(self.body)


class QueuedMessage:
    """One message's place in one queue: its order in that queue and whether it was delivered."""

    __slots__ = ("message", "seq", "redelivered")

    def __init__(self, message: Message, seq: int, redelivered: bool = False) -> None:
        self.message = message
        self.seq = seq
        self.redelivered = redelivered
