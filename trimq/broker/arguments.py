"""Validation of queue arguments (x-...), with RabbitMQ's "invalid arg" texts.

Values arrive typed-decoded as (type letter, value); the error detail is what RabbitMQ prints
with Erlang's ~p, such as `{value_negative,-1}` or `"expected integer, got longstr"`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trimq.amqp.codec import TYPE_NAMES
from trimq.errors import PRECONDITION_FAILED, ChannelError

INTEGER_LETTERS = frozenset("bBsuIil")
MAX_EXPIRY = 315360000000  # ten years in milliseconds: RabbitMQ's largest TTL
MAX_PRIORITY = 255
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")

Check = Callable[[Any, dict[str, Any]], str | None]


def _int(value: Any) -> str | None:
    letter, _ = value
    if letter not in INTEGER_LETTERS:
        return f'"expected integer, got {TYPE_NAMES.get(letter, letter)}"'
    return None


def _non_negative(value: Any, _args: dict[str, Any]) -> str | None:
    error = _int(value)
    if error is None and value[1] < 0:
        return f"{{value_negative,{value[1]}}}"
    return error


def _expiry(number: int) -> str | None:
    if number < 0:
        return f"{{value_negative,{number}}}"
    if number > MAX_EXPIRY:
        return f"{{value_too_large,{number}}}"
    return None


def parse_expiration(text: str) -> tuple[int | None, str | None]:
    """A per-message expiration as RabbitMQ reads it (Erlang's string:to_integer): an
    optional sign and digits, nothing after them; returns (milliseconds, None) or
    (None, error detail)."""
    digits = text[1:] if text[:1] in "+-" and text[:1] else text
    count = len(digits) - len(digits.lstrip("0123456789"))
    if count == 0:
        return None, "no_integer"
    if count < len(digits):
        return None, f'{{leftover_string,"{digits[count:]}"}}'
    number = int(text[: len(text) - len(digits) + count])
    error = _expiry(number)
    return (None, error) if error else (number, None)


def _expires(value: Any, _args: dict[str, Any]) -> str | None:
    error = _int(value)
    if error is None:
        return f"{{value_zero,{value[1]}}}" if value[1] == 0 else _expiry(value[1])
    return error


def _message_ttl(value: Any, _args: dict[str, Any]) -> str | None:
    return _int(value) or _expiry(value[1])


def _max_priority(value: Any, args: dict[str, Any]) -> str | None:
    error = _non_negative(value, args)
    if error is None and value[1] > MAX_PRIORITY:
        return f"{{max_value_exceeded,{value[1]}}}"
    return error


def _longstr(value: Any) -> str | None:
    letter, _ = value
    if letter != "S":
        return f"{{unacceptable_type,{TYPE_NAMES.get(letter, letter)}}}"
    return None


class TypeMismatch(Exception):
    """RabbitMQ words some wrong argument types as 'invalid type ... for arg ...'."""


def _dlx(value: Any, _args: dict[str, Any]) -> str | None:
    if value[0] != "S":
        raise TypeMismatch(TYPE_NAMES.get(value[0], value[0]))
    return None


def _dlx_routing_key(value: Any, args: dict[str, Any]) -> str | None:
    error = _longstr(value)
    if error is None and "x-dead-letter-exchange" not in args:
        return "routing_key_but_no_dlx_defined"
    return error


def _overflow(value: Any, _args: dict[str, Any]) -> str | None:
    error = _longstr(value)
    if error is None and value[1] not in OVERFLOW_MODES:
        return "invalid_overflow"
    return error


def _queue_mode(value: Any, _args: dict[str, Any]) -> str | None:
    error = _longstr(value)
    if error is None and value[1] not in ("default", "lazy"):
        return "invalid_queue_mode"
    return error


def _bool(value: Any, _args: dict[str, Any]) -> str | None:
    letter, _ = value
    if letter != "t":
        return f"{{unacceptable_type,{TYPE_NAMES.get(letter, letter)}}}"
    return None


def _queue_type(value: Any, _args: dict[str, Any]) -> str | None:
    error = _longstr(value)
    if error is None and value[1] != "classic":
        return f"{{unsupported_queue_type,<<\"{value[1]}\">>}}"
    return error


QUEUE_ARGUMENT_CHECKS: dict[str, Check] = {
    "x-expires": _expires,
    "x-message-ttl": _message_ttl,
    "x-dead-letter-exchange": _dlx,
    "x-dead-letter-routing-key": _dlx_routing_key,
    "x-max-length": _non_negative,
    "x-max-length-bytes": _non_negative,
    "x-max-in-memory-length": _non_negative,
    "x-max-in-memory-bytes": _non_negative,
    "x-max-priority": _max_priority,
    "x-overflow": _overflow,
    "x-queue-mode": _queue_mode,
    "x-single-active-consumer": _bool,
    "x-queue-type": _queue_type,
    "x-delivery-limit": _non_negative,
}


def validate_queue_arguments(what: str, arguments: dict[str, Any]) -> None:
    """Raise RabbitMQ's 406 "invalid arg" for the first argument that fails its check."""
    for name in QUEUE_ARGUMENT_CHECKS:
        validate_queue_argument(what, name, arguments)


def validate_queue_argument(what: str, name: str, arguments: dict[str, Any]) -> None:
    """Check one argument (if given) as `validate_queue_arguments` does."""
    value = arguments.get(name)
    if value is None:
        return
    try:
        error = QUEUE_ARGUMENT_CHECKS[name](value, arguments)
    except TypeMismatch as mismatch:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid type '{mismatch}' for arg '{name}' in {what}",
        ) from None
    if error is not None:
        raise ChannelError(PRECONDITION_FAILED, f"invalid arg '{name}' for {what}: {error}")
