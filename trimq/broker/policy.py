"""Policies: RabbitMQ's way to give queues and exchanges arguments from outside, by name
pattern. Queue arguments win over a policy's definition, as in RabbitMQ; of several matching
policies the one with the highest priority applies."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# policy key -> the queue argument it stands for
QUEUE_KEYS = {
    "message-ttl": "x-message-ttl", "expires": "x-expires", "max-length": "x-max-length",
    "max-length-bytes": "x-max-length-bytes", "overflow": "x-overflow",
    "dead-letter-exchange": "x-dead-letter-exchange",
    "dead-letter-routing-key": "x-dead-letter-routing-key",
    "delivery-limit": "x-delivery-limit", "queue-mode": "x-queue-mode",
}
EXCHANGE_KEYS = {"alternate-exchange": "alternate-exchange"}
APPLY_TO = ("queues", "exchanges", "all")


class PolicyError(ValueError):
    """A policy that cannot be set; the message says why, as rabbitmqctl prints it."""


@dataclass
class Policy:
    vhost: str
    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = 0
    apply_to: str = "all"
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.pattern)

    def applies(self, kind: str, name: str) -> bool:
        return self.apply_to in (kind, "all") and self._regex.search(name) is not None

    def arguments(self, kind: str) -> dict[str, Any]:
        """The definition as typed arguments of a queue or exchange."""
        keys = QUEUE_KEYS if kind == "queues" else EXCHANGE_KEYS
        typed = {}
        for key, value in self.definition.items():
            if key in keys:
                letter = "t" if isinstance(value, bool) else "l" if isinstance(value, int) else "S"
                typed[keys[key]] = (letter, value)
        return typed

    def as_value(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "definition": self.definition,
                "priority": self.priority, "apply_to": self.apply_to}


def make_policy(vhost: str, name: str, pattern: str, definition: Any, priority: int,
                apply_to: str) -> Policy:
    """A checked policy, or PolicyError."""
    if apply_to not in APPLY_TO:
        raise PolicyError(f"Validation failed\n\n'{apply_to}' is not a valid apply-to value")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PolicyError(f"Validation failed\n\n{pattern} is not a valid regex: {exc}") from None
    if not isinstance(definition, dict) or not definition:
        raise PolicyError("Validation failed\n\nthe definition must be a non-empty JSON object")
    unknown = sorted(k for k in definition if k not in QUEUE_KEYS and k not in EXCHANGE_KEYS)
    if unknown:
        listed = ", ".join(f'<<"{k}">>' for k in unknown)
        raise PolicyError(f"Validation failed\n\n[{listed}] are not recognised policy settings")
    return Policy(vhost, name, pattern, dict(definition), int(priority), apply_to)


def effective(policies: dict[str, Policy], kind: str, name: str) -> Policy | None:
    """The policy that applies to a queue or exchange named `name`, if any."""
    if kind == "exchanges" and (name == "" or name.startswith("amq.")):
        return None  # the built-in exchanges take no policy
    matching = [p for p in policies.values() if p.applies(kind, name)]
    return max(matching, key=lambda p: (p.priority, p.name), default=None)
