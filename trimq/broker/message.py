"""Messages as the broker holds them: routed once, referenced by every queue they reach."""

from __future__ import annotations

from typing import Any

from trimq.amqp.codec import encode_shortstr
from trimq.amqp.publish import typed_headers
from trimq.amqp.spec import BasicProperties
from trimq.broker.arguments import parse_expiration
from trimq.broker.headers import message_headers


class Message:
    """A published message. Its encoded properties are kept so delivery re-sends them as is."""

    __slots__ = (
        "_match_headers",
        "body",
        "exchange",
        "id",
        "persistent",
        "properties",
        "properties_raw",
        "route_raw",
        "routing_key",
        "size",
        "ttl",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        properties: BasicProperties,
        properties_raw: bytes,
        body: bytes,
        route_raw: bytes | None = None,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.route_raw = route_raw  # see `encoded_route`
        self.properties = properties
        self.properties_raw = properties_raw
        self.body = body
        self.size = len(body)
        self.persistent = properties.delivery_mode == 2
        self.id = 0  # set when the journal records it (persistent, reached a durable queue)
        expiration = properties.expiration  # per-message TTL in ms (checked at publish)
        self.ttl = parse_expiration(expiration)[0] if expiration is not None else None
        self._match_headers: dict[str, Any] | None = None

    def match_headers(self) -> dict[str, Any]:
        """The headers as a headers exchange compares them, decoded on first use."""
        headers = self._match_headers
        if headers is None:
            headers = self._match_headers = message_headers(
                typed_headers(self.properties_raw) if self.properties.headers else None
            )
        return headers

    def encoded_route(self) -> bytes:
        """Exchange and routing key encoded as Basic.Deliver carries them: as the publisher
        sent them, or encoded once on the first delivery."""
        route = self.route_raw
        if route is None:
            route = self.route_raw = encode_shortstr(self.exchange) + encode_shortstr(
                self.routing_key
            )
        return route

    def with_properties(
        self,
        properties: BasicProperties,
        exchange: str | None = None,
        routing_key: str | None = None,
    ) -> Message:
        """The same body with other properties (re-encoded), as a message that is passed on
        changed: dead-lettered, stripped of BCC, given a reply address."""
        return Message(
            self.exchange if exchange is None else exchange,
            self.routing_key if routing_key is None else routing_key,
            properties,
            properties.encode(),
            self.body,
        )


class QueuedMessage:
    """One message's place in one queue: its order there, whether (and how often) it was
    delivered, when it expires, and whether it sits among the queue's ready messages or is
    out unacked."""

    __slots__ = (
        "delivery_count",
        "expires_at",
        "in_ready",
        "message",
        "out",
        "redelivered",
        "seq",
    )

    def __init__(
        self,
        message: Message,
        seq: int,
        redelivered: bool = False,
        delivery_count: int = 0,
        expires_at: float | None = None,
    ) -> None:
        self.message = message
        self.seq = seq
        self.redelivered = redelivered
        self.delivery_count = delivery_count
        self.expires_at = expires_at
        self.in_ready = False
        self.out = False

    def __lt__(self, other: QueuedMessage) -> bool:  # for the expiry heap's ties
        return self.seq < other.seq
