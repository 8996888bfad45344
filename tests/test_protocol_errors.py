"""Malformed input on the wire, sent over raw sockets with tests/amqp_wire.py.

Reply codes, texts and class/method ids are exactly those RabbitMQ 3.10.8 sends; where they look
odd (501 rather than 502 for an undecodable method, Erlang term syntax inside texts, no
Connection.Close at all for an unknown method id) RabbitMQ is what clients meet, so it wins.
After every test an autouse fixture checks that the server still serves new connections.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest
from amqp_wire import (
    BASIC_PUBLISH,
    CHANNEL_CLOSE,
    CHANNEL_CLOSE_OK,
    CHANNEL_OPEN,
    CHANNEL_OPEN_OK,
    CONNECTION_CLOSE,
    CONNECTION_CLOSE_OK,
    CONNECTION_OPEN,
    CONNECTION_OPEN_OK,
    CONNECTION_START,
    FRAME_END,
    PROTOCOL_HEADER,
    QUEUE_DECLARE,
    QUEUE_DECLARE_OK,
    Close,
    PeerClosed,
    Reader,
    WireConnection,
    basic_publish_args,
    body_frame,
    content_header_frame,
    frame,
    heartbeat_frame,
    longstr,
    method_frame,
    method_payload,
    queue_declare_args,
    shortstr,
)
from conftest import Broker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Known AMQP 0-9-1 reply codes a Close may carry.
REPLY_CODES = {
    200,
    311,
    312,
    313,
    320,
    402,
    403,
    404,
    405,
    406,
    501,
    502,
    503,
    504,
    505,
    506,
    530,
    540,
    541,
}

CLOSE_ARGS = struct.pack(">H", 200) + shortstr("bye") + b"\0\0\0\0"


def wire(broker: Broker, timeout: float = 5.0) -> WireConnection:
    return WireConnection(broker.host, broker.port, timeout=timeout)


def assert_serving(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.handshake()
        conn.open_channel(1)
        conn.send_method(1, QUEUE_DECLARE, queue_declare_args("", exclusive=True))
        reply = conn.read_method()
        assert reply.class_method == QUEUE_DECLARE_OK
        assert reply.args().shortstr().startswith("amq.gen-")


@pytest.fixture(autouse=True)
def still_serving(broker: Broker) -> Iterator[None]:
    yield
    assert_serving(broker)


@pytest.fixture
def conn(broker: Broker) -> Iterator[WireConnection]:
    """A raw connection past the handshake, with channel 1 open."""
    c = wire(broker)
    c.handshake()
    c.open_channel(1)
    yield c
    c.close()


def send_and_expect_close(
    conn: WireConnection, data: bytes, wait_eof: bool = True
) -> tuple[int, str, int, int]:
    """Send `data`, expect Connection.Close, answer CloseOk and (unless `wait_eof` is false)
    expect the socket to be closed; return the Close's fields.

    After a fatal framing error (bad frame end, oversized frame) RabbitMQ waits 3 s before
    closing the socket; those tests pass wait_eof=False and test_socket_closed_after_frame_error
    checks the close once."""
    conn.send(data)
    if wait_eof:
        return conn.expect_connection_close().fields
    close = conn.expect_close()
    assert close.channel == 0, close
    return close.fields


def publish_frames(channel: int = 1) -> bytes:
    return method_frame(channel, BASIC_PUBLISH, basic_publish_args("", "nowhere"))


# --------------------------------------------------------------------------- protocol header


@pytest.mark.parametrize(
    "header",
    [
        b"AMQX\x00\x00\x09\x01",
        b"GET / HTTP/1.1\r\n\r\n",
        b"AMQP\x00\x01\x00\x00",  # AMQP 1.0
        b"AMQP\x01\x01\x00\x0a",  # AMQP 0-10
        b"AMQP\x00\x00\x09\x00",  # 0-9 with the wrong revision
        b"AMQP\x00\x00\x0a\x00",
    ],
    ids=["bad-magic", "http", "amqp-1.0", "amqp-0-10", "amqp-0-9-0", "amqp-0-10-0"],
)
def test_wrong_protocol_header(broker: Broker, header: bytes) -> None:
    with wire(broker) as c:
        c.send(header)
        assert c.read_until_closed() == PROTOCOL_HEADER


def test_garbage_before_header(broker: Broker) -> None:
    with wire(broker) as c:
        c.send(b"xx" + PROTOCOL_HEADER)
        assert c.read_until_closed() == PROTOCOL_HEADER


def test_header_in_pieces(broker: Broker) -> None:
    with wire(broker) as c:
        for i in range(len(PROTOCOL_HEADER)):
            c.send(PROTOCOL_HEADER[i : i + 1])
            time.sleep(0.01)
        assert c.read_method().class_method == CONNECTION_START
        c.start_ok()
        c.tune()
        c.open()


# --------------------------------------------------------------------------- framing errors


def test_bad_frame_end(conn: WireConnection) -> None:
    data = frame(1, 2, method_payload(CHANNEL_OPEN, shortstr("")), end=0x00)
    assert send_and_expect_close(conn, data, wait_eof=False) == (
        501,
        "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: {invalid_frame_end_marker,0}",
        0,
        0,
    )


def test_bad_frame_end_printable_payload(conn: WireConnection) -> None:
    # Erlang prints an all-printable binary as a string
    data = frame(1, 1, b"abcdef", end=0x41)
    assert send_and_expect_close(conn, data, wait_eof=False) == (
        501,
        'FRAME_ERROR - type 1, all octets = <<"abcdef">>: {invalid_frame_end_marker,65}',
        0,
        0,
    )


def test_socket_closed_after_frame_error(broker: Broker) -> None:
    """After a framing error the server closes the socket (RabbitMQ waits 3 s first)."""
    with wire(broker) as c:
        c.handshake()
        c.send(frame(1, 1, b"\x00\x14\x00\x0a\x00", end=0xCD))
        assert c.expect_close().reply_code == 501
        c.read_until_closed(timeout=4.5)


def test_frame_larger_than_default_frame_max(conn: WireConnection) -> None:
    payload = method_payload(CHANNEL_OPEN, shortstr("")).ljust(131077, b"\0")
    assert send_and_expect_close(conn, frame(1, 2, payload), wait_eof=False) == (
        501,
        "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,131077,131064}",
        0,
        0,
    )


def test_frame_larger_than_negotiated_frame_max(broker: Broker) -> None:
    with wire(broker) as c:
        c.handshake(frame_max=4096)
        c.open_channel(1)
        payload = method_payload(CHANNEL_OPEN, shortstr("")).ljust(5000, b"\0")
        assert send_and_expect_close(c, frame(1, 2, payload), wait_eof=False) == (
            501,
            "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,5000,4088}",
            0,
            0,
        )


def test_frame_size_limit_boundary(broker: Broker) -> None:
    """A frame of exactly frame_max octets is fine; RabbitMQ's limit is on the payload size,
    which may reach frame_max itself (it allows 8 octets of slack); one more is an error."""
    with wire(broker) as c:
        c.handshake(frame_max=4096)
        c.open_channel(1)
        for size in (4096 - 8, 4096):
            body = b"b" * size
            c.send(publish_frames() + content_header_frame(1, 60, size) + body_frame(1, body))
            c.send(method_frame(1, QUEUE_DECLARE, queue_declare_args("", exclusive=True)))
            assert c.read_method().class_method == QUEUE_DECLARE_OK
        body = b"b" * 4097
        c.send(publish_frames() + content_header_frame(1, 60, len(body)))
        assert send_and_expect_close(c, body_frame(1, body), wait_eof=False) == (
            501,
            "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}",
            0,
            0,
        )


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (frame(7, 0, b"abc"), 'FRAME_ERROR - type 7, all octets = <<"abc">>: unknown_frame'),
        (frame(9, 0, b"\x00\x01"), "FRAME_ERROR - type 9, all octets = <<0,1>>: unknown_frame"),
        (frame(0, 0, b""), "FRAME_ERROR - type 0, all octets = <<>>: unknown_frame"),
        (frame(8, 0, b"xy"), 'FRAME_ERROR - type 8, all octets = <<"xy">>: unknown_frame'),
        (frame(1, 1, b""), "FRAME_ERROR - type 1, all octets = <<>>: unknown_frame"),
        (frame(1, 1, b"\x00\x32"), "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame"),
    ],
    ids=["type-7", "type-9", "type-0", "heartbeat-with-payload", "empty-method", "short-method-id"],
)
def test_undecodable_frames(conn: WireConnection, data: bytes, text: str) -> None:
    assert send_and_expect_close(conn, data) == (501, text, 0, 0)


@pytest.mark.parametrize(
    ("data", "code", "text"),
    [
        (
            frame(3, 0, b"0123456789abcdefXYZ"),
            505,
            'UNEXPECTED_FRAME - type 3, first 16 octets = <<"0123456789abcdef">>',
        ),
        (
            frame(9, 1, b"0123456789abcdefXYZ"),
            501,
            'FRAME_ERROR - type 9, first 16 octets = <<"0123456789abcdef">>: unknown_frame',
        ),
    ],
    ids=["unexpected-frame", "unknown-frame"],
)
def test_long_payloads_are_quoted_up_to_16_octets(
    conn: WireConnection, data: bytes, code: int, text: str
) -> None:
    """RabbitMQ quotes at most 16 octets of a bad frame. (It pretty-prints the Erlang terms
    of its texts, wrapping them past column 78, which trimq does not reproduce: a bad frame
    end after 16 printable octets reads `{invalid_frame_end_marker,` newline, 51 spaces,
    `65}` there.)"""
    assert send_and_expect_close(conn, data) == (code, text, 0, 0)


def test_truncated_content_header(conn: WireConnection) -> None:
    data = publish_frames() + frame(2, 1, b"\x00\x3c\x00")
    assert send_and_expect_close(conn, data) == (
        501,
        "FRAME_ERROR - type 2, all octets = <<0,60,0>>: unknown_frame",
        0,
        0,
    )


def test_heartbeat_on_a_channel(conn: WireConnection) -> None:
    assert send_and_expect_close(conn, frame(8, 1, b"")) == (
        505,
        "UNEXPECTED_FRAME - type 8, all octets = <<>>",
        0,
        0,
    )


def test_heartbeat_on_channel_zero_is_accepted(conn: WireConnection) -> None:
    conn.send(heartbeat_frame() * 3)
    conn.send(method_frame(1, QUEUE_DECLARE, queue_declare_args("", exclusive=True)))
    assert conn.read_method().class_method == QUEUE_DECLARE_OK


# --------------------------------------------------------------------------- method decoding


def test_truncated_method(conn: WireConnection) -> None:
    data = method_frame(1, QUEUE_DECLARE, b"\x00\x00\x05ab")
    assert send_and_expect_close(conn, data) == (
        501,
        "FRAME_ERROR - cannot decode <<0,0,5,97,98>>",
        50,
        10,
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(method_payload((10, 70), longstr(b"guest")[:-2]), id="update-secret-cut"),
        pytest.param(method_payload((10, 70), longstr(b"guest")), id="update-secret-no-reason"),
        pytest.param(method_payload((10, 50), b"\x00"), id="connection-close-cut"),
    ],
)
def test_undecodable_method_on_channel_zero_once_open(conn: WireConnection, payload: bytes) -> None:
    """RabbitMQ's connection process answers these with a bare 541, naming no method."""
    assert send_and_expect_close(conn, frame(1, 0, payload)) == (541, "INTERNAL_ERROR", 0, 0)


def test_method_without_arguments(conn: WireConnection) -> None:
    assert send_and_expect_close(conn, method_frame(2, CHANNEL_OPEN)) == (
        501,
        "FRAME_ERROR - cannot decode <<>>",
        20,
        10,
    )


def test_method_with_trailing_octets(conn: WireConnection) -> None:
    data = method_frame(2, CHANNEL_OPEN, shortstr("") + b"zz")
    assert send_and_expect_close(conn, data) == (
        501,
        "FRAME_ERROR - cannot decode <<0,122,122>>",
        20,
        10,
    )


@pytest.mark.parametrize(
    ("channel", "class_method"), [(1, (99, 10)), (1, (50, 99)), (0, (10, 99)), (0, (99, 10))]
)
def test_unknown_method_id(
    conn: WireConnection, channel: int, class_method: tuple[int, int]
) -> None:
    """RabbitMQ 3.10 drops the TCP connection without a Connection.Close (its reader exits
    with {unknown_method_id, ...}); a Connection.Close first (540 NOT_IMPLEMENTED or
    503 COMMAND_INVALID) is accepted too, as RabbitMQ offers no text to match."""
    conn.send(method_frame(channel, class_method))
    try:
        data = conn.read_until_closed()
    except PeerClosed:
        data = b""
    if data:
        ftype, ch, size = struct.unpack(">BHI", data[:7])
        assert (ftype, ch) == (1, 0)
        reader = Reader(data[7 : 7 + size])
        assert (reader.short(), reader.short()) == CONNECTION_CLOSE
        code, text = reader.short(), reader.shortstr()
        assert (code, text.split(" - ")[0]) in {(540, "NOT_IMPLEMENTED"), (503, "COMMAND_INVALID")}


# --------------------------------------------------------------------------- frame sequencing


@pytest.mark.parametrize(
    "data", [content_header_frame(1, 60, 5), body_frame(1, b"hello")], ids=["header", "body"]
)
def test_content_without_method(conn: WireConnection, data: bytes) -> None:
    assert send_and_expect_close(conn, data) == (
        505,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
        0,
        0,
    )


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (
            content_header_frame(0, 60, 1),
            "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,1,0,0>>",
        ),
        (body_frame(0, b"abc"), 'UNEXPECTED_FRAME - type 3, all octets = <<"abc">>'),
    ],
    ids=["header", "body"],
)
def test_content_on_channel_zero(conn: WireConnection, data: bytes, text: str) -> None:
    assert send_and_expect_close(conn, data) == (505, text, 0, 0)


def test_body_after_zero_size_header(conn: WireConnection) -> None:
    data = publish_frames() + content_header_frame(1, 60, 0) + body_frame(1, b"a")
    assert send_and_expect_close(conn, data) == (
        505,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
        0,
        0,
    )


def test_method_instead_of_content_header(conn: WireConnection) -> None:
    data = publish_frames() + publish_frames()
    assert send_and_expect_close(conn, data) == (
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header "
        "frame instead",
        60,
        40,
    )


def test_body_instead_of_content_header(conn: WireConnection) -> None:
    data = publish_frames() + body_frame(1, b"abc")
    assert send_and_expect_close(conn, data) == (
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header "
        "frame instead",
        60,
        40,
    )


def test_content_header_for_wrong_class(conn: WireConnection) -> None:
    data = publish_frames() + content_header_frame(1, 50, 3)
    assert send_and_expect_close(conn, data) == (
        505,
        "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead",
        60,
        40,
    )


@pytest.mark.parametrize(
    ("announced", "sent"), [(3, b"hello"), (5, b"abc")], ids=["longer", "shorter"]
)
def test_body_size_mismatch(conn: WireConnection, announced: int, sent: bytes) -> None:
    """A body longer or shorter than the header announced: RabbitMQ notices when the next
    frame is not the body frame it still expects."""
    data = (
        publish_frames()
        + content_header_frame(1, 60, announced)
        + body_frame(1, sent)
        + method_frame(1, QUEUE_DECLARE, queue_declare_args(""))
    )
    assert send_and_expect_close(conn, data) == (
        505,
        "UNEXPECTED_FRAME - expected content body, got non content body frame instead",
        60,
        40,
    )


def test_content_header_with_missing_property(conn: WireConnection) -> None:
    """Property flags announce content-type but no property data follows: RabbitMQ fails to
    decode the properties in the channel and answers 541 INTERNAL_ERROR."""
    data = publish_frames() + content_header_frame(1, 60, 0, flags=0x8000)
    assert send_and_expect_close(conn, data) == (541, "INTERNAL_ERROR", 0, 0)


# --------------------------------------------------------------------------- channel state


def test_method_on_unopened_channel(conn: WireConnection) -> None:
    data = method_frame(2, QUEUE_DECLARE, queue_declare_args(""))
    assert send_and_expect_close(conn, data) == (
        504,
        "CHANNEL_ERROR - expected 'channel.open'",
        50,
        10,
    )


@pytest.mark.parametrize(
    ("class_method", "args"),
    [(CHANNEL_CLOSE, CLOSE_ARGS), (CHANNEL_CLOSE_OK, b"")],
    ids=["close", "close-ok"],
)
def test_channel_close_on_unopened_channel(
    conn: WireConnection, class_method: tuple[int, int], args: bytes
) -> None:
    assert send_and_expect_close(conn, method_frame(5, class_method, args)) == (
        504,
        "CHANNEL_ERROR - expected 'channel.open'",
        *class_method,
    )


def test_second_channel_open(conn: WireConnection) -> None:
    assert send_and_expect_close(conn, method_frame(1, CHANNEL_OPEN, shortstr(""))) == (
        504,
        "CHANNEL_ERROR - second 'channel.open' seen",
        20,
        10,
    )


@pytest.mark.parametrize(
    ("class_method", "args"),
    [
        (QUEUE_DECLARE, queue_declare_args("")),
        (CHANNEL_OPEN, shortstr("")),
        (BASIC_PUBLISH, basic_publish_args("", "x")),
        (CONNECTION_OPEN, shortstr("/") + shortstr("") + b"\0"),
    ],
    ids=["queue.declare", "channel.open", "basic.publish", "connection.open"],
)
def test_wrong_method_on_channel_zero(
    conn: WireConnection, class_method: tuple[int, int], args: bytes
) -> None:
    assert send_and_expect_close(conn, method_frame(0, class_method, args)) == (
        504,
        "CHANNEL_ERROR - unexpected method in connection state running",
        *class_method,
    )


@pytest.mark.parametrize(
    ("class_method", "args"),
    [
        (CONNECTION_OPEN, shortstr("/") + shortstr("") + b"\0"),
        (CONNECTION_CLOSE, CLOSE_ARGS),
    ],
    ids=["connection.open", "connection.close"],
)
def test_connection_method_on_a_channel(
    conn: WireConnection, class_method: tuple[int, int], args: bytes
) -> None:
    assert send_and_expect_close(conn, method_frame(1, class_method, args)) == (
        503,
        "COMMAND_INVALID - unimplemented method",
        *class_method,
    )


def test_connection_close_from_client(conn: WireConnection) -> None:
    conn.send(method_frame(0, CONNECTION_CLOSE, CLOSE_ARGS))
    assert conn.read_method().class_method == CONNECTION_CLOSE_OK


def test_channel_close_from_client_then_reopen(conn: WireConnection) -> None:
    conn.send(method_frame(1, CHANNEL_CLOSE, CLOSE_ARGS))
    reply = conn.read_method()
    assert (reply.channel, reply.class_method) == (1, CHANNEL_CLOSE_OK)
    conn.open_channel(1)


def test_other_connections_unaffected(broker: Broker, conn: WireConnection) -> None:
    """A connection that breaks the protocol does not disturb one that is mid-conversation."""
    with wire(broker) as bystander:
        bystander.handshake()
        bystander.open_channel(1)
        assert send_and_expect_close(conn, body_frame(1, b"x"))[0] == 505
        bystander.send(method_frame(1, QUEUE_DECLARE, queue_declare_args("", exclusive=True)))
        assert bystander.read_method().class_method == QUEUE_DECLARE_OK


# --------------------------------------------------------------------------- fuzzing

VALID_FRAMES = [
    method_frame(1, QUEUE_DECLARE, queue_declare_args("fuzz-q", exclusive=True)),
    method_frame(2, CHANNEL_OPEN, shortstr("")),
    method_frame(1, CHANNEL_CLOSE, CLOSE_ARGS),
    publish_frames() + content_header_frame(1, 60, 5) + body_frame(1, b"hello"),
    method_frame(
        1,
        (40, 10),
        struct.pack(">H", 0)
        + shortstr("fuzz-x")
        + shortstr("direct")
        + b"\x08"
        + struct.pack(">I", 0),
    ),  # exchange.declare, auto-delete
    heartbeat_frame(),
]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_FRAMES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "end"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif kind == "truncate" and len(data) > 1:
            del data[draw(st.integers(1, len(data) - 1)) :]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "end":
            data[-1] = draw(st.integers(0, 255).filter(lambda b: b != FRAME_END))
    return bytes(data)


def server_reaction(broker: Broker, data: bytes) -> Close | None:
    """Send `data` after a valid handshake; return the Close the server sends, if any."""
    with wire(broker, timeout=2.0) as c:
        c.handshake()
        c.open_channel(1)
        c.send(data)
        try:
            while True:
                f = c.read_frame(timeout=0.3)
                if f.type == 8:
                    assert f.channel == 0 and f.payload == b""
                    continue
                assert f.type == 1, f  # the server only sends well-formed method frames
                if f.class_method in (CONNECTION_CLOSE, CHANNEL_CLOSE):
                    r = f.args()
                    close = Close(f.channel, r.short(), r.shortstr(), r.short(), r.short())
                    assert close.reply_code in REPLY_CODES, close
                    assert close.reply_text, close
                    return close
        except (PeerClosed, TimeoutError):
            return None  # it closed the socket, or waits for more octets (or was content)


@pytest.mark.slow
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.one_of(mutated_frames(), st.binary(min_size=1, max_size=64)))
def test_fuzzed_frames(broker: Broker, data: bytes) -> None:
    server_reaction(broker, data)
    assert_serving(broker)


def test_frames_pipelined_with_the_handshake_are_answered(broker: Broker) -> None:
    """Channel.Open and Queue.Declare sent in the same write as Connection.Open are answered
    without waiting for more bytes from the client."""
    with WireConnection(broker.host, broker.port) as conn:
        conn.start()
        conn.start_ok()
        conn.tune()
        conn.send(
            method_frame(0, CONNECTION_OPEN, shortstr("/") + shortstr("") + b"\0")
            + method_frame(1, CHANNEL_OPEN, shortstr(""))
        )
        assert conn.read_method(timeout=3).class_method == CONNECTION_OPEN_OK
        reply = conn.read_method(timeout=3)
        assert (reply.channel, reply.class_method) == (1, CHANNEL_OPEN_OK)
