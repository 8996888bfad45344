"""The publish and deliver fast paths give exactly what the general paths give: a whole
Basic.Publish taken from the buffer at once (`FrameBuffer.next_publish`), its arguments and
properties decoded through caches (`trimq.amqp.publish`), and Basic.Deliver encoded from
pre-encoded parts (`frames.deliver_frames`). No sockets."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimq.amqp import frames, spec
from trimq.amqp.channel import ContentAssembler
from trimq.amqp.codec import encode_shortstr
from trimq.amqp.publish import content_properties, publish_args

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX = 1 << 20


def raw_frame(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def publish_frames(
    channel: int,
    body_parts: list[bytes],
    props: spec.BasicProperties,
    exchange: str = "ex",
    routing_key: str = "rk",
    size: int | None = None,
) -> bytes:
    body_size = sum(map(len, body_parts)) if size is None else size
    header = struct.pack(">HHQ", 60, 0, body_size) + props.encode()
    return (
        raw_frame(1, channel, spec.BasicPublish(0, exchange, routing_key, True).encode())
        + raw_frame(2, channel, header)
        + b"".join(raw_frame(3, channel, part) for part in body_parts)
    )


PROPS = spec.BasicProperties(
    content_type="text/plain", headers={"k": 1}, delivery_mode=2, expiration="60000"
)


def command_or_frame(
    frame: frames.Frame, assemblers: dict[int, ContentAssembler], out: list[tuple[int, object]]
) -> None:
    if frame.channel == 0:
        out.append((0, frame))
        return
    command = assemblers.setdefault(frame.channel, ContentAssembler(MAX)).feed(frame)
    if command is not None:
        method = command.method
        out.append(
            (
                frame.channel,
                (
                    method.exchange,
                    method.routing_key,  # type: ignore
                    method.mandatory,
                    command.properties,  # type: ignore
                    command.properties_raw,
                    command.body,
                ),
            )
        )


def general_path(data: bytes) -> list[tuple[int, object]]:
    """(channel, publish) or (0, frame) as the frame-by-frame path sees the stream."""
    buffer = frames.FrameBuffer()
    buffer.feed(data)
    assemblers: dict[int, ContentAssembler] = {}
    out: list[tuple[int, object]] = []
    while (frame := buffer.next_frame()) is not None:
        command_or_frame(frame, assemblers, out)
    return out


def take_all(
    buffer: frames.FrameBuffer,
    assemblers: dict[int, ContentAssembler],
    out: list[tuple[int, object]],
) -> None:
    """What the connection's reader does: whole publishes, else frames; a publish whose body
    is still arriving waits for more bytes."""
    while True:
        publish = buffer.next_publish(MAX)
        if publish is not None and not assemblers.get(publish.channel, IDLE).expecting_content:
            if publish.body is None:
                return
            args = publish_args(publish.arguments)
            decoded = content_properties(publish.properties)
            assert args is not None and decoded is not None
            out.append(
                (publish.channel, (args[0], args[1], args[2], decoded[0], decoded[1], publish.body))
            )
            assert args[4] == encode_shortstr(args[0]) + encode_shortstr(args[1])
            continue
        if publish is not None:
            buffer.unread_publish()
        frame = buffer.next_frame()
        if frame is None:
            return
        command_or_frame(frame, assemblers, out)


IDLE = ContentAssembler(MAX)


def fast_path(
    data: bytes, cuts: list[int] | None = None, frame_max: int = 131072
) -> list[tuple[int, object]]:
    buffer = frames.FrameBuffer(frame_max)
    assemblers: dict[int, ContentAssembler] = {}
    out: list[tuple[int, object]] = []
    bounds = [0, *sorted(cuts or []), len(data)]
    for start, stop in itertools.pairwise(bounds):
        buffer.feed(data[start:stop])
        take_all(buffer, assemblers, out)
    assert buffer.pending == 0
    return out


STREAM = b"".join(
    [
        publish_frames(1, [b"hello"], PROPS),
        raw_frame(8, 0, b""),
        publish_frames(2, [], spec.BasicProperties()),
        publish_frames(1, [b"a", b"", b"bc"], spec.BasicProperties(delivery_mode=1), "", "q"),
        publish_frames(65535, [b"x" * 100], spec.BasicProperties(priority=3, reply_to="r")),
    ]
)


def test_a_stream_of_publishes_gives_what_the_general_path_gives() -> None:
    assert fast_path(STREAM) == general_path(STREAM)
    assert len(fast_path(STREAM)) == 5


@FAST
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_a_stream_fed_in_pieces_gives_the_same(cuts: list[int]) -> None:
    assert fast_path(STREAM, cuts) == general_path(STREAM)


def test_a_publish_arriving_byte_by_byte_gives_the_same() -> None:
    data = publish_frames(3, [b"a" * 50, b"b" * 70, b"c"], PROPS) + raw_frame(8, 0, b"")
    assert fast_path(data, list(range(len(data))), 4096) == general_path(data)


def test_a_body_arriving_byte_by_byte_is_taken_whole_when_complete() -> None:
    data = publish_frames(3, [b"a" * 50, b"b" * 70, b"c"], PROPS)
    body_at = data.index(b"aaaa") - 7
    buffer = frames.FrameBuffer(4096)
    assemblers: dict[int, ContentAssembler] = {}
    out: list[tuple[int, object]] = []
    buffer.feed(data[: body_at + 3])
    take_all(buffer, assemblers, out)
    for i in range(body_at + 3, len(data)):
        assert not out
        buffer.feed(data[i : i + 1])
        take_all(buffer, assemblers, out)
    assert out == general_path(data) and not assemblers  # never frame by frame


def test_a_partial_publish_takes_nothing() -> None:
    data = publish_frames(1, [b"x" * 100], PROPS)
    buffer = frames.FrameBuffer()
    buffer.feed(data[:-20])
    publish = buffer.next_publish(MAX)
    assert publish is not None and publish.body is None and publish.channel == 1
    assert buffer.pending == len(data) - 20
    buffer.unread_publish()
    assert buffer.pending == len(data) - 20


def test_a_bad_frame_behind_a_partial_body_is_left_to_the_general_path() -> None:
    data = publish_frames(1, [b"x" * 10, b"y" * 10], PROPS, size=30)
    buffer = frames.FrameBuffer()
    buffer.feed(data)
    publish = buffer.next_publish(MAX)
    assert publish is not None and publish.body is None
    buffer.feed(raw_frame(3, 2, b"z" * 10))  # on another channel
    assert buffer.next_publish(MAX) is None


@pytest.mark.parametrize(
    "data",
    [
        # header on another channel, a heartbeat inside the content, a bad frame end
        raw_frame(1, 1, spec.BasicPublish().encode())
        + raw_frame(2, 2, struct.pack(">HHQ", 60, 0, 0) + b"\x00\x00"),
        raw_frame(1, 1, spec.BasicPublish().encode())
        + raw_frame(8, 0, b"")
        + raw_frame(2, 1, struct.pack(">HHQ", 60, 0, 0) + b"\x00\x00"),
        publish_frames(1, [b"abc"], PROPS)[:-1] + b"\x00",
        # a body longer than announced, a header of another class, a too short header
        publish_frames(1, [b"abcd"], PROPS, size=3),
        raw_frame(1, 1, spec.BasicPublish().encode())
        + raw_frame(2, 1, struct.pack(">HHQ", 50, 0, 0) + b"\x00\x00"),
        raw_frame(1, 1, spec.BasicPublish().encode())
        + raw_frame(2, 1, struct.pack(">HHQ", 60, 0, 0)),
        # another method, a body over the limit
        raw_frame(1, 1, spec.BasicAck(1, False).encode()) + raw_frame(2, 1, b"\x00" * 14),
        publish_frames(1, [b"x" * 10], PROPS, size=MAX + 1),
    ],
)
def test_anything_unusual_is_left_to_the_general_path(data: bytes) -> None:
    buffer = frames.FrameBuffer()
    buffer.feed(data + b"\x00" * 30)  # enough bytes that nothing looks incomplete
    assert buffer.next_publish(MAX) is None
    assert buffer.pending == len(data) + 30


def test_unread_publish_gives_it_back_frame_by_frame() -> None:
    buffer = frames.FrameBuffer()
    buffer.feed(STREAM)
    assert buffer.next_publish(MAX) is not None
    buffer.unread_publish()
    assert buffer.next_frame() == frames.Frame(
        1, 1, spec.BasicPublish(0, "ex", "rk", True).encode()
    )


def test_a_frame_max_of_zero_means_no_limit() -> None:
    buffer = frames.FrameBuffer(frame_max=0)
    buffer.feed(publish_frames(1, [b"x" * 200_000], PROPS))
    publish = buffer.next_publish(MAX)
    assert publish is not None and publish.body == b"x" * 200_000


def test_frames_over_frame_max_are_left_to_the_general_path() -> None:
    buffer = frames.FrameBuffer(frame_max=4096)
    buffer.feed(publish_frames(1, [b"x" * 5000], PROPS))
    assert buffer.next_publish(MAX) is None


@FAST
@given(st.binary(max_size=40))
def test_publish_args_decode_what_basic_publish_decodes(data: bytes) -> None:
    try:
        method = frames.decode_method(b"\x00\x3c\x00\x28" + data)
    except Exception:
        method = None
    args = publish_args(data)
    if method is None:
        assert args is None
    else:
        assert args is not None
        assert args[:4] == (
            method.exchange,
            method.routing_key,  # type: ignore[attr-defined]
            method.mandatory,
            method.immediate,
        )  # type: ignore[attr-defined]


@FAST
@given(st.binary(max_size=60))
def test_content_properties_decode_what_the_content_header_decodes(data: bytes) -> None:
    try:
        header = frames.decode_content_header(struct.pack(">HHQ", 60, 0, 0) + data)
    except Exception:
        header = None
    decoded = content_properties(data)
    if header is None:
        assert decoded is None
    else:
        assert decoded == (header.properties, header.properties_raw)


def test_cached_properties_are_the_same_object() -> None:
    data = PROPS.encode()
    first = content_properties(data)
    assert first is not None and content_properties(bytes(data)) is first


@FAST
@given(
    st.binary(max_size=300),
    st.text(max_size=20),
    st.text(max_size=20),
    st.booleans(),
    st.integers(1, 2**64 - 1),
    st.sampled_from([4096, 131072]),
)
def test_deliver_frames_are_basic_deliver_with_content(
    body: bytes,
    exchange: str,
    routing_key: str,
    redelivered: bool,
    tag: int,
    frame_max: int,
) -> None:
    props = PROPS.encode()
    method = spec.BasicDeliver("amq.ctag-1", tag, redelivered, exchange, routing_key)
    expected = frames.method_with_content(5, method, props, body * 20, frame_max)
    route = encode_shortstr(exchange) + encode_shortstr(routing_key)
    got = frames.deliver_frames(
        5, encode_shortstr("amq.ctag-1"), tag, redelivered, route, props, body * 20, frame_max
    )
    assert got == expected
