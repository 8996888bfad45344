"""Headers exchange matching as RabbitMQ does it: binding arguments against message headers,
compared as the decoded values Erlang compares with `==`.

So a boolean never equals a number or a string; integers of every width, timestamps and
floats are equal when their numbers are (1 == 1.0); a byte array equals the string with the
same bytes; decimals compare as (scale, digits); nested tables and arrays compare their
entries in order, types included (an empty table equals an empty array); a void binding
argument only asks for the header to be present.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from trimq.amqp.codec import STR_ENCODING, STR_ERRORS, TYPE_NAMES, TypedTable
from trimq.amqp.frames import erlang_binary
from trimq.errors import PRECONDITION_FAILED, ChannelError

NUMBER_LETTERS = frozenset("bBsuIilfd")
MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")

# A binding's arguments prepared for matching: (whether all must match, [(header name,
# comparable, or None for void: only present)]).
Pattern = tuple[bool, list[tuple[str, Any]]]


def comparable(letter: str, value: Any) -> Any:
    """A typed-decoded value as a Python value that compares (==) as RabbitMQ's does."""
    if letter in NUMBER_LETTERS:
        return ("n", value)
    if letter in ("S", "x"):
        raw = value.encode(STR_ENCODING, STR_ERRORS) if isinstance(value, str) else value
        return ("s", raw)
    if letter == "t":
        return ("t", bool(value))
    if letter == "T":
        return ("n", int(value.timestamp()) if isinstance(value, datetime) else value)
    if letter == "D":
        return ("D", *_decimal(value))
    if letter == "F":
        return ("L", tuple((k, v[0], comparable(*v)) for k, v in value.items()))
    if letter == "A":
        return ("L", tuple((v[0], comparable(*v)) for v in value))
    return ("V",)


def _decimal(value: Decimal) -> tuple[int, int]:
    """A decimal as the wire has it: (scale, unscaled digits)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    return -exponent, int("".join(map(str, digits)))


def pattern(arguments: TypedTable) -> Pattern:
    """What a binding matches (its arguments typed-decoded). An x-match `validate` refuses
    (from a log written before it did) means all, as RabbitMQ reads one."""
    mode_field = arguments.get("x-match")
    mode = mode_field[1] if mode_field is not None and mode_field[0] == "S" else "all"
    if mode not in MATCH_MODES:
        mode = "all"
    with_x = mode.endswith("-with-x")
    wanted = [
        (name, None if typed[0] == "V" else comparable(*typed))
        for name, typed in arguments.items()
        if name != "x-match" and (with_x or not name.startswith("x-"))
    ]
    return mode.startswith("all"), wanted


def headers_match(binding: Pattern, headers: dict[str, Any]) -> bool:
    """Whether message headers (name -> comparable) match a binding's pattern."""
    want_all, wanted = binding
    for name, value in wanted:
        ok = name in headers and (value is None or headers[name] == value)
        if ok != want_all:
            return ok
    return want_all


def message_headers(typed: TypedTable | None) -> dict[str, Any]:
    """A message's typed-decoded headers as name -> comparable."""
    if not typed:
        return {}
    return {name: comparable(*value) for name, value in typed.items()}


def validate(arguments: TypedTable) -> None:
    """RabbitMQ refuses a binding to a headers exchange whose x-match is not one it knows."""
    mode = arguments.get("x-match")
    if mode is None:
        return
    letter, value = mode
    if letter != "S":
        raise ChannelError(
            PRECONDITION_FAILED,
            f"Invalid x-match field type {TYPE_NAMES.get(letter, letter)} "
            f"(value {erlang_term(letter, value)}); expected longstr",
        )
    if value not in MATCH_MODES:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"Invalid x-match field value {erlang_term(letter, value)}; expected all, any, "
            "all-with-x, or any-with-x",
        )


def erlang_term(letter: str, value: Any) -> str:
    """A typed-decoded value as RabbitMQ's texts print the term it decodes to (~p)."""
    if letter in ("S", "x"):
        raw = value.encode(STR_ENCODING, STR_ERRORS) if isinstance(value, str) else value
        if raw and all(32 <= b < 127 or b >= 160 for b in raw):
            # printable Latin-1: RabbitMQ's text carries the bytes themselves
            text = raw.decode(STR_ENCODING, STR_ERRORS)
            return '<<"' + text.replace("\\", "\\\\").replace('"', '\\"') + '">>'
        return erlang_binary(raw)
    if letter == "t":
        return "true" if value else "false"
    if letter == "V":
        return "undefined"
    if letter in ("f", "d"):
        text = repr(float(value))
        if "e" in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{int(exponent)}"
        return text
    if letter == "D":
        scale, digits = _decimal(value)
        return f"{{{scale},{digits}}}"
    if letter == "T":
        return str(comparable(letter, value)[1])
    if letter == "F":
        return (
            "["
            + ",".join(
                f"{{{erlang_binary(k.encode(STR_ENCODING, STR_ERRORS))},{TYPE_NAMES[v[0]]},"
                f"{erlang_term(*v)}}}"
                for k, v in value.items()
            )
            + "]"
        )
    if letter == "A":
        return "[" + ",".join(f"{{{TYPE_NAMES[v[0]]},{erlang_term(*v)}}}" for v in value) + "]"
    return str(value)
