"""Policies: RabbitMQ's way to give queues and exchanges arguments from outside, by name
pattern. A queue's or exchange's own arguments win over a policy's definition (the lower value
applies for the limits and TTLs, see PolicyKey.lower_wins); of several
matching policies the one with the highest priority applies. Which keys stand for which queue
arguments, and how their values are checked, is the table in arguments.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trimq.amqp.codec import TypedTable, TypedValue
from trimq.amqp.frames import erlang_binary
from trimq.broker.arguments import QUEUE_ARGUMENTS
from trimq.broker.pcre import PatternError, compile_pattern, name_bytes

EXCHANGE_KEYS = {"alternate-exchange": "alternate-exchange"}
# Policy keys of queue arguments: the table in arguments.py says which key gives which argument
# and whether it changes anything here (queue-version and the like are accepted and checked,
# without effect; queue-mode lazy pages the queue beyond its head window).
QUEUE_KEYS = frozenset(a.policy.key for a in QUEUE_ARGUMENTS if a.policy is not None)
# Keys RabbitMQ accepts for mirroring, quorum queues and streams, with no queue argument here.
# They mean nothing on one node with one queue type, so they are accepted (and listed) but
# change nothing: operators' existing set_policy scripts keep working.
INERT_KEYS = frozenset(
    {
        "ha-mode",
        "ha-params",
        "ha-sync-mode",
        "ha-sync-batch-size",
        "ha-promote-on-shutdown",
        "ha-promote-on-failure",
        "dead-letter-strategy",
        "max-age",
        "stream-max-segment-size-bytes",
        "initial-cluster-size",
    }
)
APPLY_TO = ("queues", "exchanges", "all")


def erlang_value(value: Any) -> str:
    """A JSON value as RabbitMQ prints the term it decodes to (~p): strings are binaries."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return erlang_binary(value.encode())
    if isinstance(value, list):
        return "[" + ",".join(erlang_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "#{"
            + ",".join(f"{erlang_value(k)} => {erlang_value(v)}" for k, v in value.items())
            + "}"
        )
    return repr(value)


def _integer(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


# key -> (test of its value, what RabbitMQ says the value is not)
_VALUE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "alternate-exchange": (lambda v: isinstance(v, str), "a valid alternate exchange name"),
    "dead-letter-strategy": (
        lambda v: v in ("at-most-once", "at-least-once"),
        "a valid dead letter strategy",
    ),
    **{
        a.policy.key: (a.policy.valid, a.policy.noun)
        for a in QUEUE_ARGUMENTS
        if a.policy is not None and a.policy.valid is not None
    },
}


def _check_mirroring(definition: dict[str, Any]) -> str | None:
    """RabbitMQ's checks of the ha-* keys (mirroring), which trimq accepts without effect."""
    mode = definition.get("ha-mode")
    if mode is None:
        if any(k in definition for k in ("ha-params", "ha-sync-mode", "ha-promote-on-shutdown")):
            return (
                "ha-mode must be specified to specify ha-params, ha-sync-mode or "
                "ha-promote-on-shutdown"
            )
        return None
    if mode not in ("all", "exactly", "nodes"):
        return f"{erlang_value(mode)} is not a valid ha-mode value"
    params = definition.get("ha-params")
    if mode == "all" and "ha-params" in definition:
        return 'ha-mode="all" does not take parameters'
    if mode == "exactly" and not _integer(params, 1):
        given = "none" if params is None else erlang_value(params)
        return f'ha-mode="exactly" takes an integer, {given} given'
    if mode == "nodes" and not (
        isinstance(params, list) and params and all(isinstance(n, str) for n in params)
    ):
        given = "none" if params is None else erlang_value(params)
        return f'ha-mode="nodes" takes a list, {given} given'
    for key in ("ha-promote-on-shutdown", "ha-promote-on-failure"):
        if key in definition and definition[key] not in ("always", "when-synced"):
            return f'{key} must be "always" or "when-synced", got {erlang_value(definition[key])}'
    if "ha-sync-mode" in definition and definition["ha-sync-mode"] not in ("manual", "automatic"):
        return (
            'ha-sync-mode must be "manual" or "automatic", got '
            f"{erlang_value(definition['ha-sync-mode'])}"
        )
    if "ha-sync-batch-size" in definition and not _integer(definition["ha-sync-batch-size"], 1):
        return (
            "ha-sync-batch-size takes an integer greater than 0, "
            f"{erlang_value(definition['ha-sync-batch-size'])} given"
        )
    return None


def definition_problem(definition: dict[str, Any]) -> str | None:
    """Why RabbitMQ would refuse this definition (its text), or None. Keys are checked in
    sorted order, as RabbitMQ does, and only the first problem is told."""
    unknown = [
        (k, v)
        for k, v in sorted(definition.items())
        if k not in QUEUE_KEYS and k not in EXCHANGE_KEYS and k not in INERT_KEYS
    ]
    if unknown:
        listed = ",".join(f"{{{erlang_value(k)},{erlang_value(v)}}}" for k, v in unknown)
        return f"[{listed}] are not recognised policy settings"
    for key in sorted(definition):
        check = _VALUE_CHECKS.get(key)
        if check is not None and not check[0](definition[key]):
            return f"{erlang_value(definition[key])} is not {check[1]}"
    locator = definition.get("queue-master-locator", "min-masters")
    if locator not in ("min-masters", "client-local", "random"):
        return f"{erlang_value(locator)} invalid queue-master-locator value"
    return _check_mirroring(definition)


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
    _regex: re.Pattern[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = compile_pattern(self.pattern)

    def applies(self, kind: str, name: str) -> bool:
        return self.apply_to in (kind, "all") and self._regex.search(name_bytes(name)) is not None

    def exchange_arguments(self) -> TypedTable:
        """The definition's exchange keys as typed arguments of an exchange. (A queue reads its
        keys from the definition through arguments.queue_settings.)"""
        return {
            EXCHANGE_KEYS[key]: TypedValue("S", value)
            for key, value in self.definition.items()
            if key in EXCHANGE_KEYS
        }


def make_policy(
    vhost: str, name: str, pattern: str, definition: Any, priority: int, apply_to: str
) -> Policy:
    """A checked policy, or PolicyError."""
    if apply_to not in APPLY_TO:
        raise PolicyError(
            f"Validation failed\n\napply-to '{apply_to}' unrecognised; should be "
            "'queues', 'exchanges' or 'all'"
        )
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        raise PolicyError(
            "Validation failed\n\npattern should be regular expression but is "
            f'invalid: {{"{exc.message}",{exc.position}}}'
        ) from None
    if not isinstance(definition, dict):
        raise PolicyError("Validation failed\n\nthe definition must be a JSON object")
    if not definition:
        raise PolicyError("Validation failed\n\nno policy provided")
    problem = definition_problem(definition)
    if problem is not None:
        raise PolicyError(f"Validation failed\n\n{problem}")
    return Policy(vhost, name, pattern, dict(definition), int(priority), apply_to)


def effective(policies: dict[str, Policy], kind: str, name: str) -> Policy | None:
    """The policy that applies to a queue or exchange named `name`, if any."""
    if kind == "exchanges" and (name == "" or name.startswith("amq.")):
        return None  # the built-in exchanges take no policy
    matching = [p for p in policies.values() if p.applies(kind, name)]
    return max(matching, key=lambda p: (p.priority, p.name), default=None)
