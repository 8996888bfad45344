"""A minimal AMQP 0-9-1 client over a plain socket, for what pika cannot send or show.

Tests use it to send frames pika refuses to build (immediate=true, header values of types pika
cannot encode) and to see the exact frames a broker sends (delivery tags and the multiple flag
of publisher confirms, the raw bytes of a content header). Methods are encoded and decoded with
pika's generated `pika.spec` classes; framing is done here.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pika import spec

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
CONTENT_METHODS = (spec.Basic.Deliver, spec.Basic.GetOk, spec.Basic.Return)


@dataclass
class Command:
    """A method with, for content-bearing methods, its properties, raw header and body."""

    channel: int
    method: Any
    properties: spec.BasicProperties | None = None
    header_payload: bytes = b""
    body: bytes = b""
    body_frames: int = 0


@dataclass
class RawClient:
    host: str
    port: int
    timeout: float = 5.0
    frame_max: int = 131072
    sock: socket.socket = field(init=False)
    buf: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(0, spec.Connection.Start)
        self.send_method(
            0,
            spec.Connection.StartOk(
                client_properties={
                    "product": "trimq-tests",
                    "capabilities": {
                        "publisher_confirms": True,
                        "basic.nack": True,
                        "consumer_cancel_notify": True,
                    },
                },
                mechanism="PLAIN",
                response=b"\0guest\0guest",
                locale="en_US",
            ),
        )
        tune = self.expect(0, spec.Connection.Tune)
        self.frame_max = tune.frame_max or self.frame_max
        self.send_method(
            0,
            spec.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=self.frame_max, heartbeat=0
            ),
        )
        self.send_method(0, spec.Connection.Open(virtual_host="/"))
        self.expect(0, spec.Connection.OpenOk)

    # -- framing -------------------------------------------------------------------------------
    def send_frame(self, frame_type: int, channel: int, payload: bytes) -> None:
        self.sock.sendall(
            struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"
        )

    def send_method(self, channel: int, method: Any) -> None:
        payload = struct.pack(">I", method.INDEX) + b"".join(method.encode())
        self.send_frame(FRAME_METHOD, channel, payload)

    def send_content(self, channel: int, body: bytes, header_payload: bytes) -> None:
        self.send_frame(FRAME_HEADER, channel, header_payload)
        step = self.frame_max - 8
        for i in range(0, len(body), step):
            self.send_frame(FRAME_BODY, channel, body[i : i + step])

    def publish(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.BasicProperties | None = None,
        *,
        mandatory: bool = False,
        immediate: bool = False,
        header_payload: bytes | None = None,
    ) -> None:
        self.send_method(
            channel,
            spec.Basic.Publish(
                exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate
            ),
        )
        if header_payload is None:
            props = properties or spec.BasicProperties()
            header_payload = struct.pack(">HHQ", spec.Basic.INDEX, 0, len(body)) + b"".join(
                props.encode()
            )
        self.send_content(channel, body, header_payload)

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by broker")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_frame(self) -> tuple[int, int, bytes]:
        while True:
            frame_type, channel, size = struct.unpack(">BHI", self._read_exact(7))
            payload = self._read_exact(size)
            if self._read_exact(1) != b"\xce":
                raise AssertionError("bad frame end")
            if frame_type != FRAME_HEARTBEAT:
                return frame_type, channel, payload

    def read_command(self) -> Command:
        frame_type, channel, payload = self.read_frame()
        assert frame_type == FRAME_METHOD, f"expected a method frame, got type {frame_type}"
        method = spec.methods[struct.unpack_from(">I", payload)[0]]()
        method.decode(payload, 4)
        cmd = Command(channel, method)
        if isinstance(method, CONTENT_METHODS):
            frame_type, _, header = self.read_frame()
            assert frame_type == FRAME_HEADER
            _, _, size = struct.unpack_from(">HHQ", header)
            cmd.properties = spec.BasicProperties()
            cmd.properties.decode(header, 12)
            cmd.header_payload = header
            parts = []
            while sum(map(len, parts)) < size:
                frame_type, _, chunk = self.read_frame()
                assert frame_type == FRAME_BODY
                parts.append(chunk)
            cmd.body = b"".join(parts)
            cmd.body_frames = len(parts)
        return cmd

    def expect(self, channel: int, method_class: type) -> Any:
        cmd = self.read_command()
        assert cmd.channel == channel and isinstance(cmd.method, method_class), (
            f"expected {method_class.NAME} on channel {channel}, got {cmd.method!r} "
            f"on channel {cmd.channel}"
        )
        return cmd.method

    def rpc(self, channel: int, method: Any, reply_class: type) -> Any:
        self.send_method(channel, method)
        return self.expect(channel, reply_class)

    def open_channel(self, channel: int = 1) -> None:
        self.rpc(channel, spec.Channel.Open(), spec.Channel.OpenOk)

    def close(self) -> None:
        try:
            self.rpc(
                0,
                spec.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0),
                spec.Connection.CloseOk,
            )
        except (OSError, AssertionError):
            pass
        finally:
            self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- field tables with explicit type tags ---------------------------------------------------


def encode_typed_table(items: list[tuple[str, str, Any]]) -> bytes:
    """Encode [(key, type_tag, value)] as given (tags: t b B s u I i l f d D S x T V F A)."""
    body = b""
    for key, tag, value in items:
        raw_key = key.encode()
        body += struct.pack(">B", len(raw_key)) + raw_key + encode_typed_value(tag, value)
    return struct.pack(">I", len(body)) + body


def encode_typed_value(tag: str, value: Any) -> bytes:
    t = tag.encode()
    if tag in "bBsuIilfdtT":
        fmt = {
            "b": "b",
            "B": "B",
            "s": "h",
            "u": "H",
            "I": "i",
            "i": "I",
            "l": "q",
            "f": "f",
            "d": "d",
            "t": "B",
            "T": "Q",
        }[tag]
        return t + struct.pack(">" + fmt, value)
    if tag in "Sx":
        data = value.encode() if isinstance(value, str) else value
        return t + struct.pack(">I", len(data)) + data
    if tag == "D":
        decimals, raw = value
        return t + struct.pack(">Bi", decimals, raw)
    if tag == "V":
        return t
    if tag == "F":
        return t + encode_typed_table(value)
    if tag == "A":
        data = b"".join(encode_typed_value(item_tag, item) for item_tag, item in value)
        return t + struct.pack(">I", len(data)) + data
    raise ValueError(tag)


def decode_typed_table(data: bytes, offset: int = 0) -> tuple[list[tuple[str, str, Any]], int]:
    """Decode a field table keeping each value's type tag; returns (items, new offset)."""
    (size,) = struct.unpack_from(">I", data, offset)
    offset += 4
    end = offset + size
    items = []
    while offset < end:
        key_len = data[offset]
        key = data[offset + 1 : offset + 1 + key_len].decode()
        offset += 1 + key_len
        tag, value, offset = decode_typed_value(data, offset)
        items.append((key, tag, value))
    return items, end


def decode_typed_value(data: bytes, offset: int) -> tuple[str, Any, int]:
    tag = chr(data[offset])
    offset += 1
    fixed = {
        "b": "b",
        "B": "B",
        "s": "h",
        "u": "H",
        "I": "i",
        "i": "I",
        "l": "q",
        "L": "Q",
        "f": "f",
        "d": "d",
        "t": "B",
        "T": "Q",
        "U": "h",
    }
    if tag in fixed:
        fmt = ">" + fixed[tag]
        (value,) = struct.unpack_from(fmt, data, offset)
        return tag, value, offset + struct.calcsize(fmt)
    if tag in "Sx":
        (n,) = struct.unpack_from(">I", data, offset)
        return tag, data[offset + 4 : offset + 4 + n], offset + 4 + n
    if tag == "D":
        decimals, raw = struct.unpack_from(">Bi", data, offset)
        return tag, (decimals, raw), offset + 5
    if tag == "V":
        return tag, None, offset
    if tag == "F":
        items, offset = decode_typed_table(data, offset)
        return tag, items, offset
    if tag == "A":
        (n,) = struct.unpack_from(">I", data, offset)
        end = offset + 4 + n
        offset += 4
        values = []
        while offset < end:
            item_tag, item, offset = decode_typed_value(data, offset)
            values.append((item_tag, item))
        return tag, values, end
    raise ValueError(f"unknown field type {tag!r}")


def header_payload_with_headers(body_size: int, headers_table: bytes) -> bytes:
    """A Basic content header whose only property is the given raw `headers` table."""
    return struct.pack(">HHQH", spec.Basic.INDEX, 0, body_size, 0x2000) + headers_table


def headers_of(header_payload: bytes) -> list[tuple[str, str, Any]]:
    """The typed `headers` table of a content header that may carry other properties too."""
    (flags,) = struct.unpack_from(">H", header_payload, 12)
    assert flags & 0x2000, "no headers property"
    offset = 14
    if flags & 0x8000:  # content-type
        offset += 1 + header_payload[offset]
    if flags & 0x4000:  # content-encoding
        offset += 1 + header_payload[offset]
    items, _ = decode_typed_table(header_payload, offset)
    return items


__all__ = [
    "Command",
    "Decimal",
    "RawClient",
    "decode_typed_table",
    "encode_typed_table",
    "header_payload_with_headers",
    "headers_of",
]
