"""Direct reply-to (amq.rabbitmq.reply-to): RPC replies go straight to the requesting
channel's reply consumer, with no queue in between, as RabbitMQ does it.

A channel consuming from the pseudo-queue gets a token; requests it publishes with
reply_to=amq.rabbitmq.reply-to carry `amq.rabbitmq.reply-to.<token>` instead, and a reply
published to the default exchange with that routing key reaches the channel directly.
"""

from __future__ import annotations

import base64
import os
from typing import Any

PSEUDO_QUEUE = "amq.rabbitmq.reply-to"
PREFIX = PSEUDO_QUEUE + "."


class ReplyTo:
    """The broker's table of channels that consume direct replies."""

    def __init__(self) -> None:
        self._channels: dict[str, Any] = {}

    def register(self, channel: Any) -> str:
        token = PREFIX + base64.urlsafe_b64encode(os.urandom(18)).decode()
        self._channels[token] = channel
        return token

    def unregister(self, token: str) -> None:
        self._channels.pop(token, None)

    def lookup(self, routing_key: str) -> Any | None:
        return self._channels.get(routing_key)
