"""ServerConnection fed random and mutated frames in-process (trio memory streams, mock clock).

Each case: a raw AMQP handshake (PLAIN guest/guest), channel 1 opened, then fuzz bytes. The
connection must never raise out of serve() nor hit its catch-all for bugs; whatever it sends is
well-formed frames; a Connection.Close carries a known AMQP error code and is the last thing it
says (bar a Close-Ok); it ends once the client answers or goes away; and a second connection to
the same Broker can still declare a queue, publish and get a message. Client frames are built
with pika's encoder; server frames are parsed with pika's decoder.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pika.frame
import pika.spec as ps
import pytest
import trio
import trio.testing
from codec_strategies import methods, nested_tables
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import trimq.server.connection as connection_module
from trimq.broker.broker import Broker
from trimq.errors import REPLY_NAMES
from trimq.server.connection import ServerConnection

ERROR_CODES = {code for code in REPLY_NAMES if code >= 300}
PROBE_QUEUE = "probe.after-fuzz.7f3c9b1e"


def raw(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def method(channel: int, m: Any) -> bytes:
    return pika.frame.Method(channel, m).marshal()


def content(
    channel: int, body: bytes, props: ps.BasicProperties | None = None, step: int = 131064
) -> bytes:
    out = pika.frame.Header(channel, len(body), props or ps.BasicProperties()).marshal()
    for i in range(0, len(body), step):
        out += pika.frame.Body(channel, body[i : i + step]).marshal()
    return out


class LogRecorder:
    """Stands in for trimq.server.connection.log: records (level, event, active exception)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, BaseException | None]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def record(event: str, *args: Any, **kwargs: Any) -> None:
            self.events.append((level, event, sys.exc_info()[1]))

        return record

    def internal_errors(self) -> list[BaseException | None]:
        return [exc for _, event, exc in self.events if event == "connection.internal_error"]


class Client:
    def __init__(self, stream: trio.StapledStream) -> None:
        self.stream = stream
        self.buf = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def frame(self) -> Any:
        """The next frame from the server (pika's decoder: malformed output fails), None at EOF."""
        while True:
            used, frame = pika.frame.decode_frame(self.buf)
            if frame is not None:
                self.buf = self.buf[used:]
                return frame
            data = await self.stream.receive_some(65536)
            if not data:
                assert self.buf == b"", f"server closed mid-frame: {self.buf!r}"
                return None
            self.buf += data

    async def expect(self, cls: type) -> Any:
        frame = await self.frame()
        assert isinstance(frame, pika.frame.Method) and isinstance(frame.method, cls), frame
        return frame.method

    async def handshake(self, client_properties: bytes | None = None) -> None:
        await self.send(b"AMQP\x00\x00\x09\x01")
        await self.expect(ps.Connection.Start)
        if client_properties is None:
            await self.send(
                method(
                    0,
                    ps.Connection.StartOk(
                        client_properties={
                            "product": "fuzz",
                            "capabilities": {"authentication_failure_close": True},
                        },
                        mechanism="PLAIN",
                        response=b"\0guest\0guest",
                        locale="en_US",
                    ),
                )
            )
        else:  # a raw field table, for tables pika cannot build
            args = (
                client_properties
                + b"\x05PLAIN"
                + struct.pack(">I", 12)
                + b"\0guest\0guest"
                + b"\x05en_US"
            )
            await self.send(raw(1, 0, struct.pack(">HH", 10, 11) + args))
        tune = await self.expect(ps.Connection.Tune)
        await self.send(
            method(
                0,
                ps.Connection.TuneOk(
                    channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0
                ),
            )
        )
        await self.send(method(0, ps.Connection.Open(virtual_host="/")))
        await self.expect(ps.Connection.OpenOk)


@dataclass
class Outcome:
    connection: ServerConnection
    frames: list[Any] = field(default_factory=list)
    serve_error: BaseException | None = None
    handshake_done: bool = False

    def closes(self) -> list[Any]:
        return [
            f.method
            for f in self.frames
            if isinstance(f, pika.frame.Method) and isinstance(f.method, ps.Connection.Close)
        ]


async def session(
    broker: Broker, payload: bytes, *, client_properties: bytes | None = None
) -> Outcome:
    """Handshake, open channel 1, send `payload`; answer a Connection.Close with Close-Ok, or
    else close our side once the server is idle; read until the server closes."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    conn = ServerConnection(server_stream, broker, ("127.0.0.1", 1))
    outcome = Outcome(conn)

    async def serve() -> None:
        try:
            await conn.serve()
        except Exception as exc:
            outcome.serve_error = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        client = Client(client_stream)
        try:
            await client.handshake(client_properties)
        except (AssertionError, trio.BrokenResourceError, trio.ClosedResourceError):
            if client_properties is None:
                raise
            return outcome  # a handshake-time case: the server may refuse it
        outcome.handshake_done = True
        await client.send(method(1, ps.Channel.Open()))
        await client.expect(ps.Channel.OpenOk)
        await client.send(payload)
        closed_by_server = False
        with trio.move_on_after(5):  # mock clock: passes as soon as everything is idle
            while (frame := await client.frame()) is not None:
                outcome.frames.append(frame)
                if isinstance(frame, pika.frame.Method):
                    if isinstance(frame.method, ps.Connection.Close):
                        await client.send(method(0, ps.Connection.CloseOk()))
                        closed_by_server = True
                        break
                    if isinstance(frame.method, ps.Connection.CloseOk):
                        break
        if not closed_by_server:
            await client_stream.send_stream.aclose()
        while (frame := await client.frame()) is not None:
            outcome.frames.append(frame)
    return outcome


async def probe(broker: Broker) -> None:
    """A fresh connection declares a queue, publishes to it and gets the message back."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    conn = ServerConnection(server_stream, broker, ("127.0.0.1", 2))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        client = Client(client_stream)
        await client.handshake()
        await client.send(method(1, ps.Channel.Open()))
        await client.expect(ps.Channel.OpenOk)
        await client.send(method(1, ps.Queue.Declare(queue=PROBE_QUEUE)))
        declared = await client.expect(ps.Queue.DeclareOk)
        await client.send(
            method(1, ps.Basic.Publish(exchange="", routing_key=PROBE_QUEUE))
            + content(1, b"alive", ps.BasicProperties(message_id="m1"))
        )
        await client.send(method(1, ps.Basic.Get(queue=PROBE_QUEUE, no_ack=True)))
        await client.expect(ps.Basic.GetOk)
        header = await client.frame()
        assert isinstance(header, pika.frame.Header) and header.body_size == 5
        assert header.properties.message_id == "m1"
        body = await client.frame()
        assert isinstance(body, pika.frame.Body) and body.fragment == b"alive"
        await client.send(method(1, ps.Queue.Delete(queue=PROBE_QUEUE)))
        deleted = await client.expect(ps.Queue.DeleteOk)
        assert deleted.message_count == 0 == declared.message_count
        await client.send(
            method(
                0, ps.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)
            )
        )
        await client.expect(ps.Connection.CloseOk)
        assert await client.frame() is None


def run(
    payload: bytes,
    *,
    client_properties: bytes | None = None,
    check_probe: bool = True,
    after: Callable[[Broker], Awaitable[None]] | None = None,
) -> tuple[Outcome, LogRecorder]:
    """One fuzzed session on a fresh Broker, then the probe, then `after(broker)` if given."""
    recorder = LogRecorder()

    async def main() -> Outcome:
        broker = Broker()
        with trio.fail_after(120):  # mock seconds: only a real hang gets here
            outcome = await session(broker, payload, client_properties=client_properties)
            if check_probe and outcome.serve_error is None:
                await probe(broker)
            if after is not None:
                await after(broker)
        return outcome

    with mock.patch.object(connection_module, "log", recorder):
        outcome = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return outcome, recorder


def check(outcome: Outcome, recorder: LogRecorder) -> None:
    """The invariants every session must keep, whatever it was fed."""
    assert outcome.serve_error is None, f"serve() raised {outcome.serve_error!r}"
    internal = recorder.internal_errors()
    assert not internal, f"connection hit its catch-all for bugs: {internal!r}"
    seen_close = False
    for frame in outcome.frames:
        assert frame.channel_number <= 65535
        if not isinstance(frame, pika.frame.Method):
            assert not seen_close, f"{frame!r} after Connection.Close"
            continue
        m = frame.method
        if seen_close:
            assert isinstance(m, ps.Connection.CloseOk), f"{m!r} after Connection.Close"
        if isinstance(m, ps.Connection.Close | ps.Channel.Close):
            assert m.reply_code in ERROR_CODES, m
            text = (
                m.reply_text
                if isinstance(m.reply_text, str)
                else m.reply_text.decode("utf-8", "replace")
            )
            assert text.startswith(REPLY_NAMES[m.reply_code]), m
            assert (frame.channel_number == 0) == isinstance(m, ps.Connection.Close)
        if isinstance(m, ps.Connection.Close):
            if m.reply_code == 541:
                assert "internal error" not in text, m
            seen_close = True
    assert not outcome.connection.channels  # cleanup ran


# --------------------------------------------------------------------------- strategies

CHANNELS = st.sampled_from([0, 1, 1, 1, 2, 65535])
PUBLISH_TO_FQ = (
    method(1, ps.Queue.Declare(queue="fq", auto_delete=True))
    + method(1, ps.Basic.Publish(exchange="", routing_key="fq"))
    + content(1, b"payload", ps.BasicProperties(delivery_mode=2, headers={"h": 1}))
)
SCENARIOS = [
    PUBLISH_TO_FQ,
    PUBLISH_TO_FQ + method(1, ps.Basic.Consume(queue="fq", consumer_tag="c1")),
    PUBLISH_TO_FQ + method(1, ps.Basic.Get(queue="fq")) + method(1, ps.Basic.Ack(1)),
    method(1, ps.Confirm.Select()) + PUBLISH_TO_FQ,
    method(1, ps.Tx.Select()) + PUBLISH_TO_FQ + method(1, ps.Tx.Commit()),
    method(2, ps.Channel.Open()) + method(2, ps.Basic.Qos(prefetch_count=1)),
    method(1, ps.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0)),
]

trimq_methods = st.builds(lambda ch, m: raw(1, ch, m.encode()), CHANNELS, methods())
headers = st.builds(
    lambda ch, cls, size, props: raw(2, ch, struct.pack(">HHQ", cls, 0, size) + props),
    CHANNELS,
    st.sampled_from([60, 60, 50, 0]),
    st.integers(0, 64),
    st.sampled_from(
        [
            b"\x00\x00",
            b"".join(
                ps.BasicProperties(content_type="t", headers={"a": [1, "b"]}, priority=3).encode()
            ),
        ]
    ),
)
bodies = st.builds(lambda ch, data: raw(3, ch, data), CHANNELS, st.binary(max_size=64))
heartbeats = st.builds(lambda ch: raw(8, ch, b""), st.sampled_from([0, 0, 1]))
publishes = st.builds(
    lambda rk, body, props: (
        method(1, ps.Basic.Publish(exchange=rk[0], routing_key=rk[1], mandatory=True))
        + content(1, body, props, step=7)
    ),
    st.sampled_from([("", "fq"), ("", "nowhere"), ("amq.topic", "a.b"), ("missing", "x")]),
    st.binary(max_size=30),
    st.sampled_from([ps.BasicProperties(), ps.BasicProperties(expiration="0", priority=9)]),
)
random_ids = st.builds(
    lambda ch, cid, mid, args: raw(1, ch, struct.pack(">HH", cid, mid) + args),
    CHANNELS,
    st.one_of(st.sampled_from([10, 20, 40, 50, 60, 85, 90]), st.integers(0, 65535)),
    st.one_of(st.sampled_from([10, 11, 20, 40, 50, 70]), st.integers(0, 65535)),
    st.binary(max_size=24),
)
random_types = st.builds(raw, st.integers(0, 255), CHANNELS, st.binary(max_size=16))
units = st.one_of(
    st.sampled_from(SCENARIOS),
    trimq_methods,
    headers,
    bodies,
    heartbeats,
    publishes,
    random_ids,
    random_types,
    st.binary(min_size=1, max_size=24),
)


@st.composite
def mutated(draw: Any) -> bytes:
    data = bytearray(draw(units))
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(data) - 1))
        data[index] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        data += draw(st.binary(max_size=8))
    return bytes(data)


# Mostly well-formed traffic first (to reach deeper states: content, consumers, confirms, tx),
# then random and mutated frames.
valid_units = st.one_of(
    st.sampled_from(SCENARIOS),
    publishes,
    st.builds(lambda m: raw(1, 1, m.encode()), methods()),
    st.just(raw(8, 0, b"")),
)
payloads = st.builds(
    lambda head, tail: b"".join(head + tail),
    st.lists(valid_units, max_size=4),
    st.lists(st.one_of(units, mutated()), min_size=1, max_size=4),
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- tests


def test_clean_session_and_probe() -> None:
    outcome, recorder = run(PUBLISH_TO_FQ + method(1, ps.Basic.Get(queue="fq", no_ack=True)))
    check(outcome, recorder)
    kinds = [
        type(f.method).__name__ if isinstance(f, pika.frame.Method) else type(f).__name__
        for f in outcome.frames
    ]
    assert kinds == ["DeclareOk", "GetOk", "Header", "Body"]
    assert outcome.frames[-1].fragment == b"payload"
    assert not outcome.closes()


@pytest.mark.parametrize(
    ("payload", "codes"),
    [
        pytest.param(
            raw(1, 1, struct.pack(">HHB", 20, 20, 1), end=b"\x00"), {501}, id="bad-frame-end"
        ),
        pytest.param(raw(7, 0, b"abc"), {501}, id="unknown-frame-type"),
        pytest.param(struct.pack(">BHI", 3, 1, 131073), {501}, id="frame-too-large"),
        pytest.param(
            raw(2, 1, struct.pack(">HHQ", 60, 0, 1) + b"\x00\x00"),
            {505},
            id="header-without-method",
        ),
        pytest.param(raw(3, 1, b"body"), {505}, id="body-without-method"),
        pytest.param(
            method(1, ps.Basic.Publish()) + method(1, ps.Basic.Qos()),
            {505},
            id="method-instead-of-header",
        ),
        pytest.param(raw(1, 1, struct.pack(">HH", 999, 1)), {540}, id="unknown-class"),
        pytest.param(
            raw(1, 1, struct.pack(">HH", 50, 10) + b"\x00"), {501, 502}, id="truncated-arguments"
        ),
        pytest.param(
            raw(1, 0, struct.pack(">HH", 50, 10) + b"\x00\x00\x01q\x00\x00\x00\x00\x00"),
            {503, 504},
            id="queue-declare-on-channel-0",
        ),
        pytest.param(
            raw(1, 5, struct.pack(">HH", 50, 10) + b"\x00\x00\x01q\x00\x00\x00\x00\x00"),
            {504},
            id="method-on-unopened-channel",
        ),
        pytest.param(method(1, ps.Channel.Open()), {504}, id="second-channel-open"),
    ],
)
def test_malformed_input_closes_the_connection(payload: bytes, codes: set[int]) -> None:
    outcome, recorder = run(payload)
    check(outcome, recorder)
    assert [c.reply_code for c in outcome.closes()] in [[code] for code in codes]


def test_partial_frame_then_eof_ends_quietly() -> None:
    outcome, recorder = run(method(1, ps.Basic.Qos(prefetch_count=1))[:-3])
    check(outcome, recorder)
    assert outcome.frames == []


def test_soft_error_closes_only_the_channel() -> None:
    outcome, recorder = run(
        method(1, ps.Queue.Declare(queue="nope", passive=True))
        + method(1, ps.Channel.CloseOk())
        + method(1, ps.Channel.Open())
    )
    check(outcome, recorder)
    closes = [f.method for f in outcome.frames if isinstance(f.method, ps.Channel.Close)]
    assert [c.reply_code for c in closes] == [404]
    assert isinstance(outcome.frames[-1].method, ps.Channel.OpenOk)
    assert not outcome.closes()


BYE = method(0, ps.Connection.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
GARBAGE = raw(0, 0, b"")  # frame type 0: 501 FRAME_ERROR


def summary(outcome: Outcome) -> list[Any]:
    """(channel, method class) for methods, the fragment for bodies, 'header' for headers."""
    out: list[Any] = []
    for f in outcome.frames:
        if isinstance(f, pika.frame.Method):
            out.append((f.channel_number, type(f.method)))
        elif isinstance(f, pika.frame.Body):
            out.append(f.fragment)
        elif isinstance(f, pika.frame.Header):
            out.append("header")
    return out


def test_unacked_deliveries_are_requeued_after_a_connection_error() -> None:
    payload = (
        method(1, ps.Queue.Declare(queue="rq"))
        + method(1, ps.Basic.Publish(routing_key="rq"))
        + content(1, b"m1")
        + method(1, ps.Basic.Consume(queue="rq", consumer_tag="c"))
        + GARBAGE
    )
    later: list[Outcome] = []

    async def after(broker: Broker) -> None:
        later.append(await session(broker, method(1, ps.Basic.Get(queue="rq")) + BYE))

    outcome, recorder = run(payload, after=after)
    check(outcome, recorder)
    assert summary(outcome) == [
        (1, ps.Queue.DeclareOk),
        (1, ps.Basic.ConsumeOk),
        (1, ps.Basic.Deliver),
        "header",
        b"m1",
        (0, ps.Connection.Close),
    ]
    get_ok = later[0].frames[0].method
    assert isinstance(get_ok, ps.Basic.GetOk) and get_ok.redelivered
    assert summary(later[0])[1:] == ["header", b"m1", (0, ps.Connection.CloseOk)]


def test_exclusive_queue_is_deleted_after_a_connection_error() -> None:
    later: list[Outcome] = []

    async def after(broker: Broker) -> None:
        later.append(await session(broker, method(1, ps.Queue.Declare(queue="xq", passive=True))))

    outcome, recorder = run(
        method(1, ps.Queue.Declare(queue="xq", exclusive=True)) + GARBAGE, after=after
    )
    check(outcome, recorder)
    closes = [f.method for f in later[0].frames if isinstance(f.method, ps.Channel.Close)]
    assert [c.reply_code for c in closes] == [404]


def test_contents_on_two_channels_may_interleave() -> None:
    publish = ps.Basic.Publish(routing_key="iq")
    payload = (
        method(2, ps.Channel.Open())
        + method(1, ps.Queue.Declare(queue="iq"))
        + method(1, publish)
        + method(2, publish)
        + raw(2, 1, struct.pack(">HHQ", 60, 0, 3) + b"\x00\x00")
        + raw(8, 0, b"")
        + raw(2, 2, struct.pack(">HHQ", 60, 0, 3) + b"\x00\x00")
        + raw(3, 2, b"two")
        + raw(3, 1, b"o")
        + raw(3, 1, b"ne")
        + method(1, ps.Basic.Get(queue="iq", no_ack=True))
        + method(2, ps.Basic.Get(queue="iq", no_ack=True))
        + BYE
    )
    outcome, recorder = run(payload)
    check(outcome, recorder)
    assert summary(outcome) == [
        (2, ps.Channel.OpenOk),
        (1, ps.Queue.DeclareOk),
        (1, ps.Basic.GetOk),
        "header",
        b"two",
        (2, ps.Basic.GetOk),
        "header",
        b"one",
        (0, ps.Connection.CloseOk),
    ]


def test_connection_close_in_the_middle_of_a_content() -> None:
    payload = (
        method(1, ps.Basic.Publish(routing_key="q"))
        + raw(2, 1, struct.pack(">HHQ", 60, 0, 10) + b"\x00\x00")
        + raw(3, 1, b"abc")
        + BYE
    )
    outcome, recorder = run(payload)
    check(outcome, recorder)
    assert summary(outcome) == [(0, ps.Connection.CloseOk)]


@FUZZ
@given(payloads)
@example(raw(1, 1, struct.pack(">HH", 60, 40)) + raw(3, 1, b"x"))
@example(raw(2, 0, struct.pack(">HHQ", 60, 0, 3) + b"\x00\x00"))
@example(method(1, ps.Basic.Publish(routing_key="fq")) + raw(2, 1, b"\x00\x3c"))
@example(raw(8, 1, b""))
@example(
    method(0, ps.Connection.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    + b"\x01\x00"
)
def test_random_frames_never_break_the_connection_or_the_broker(payload: bytes) -> None:
    outcome, recorder = run(payload)
    check(outcome, recorder)


# --------------------------------------------------------------------------- edge tables


def queue_declare_with(table_body: bytes) -> bytes:
    table = struct.pack(">I", len(table_body)) + table_body
    return raw(1, 1, struct.pack(">HH", 50, 10) + b"\x00\x00\x01q\x00" + table)


HUGE_TIMESTAMP = b"\x01aT" + b"\xff" * 8  # 2**64-1 seconds: beyond datetime, fine for RabbitMQ


def test_huge_timestamp_argument_is_accepted() -> None:
    outcome, recorder = run(queue_declare_with(HUGE_TIMESTAMP))
    check(outcome, recorder)
    assert [type(f.method) for f in outcome.frames] == [ps.Queue.DeclareOk]


def test_huge_timestamp_header_is_accepted() -> None:
    props = struct.pack(">HI", 0x2000, len(HUGE_TIMESTAMP)) + HUGE_TIMESTAMP
    payload = (
        method(1, ps.Queue.Declare(queue="ts"))
        + method(1, ps.Basic.Publish(routing_key="ts"))
        + raw(2, 1, struct.pack(">HHQ", 60, 0, 0) + props)
        + method(1, ps.Queue.Declare(queue="ts", passive=True))
    )
    outcome, recorder = run(payload)  # (not fetched back: pika cannot decode such a header)
    check(outcome, recorder)
    counts = [f.method.message_count for f in outcome.frames]
    assert counts == [0, 1]


def test_deeply_nested_arguments_are_a_connection_error() -> None:
    outcome, recorder = run(queue_declare_with(nested_tables(2000)[4:]))
    check(outcome, recorder)
    assert [c.reply_code for c in outcome.closes()] in ([501], [502])


def test_huge_timestamp_in_client_properties_is_accepted() -> None:
    body = HUGE_TIMESTAMP
    outcome, recorder = run(
        method(1, ps.Basic.Qos()),
        check_probe=True,
        client_properties=struct.pack(">I", len(body)) + body,
    )
    assert outcome.handshake_done
    check(outcome, recorder)


def test_deeply_nested_client_properties_do_not_escape_serve() -> None:
    outcome, recorder = run(
        b"", client_properties=nested_tables(sys.getrecursionlimit() + 100), check_probe=True
    )
    assert outcome.serve_error is None
    assert not outcome.handshake_done  # refused before Tune-Ok: the socket just closes
    assert not recorder.internal_errors()


# --------------------------------------------------------------------------- fixed bugs


def test_nothing_but_close_ok_follows_connection_close() -> None:
    payload = method(1, ps.Confirm.Select()) + PUBLISH_TO_FQ + raw(0, 0, b"")  # frame type 0
    outcome, recorder = run(payload)
    assert [c.reply_code for c in outcome.closes()] == [501]
    check(outcome, recorder)
