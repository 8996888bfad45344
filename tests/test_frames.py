"""Framing (trimq.amqp.frames) and content assembly (trimq.amqp.channel): bytes in, frames and
commands out, no sockets."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimq.amqp import frames, spec
from trimq.amqp.channel import Command, ContentAssembler
from trimq.errors import (
    FRAME_ERROR,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    ChannelError,
    ConnectionError,
    FrameError,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def raw_frame(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def header_payload(
    body_size: int, props: spec.BasicProperties | None = None, class_id: int = 60
) -> bytes:
    return struct.pack(">HHQ", class_id, 0, body_size) + (props or spec.BasicProperties()).encode()


def drain(buffer: frames.FrameBuffer) -> list[frames.Frame]:
    out = []
    while (frame := buffer.next_frame()) is not None:
        out.append(frame)
    return out


# A valid stream: every kind of frame, several channels, an empty body frame included.
PUBLISH = spec.BasicPublish(exchange="", routing_key="q")
PROPS = spec.BasicProperties(content_type="text/plain", headers={"k": 1}, delivery_mode=2)
EXPECTED = [
    frames.Frame(frames.METHOD, 0, spec.ConnectionTuneOk(2047, 131072, 0).encode()),
    frames.Frame(frames.HEARTBEAT, 0, b""),
    frames.Frame(frames.METHOD, 1, PUBLISH.encode()),
    frames.Frame(frames.HEADER, 1, header_payload(11, PROPS)),
    frames.Frame(frames.BODY, 1, b"hello "),
    frames.Frame(frames.BODY, 1, b"world"),
    frames.Frame(frames.METHOD, 65535, spec.BasicAck(2**64 - 1, True).encode()),
    frames.Frame(frames.BODY, 3, b""),
]
STREAM = b"".join(raw_frame(*f) for f in EXPECTED)


# --------------------------------------------------------------------------- FrameBuffer


def test_whole_stream_decodes_to_its_frames() -> None:
    buffer = frames.FrameBuffer()
    buffer.feed(STREAM)
    assert drain(buffer) == EXPECTED
    assert buffer.pending == 0


def test_every_single_split_point_reassembles_identically() -> None:
    for cut in range(len(STREAM) + 1):
        buffer = frames.FrameBuffer()
        buffer.feed(STREAM[:cut])
        got = drain(buffer)
        buffer.feed(STREAM[cut:])
        got += drain(buffer)
        assert got == EXPECTED, cut
        assert buffer.pending == 0


def test_byte_by_byte_feeding_reassembles_identically() -> None:
    buffer = frames.FrameBuffer()
    got = []
    for i in range(len(STREAM)):
        buffer.feed(STREAM[i : i + 1])
        got += drain(buffer)
        # complete frames come out as soon as their frame-end byte arrives, not later
        assert len(got) == sum(1 for end in FRAME_ENDS if end <= i + 1)
    assert got == EXPECTED


FRAME_ENDS = [sum(len(raw_frame(*f)) for f in EXPECTED[: n + 1]) for n in range(len(EXPECTED))]


@FAST
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_random_split_points_reassemble_identically(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    buffer = frames.FrameBuffer()
    got = []
    for start, stop in itertools.pairwise(bounds):
        buffer.feed(STREAM[start:stop])
        got += drain(buffer)
    assert got == EXPECTED


def test_take_returns_the_protocol_header_then_frames() -> None:
    buffer = frames.FrameBuffer()
    buffer.feed(spec.PROTOCOL_HEADER[:5])
    assert buffer.take(8) is None
    buffer.feed(spec.PROTOCOL_HEADER[5:] + STREAM[:10])
    assert buffer.take(8) == spec.PROTOCOL_HEADER
    assert buffer.next_frame() is None
    buffer.feed(STREAM[10:])
    assert drain(buffer) == EXPECTED


def assert_frame_error(buffer: frames.FrameBuffer) -> FrameError:
    with pytest.raises(FrameError) as info:
        drain(buffer)
    assert isinstance(info.value, ConnectionError)
    assert info.value.code == FRAME_ERROR == 501
    return info.value


@pytest.mark.parametrize("end", [b"\x00", b"\xcd", b"\xff", b"A"])
def test_bad_frame_end_is_a_frame_error(end: bytes) -> None:
    buffer = frames.FrameBuffer()
    buffer.feed(raw_frame(1, 1, spec.ChannelOpen().encode(), end=end))
    assert_frame_error(buffer)


def test_bad_frame_end_after_good_frames() -> None:
    buffer = frames.FrameBuffer()
    buffer.feed(STREAM + raw_frame(3, 1, b"body", end=b"\x00"))
    assert [buffer.next_frame() for _ in EXPECTED] == EXPECTED
    assert_frame_error(buffer)


@pytest.mark.parametrize("frame_max", [4096, 131072])
def test_oversized_frame_is_a_frame_error_from_its_header_alone(frame_max: int) -> None:
    buffer = frames.FrameBuffer(frame_max=frame_max)
    # As RabbitMQ: the payload may reach frame_max (8 octets of slack); one more is refused.
    buffer.feed(struct.pack(">BHI", 3, 1, frame_max + 1))  # one byte over, no payload yet
    error = assert_frame_error(buffer)
    assert f"{{frame_too_large,{frame_max + 1},{frame_max - 8}}}" in error.detail


@pytest.mark.parametrize("size", [4096 - 8, 4096])
def test_frame_up_to_frame_max_is_accepted(size: int) -> None:
    buffer = frames.FrameBuffer(frame_max=4096)
    buffer.feed(raw_frame(3, 1, b"x" * size))
    assert drain(buffer) == [frames.Frame(3, 1, b"x" * size)]


@FAST
@given(st.integers(0, 255).filter(lambda t: t not in (1, 2, 3, 8)), st.binary(max_size=16))
def test_unknown_frame_type_is_a_frame_error(frame_type: int, payload: bytes) -> None:
    buffer = frames.FrameBuffer()
    buffer.feed(raw_frame(frame_type, 0, payload))
    assert_frame_error(buffer)


@FAST
@given(st.binary(max_size=40))
def test_random_bytes_give_frames_none_or_frame_error(data: bytes) -> None:
    buffer = frames.FrameBuffer(frame_max=4096)
    buffer.feed(data)
    try:
        drain(buffer)
    except FrameError as exc:
        assert exc.code == FRAME_ERROR


# --------------------------------------------------------------------------- decode_method


@pytest.mark.parametrize("class_id", [0, 1, 11, 55, 65535])
def test_unknown_class_is_not_implemented(class_id: int) -> None:
    with pytest.raises(ConnectionError) as info:
        frames.decode_method(struct.pack(">HH", class_id, 10) + b"\x00" * 8)
    assert info.value.code == NOT_IMPLEMENTED
    assert (info.value.class_id, info.value.method_id) == (class_id, 10)


@pytest.mark.parametrize(("class_id", "method_id"), [(10, 99), (20, 0), (50, 12), (60, 65535)])
def test_unknown_method_of_a_known_class(class_id: int, method_id: int) -> None:
    """503 COMMAND_INVALID or 540 NOT_IMPLEMENTED (what frames.py uses; RabbitMQ has none)."""
    with pytest.raises(ConnectionError) as info:
        frames.decode_method(struct.pack(">HH", class_id, method_id) + b"\x00" * 8)
    assert info.value.code in (503, NOT_IMPLEMENTED)
    assert (info.value.class_id, info.value.method_id) == (class_id, method_id)


@FAST
@given(st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=20))
def test_decode_method_raises_only_connection_errors(
    class_id: int, method_id: int, args: bytes
) -> None:
    payload = struct.pack(">HH", class_id, method_id) + args
    try:
        method = frames.decode_method(payload)
    except ConnectionError as exc:
        assert exc.code in (501, 502, 503, 540)
    else:
        assert (class_id, method_id) == (method.CLASS_ID, method.METHOD_ID)


# --------------------------------------------------------------------------- content_frames


def parse(data: bytes, frame_max: int) -> list[frames.Frame]:
    buffer = frames.FrameBuffer(frame_max=frame_max)
    buffer.feed(data)
    got = drain(buffer)
    assert buffer.pending == 0
    return got


@FAST
@given(st.integers(9, 300), st.binary(max_size=2000), st.integers(1, 65535))
def test_content_frames_split_the_body_in_frame_max_minus_8_chunks(
    frame_max: int, body: bytes, channel: int
) -> None:
    props = spec.BasicProperties(message_id="m").encode()
    got = parse(frames.content_frames(channel, 60, props, body, frame_max), 0)
    header, bodies = got[0], got[1:]
    assert header.type == frames.HEADER and header.channel == channel
    decoded = frames.decode_content_header(header.payload)
    assert (decoded.class_id, decoded.body_size, decoded.properties_raw) == (60, len(body), props)
    chunk = frame_max - 8
    assert all(f.type == frames.BODY and f.channel == channel for f in bodies)
    assert [len(f.payload) for f in bodies] == [
        min(chunk, len(body) - start) for start in range(0, len(body), chunk)
    ]
    assert b"".join(f.payload for f in bodies) == body


def test_content_frames_fit_a_frame_buffer_of_the_same_frame_max() -> None:
    body = bytes(range(256)) * 100
    data = frames.content_frames(1, 60, b"\x00\x00", body, 4096)
    got = parse(data, 4096)  # the receiver's limit accepts every frame
    assert len(got) == 1 + -(-len(body) // 4088)
    assert max(len(f.payload) for f in got) == 4088


def test_empty_body_gives_a_header_only() -> None:
    got = parse(frames.content_frames(1, 60, b"\x00\x00", b"", 4096), 4096)
    assert [f.type for f in got] == [frames.HEADER]


def test_method_with_content_is_method_then_content() -> None:
    data = frames.method_with_content(5, PUBLISH, PROPS.encode(), b"abc", 4096)
    got = parse(data, 4096)
    assert [f.type for f in got] == [frames.METHOD, frames.HEADER, frames.BODY]
    assert frames.decode_method(got[0].payload) == PUBLISH
    assert got[2].payload == b"abc"


# --------------------------------------------------------------------------- ContentAssembler


def method_f(method: spec.Method, channel: int = 1) -> frames.Frame:
    return frames.Frame(frames.METHOD, channel, method.encode())


def header_f(
    body_size: int, props: spec.BasicProperties | None = None, class_id: int = 60
) -> frames.Frame:
    return frames.Frame(frames.HEADER, 1, header_payload(body_size, props, class_id))


def body_f(data: bytes) -> frames.Frame:
    return frames.Frame(frames.BODY, 1, data)


@FAST
@given(st.lists(st.binary(min_size=1, max_size=50), max_size=8))
def test_method_header_bodies_yield_one_command(chunks: list[bytes]) -> None:
    body = b"".join(chunks)
    assembler = ContentAssembler()
    assert assembler.feed(method_f(PUBLISH)) is None
    assert assembler.expecting_content
    results = [assembler.feed(header_f(len(body), PROPS))]
    results += [assembler.feed(body_f(chunk)) for chunk in chunks]
    commands = [r for r in results if r is not None]
    assert len(commands) == 1 and results[-1] is commands[0]
    command = commands[0]
    assert isinstance(command, Command)
    assert command.method == PUBLISH
    assert command.properties == PROPS
    assert command.properties_raw == PROPS.encode()
    assert command.body == body
    assert not assembler.expecting_content
    # the assembler is ready for the next command
    assert assembler.feed(method_f(spec.BasicQos(prefetch_count=1))).method == spec.BasicQos(
        prefetch_count=1
    )


def test_method_without_content_is_a_command_at_once() -> None:
    command = ContentAssembler().feed(method_f(spec.QueueDeclare(queue="q")))
    assert command is not None and command.method == spec.QueueDeclare(queue="q")
    assert command.properties is None and command.body == b""


def err(assembler: ContentAssembler, *feed: frames.Frame) -> Any:
    with pytest.raises((ConnectionError, ChannelError)) as info:
        for frame in feed:
            assembler.feed(frame)
    return info.value


@pytest.mark.parametrize(
    "sequence",
    [
        pytest.param([header_f(1)], id="header-without-method"),
        pytest.param([body_f(b"x")], id="body-without-method"),
        pytest.param([method_f(PUBLISH), body_f(b"x")], id="body-before-header"),
        pytest.param([method_f(PUBLISH), method_f(PUBLISH)], id="method-instead-of-header"),
        pytest.param(
            [method_f(PUBLISH), header_f(5), method_f(PUBLISH)], id="method-instead-of-body"
        ),
        pytest.param([method_f(PUBLISH), header_f(5), header_f(5)], id="header-instead-of-body"),
        pytest.param([method_f(PUBLISH), header_f(5, class_id=50)], id="header-of-other-class"),
        pytest.param(
            [method_f(PUBLISH), frames.Frame(frames.HEARTBEAT, 1, b"")],
            id="heartbeat-instead-of-header",
        ),
    ],
)
def test_out_of_order_frames_are_unexpected_frame(sequence: list[frames.Frame]) -> None:
    error = err(ContentAssembler(), *sequence)
    assert isinstance(error, ConnectionError)
    assert error.code == UNEXPECTED_FRAME == 505


def test_unexpected_frame_names_the_content_method() -> None:
    error = err(ContentAssembler(), method_f(PUBLISH), body_f(b"x"))
    assert (error.class_id, error.method_id) == (60, 40)


def test_method_instead_of_body_has_rabbitmqs_text() -> None:
    """rabbit_command_assembler's texts, as clients see them from RabbitMQ."""
    error = err(ContentAssembler(), method_f(PUBLISH), header_f(5), method_f(PUBLISH))
    assert error.detail == "expected content body, got non content body frame instead"


def test_header_of_other_class_has_rabbitmqs_text() -> None:
    error = err(ContentAssembler(), method_f(PUBLISH), header_f(5, class_id=50))
    assert error.detail == "expected content header for class 60, got one for class 50 instead"


@pytest.mark.parametrize("chunks", [[b"toolong"], [b"abc", b"defg"], [b"ab", b"cd", b"ef"]])
def test_body_longer_than_announced_never_completes_and_raises(chunks: list[bytes]) -> None:
    """A body overshooting its header never becomes a command; at the latest the next frame
    that is not a body is 505 (RabbitMQ's assembler waits for it; raising earlier is fine)."""
    assembler = ContentAssembler()
    assembler.feed(method_f(PUBLISH))
    assembler.feed(header_f(5))
    with pytest.raises(ConnectionError) as info:
        for chunk in chunks:
            assert assembler.feed(body_f(chunk)) is None
        assembler.feed(method_f(spec.BasicQos()))
    assert info.value.code == UNEXPECTED_FRAME


def test_body_size_over_max_body_size_is_a_channel_error() -> None:
    assembler = ContentAssembler(max_body_size=1000)
    assembler.feed(method_f(PUBLISH))
    error = err(assembler, header_f(1001))
    assert type(error) is ChannelError
    assert error.code == PRECONDITION_FAILED == 406
    # the content is forgotten: the channel can carry on with a new method
    assert not assembler.expecting_content
    assert assembler.feed(method_f(spec.BasicQos())) is not None


def test_body_size_at_max_body_size_is_accepted() -> None:
    assembler = ContentAssembler(max_body_size=4)
    assembler.feed(method_f(PUBLISH))
    assembler.feed(header_f(4))
    command = assembler.feed(body_f(b"abcd"))
    assert command is not None and command.body == b"abcd"


def test_zero_length_content_completes_at_the_header() -> None:
    assembler = ContentAssembler()
    assembler.feed(method_f(PUBLISH))
    command = assembler.feed(header_f(0, PROPS))
    assert command is not None and command.body == b"" and command.properties == PROPS


def test_reset_forgets_partial_content() -> None:
    assembler = ContentAssembler()
    assembler.feed(method_f(PUBLISH))
    assembler.feed(header_f(10))
    assembler.feed(body_f(b"abc"))
    assert assembler.announced_size == 10
    assembler.reset()
    assert not assembler.expecting_content and assembler.announced_size is None
    assembler.feed(method_f(PUBLISH))
    assembler.feed(header_f(2))
    assert assembler.feed(body_f(b"xy")).body == b"xy"
