"""AMQP 0-9-1 primitive encodings: short/long strings, field tables and arrays.

Field tables use RabbitMQ's type letters (the ones pika and RabbitMQ agree on, not the 0-9-1
PDF's). Decoding returns plain Python values; `decode_table_typed` also keeps each value's type
letter (as `TypedValue` pairs), which queue-argument equivalence checks and their error texts
need.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple, TypeAlias

from trimq.errors import SyntaxFrameError

_B = struct.Struct(">B")
_b = struct.Struct(">b")
_H = struct.Struct(">H")
_h = struct.Struct(">h")
_I = struct.Struct(">I")
_i = struct.Struct(">i")
_Q = struct.Struct(">Q")
_q = struct.Struct(">q")
_f = struct.Struct(">f")
_d = struct.Struct(">d")
_DEC = struct.Struct(">BI")

STR_ENCODING = "utf-8"
STR_ERRORS = "surrogateescape"  # routing keys and names are binary on the wire: keep them lossless


class Typed:
    """A field value pinned to a type letter, for values whose letter cannot be inferred."""

    __slots__ = ("letter", "value")

    def __init__(self, letter: str, value: Any) -> None:
        self.letter = letter
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Typed) and (self.letter, self.value) == (other.letter, other.value)

    def __hash__(self) -> int:
        return hash((self.letter, repr(self.value)))

    def __repr__(self) -> str:
        return f"Typed({self.letter!r}, {self.value!r})"


class TypedValue(NamedTuple):
    """A typed-decoded field value: its type letter and its value (a table's values and an
    array's items are TypedValues too). A tuple, so it unpacks and compares as (letter, value)
    and msgpack writes it as a two-item array. `value` is what the wire held: Any by nature."""

    letter: str
    value: Any

    def __repr__(self) -> str:
        """As the plain pair: binding keys on disk (exchange.args_key) hold this repr."""
        return tuple.__repr__(self)


# A typed-decoded field table: {name: TypedValue}.
TypedTable: TypeAlias = dict[str, TypedValue]

_typed_value = tuple.__new__  # TypedValue's constructor without the call to its __new__


# RabbitMQ's names for the type letters, as its inequivalent-argument texts print them.
TYPE_NAMES = {
    "t": "bool",
    "b": "byte",
    "B": "unsignedbyte",
    "s": "short",
    "u": "unsignedshort",
    "I": "signedint",
    "i": "unsignedint",
    "l": "long",
    "f": "float",
    "d": "double",
    "D": "decimal",
    "S": "longstr",
    "x": "binary",
    "T": "timestamp",
    "F": "table",
    "A": "array",
    "V": "void",
}


def encode_shortstr(value: str | bytes) -> bytes:
    raw = value.encode(STR_ENCODING, STR_ERRORS) if isinstance(value, str) else value
    if len(raw) > 255:
        raise ValueError("shortstr longer than 255 bytes")
    return _B.pack(len(raw)) + raw


def encode_longstr(value: str | bytes) -> bytes:
    raw = value.encode(STR_ENCODING, STR_ERRORS) if isinstance(value, str) else value
    return _I.pack(len(raw)) + raw


def decode_shortstr(buf: bytes, pos: int) -> tuple[str, int]:
    length = buf[pos]
    end = pos + 1 + length
    if end > len(buf):
        raise SyntaxFrameError("shortstr runs past the end of the frame")
    return buf[pos + 1 : end].decode(STR_ENCODING, STR_ERRORS), end


def decode_longstr(buf: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = _I.unpack_from(buf, pos)
    end = pos + 4 + length
    if end > len(buf):
        raise SyntaxFrameError("longstr runs past the end of the frame")
    return bytes(buf[pos + 4 : end]), end


# ---------------------------------------------------------------------------------------------
# Field values


MAX_NESTING = 200  # tables and arrays nested deeper are refused, not decoded by deep recursion


def _decode_value(buf: bytes, pos: int, typed: bool, depth: int = 0) -> tuple[Any, int]:
    """Decode one field value (type letter + data); with `typed`, return a TypedValue."""
    letter = chr(buf[pos])
    pos += 1
    value: Any
    if letter == "S":
        (length,) = _I.unpack_from(buf, pos)
        end = pos + 4 + length
        if end > len(buf):
            raise SyntaxFrameError("field longstr runs past the end of the frame")
        value = buf[pos + 4 : end].decode(STR_ENCODING, STR_ERRORS)
        pos = end
    elif letter == "I":
        (value,) = _i.unpack_from(buf, pos)
        pos += 4
    elif letter == "t":
        value = bool(buf[pos])
        pos += 1
    elif letter == "F":
        value, pos = _decode_table(buf, pos, typed, depth + 1)
    elif letter == "l":
        (value,) = _q.unpack_from(buf, pos)
        pos += 8
    elif letter == "b":
        (value,) = _b.unpack_from(buf, pos)
        pos += 1
    elif letter == "B":
        value = buf[pos]
        pos += 1
    elif letter == "s":
        (value,) = _h.unpack_from(buf, pos)
        pos += 2
    elif letter == "u":
        (value,) = _H.unpack_from(buf, pos)
        pos += 2
    elif letter == "i":
        (value,) = _I.unpack_from(buf, pos)
        pos += 4
    elif letter == "d":
        (value,) = _d.unpack_from(buf, pos)
        pos += 8
    elif letter == "f":
        (value,) = _f.unpack_from(buf, pos)
        pos += 4
    elif letter == "D":
        scale, raw = _DEC.unpack_from(buf, pos)
        value = Decimal(raw).scaleb(-scale)
        pos += 5
    elif letter == "T":
        (seconds,) = _Q.unpack_from(buf, pos)
        try:
            value = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, ValueError, OSError):
            value = seconds  # beyond what datetime holds: keep the 64-bit count of seconds
        pos += 8
    elif letter == "A":
        value, pos = _decode_array(buf, pos, typed, depth + 1)
    elif letter == "x":
        (length,) = _I.unpack_from(buf, pos)
        end = pos + 4 + length
        if end > len(buf):
            raise SyntaxFrameError("field bytes run past the end of the frame")
        value = bytes(buf[pos + 4 : end])
        pos = end
    elif letter == "V":
        value = None
    else:
        raise SyntaxFrameError(f"unknown field type {letter!r}")
    if typed:
        return _typed_value(TypedValue, (letter, value)), pos
    return value, pos


def _decode_table(buf: bytes, pos: int, typed: bool, depth: int = 0) -> tuple[dict[str, Any], int]:
    if depth > MAX_NESTING:
        raise SyntaxFrameError("field tables nested too deeply")
    (size,) = _I.unpack_from(buf, pos)
    pos += 4
    end = pos + size
    if end > len(buf):
        raise SyntaxFrameError("field table runs past the end of the frame")
    table: dict[str, Any] = {}
    while pos < end:
        key, pos = decode_shortstr(buf, pos)
        table[key], pos = _decode_value(buf, pos, typed, depth)
    if pos != end:
        raise SyntaxFrameError("field table size does not match its contents")
    return table, end


def _decode_array(buf: bytes, pos: int, typed: bool, depth: int = 0) -> tuple[list[Any], int]:
    if depth > MAX_NESTING:
        raise SyntaxFrameError("field arrays nested too deeply")
    (size,) = _I.unpack_from(buf, pos)
    pos += 4
    end = pos + size
    if end > len(buf):
        raise SyntaxFrameError("field array runs past the end of the frame")
    items: list[Any] = []
    while pos < end:
        value, pos = _decode_value(buf, pos, typed, depth)
        items.append(value)
    if pos != end:
        raise SyntaxFrameError("field array size does not match its contents")
    return items, end


def decode_table(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
    """Decode a field table into plain Python values."""
    try:
        return _decode_table(buf, pos, False)
    except (struct.error, IndexError) as exc:
        raise SyntaxFrameError("truncated field table") from exc


def decode_table_typed(buf: bytes, pos: int) -> tuple[TypedTable, int]:
    """Decode a field table into {name: TypedValue(letter, value)}, nested tables likewise."""
    try:
        return _decode_table(buf, pos, True)
    except (struct.error, IndexError) as exc:
        raise SyntaxFrameError("truncated field table") from exc


def _encode_value(value: Any, out: list[bytes]) -> None:
    if isinstance(value, Typed):
        _encode_typed(value.letter, value.value, out)
    elif isinstance(value, bool):
        out.append(b"t\x01" if value else b"t\x00")
    elif isinstance(value, int):
        if -(2**31) <= value < 2**31:
            out.append(b"I" + _i.pack(value))
        else:
            out.append(b"l" + _q.pack(value))
    elif isinstance(value, str):
        raw = value.encode(STR_ENCODING, STR_ERRORS)
        out.append(b"S" + _I.pack(len(raw)) + raw)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out.append(b"x" + _I.pack(len(value)) + bytes(value))
    elif isinstance(value, dict):
        out.append(b"F")
        out.append(encode_table(value))
    elif isinstance(value, (list, tuple)):
        out.append(b"A")
        out.append(_encode_array(value))
    elif isinstance(value, float):
        out.append(b"d" + _d.pack(value))
    elif isinstance(value, Decimal):
        _encode_typed("D", value, out)
    elif isinstance(value, datetime):
        _encode_typed("T", value, out)
    elif value is None:
        out.append(b"V")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} in a field table")


def _encode_typed(letter: str, value: Any, out: list[bytes]) -> None:
    """Encode a value with an explicit type letter (the inverse of a typed decode)."""
    tag = letter.encode()
    if letter == "b":
        out.append(tag + _b.pack(value))
    elif letter == "B":
        out.append(tag + _B.pack(value))
    elif letter == "s":
        out.append(tag + _h.pack(value))
    elif letter == "u":
        out.append(tag + _H.pack(value))
    elif letter == "I":
        out.append(tag + _i.pack(value))
    elif letter == "i":
        out.append(tag + _I.pack(value))
    elif letter == "l":
        out.append(tag + _q.pack(value))
    elif letter == "f":
        out.append(tag + _f.pack(value))
    elif letter == "d":
        out.append(tag + _d.pack(value))
    elif letter == "t":
        out.append(b"t\x01" if value else b"t\x00")
    elif letter == "D":
        exponent = Decimal(value).as_tuple().exponent
        scale = max(0, -int(exponent))
        unscaled = int(Decimal(value).scaleb(scale))
        out.append(tag + _DEC.pack(scale, unscaled & 0xFFFFFFFF))
    elif letter == "T":
        seconds = int(value.timestamp()) if isinstance(value, datetime) else int(value)
        out.append(tag + _Q.pack(seconds))
    elif letter in ("S", "x"):
        raw = value.encode(STR_ENCODING, STR_ERRORS) if isinstance(value, str) else bytes(value)
        out.append(tag + _I.pack(len(raw)) + raw)
    elif letter == "F":
        out.append(b"F")
        out.append(encode_table(value))
    elif letter == "A":
        out.append(b"A")
        out.append(_encode_array(value))
    elif letter == "V":
        out.append(b"V")
    else:
        raise ValueError(f"unknown field type {letter!r}")


def encode_table(table: dict[str, Any] | None) -> bytes:
    """Encode a field table; values may be plain Python values or `Typed`."""
    if not table:
        return b"\x00\x00\x00\x00"
    out: list[bytes] = []
    for key, value in table.items():
        out.append(encode_shortstr(key))
        _encode_value(value, out)
    payload = b"".join(out)
    return _I.pack(len(payload)) + payload


def _encode_array(items: list[Any] | tuple[Any, ...]) -> bytes:
    out: list[bytes] = []
    for value in items:
        _encode_value(value, out)
    payload = b"".join(out)
    return _I.pack(len(payload)) + payload


def typed_to_plain(value: TypedValue) -> Any:
    """Turn a typed-decoded value (TypedValue pairs) back into plain Python values."""
    letter, inner = value
    if letter == "F":
        return {k: typed_to_plain(v) for k, v in inner.items()}
    if letter == "A":
        return [typed_to_plain(v) for v in inner]
    return inner


def typed_to_field(value: TypedValue) -> Any:
    """Turn a typed-decoded value into a value `encode_table` writes with the same letters."""
    letter, inner = value
    if letter == "F":
        return {k: typed_to_field(v) for k, v in inner.items()}
    if letter == "A":
        return [typed_to_field(v) for v in inner]
    return Typed(letter, inner)


def encode_typed_table(table: TypedTable | None) -> bytes:
    """Encode a typed-decoded table ({name: TypedValue}) with its original letters."""
    if not table:
        return b"\x00\x00\x00\x00"
    return encode_table({k: typed_to_field(v) for k, v in table.items()})
