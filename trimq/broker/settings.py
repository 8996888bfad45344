"""A queue's effective settings: its x-arguments (and, later, the policy that applies), read
once into plain attributes so the publish and deliver paths test None rather than parse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QueueSettings:
    message_ttl: int | None = None  # ms
    expires: int | None = None  # ms of disuse before the queue is deleted
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_priority: int = 0
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    bounded: bool = field(init=False)  # a maximum length or size applies

    def __post_init__(self) -> None:
        # an attribute, not a property: every publish tests it
        object.__setattr__(self, "bounded",
                           self.max_length is not None or self.max_length_bytes is not None)


def _value(arguments: dict[str, Any], name: str) -> Any:
    typed = arguments.get(name)
    return typed[1] if typed is not None else None


def queue_settings(arguments: dict[str, Any]) -> QueueSettings:
    """Settings from typed-decoded, already validated queue arguments."""
    overflow = _value(arguments, "x-overflow")
    return QueueSettings(
        message_ttl=_value(arguments, "x-message-ttl"),
        expires=_value(arguments, "x-expires"),
        max_length=_value(arguments, "x-max-length"),
        max_length_bytes=_value(arguments, "x-max-length-bytes"),
        overflow=overflow if overflow is not None else "drop-head",
        dead_letter_exchange=_value(arguments, "x-dead-letter-exchange"),
        dead_letter_routing_key=_value(arguments, "x-dead-letter-routing-key"),
        max_priority=_value(arguments, "x-max-priority") or 0,
        single_active_consumer=bool(_value(arguments, "x-single-active-consumer")),
        delivery_limit=_value(arguments, "x-delivery-limit"),
    )
