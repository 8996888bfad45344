"""The queue-argument table (trimq.broker.arguments) is the one place that says what each
x-argument is: these checks keep its entries consistent with the settings, the policy keys and
the declaration checks that read it. No sockets."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from trimq.broker import policy
from trimq.broker.arguments import (
    QUEUE_ARGUMENT,
    QUEUE_ARGUMENTS,
    QueueSettings,
    queue_settings,
    validate_queue_arguments,
)
from trimq.errors import ChannelError


def test_names_and_policy_keys_are_unique() -> None:
    names = [a.name for a in QUEUE_ARGUMENTS]
    keys = [a.policy.key for a in QUEUE_ARGUMENTS if a.policy is not None]
    assert len(set(names)) == len(names)
    assert len(set(keys)) == len(keys)
    assert all(name.startswith("x-") for name in names)


def test_every_setting_comes_from_exactly_one_argument() -> None:
    fields = {f.name for f in dataclasses.fields(QueueSettings) if f.init}
    settings = [a.setting for a in QUEUE_ARGUMENTS if a.setting is not None]
    assert sorted(settings) == sorted(fields)


def test_policy_keys_are_recognised_once() -> None:
    queue_keys = {a.policy.key for a in QUEUE_ARGUMENTS if a.policy is not None}
    assert queue_keys == policy.QUEUE_KEYS
    assert not queue_keys & policy.INERT_KEYS
    assert not queue_keys & set(policy.EXCHANGE_KEYS)


def test_x_queue_mode_lazy_is_a_setting_argument_or_policy() -> None:
    mode = QUEUE_ARGUMENT["x-queue-mode"]
    assert (mode.check is not None, mode.setting, mode.compared) == (True, "queue_mode", True)
    assert mode.policy is not None and mode.policy_applies
    validate_queue_arguments("queue 'q' in vhost '/'", {"x-queue-mode": ("S", "lazy")})
    assert queue_settings({"x-queue-mode": ("S", "lazy")}) == QueueSettings(queue_mode="lazy")
    assert queue_settings({}, {"queue-mode": "lazy"}).queue_mode == "lazy"
    assert queue_settings({}).queue_mode == "default"


@pytest.mark.parametrize(
    ("arguments", "definition", "expected"),
    [
        (
            {},
            {"max-length": 5, "overflow": "reject-publish"},
            {"max_length": 5, "overflow": "reject-publish", "bounded": True},
        ),
        # RabbitMQ 3.10: the lower of argument and policy for the limits and TTLs ...
        ({"x-max-length": ("I", 3)}, {"max-length": 1}, {"max_length": 1, "bounded": True}),
        ({"x-max-length": ("I", 1)}, {"max-length": 3}, {"max_length": 1, "bounded": True}),
        (
            {"x-message-ttl": ("I", 500)},
            {"message-ttl": 100, "expires": 9000},
            {"message_ttl": 100, "expires": 9000},
        ),
        (
            {"x-expires": ("I", 2000), "x-max-length-bytes": ("l", 10)},
            {"expires": 9000, "max-length-bytes": 5},
            {"expires": 2000, "max_length_bytes": 5, "bounded": True},
        ),
        # ... and the argument for the others
        (
            {"x-overflow": ("S", "reject-publish"), "x-dead-letter-exchange": ("S", "a")},
            {"overflow": "drop-head", "dead-letter-exchange": "b"},
            {"overflow": "reject-publish", "dead_letter_exchange": "a"},
        ),
        (
            {"x-message-ttl": ("l", 10)},
            {"expires": 1000, "delivery-limit": 2},
            {"message_ttl": 10, "expires": 1000, "delivery_limit": 2},
        ),
        ({"x-max-priority": ("B", 5)}, {}, {"max_priority": 5}),
        ({"x-single-active-consumer": ("t", True)}, None, {"single_active_consumer": True}),
        (
            {},
            {"queue-mode": "lazy", "queue-version": 2, "max-in-memory-length": 1},
            {"queue_mode": "lazy"},
        ),
    ],
)
def test_settings_from_arguments_and_policy(
    arguments: dict[str, Any], definition: dict[str, Any] | None, expected: dict[str, Any]
) -> None:
    settings = dataclasses.asdict(queue_settings(arguments, definition))
    assert settings == {**dataclasses.asdict(QueueSettings()), **expected}


def test_policy_checks_come_from_the_table() -> None:
    assert policy.definition_problem({"queue-mode": "eager"}) == (
        '<<"eager">> is not a valid queue-mode value'
    )
    assert policy.definition_problem({"queue-version": True}) == (
        "true is not a valid queue-version value"
    )
    assert policy.definition_problem({"queue-mode": "lazy", "queue-version": 2}) is None


def test_declaration_check_reports_the_first_in_table_order() -> None:
    with pytest.raises(ChannelError) as raised:
        validate_queue_arguments(
            "queue 'q' in vhost '/'", {"x-max-priority": ("I", 300), "x-expires": ("I", 0)}
        )
    assert raised.value.detail == (
        "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
    )
