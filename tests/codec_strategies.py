"""Hypothesis strategies for AMQP field tables and methods, and hand-built nested tables:
shared by the codec, spec and connection fuzz tests."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pika.data
from hypothesis import strategies as st

from trimq.amqp import spec

# --------------------------------------------------------------------------- tables

MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can hold

# Field names: short strings (<= 255 bytes once encoded). Binary ones go through surrogateescape,
# which is how trimq keeps names lossless.
keys = st.one_of(
    st.text(max_size=20),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
longstr_text = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
timestamps = st.integers(0, MAX_TIMESTAMP).map(lambda s: datetime.fromtimestamp(s, UTC))
# AMQP 0-9-1 decimals: scale octet + unsigned 32-bit value (as RabbitMQ's parser reads them).
decimals = st.builds(
    lambda raw, scale: Decimal(raw).scaleb(-scale),
    st.integers(0, 2**32 - 1),
    st.integers(0, 255),
)


def scalar_typed(allow_nan: bool = False) -> st.SearchStrategy[tuple[str, Any]]:
    """(letter, value) for every non-container RabbitMQ field type."""
    return st.one_of(
        st.tuples(st.just("t"), st.booleans()),
        st.tuples(st.just("b"), st.integers(-(2**7), 2**7 - 1)),
        st.tuples(st.just("B"), st.integers(0, 2**8 - 1)),
        st.tuples(st.just("s"), st.integers(-(2**15), 2**15 - 1)),
        st.tuples(st.just("u"), st.integers(0, 2**16 - 1)),
        st.tuples(st.just("I"), st.integers(-(2**31), 2**31 - 1)),
        st.tuples(st.just("i"), st.integers(0, 2**32 - 1)),
        st.tuples(st.just("l"), st.integers(-(2**63), 2**63 - 1)),
        st.tuples(st.just("f"), st.floats(width=32, allow_nan=allow_nan)),
        st.tuples(st.just("d"), st.floats(allow_nan=allow_nan)),
        st.tuples(st.just("D"), decimals),
        st.tuples(st.just("S"), longstr_text),
        st.tuples(st.just("x"), st.binary(max_size=40)),
        st.tuples(st.just("T"), timestamps),
        # seconds beyond datetime's range (after 9999) stay a plain count of seconds
        st.tuples(st.just("T"), st.integers(MAX_TIMESTAMP + 1, 2**64 - 1)),
        st.tuples(st.just("V"), st.none()),
    )


def typed_values(allow_nan: bool = False) -> st.SearchStrategy[tuple[str, Any]]:
    return st.recursive(
        scalar_typed(allow_nan),
        lambda inner: st.one_of(
            st.tuples(st.just("F"), st.dictionaries(keys, inner, max_size=4)),
            st.tuples(st.just("A"), st.lists(inner, max_size=4)),
        ),
        max_leaves=12,
    )


typed_tables = st.dictionaries(keys, typed_values(), max_size=6)

# Plain Python values whose letter encode_table infers and whose decode gives them back.
plain_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    longstr_text,
    st.binary(max_size=40),
    st.floats(allow_nan=False),
    decimals,
    timestamps,
    st.none(),
)
plain_values = st.recursive(
    plain_scalars,
    lambda inner: st.one_of(st.dictionaries(keys, inner, max_size=4), st.lists(inner, max_size=4)),
    max_leaves=12,
)
plain_tables = st.dictionaries(keys, plain_values, max_size=6)

# What pika's encoder supports (no floats: pika cannot encode them; decimals as pika packs them,
# normalized with a signed 32-bit raw value, so only non-negative ones agree with the spec).
pika_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(
        lambda raw, scale: Decimal(raw).scaleb(-scale).normalize(),
        st.integers(0, 2**31 - 1),
        st.integers(0, 9),
    ),
    timestamps,
    st.none(),
)
pika_values = st.recursive(
    pika_scalars,
    lambda inner: st.one_of(
        st.dictionaries(st.text(max_size=20), inner, max_size=4), st.lists(inner, max_size=4)
    ),
    max_leaves=12,
)
pika_tables = st.dictionaries(st.text(max_size=20), pika_values, max_size=6)


def pika_encode(table: dict[str, Any]) -> bytes:
    pieces: list[bytes] = []
    pika.data.encode_table(pieces, table)
    return b"".join(pieces)


def nested_tables(depth: int, letter: bytes = b"F") -> bytes:
    """A table holding `depth` levels of nested tables (F) or arrays (A) under key 'a'."""
    inner = b"\x00\x00\x00\x00"
    for level in range(depth):
        body = (b"\x01a" if letter == b"F" or level == depth - 1 else b"") + letter + inner
        inner = struct.pack(">I", len(body)) + body
    return inner


# --------------------------------------------------------------------------- methods

METHOD_CLASSES = sorted(spec.METHODS.values(), key=lambda cls: cls.INDEX)


def _int_width(make: Any) -> int:
    """The width in bits of an integer field: the widest all-ones value that still encodes."""
    width = 0
    for bits in (8, 16, 32, 64):
        try:
            make(2**bits - 1).encode()
        except struct.error:
            break
        width = bits
    assert width, "an integer field that cannot even hold 255"
    return width


def field_kinds(cls: type) -> list[tuple[str, str]]:
    """[(field, kind)] from the generated annotations: int8/16/32/64, bool, shortstr, longstr,
    table (or typed-table for `arguments`, which keeps type letters)."""
    if "__init__" not in cls.__dict__:
        return []
    annotations = cls.__init__.__annotations__
    kinds = []
    for name in cls.__slots__:
        annotation = annotations[name]
        if annotation in {"int", "int | None"}:
            kind = f"int{_int_width(lambda v, n=name: cls(**{n: v}))}"
        elif annotation == "bool":
            kind = "bit"
        elif annotation.startswith("str"):
            kind = "shortstr"
        elif annotation.startswith("bytes"):
            kind = "longstr"
        elif annotation.startswith("TypedTable"):  # the `arguments` tables, letters kept
            kind = "typed-table"
        elif annotation.startswith("dict"):
            kind = "table"
        else:
            raise AssertionError(f"{cls.__name__}.{name}: unexpected annotation {annotation}")
        kinds.append((name, kind))
    return kinds


KINDS = {cls: field_kinds(cls) for cls in METHOD_CLASSES}
PROPERTY_KINDS = field_kinds(spec.BasicProperties)

shortstrs = st.one_of(
    st.text(max_size=30).filter(lambda s: len(s.encode()) <= 255),
    st.binary(max_size=255).map(lambda b: b.decode("utf-8", "surrogateescape")),
)


def strategy(kind: str, *, pika_compatible: bool = False) -> st.SearchStrategy[Any]:
    if kind.startswith("int"):
        return st.integers(0, 2 ** int(kind[3:]) - 1)
    if kind == "bit":
        return st.booleans()
    if kind == "shortstr":
        return (
            st.text(max_size=30).filter(lambda s: len(s.encode()) <= 255)
            if (pika_compatible)
            else shortstrs
        )
    if kind == "longstr":
        return st.binary(max_size=60)
    if kind == "table":
        return pika_tables if pika_compatible else plain_tables
    if kind == "typed-table":
        return pika_tables if pika_compatible else typed_tables
    raise AssertionError(kind)


def method_values(cls: type, pika_compatible: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {name: strategy(kind, pika_compatible=pika_compatible) for name, kind in KINDS[cls]}
    )


@st.composite
def methods(draw: Any) -> spec.Method:
    cls = draw(st.sampled_from(METHOD_CLASSES))
    return cls(**draw(method_values(cls)))
