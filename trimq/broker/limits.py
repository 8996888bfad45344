"""Per-vhost limits as RabbitMQ's `set_vhost_limits` takes them: `max-connections` and
`max-queues`, integers (negative: no limit; 0: none allowed). Refusals carry RabbitMQ's
validation texts."""

from __future__ import annotations

from typing import Any

from trimq.broker.policy import erlang_value

LIMIT_KEYS = ("max-connections", "max-queues")


class LimitsError(ValueError):
    """A limits definition RabbitMQ would refuse; the message is its text."""


def parse_limits(definition: Any) -> dict[str, int]:
    """The limits of a definition (a decoded JSON object), or LimitsError."""
    if not isinstance(definition, dict):
        raise LimitsError("Validation failed\n\nthe definition must be a JSON object\n")
    problems = []
    unknown = [(k, v) for k, v in sorted(definition.items()) if k not in LIMIT_KEYS]
    if unknown:
        listed = ",".join(f"{{{erlang_value(k)},{erlang_value(v)}}}" for k, v in unknown)
        problems.append(f"Unrecognised terms [{listed}] in limits")
    for key in reversed(LIMIT_KEYS):  # RabbitMQ reports max-queues first
        value = definition.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{key} should be a number, actually was {erlang_value(value)}")
        elif not -(2**63) <= value < 2**63:  # what the journal stores
            problems.append(f"{key} should be a 64-bit integer, actually was {value}")
    if problems:
        raise LimitsError("Validation failed\n\n" + "\n".join(problems) + "\n")
    return {key: definition[key] for key in LIMIT_KEYS if key in definition}


def in_force(limits: dict[str, int] | None, key: str) -> int | None:
    """The limit `key` if one applies (set and not negative), else None."""
    value = (limits or {}).get(key)
    return value if value is not None and value >= 0 else None
