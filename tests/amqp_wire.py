"""A tiny, independent AMQP 0-9-1 framing helper for raw-socket protocol-error tests.

Written from the specification with `struct` only (neither trimq nor pika code), so tests that
use it check a broker against the wire format itself, including frames no client library would
ever build (bad frame ends, truncated methods, oversized frames...).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = 0xCE

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8

# (class_id, method_id) pairs used by the tests
CONNECTION_START = (10, 10)
CONNECTION_START_OK = (10, 11)
CONNECTION_TUNE = (10, 30)
CONNECTION_TUNE_OK = (10, 31)
CONNECTION_OPEN = (10, 40)
CONNECTION_OPEN_OK = (10, 41)
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CHANNEL_OPEN = (20, 10)
CHANNEL_OPEN_OK = (20, 11)
CHANNEL_CLOSE = (20, 40)
CHANNEL_CLOSE_OK = (20, 41)
QUEUE_DECLARE = (50, 10)
QUEUE_DECLARE_OK = (50, 11)
BASIC_PUBLISH = (60, 40)


# --------------------------------------------------------------------------- encoding


def shortstr(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    assert len(data) < 256
    return struct.pack(">B", len(data)) + data


def longstr(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack(">I", len(data)) + data


def _field_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"t" + struct.pack(">B", int(value))
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return b"I" + struct.pack(">i", value)
        return b"l" + struct.pack(">q", value)
    if isinstance(value, float):
        return b"d" + struct.pack(">d", value)
    if isinstance(value, (str, bytes)):
        return b"S" + longstr(value)
    if isinstance(value, dict):
        return b"F" + table(value)
    if isinstance(value, (list, tuple)):
        body = b"".join(_field_value(v) for v in value)
        return b"A" + struct.pack(">I", len(body)) + body
    if value is None:
        return b"V"
    raise TypeError(f"cannot encode {value!r}")


def table(values: dict[str, Any] | None = None) -> bytes:
    body = b"".join(shortstr(k) + _field_value(v) for k, v in (values or {}).items())
    return struct.pack(">I", len(body)) + body


def method_payload(class_method: tuple[int, int], args: bytes = b"") -> bytes:
    return struct.pack(">HH", *class_method) + args


def frame(frame_type: int, channel: int, payload: bytes, end: int = FRAME_END) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([end])


def method_frame(channel: int, class_method: tuple[int, int], args: bytes = b"") -> bytes:
    return frame(FRAME_METHOD, channel, method_payload(class_method, args))


def content_header_frame(
    channel: int, class_id: int, body_size: int, flags: int = 0, props: bytes = b""
) -> bytes:
    payload = struct.pack(">HHQH", class_id, 0, body_size, flags) + props
    return frame(FRAME_HEADER, channel, payload)


def body_frame(channel: int, data: bytes) -> bytes:
    return frame(FRAME_BODY, channel, data)


def heartbeat_frame() -> bytes:
    return frame(FRAME_HEARTBEAT, 0, b"")


def channel_open_args() -> bytes:
    return shortstr("")


def basic_publish_args(exchange: str = "", routing_key: str = "", mandatory: bool = False) -> bytes:
    return (
        struct.pack(">H", 0) + shortstr(exchange) + shortstr(routing_key) + bytes([int(mandatory)])
    )


def queue_declare_args(
    queue: str = "",
    passive: bool = False,
    durable: bool = False,
    exclusive: bool = False,
    auto_delete: bool = False,
) -> bytes:
    bits = int(passive) | int(durable) << 1 | int(exclusive) << 2 | int(auto_delete) << 3
    return struct.pack(">H", 0) + shortstr(queue) + bytes([bits]) + table()


# --------------------------------------------------------------------------- decoding


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def octet(self) -> int:
        return self.unpack(">B")[0]

    def short(self) -> int:
        return self.unpack(">H")[0]

    def long(self) -> int:
        return self.unpack(">I")[0]

    def longlong(self) -> int:
        return self.unpack(">Q")[0]

    def shortstr(self) -> str:
        # Close texts may echo bytes a fuzzed frame sent that are not UTF-8.
        return self.take(self.octet()).decode("utf-8", "surrogateescape")

    def longstr(self) -> bytes:
        return self.take(self.long())

    def field_value(self) -> Any:
        kind = self.take(1)
        simple = {
            b"b": ">b",
            b"B": ">B",
            b"s": ">h",
            b"u": ">H",
            b"U": ">h",
            b"I": ">i",
            b"i": ">I",
            b"l": ">q",
            b"L": ">q",
            b"f": ">f",
            b"d": ">d",
            b"T": ">Q",
        }
        if kind in simple:
            return self.unpack(simple[kind])[0]
        if kind == b"t":
            return bool(self.octet())
        if kind == b"D":
            scale = self.octet()
            return Decimal(self.unpack(">i")[0]).scaleb(-scale)
        if kind == b"S":
            return self.longstr().decode()
        if kind == b"x":
            return self.longstr()
        if kind == b"F":
            return self.table()
        if kind == b"A":
            sub = Reader(self.longstr())
            items = []
            while sub.pos < len(sub.data):
                items.append(sub.field_value())
            return items
        if kind == b"V":
            return None
        raise ValueError(f"unknown field type {kind!r}")

    def table(self) -> dict[str, Any]:
        sub = Reader(self.longstr())
        result: dict[str, Any] = {}
        while sub.pos < len(sub.data):
            key = sub.shortstr()
            result[key] = sub.field_value()
        return result


@dataclass
class Frame:
    type: int
    channel: int
    payload: bytes

    @property
    def class_method(self) -> tuple[int, int] | None:
        if self.type != FRAME_METHOD or len(self.payload) < 4:
            return None
        return struct.unpack(">HH", self.payload[:4])

    def args(self) -> Reader:
        return Reader(self.payload[4:])


@dataclass
class Close:
    """A Connection.Close or Channel.Close as received."""

    channel: int
    reply_code: int
    reply_text: str
    class_id: int
    method_id: int

    @property
    def fields(self) -> tuple[int, str, int, int]:
        return self.reply_code, self.reply_text, self.class_id, self.method_id


class PeerClosed(Exception):
    """The peer closed the TCP connection."""


# --------------------------------------------------------------------------- connection


class WireConnection:
    """A blocking socket speaking raw AMQP frames, with a deadline on every read."""

    def __init__(
        self, host: str, port: int, timeout: float = 5.0, source: str | None = None
    ) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=None if source is None else (source, 0)
        )
        self.timeout = timeout
        self.buffer = b""
        self.server_properties: dict[str, Any] = {}
        self.mechanisms = b""
        self.locales = b""
        self.channel_max = 0
        self.frame_max = 0
        self.heartbeat = 0

    def __enter__(self) -> WireConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no data from server")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as exc:
                raise PeerClosed("reset") from exc
            except TimeoutError:
                raise TimeoutError("no data from server") from None
            if not chunk:
                raise PeerClosed("eof")
            self.buffer += chunk

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Everything the server sends until it closes the socket (TimeoutError if it doesn't)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                self._fill(len(self.buffer) + 1, deadline)
        except PeerClosed:
            pass
        data, self.buffer = self.buffer, b""
        return data

    def read_frame(self, timeout: float | None = None) -> Frame:
        deadline = time.monotonic() + (timeout or self.timeout)
        self._fill(7, deadline)
        ftype, channel, size = struct.unpack(">BHI", self.buffer[:7])
        self._fill(7 + size + 1, deadline)
        payload = self.buffer[7 : 7 + size]
        end = self.buffer[7 + size]
        self.buffer = self.buffer[7 + size + 1 :]
        if end != FRAME_END:
            raise ValueError(f"bad frame end {end:#x} from server")
        return Frame(ftype, channel, payload)

    def read_method(self, timeout: float | None = None) -> Frame:
        """The next non-heartbeat frame."""
        while True:
            f = self.read_frame(timeout)
            if f.type != FRAME_HEARTBEAT:
                return f

    def send_method(self, channel: int, class_method: tuple[int, int], args: bytes = b"") -> None:
        self.send(method_frame(channel, class_method, args))

    # ----------------------------------------------------------------- handshake

    def start(self) -> None:
        """Send the protocol header and read Connection.Start."""
        self.send(PROTOCOL_HEADER)
        f = self.read_method()
        assert f.class_method == CONNECTION_START, f
        r = f.args()
        assert (r.octet(), r.octet()) == (0, 9)
        self.server_properties = r.table()
        self.mechanisms = r.longstr()
        self.locales = r.longstr()

    def start_ok(
        self,
        user: str = "guest",
        password: str = "guest",
        mechanism: str = "PLAIN",
        response: bytes | None = None,
    ) -> None:
        if response is None:
            response = b"\x00" + user.encode() + b"\x00" + password.encode()
        self.send_method(
            0,
            CONNECTION_START_OK,
            table({"product": "amqp_wire"})
            + shortstr(mechanism)
            + longstr(response)
            + shortstr("en_US"),
        )

    def tune(
        self, channel_max: int | None = None, frame_max: int | None = None, heartbeat: int = 0
    ) -> None:
        f = self.read_method()
        assert f.class_method == CONNECTION_TUNE, f
        r = f.args()
        self.channel_max, self.frame_max, self.heartbeat = r.short(), r.long(), r.short()
        if channel_max is not None:
            self.channel_max = channel_max
        if frame_max is not None:
            self.frame_max = frame_max
        self.heartbeat = heartbeat
        self.send_method(
            0,
            CONNECTION_TUNE_OK,
            struct.pack(">HIH", self.channel_max, self.frame_max, self.heartbeat),
        )

    def open(self, vhost: str = "/") -> None:
        self.send_method(0, CONNECTION_OPEN, shortstr(vhost) + shortstr("") + b"\x00")
        f = self.read_method()
        assert f.class_method == CONNECTION_OPEN_OK, f

    def handshake(self, vhost: str = "/", **tune: Any) -> WireConnection:
        self.start()
        self.start_ok()
        self.tune(**tune)
        self.open(vhost)
        return self

    def open_channel(self, channel: int = 1) -> None:
        self.send_method(channel, CHANNEL_OPEN, channel_open_args())
        f = self.read_method()
        assert f.class_method == CHANNEL_OPEN_OK and f.channel == channel, f

    # ----------------------------------------------------------------- closing

    def expect_close(self, timeout: float | None = None) -> Close:
        """Read until a Connection.Close or Channel.Close arrives, and return it."""
        while True:
            f = self.read_method(timeout)
            if f.class_method in (CONNECTION_CLOSE, CHANNEL_CLOSE):
                r = f.args()
                return Close(f.channel, r.short(), r.shortstr(), r.short(), r.short())

    def expect_connection_close(self, timeout: float | None = None) -> Close:
        """Expect Connection.Close, answer CloseOk, and expect the socket to be closed."""
        close = self.expect_close(timeout)
        assert close.channel == 0, close
        with contextlib.suppress(OSError):
            self.send_method(0, CONNECTION_CLOSE_OK)
        self.read_until_closed(timeout)
        return close
