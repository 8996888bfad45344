"""Frames: splitting a byte stream into frames, and encoding methods and contents into frames.

`FrameBuffer.feed()` only buffers; `next_frame()` returns a complete frame or None when more
bytes are needed (incomplete input is never an error); a bad frame-end byte, an oversized frame
or a frame that is not a method, header, body or heartbeat raise `FrameError`, with the detail
text RabbitMQ gives (Erlang terms included, so clients and operators see the same message).
"""

from __future__ import annotations

import struct
from functools import partial
from typing import NamedTuple

from trimq.amqp import spec
from trimq.errors import (
    FRAME_ERROR,
    INTERNAL_ERROR,
    NOT_IMPLEMENTED,
    UNEXPECTED_FRAME,
    ConnectionError,
    FrameError,
    SyntaxFrameError,
)

FRAME_HEADER = struct.Struct(">BHI")
CONTENT_HEADER = struct.Struct(">HHQ")
# A method frame's header with the method's ids; a header frame's header with its fixed fields.
METHOD_FRAME_START = struct.Struct(">BHIHH")
HEADER_FRAME_START = struct.Struct(">BHIHHQ")
METHOD_IDS = struct.Struct(">HH")
FRAME_END = b"\xce"
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"
FRAME_OVERHEAD = 8  # 7-byte header + frame-end octet
# RabbitMQ refuses a payload over frame_max - 8 + 8: the limit it names is frame_max - 8 but
# it allows 8 octets of slack, so a payload may reach frame_max itself.
FRAME_SIZE_FUDGE = FRAME_OVERHEAD
LARGE_BODY = 65536  # a body from this size on is not copied into intermediate buffers

METHOD = spec.FRAME_METHOD
HEADER = spec.FRAME_HEADER
BODY = spec.FRAME_BODY
HEARTBEAT = spec.FRAME_HEARTBEAT


def erlang_binary(data: bytes) -> str:
    """An Erlang binary as RabbitMQ's error texts print it: <<"abc">> or <<0,20,0>>."""
    if not data:
        return "<<>>"
    if all(32 <= b < 127 for b in data):
        escaped = data.decode("ascii").replace("\\", "\\\\").replace('"', '\\"')
        return f'<<"{escaped}">>'
    return "<<" + ",".join(str(b) for b in data) + ">>"


def octets_not_logged(data: bytes) -> str:
    """What the log shows instead of a client's octets (they may be a password or a body)."""
    return f"<<{len(data)} octets>>"


def frame_detail(frame_type: int, payload: bytes, log: bool = False) -> str:
    """RabbitMQ's description of a bad frame: its type and up to 16 octets of its payload
    (with `log`, only how many there are)."""
    if log:
        return f"type {frame_type}, octets = {octets_not_logged(payload)}"
    if len(payload) <= 16:
        return f"type {frame_type}, all octets = {erlang_binary(payload)}"
    return f"type {frame_type}, first 16 octets = {erlang_binary(payload[:16])}"


def frame_error(frame_type: int, payload: bytes, reason: str) -> FrameError:
    """501 FRAME_ERROR for a frame, as RabbitMQ words it; the log form omits the octets."""
    return FrameError(
        f"{frame_detail(frame_type, payload)}: {reason}",
        f"{frame_detail(frame_type, payload, log=True)}: {reason}",
    )


def unexpected_frame(frame_type: int, payload: bytes) -> ConnectionError:
    """505 UNEXPECTED_FRAME for a frame where none of its type may come (channel 0)."""
    return ConnectionError(
        UNEXPECTED_FRAME,
        frame_detail(frame_type, payload),
        log_detail=frame_detail(frame_type, payload, log=True),
    )


class Frame(NamedTuple):
    type: int
    channel: int
    payload: bytes


_new_frame = partial(tuple.__new__, Frame)  # Frame((type, channel, payload)), without a call
# into the generated Python __new__


class Publish(NamedTuple):
    """A whole Basic.Publish taken at once by `FrameBuffer.next_publish`."""

    channel: int
    arguments: bytes  # the method payload after class and method id
    properties: bytes  # the content header payload after class, weight and body size
    body: bytes | None  # None: still arriving (see FrameBuffer.next_publish)


_new_publish = partial(tuple.__new__, Publish)


class FrameBuffer:
    """Accumulates received bytes and yields complete frames, checking size and frame-end."""

    __slots__ = (
        "_body_scan",
        "_buf",
        "_last_arguments",
        "_last_properties",
        "_pos",
        "_publish_start",
        "frame_max",
    )

    def __init__(self, frame_max: int = 131072) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._publish_start = 0
        self._last_arguments = b""  # of the last publish taken
        self._last_properties = b""
        # a publish whose body is still arriving: (its position, where the next body frame
        # starts relative to it, body bytes so far, the body frames' payload spans)
        self._body_scan: tuple[int, int, int, list[tuple[int, int]]] | None = None
        self.frame_max = frame_max

    def feed(self, data: bytes | bytearray) -> None:
        if self._pos:
            scan = self._body_scan
            if scan is not None:  # still valid when its publish stays at the head
                self._body_scan = (0, *scan[1:]) if scan[0] == self._pos else None
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
        if self.frame_max and size > self.frame_max:  # frame_max - 8, and the fudge
            limit = self.frame_max - FRAME_OVERHEAD
            raise frame_error(frame_type, b"", f"{{frame_too_large,{size},{limit}}}")
        end = pos + 7 + size
        if len(buf) <= end:
            return None
        payload = bytes(buf[pos + 7 : end])
        if buf[end] != 0xCE:
            raise frame_error(frame_type, payload, f"{{invalid_frame_end_marker,{buf[end]}}}")
        if not (
            (frame_type == METHOD and size >= 4)
            or (frame_type == HEADER and size >= CONTENT_HEADER.size)
            or frame_type == BODY
            or (frame_type == HEARTBEAT and size == 0)
        ):
            raise frame_error(frame_type, payload, "unknown_frame")
        self._pos = end + 1
        return _new_frame((frame_type, channel, payload))

    def next_publish(self, max_body: int) -> Publish | None:
        """Take a Basic.Publish with its content header and body frames at once, when all of
        them are complete and well formed at the head of the buffer and the body is at most
        `max_body`. When they are well formed so far but the body is still arriving, take
        nothing and return the publish with body None (`PARTIAL`): a large body is then
        copied once, when complete, rather than frame by frame. Otherwise take nothing and
        return None: the caller goes frame by frame, which also reports any error."""
        buf = self._buf
        pos = self._pos
        available = len(buf)
        if available - pos < 11 or buf[pos] != METHOD:
            return None
        _type, channel, size, class_id, method_id = METHOD_FRAME_START.unpack_from(buf, pos)
        limit = self.frame_max or 1 << 32  # payload size, as next_frame checks it
        end = pos + 7 + size
        if (
            method_id != 40
            or class_id != 60
            or size > limit
            or end + 20 > available
            or buf[end] != 0xCE
        ):
            return None
        arguments = self._last_arguments  # a publisher repeats itself: no new bytes object
        if len(arguments) != size - 4 or not buf.startswith(arguments, pos + 11):
            arguments = bytes(buf[pos + 11 : end])
        start = end + 1
        kind, header_channel, size, class_id, _weight, body_size = HEADER_FRAME_START.unpack_from(
            buf, start
        )
        header_end = start + 7 + size
        if (
            kind != HEADER
            or header_channel != channel
            or class_id != 60
            or size < 14
            or size > limit
            or body_size > max_body
            or header_end >= available
            or buf[header_end] != 0xCE
        ):
            return None
        properties = self._last_properties
        if len(properties) != size - 12 or not buf.startswith(properties, start + 19):
            properties = bytes(buf[start + 19 : header_end])
        self._last_arguments = arguments
        self._last_properties = properties
        self._publish_start = pos
        start = header_end + 1
        if not body_size:
            self._pos = start
            return _new_publish((channel, arguments, properties, b""))
        # Body frames: where each one's payload is, relative to pos. A scan of a body still
        # arriving goes on where it stopped (feed() keeps it when it keeps the publish).
        scan = self._body_scan
        if scan is not None and scan[0] == pos:
            _, start, received, spans = scan
            start += pos
        else:
            received = 0
            spans = []
        while received < body_size:
            if available - start < 7:
                self._body_scan = (pos, start - pos, received, spans)
                return _new_publish((channel, arguments, properties, None))
            kind, body_channel, size = FRAME_HEADER.unpack_from(buf, start)
            end = start + 7 + size
            if (
                kind != BODY
                or body_channel != channel
                or size > limit
                or received + size > body_size
            ):
                return None
            if end >= available:
                self._body_scan = (pos, start - pos, received, spans)
                return _new_publish((channel, arguments, properties, None))
            if buf[end] != 0xCE:
                return None
            spans.append((start + 7 - pos, end - pos))
            received += size
            start = end + 1
        self._body_scan = None
        self._pos = start
        return _new_publish(
            (channel, arguments, properties, _join_spans(buf, pos, spans, body_size))
        )

    def unread_publish(self) -> None:
        """Put back what the last `next_publish` took, for the frame-by-frame path."""
        self._pos = self._publish_start


def _join_spans(buf: bytearray, base: int, spans: list[tuple[int, int]], size: int) -> bytes:
    """The body frames' payloads (spans relative to base) as one bytes object: a large body is
    copied once, through a view released at once (a bytearray cannot resize under a view)."""
    if size < 65536:
        if len(spans) == 1:
            return bytes(buf[base + spans[0][0] : base + spans[0][1]])
        return b"".join([buf[base + a : base + b] for a, b in spans])
    view = memoryview(buf)
    try:
        return b"".join([view[base + a : base + b] for a, b in spans])
    finally:
        view.release()


def decode_method(payload: bytes) -> spec.Method:
    """Decode a method frame payload (at least 4 bytes, as `FrameBuffer` ensures).

    Unknown ids are 540 NOT_IMPLEMENTED; arguments that are truncated or followed by extra
    octets are 501 FRAME_ERROR "cannot decode <<...>>", as RabbitMQ.
    """
    class_id, method_id = METHOD_IDS.unpack_from(payload, 0)
    cls = spec.METHODS.get((class_id << 16) | method_id)
    if cls is None:
        raise ConnectionError(
            NOT_IMPLEMENTED, f"unknown method {class_id}/{method_id}", class_id, method_id
        )
    try:
        method, end = cls.decode(payload, 4)
    except (SyntaxFrameError, struct.error, IndexError, ValueError, UnicodeDecodeError):
        end = -1
    if end != len(payload):  # the octets may hold a password (Start-Ok, Update-Secret)
        raise ConnectionError(
            FRAME_ERROR,
            f"cannot decode {erlang_binary(payload[4:])}",
            class_id,
            method_id,
            log_detail=f"cannot decode {octets_not_logged(payload[4:])}",
        )
    return method


class ContentHeader(NamedTuple):
    class_id: int
    body_size: int
    properties: spec.BasicProperties
    properties_raw: bytes  # flags + property list, re-sent unchanged on delivery


def decode_content_header(payload: bytes) -> ContentHeader:
    """Decode a content header; undecodable properties are 541 INTERNAL_ERROR, as RabbitMQ."""
    class_id, _weight, body_size = CONTENT_HEADER.unpack_from(payload, 0)
    try:
        properties, end = spec.BasicProperties.decode(payload, CONTENT_HEADER.size)
    except (SyntaxFrameError, struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ConnectionError(INTERNAL_ERROR, "") from exc
    return ContentHeader(class_id, body_size, properties, payload[CONTENT_HEADER.size : end])


def method_frame(channel: int, method: spec.Method) -> bytes:
    payload = method.encode()
    return FRAME_HEADER.pack(METHOD, channel, len(payload)) + payload + FRAME_END


def content_parts(
    channel: int, class_id: int, properties_raw: bytes, body: bytes, frame_max: int
) -> list[bytes | memoryview]:
    """A content header frame and the body frames, each body frame at most frame_max, as
    pieces: the body's are views of it, not copies."""
    header = CONTENT_HEADER.pack(class_id, 0, len(body)) + properties_raw
    parts: list[bytes | memoryview] = [
        FRAME_HEADER.pack(HEADER, channel, len(header)),
        header,
        FRAME_END,
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
    return parts


def content_frames(
    channel: int, class_id: int, properties_raw: bytes, body: bytes, frame_max: int
) -> bytes:
    """A content header frame and the body frames, each body frame at most frame_max."""
    return b"".join(content_parts(channel, class_id, properties_raw, body, frame_max))


_DELIVERY_TAG = struct.Struct(">QB")  # delivery tag, redelivered bit
_HEADER_AFTER_METHOD = struct.Struct(">BBHIHHQ")  # frame end, then a content header's start
_BODY_AFTER_HEADER = struct.Struct(">BBHI")  # frame end, then a body frame's header


def _deliver_method(
    channel: int, consumer_tag: bytes, delivery_tag: int, redelivered: bool, route: bytes
) -> tuple[bytes, ...]:
    return (
        METHOD_FRAME_START.pack(METHOD, channel, 13 + len(consumer_tag) + len(route), 60, 60),
        consumer_tag,
        _DELIVERY_TAG.pack(delivery_tag, redelivered),
        route,
    )


def deliver_frames(
    channel: int,
    consumer_tag: bytes,
    delivery_tag: int,
    redelivered: bool,
    route: bytes,
    properties_raw: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """Basic.Deliver with its content, from the parts as encoded (consumer_tag a shortstr,
    route the exchange and routing key shortstrs): one join instead of encoding a method."""
    size = len(body)
    method = _deliver_method(channel, consumer_tag, delivery_tag, redelivered, route)
    if not size or size > frame_max - FRAME_OVERHEAD:
        return b"".join(
            (*method, FRAME_END, content_frames(channel, 60, properties_raw, body, frame_max))
        )
    return b"".join(
        (
            *method,
            _HEADER_AFTER_METHOD.pack(0xCE, HEADER, channel, 12 + len(properties_raw), 60, 0, size),
            properties_raw,
            _BODY_AFTER_HEADER.pack(0xCE, BODY, channel, size),
            body,
            FRAME_END,
        )
    )


def deliver_parts(
    channel: int,
    consumer_tag: bytes,
    delivery_tag: int,
    redelivered: bool,
    route: bytes,
    properties_raw: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes | memoryview]:
    """As deliver_frames, in pieces that refer to the body rather than copy it (for large
    bodies, which are then copied only once, into the output)."""
    head = b"".join(
        (*_deliver_method(channel, consumer_tag, delivery_tag, redelivered, route), FRAME_END)
    )
    return [head, *content_parts(channel, 60, properties_raw, body, frame_max)]


def method_with_content(
    channel: int, method: spec.Method, properties_raw: bytes, body: bytes, frame_max: int
) -> bytes:
    return method_frame(channel, method) + content_frames(
        channel, method.CLASS_ID, properties_raw, body, frame_max
    )


def method_with_content_parts(
    channel: int, method: spec.Method, properties_raw: bytes, body: bytes, frame_max: int
) -> list[bytes | memoryview]:
    """As method_with_content, in pieces that refer to a large body rather than copy it."""
    if len(body) < LARGE_BODY:
        return [method_with_content(channel, method, properties_raw, body, frame_max)]
    return [
        method_frame(channel, method),
        *content_parts(channel, method.CLASS_ID, properties_raw, body, frame_max),
    ]


__all__ = [
    "FRAME_ERROR",
    "HEARTBEAT_FRAME",
    "LARGE_BODY",
    "ContentHeader",
    "Frame",
    "FrameBuffer",
    "Publish",
    "content_frames",
    "decode_content_header",
    "decode_method",
    "deliver_frames",
    "deliver_parts",
    "method_frame",
    "method_with_content",
    "method_with_content_parts",
]
