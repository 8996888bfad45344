"""Field tables and strings (trimq.amqp.codec): round trips, typed letters, pika interop, and
garbage input that must end in SyntaxFrameError (502) and nothing else. No sockets."""

from __future__ import annotations

import math
import struct
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgpack
import pika.data
import pytest
from codec_strategies import (
    MAX_TIMESTAMP,
    keys,
    nested_tables,
    pika_encode,
    pika_tables,
    plain_tables,
    typed_tables,
    typed_values,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trimq.amqp import spec
from trimq.amqp.codec import (
    TYPE_NAMES,
    Typed,
    TypedValue,
    decode_longstr,
    decode_shortstr,
    decode_table,
    decode_table_typed,
    encode_longstr,
    encode_shortstr,
    encode_table,
    encode_typed_table,
    typed_to_plain,
)
from trimq.errors import SYNTAX_ERROR, SyntaxFrameError

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies


def letters(table: dict[str, Any]) -> dict[str, Any]:
    """The letter skeleton of a typed table: {name: letter or (letter, nested skeleton)}."""

    def one(value: tuple[str, Any]) -> Any:
        letter, inner = value
        if letter == "F":
            return ("F", letters(inner))
        if letter == "A":
            return ("A", [one(v) for v in inner])
        return letter

    return {k: one(v) for k, v in table.items()}


# --------------------------------------------------------------------------- round trips


def test_every_rabbitmq_type_letter_is_known() -> None:
    assert set(TYPE_NAMES) == set("tbBsuIilfdDSxTFAV")


@pytest.mark.parametrize(
    ("letter", "value"),
    [
        ("t", True),
        ("b", -128),
        ("B", 255),
        ("s", -32768),
        ("u", 65535),
        ("I", -(2**31)),
        ("i", 2**32 - 1),
        ("l", -(2**63)),
        ("f", 1.5),
        ("d", -2.25),
        ("D", Decimal("3.14")),
        ("S", "héllo"),
        ("x", b"\x00\xff"),
        ("T", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("F", {"k": ("u", 7)}),
        ("A", [("b", 1), ("S", "x")]),
        ("V", None),
    ],
)
def test_each_letter_keeps_its_letter_and_value(letter: str, value: Any) -> None:
    data = encode_typed_table({"k": (letter, value)})
    assert data[4 + 2] == ord(letter)  # size(4) + key "k" as shortstr(2) + the letter
    table, end = decode_table_typed(data, 0)
    assert end == len(data)
    assert table == {"k": (letter, value)}


def test_typed_values_are_named_pairs_that_behave_as_plain_ones() -> None:
    """A TypedValue is a (letter, value) tuple: it unpacks, compares, prints and packs as the
    plain pair, so binding keys on disk (which hold its repr) and msgpack payloads are as before."""
    table, _ = decode_table_typed(encode_table({"n": 5, "t": {"s": "x"}, "a": [1]}), 0)
    assert all(type(v) is TypedValue for v in table.values())
    assert (table["n"].letter, table["n"].value) == ("I", 5)
    letter, value = table["n"]
    assert (letter, value) == table["n"] == ("I", 5)
    assert type(table["t"].value["s"]) is TypedValue and type(table["a"].value[0]) is TypedValue
    assert repr(table) == "{'n': ('I', 5), 't': ('F', {'s': ('S', 'x')}), 'a': ('A', [('I', 1)])}"
    assert msgpack.unpackb(msgpack.packb(table["t"])) == ["F", {"s": ["S", "x"]}]


@FAST
@given(typed_tables)
def test_typed_round_trip_keeps_letters_and_values(table: dict[str, Any]) -> None:
    data = encode_typed_table(table)
    decoded, end = decode_table_typed(data, 0)
    assert end == len(data)
    assert letters(decoded) == letters(table)
    assert decoded == table
    # the plain decode of the same bytes gives the same values without letters
    plain, end = decode_table(data, 0)
    assert end == len(data)
    assert plain == {k: typed_to_plain(v) for k, v in table.items()}


@FAST
@given(st.dictionaries(keys, typed_values(allow_nan=True), max_size=6))
def test_typed_reencoding_is_byte_identical(table: dict[str, Any]) -> None:
    """decode -> encode gives the same bytes (NaNs included), so arguments survive re-sending."""
    data = encode_typed_table(table)
    decoded, _ = decode_table_typed(data, 0)
    assert encode_typed_table(decoded) == data


@FAST
@given(plain_tables, st.binary(max_size=8))
def test_plain_round_trip(table: dict[str, Any], prefix: bytes) -> None:
    data = prefix + encode_table(table)
    decoded, end = decode_table(data, len(prefix))
    assert end == len(data)
    assert decoded == table


def test_plain_encoding_infers_rabbitmq_letters() -> None:
    table = {
        "bool": True,
        "int": 2**31 - 1,
        "neg": -(2**31),
        "big": 2**31,
        "str": "s",
        "bin": b"b",
        "float": 0.5,
        "dec": Decimal("1.5"),
        "ts": datetime(2020, 1, 1, tzinfo=UTC),
        "none": None,
        "tab": {},
        "arr": [],
        "typed": Typed("u", 9),
    }
    decoded, _ = decode_table_typed(encode_table(table), 0)
    assert {k: v[0] for k, v in decoded.items()} == {
        "bool": "t",
        "int": "I",
        "neg": "I",
        "big": "l",
        "str": "S",
        "bin": "x",
        "float": "d",
        "dec": "D",
        "ts": "T",
        "none": "V",
        "tab": "F",
        "arr": "A",
        "typed": "u",
    }


def test_empty_and_none_tables_encode_as_zero_length() -> None:
    assert encode_table(None) == encode_table({}) == b"\x00\x00\x00\x00"
    assert encode_typed_table(None) == b"\x00\x00\x00\x00"
    assert decode_table(b"\x00\x00\x00\x00", 0) == ({}, 4)


@FAST
@given(st.binary(max_size=300))
def test_strings_round_trip_losslessly(raw: bytes) -> None:
    text = raw.decode("utf-8", "surrogateescape")
    data = encode_longstr(text)
    assert decode_longstr(data, 0) == (raw, len(data))
    if len(raw) <= 255:
        data = encode_shortstr(text)
        assert data == bytes([len(raw)]) + raw
        assert decode_shortstr(data, 0) == (text, len(data))


@pytest.mark.parametrize("value", ["a" * 256, "é" * 128, b"\x00" * 300])
def test_shortstr_over_255_bytes_raises_value_error(value: str | bytes) -> None:
    with pytest.raises(ValueError):
        encode_shortstr(value)
    if isinstance(value, str):
        with pytest.raises(ValueError):
            encode_table({value: 1})
        with pytest.raises(ValueError):
            spec.QueueDeclare(queue=value).encode()


def test_shortstr_of_exactly_255_bytes_is_fine() -> None:
    assert len(encode_shortstr("a" * 255)) == 256
    assert decode_table(encode_table({"a" * 255: 1}), 0)[0] == {"a" * 255: 1}


# --------------------------------------------------------------------------- pika interop


@FAST
@given(pika_tables)
def test_tables_pika_encodes_decode_to_the_same_values(table: dict[str, Any]) -> None:
    data = pika_encode(table)
    assert decode_table(data, 0) == (table, len(data))


@FAST
@given(pika_tables)
def test_trimq_encodes_tables_byte_for_byte_as_pika(table: dict[str, Any]) -> None:
    data = encode_table(table)
    assert data == pika_encode(table)
    assert pika.data.decode_table(data, 0) == (table, len(data))


def test_pika_letters_trimq_decodes() -> None:
    """Letters pika decodes but never encodes (b B s u i f d) are read alike by both.

    (Integral floats only: pika truncates f and d values to integers.)
    """
    payload = b"".join(
        [
            b"\x01bb\xff",
            b"\x01BB\xff",
            b"\x01ss\xff\xfe",
            b"\x01uu\xff\xfe",
            b"\x01ii\xff\xff\xff\xff",
            b"\x01ff" + struct.pack(">f", 2.0),
            b"\x01dd" + struct.pack(">d", -4.0),
        ]
    )
    data = struct.pack(">I", len(payload)) + payload
    ours, _ = decode_table(data, 0)
    theirs, _ = pika.data.decode_table(data, 0)
    assert (
        ours
        == theirs
        == {"b": -1, "B": 255, "s": -2, "u": 65534, "i": 2**32 - 1, "f": 2.0, "d": -4.0}
    )


# --------------------------------------------------------------------------- garbage in


def assert_decodes_or_syntax_error(data: bytes, pos: int = 0) -> None:
    for decode in (decode_table, decode_table_typed):
        try:
            table, end = decode(data, pos)
        except SyntaxFrameError as exc:
            assert exc.code == SYNTAX_ERROR
        except Exception as exc:
            raise AssertionError(f"{decode.__name__} raised {exc!r} on {data!r}") from exc
        else:
            assert pos + 4 <= end <= len(data)
            assert isinstance(table, dict)


@FAST
@given(st.binary(max_size=64))
@example(b"")
@example(b"\x00\x00\x00")
@example(b"\x00\x00\x00\x05\x01aZ\x00\x00")  # unknown type letter
@example(b"\x00\x00\x00\x02\x05a")  # key runs past the table
@example(b"\x00\x00\x00\x03\x01aF")  # nested table header missing
def test_random_bytes_only_raise_syntax_frame_error(data: bytes) -> None:
    assert_decodes_or_syntax_error(data)


@FAST
@given(st.binary(max_size=64))
def test_random_bytes_under_a_matching_size_only_raise_syntax_frame_error(body: bytes) -> None:
    """A correct outer size field makes the decoder walk into the random contents."""
    assert_decodes_or_syntax_error(struct.pack(">I", len(body)) + body)


@FAST
@given(typed_tables, st.data())
def test_mutated_tables_only_raise_syntax_frame_error(table: dict[str, Any], data: Any) -> None:
    encoded = bytearray(encode_typed_table(table))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    assert_decodes_or_syntax_error(bytes(encoded[:cut]))


@FAST
@given(typed_tables.filter(bool))
def test_every_truncation_of_a_table_is_a_syntax_error(table: dict[str, Any]) -> None:
    encoded = encode_typed_table(table)
    for cut in range(len(encoded)):
        with pytest.raises(SyntaxFrameError):
            decode_table(encoded[:cut], 0)
        with pytest.raises(SyntaxFrameError):
            decode_table_typed(encoded[:cut], 0)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x04\x01a",  # size covers a key without a value
        b"\x00\x00\x00\x03\x01aS\x00\x00\x00\x09xy",  # longstr longer than the table
        b"\x00\x00\x00\x07\x01aA\x00\x00\x00\x09",  # array longer than the table
        b"\x00\x00\x00\x08\x01ax\x00\x00\x00\x01",  # binary longer than the table
        b"\x00\x00\x00\x04\x01aI\x00",  # int cut short inside its table
        b"\x00\x00\x00\x0a\x01aF\x00\x00\x00\x02\x01b",  # nested table too short
    ],
)
def test_inconsistent_sizes_are_syntax_errors(data: bytes) -> None:
    with pytest.raises(SyntaxFrameError) as info:
        decode_table(data, 0)
    assert info.value.code == SYNTAX_ERROR


def test_inner_size_overrunning_its_table_is_a_syntax_error() -> None:
    inner = b"\x00\x00\x00\x05\x01bI\x00\x00"  # claims 5 bytes, carries 4
    body = b"\x01aF" + inner
    data = struct.pack(">I", len(body)) + body + b"\x00\x00"  # bytes beyond the outer table
    with pytest.raises(SyntaxFrameError):
        decode_table(data, 0)


# --------------------------------------------------------------------------- edge values


@pytest.mark.parametrize("seconds", [2**64 - 1, 2**63, 10**12, MAX_TIMESTAMP + 1])
def test_timestamp_beyond_year_9999_keeps_its_seconds(seconds: int) -> None:
    """RabbitMQ takes any 64-bit timestamp; datetime stops at 9999, so the count is kept."""
    body = b"\x01aT" + struct.pack(">Q", seconds)
    data = struct.pack(">I", len(body)) + body
    assert decode_table(data, 0) == ({"a": seconds}, len(data))
    typed, _ = decode_table_typed(data, 0)
    assert typed == {"a": ("T", seconds)}
    assert encode_typed_table(typed) == data


def test_timestamp_at_the_edges_of_datetime() -> None:
    for seconds in (0, MAX_TIMESTAMP):
        body = b"\x01aT" + struct.pack(">Q", seconds)
        data = struct.pack(">I", len(body)) + body
        assert decode_table(data, 0)[0] == {"a": datetime.fromtimestamp(seconds, UTC)}


def test_moderately_nested_tables_decode() -> None:
    data = nested_tables(100)
    table, end = decode_table(data, 0)
    assert end == len(data)
    for _ in range(100):
        table = table["a"]
    assert table == {}


def test_moderately_nested_arrays_decode() -> None:
    data = nested_tables(100, b"A")
    table, end = decode_table(data, 0)
    assert end == len(data)
    value = table["a"]
    for _ in range(99):
        value = value[0]
    assert value == []


@pytest.mark.parametrize("letter", [b"F", b"A"])
def test_tables_nested_beyond_the_recursion_limit_are_syntax_errors(letter: bytes) -> None:
    """Not a RecursionError: a 20 kB frame can nest a few thousand levels."""
    data = nested_tables(sys.getrecursionlimit() + 100, letter)
    assert len(data) < 131072 - 8  # fits in one default-sized frame
    for decode in (decode_table, decode_table_typed):
        with pytest.raises(SyntaxFrameError):
            decode(data, 0)


def test_float_letters_keep_nan_bits() -> None:
    data = encode_typed_table({"f": ("f", math.nan), "d": ("d", math.inf)})
    decoded, _ = decode_table_typed(data, 0)
    assert math.isnan(decoded["f"][1]) and decoded["d"] == ("d", math.inf)
