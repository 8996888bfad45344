"""Frames: splitting a byte stream into frames, and encoding methods and contents into frames.

`FrameBuffer.feed()` only buffers; `next_frame()` returns a complete frame or None when more
bytes are needed (incomplete input is never an error); a bad frame-end byte, an oversized frame
or an unknown frame type raise `FrameError`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from trimq.amqp import spec
from trimq.errors import (
    COMMAND_INVALID,
    FRAME_ERROR,
    NOT_IMPLEMENTED,
    ConnectionError,
    FrameError,
    SyntaxFrameError,
)

FRAME_HEADER = struct.Struct(">BHI")
CONTENT_HEADER = struct.Struct(">HHQ")
METHOD_IDS = struct.Struct(">HH")
FRAME_END = b"\xce"
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"
FRAME_OVERHEAD = 8  # 7-byte header + frame-end octet

METHOD = spec.FRAME_METHOD
HEADER = spec.FRAME_HEADER
BODY = spec.FRAME_BODY
HEARTBEAT = spec.FRAME_HEARTBEAT


class Frame(NamedTuple):
    type: int
    channel: int
    payload: bytes


class FrameBuffer:
    """Accumulates received bytes and yields complete frames, checking size and frame-end."""

    __slots__ = ("_buf", "_pos", "frame_max")

    def __init__(self, frame_max: int = 131072) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.frame_max = frame_max

    def feed(self, data: bytes | bytearray) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def take(self, count: int) -> bytes | None:
        """Take `count` raw bytes (the protocol header), or None if not yet received."""
        if len(self._buf) - self._pos < count:
            return None
        data = bytes(self._buf[self._pos : self._pos + count])
        self._pos += count
        return data

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as frames (a stall mid-frame leaves them here)."""
        return len(self._buf) - self._pos

    def next_frame(self) -> Frame | None:
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 7:
            return None
        frame_type, channel, size = FRAME_HEADER.unpack_from(buf, pos)
        if frame_type not in (METHOD, HEADER, BODY, HEARTBEAT):
            raise FrameError(f"unknown frame type {frame_type}")
        if size + FRAME_OVERHEAD > self.frame_max and self.frame_max:
            raise FrameError(
                f"frame size {size + FRAME_OVERHEAD} larger than negotiated maximum "
                f"{self.frame_max}"
            )
        end = pos + 7 + size
        if len(buf) <= end:
            return None
        if buf[end] != 0xCE:
            raise FrameError(f"bad frame end byte {buf[end]}")
        payload = bytes(buf[pos + 7 : end])
        self._pos = end + 1
        return Frame(frame_type, channel, payload)


def decode_method(payload: bytes) -> spec.Method:
    """Decode a method frame payload; unknown ids and undecodable arguments raise."""
    if len(payload) < 4:
        raise SyntaxFrameError("method frame too short for class and method ids")
    class_id, method_id = METHOD_IDS.unpack_from(payload, 0)
    cls = spec.METHODS.get((class_id << 16) | method_id)
    if cls is None:
        if class_id in spec.CLASS_NAMES:
            raise ConnectionError(
                COMMAND_INVALID, f"unknown method {method_id} in class {class_id}",
                class_id, method_id,
            )
        raise ConnectionError(NOT_IMPLEMENTED, f"unknown class {class_id}", class_id, method_id)
    try:
        return cls.decode(payload, 4)
    except SyntaxFrameError as exc:
        exc.class_id, exc.method_id = class_id, method_id
        raise
    except (struct.error, IndexError, ValueError) as exc:
        raise SyntaxFrameError(
            f"cannot decode {cls.NAME}: truncated or malformed arguments", class_id, method_id
        ) from exc


class ContentHeader(NamedTuple):
    class_id: int
    body_size: int
    properties: spec.BasicProperties
    properties_raw: bytes  # flags + property list, re-sent unchanged on delivery


def decode_content_header(payload: bytes) -> ContentHeader:
    try:
        class_id, _weight, body_size = CONTENT_HEADER.unpack_from(payload, 0)
        properties, end = spec.BasicProperties.decode(payload, CONTENT_HEADER.size)
    except SyntaxFrameError:
        raise
    except (struct.error, IndexError, ValueError) as exc:
        raise SyntaxFrameError("malformed content header") from exc
    return ContentHeader(class_id, body_size, properties, payload[CONTENT_HEADER.size : end])


def method_frame(channel: int, method: spec.Method) -> bytes:
    payload = method.encode()
    return FRAME_HEADER.pack(METHOD, channel, len(payload)) + payload + FRAME_END


def content_frames(
    channel: int, class_id: int, properties_raw: bytes, body: bytes, frame_max: int
) -> bytes:
    """A content header frame and the body frames, each body frame at most frame_max."""
    header = CONTENT_HEADER.pack(class_id, 0, len(body)) + properties_raw
    parts: list[bytes | memoryview] = [
        FRAME_HEADER.pack(HEADER, channel, len(header)), header, FRAME_END
    ]
    chunk = frame_max - FRAME_OVERHEAD
    if len(body) <= chunk:
        if body:
            parts += (FRAME_HEADER.pack(BODY, channel, len(body)), body, FRAME_END)
    else:
        view = memoryview(body)
        for start in range(0, len(body), chunk):
            piece = view[start : start + chunk]
            parts += (FRAME_HEADER.pack(BODY, channel, len(piece)), piece, FRAME_END)
    return b"".join(parts)


def method_with_content(
    channel: int, method: spec.Method, properties_raw: bytes, body: bytes, frame_max: int
) -> bytes:
    return method_frame(channel, method) + content_frames(
        channel, method.CLASS_ID, properties_raw, body, frame_max
    )


__all__ = [
    "FRAME_ERROR",
    "Frame",
    "FrameBuffer",
    "ContentHeader",
    "decode_method",
    "decode_content_header",
    "method_frame",
    "content_frames",
    "method_with_content",
    "HEARTBEAT_FRAME",
]
