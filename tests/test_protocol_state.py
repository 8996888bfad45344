"""The protocol state machines (trimq/amqp/state.py) driven in-process, without trio or sockets.

`Server` below does with each answer of the machines what trimq/server/ does (the broker left
out: a handled method just gets its reply), so random frame sequences run by the thousand in
seconds. Invariants: the machines raise nothing but ConnectionError/ChannelError with a
RabbitMQ reply code (never ProtocolBug, never anything else); CLOSED is terminal; after our
Connection.Close only a Close-Ok follows; a channel we closed says nothing but Close-Ok to a
crossing Close; no more channels are open than channel_max; confirm and tx modes never mix.
tests/test_connection_fuzz.py keeps fuzzing the real connection over trio memory streams.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from codec_strategies import method_values, methods
from hypothesis import given, settings
from hypothesis import strategies as st

from trimq.amqp import frames, spec
from trimq.amqp.channel import ContentAssembler
from trimq.amqp.state import (
    CHANNEL_TRANSITIONS,
    CONNECTION_TRANSITIONS,
    MODE_TRANSITIONS,
    Action,
    ChannelAction,
    ChannelEvent,
    ChannelMachine,
    ChannelMode,
    ChannelState,
    ConnectionEvent,
    ConnectionMachine,
    ConnectionState,
    ProtocolBug,
)
from trimq.errors import REPLY_NAMES, AMQPError, ChannelError, ConnectionError
from trimq.server.channel import HANDLERS

ERROR_CODES = {code for code in REPLY_NAMES if code >= 300}
CHANNEL_MAX = 3


def frame(channel: int, method: spec.Method) -> frames.Frame:
    data = frames.method_frame(channel, method)
    return frames.Frame(frames.METHOD, channel, data[7:-1])


def closed(machine: ChannelMachine) -> bool:
    return machine.state is ChannelState.CLOSED


class Server:
    """What trimq/server does with the machines' answers; `sent` is (channel, what) in order."""

    def __init__(self) -> None:
        self.channels: dict[int, ChannelMachine] = {}
        self.assemblers: dict[int, ContentAssembler] = {}
        self.conn = ConnectionMachine(self.channels, CHANNEL_MAX)
        self.sent: list[tuple[int, str]] = []
        self.errors: list[AMQPError] = []
        self.conn.event(ConnectionEvent.PROTOCOL_HEADER)

    # -- the handshake (handshake.py)
    def handshake_frame(self, f: frames.Frame) -> None:
        try:
            method = self.conn.handshake_method(f)
        except ConnectionError as error:
            self.errors.append(error)
            if self.conn.tuned:
                self.conn.event(ConnectionEvent.REFUSE)
                self.sent.append((0, "connection.close"))
            else:
                self.conn.event(ConnectionEvent.GONE)
            return
        if method is None:
            return
        if type(method) is spec.ConnectionClose:
            self.sent.append((0, "connection.close-ok"))
            self.conn.event(ConnectionEvent.CLIENT_CLOSE)
            return
        event = {
            spec.ConnectionStartOk: ConnectionEvent.LOGIN,
            spec.ConnectionTuneOk: ConnectionEvent.TUNE_OK,
            spec.ConnectionOpen: ConnectionEvent.OPEN,
        }[type(method)]
        self.conn.event(event)
        self.sent.append((0, event.name))

    # -- after it (connection.py)
    def receive(self, f: frames.Frame) -> None:
        state = self.conn.state
        if state in (
            ConnectionState.AWAIT_START_OK,
            ConnectionState.AWAIT_TUNE_OK,
            ConnectionState.AWAIT_OPEN,
        ):
            self.handshake_frame(f)
            return
        try:
            action = self.conn.receive(f)
            if action is Action.TO_CHANNEL:
                self.channel_frame(f)
            elif action is Action.OPEN_CHANNEL:
                self.channels[f.channel] = ChannelMachine()
                self.assemblers[f.channel] = ContentAssembler(1000)
                self.sent.append((f.channel, "channel.open-ok"))
            elif action is Action.CLOSE:
                self.cleanup()
                self.sent.append((0, "connection.close-ok"))
            elif action is Action.CLOSE_OK:
                self.sent.append((0, "connection.close-ok"))
            elif action is Action.UPDATE_SECRET_OK:
                self.sent.append((0, "connection.update-secret-ok"))
        except ConnectionError as error:
            self.start_close(error)
        except ChannelError as error:  # outside any channel: treated as hard, as the reader
            self.start_close(ConnectionError(error.code, error.detail))

    def start_close(self, error: AMQPError) -> None:
        self.errors.append(error)
        if self.conn.event(ConnectionEvent.SERVER_CLOSE) is ConnectionState.CLOSED:
            return
        self.cleanup()
        self.sent.append((0, "connection.close"))

    def cleanup(self) -> None:
        for machine in self.channels.values():
            machine.event(ChannelEvent.GONE)
        self.channels.clear()

    # -- a channel (channel.py)
    def channel_frame(self, f: frames.Frame) -> None:
        number = f.channel
        machine = self.channels[number]
        if machine.state is ChannelState.CLOSING:
            if machine.while_closing(f) is ChannelAction.CLOSE_OK:
                self.sent.append((number, "channel.close-ok"))
            elif closed(machine):
                del self.channels[number]
            return
        try:
            command = self.assemblers[number].feed(f)
            if command is None:
                return
            method = command.method
            if (machine.mode, type(method)) in MODE_TRANSITIONS:
                before = machine.mode
                after = machine.select(method)
                assert {before, after} != {ChannelMode.TX, ChannelMode.CONFIRM}
                self.sent.append((number, type(method).NAME + "-ok"))
            elif type(method) in HANDLERS or type(method) is spec.BasicPublish:
                self.sent.append((number, "handled " + method.NAME))
            elif machine.method(method) is ChannelAction.CLOSE:
                del self.channels[number]
                self.sent.append((number, "channel.close-ok"))
        except ChannelError as error:
            self.errors.append(error)
            machine.event(ChannelEvent.SERVER_CLOSE)
            self.assemblers[number].reset()
            self.sent.append((number, "channel.close"))


CHANNEL_METHODS = [
    spec.ChannelOpen,
    spec.ChannelClose,
    spec.ChannelCloseOk,
    spec.ChannelCloseOk,
    spec.TxSelect,
    spec.TxSelect,
    spec.ConfirmSelect,
    spec.TxCommit,
    spec.TxRollback,
    spec.ConfirmSelect,
    spec.BasicAck,
    spec.QueueDeclare,
    spec.ChannelFlow,
]
CONNECTION_METHODS = [
    spec.ConnectionClose,
    spec.ConnectionCloseOk,
    spec.ConnectionUpdateSecret,
    spec.ConnectionBlocked,
    spec.ConnectionStartOk,
    spec.ConnectionTuneOk,
    spec.ConnectionOpen,
]


def of(classes: list[type[spec.Method]]) -> st.SearchStrategy[spec.Method]:
    return st.sampled_from(classes).flatmap(
        lambda cls: method_values(cls).map(lambda values: cls(**values))
    )


channels = st.sampled_from([1, 1, 1, 1, 2, 2, 2, 2, 3])  # 1 and 2 are open at first
# Mostly what a channel may see, now and then a publish with its content, rarely anything
# at all (which usually ends the connection).
channel_frames = st.builds(
    lambda channel, method: [frame(channel, method)], channels, of(CHANNEL_METHODS)
)
publishes = st.builds(
    lambda channel, body, extra: [
        frame(channel, spec.BasicPublish(0, "", "q", False, False)),
        frames.Frame(
            frames.HEADER, channel, struct.pack(">HHQH", 60, 0, max(0, len(body) + extra), 0)
        ),
        frames.Frame(frames.BODY, channel, body),
    ],
    channels,
    st.binary(max_size=1200),
    st.sampled_from([0, 0, 0, 0, 1, -1]),  # now and then a body that does not fit its header
)
rare_frames = st.one_of(
    st.builds(frame, st.just(0), of(CONNECTION_METHODS)),
    st.builds(frame, st.integers(0, CHANNEL_MAX + 1), methods()),
    st.builds(
        lambda channel, size: frames.Frame(
            frames.HEADER, channel, struct.pack(">HHQH", 60, 0, size, 0)
        ),
        st.integers(0, CHANNEL_MAX + 1),
        st.integers(0, 2000),
    ),
    st.builds(
        lambda channel, body: frames.Frame(frames.BODY, channel, body),
        st.integers(0, CHANNEL_MAX + 1),
        st.binary(max_size=600),
    ),
    st.builds(
        lambda channel: frames.Frame(frames.HEARTBEAT, channel, b""),
        st.integers(0, CHANNEL_MAX + 1),
    ),
).map(lambda f: [f])
STEPS = {"channel": channel_frames, "publish": publishes, "rare": rare_frames}
steps = st.sampled_from(["channel"] * 30 + ["publish"] * 8 + ["rare"]).flatmap(STEPS.__getitem__)
any_frames = st.lists(steps, max_size=40).map(lambda parts: [f for part in parts for f in part])


def run(sequence: list[frames.Frame], *, handshake: bool) -> Server:
    server = Server()
    if handshake:
        for f in (
            frame(0, spec.ConnectionStartOk({}, "PLAIN", b"\0guest\0guest", "en_US")),
            frame(0, spec.ConnectionTuneOk(CHANNEL_MAX, 131072, 0)),
            frame(0, spec.ConnectionOpen("/")),
            frame(1, spec.ChannelOpen("")),
            frame(2, spec.ChannelOpen("")),
        ):
            server.receive(f)
        assert server.conn.state is ConnectionState.RUNNING and len(server.channels) == 2
    for f in sequence:
        before = server.conn.state
        sent = len(server.sent)
        server.receive(f)
        after = server.conn.state
        assert len(server.channels) <= CHANNEL_MAX
        if before is ConnectionState.CLOSED:  # terminal: nothing changes, nothing is sent
            assert after is ConnectionState.CLOSED and len(server.sent) == sent
        if before is ConnectionState.CLOSING:  # after our Close only a Close-Ok
            assert all(what == "connection.close-ok" for _, what in server.sent[sent:])
        if before is not after:  # only along the table
            assert any(
                CONNECTION_TRANSITIONS.get((before, event)) is after for event in ConnectionEvent
            ), (before, after)
    for error in server.errors:
        assert error.code in ERROR_CODES, error
        assert isinstance(error, ConnectionError | ChannelError)
    return server


@settings(max_examples=400, deadline=None)
@given(any_frames)
def test_random_frames_after_the_handshake_keep_the_invariants(sequence: list[Any]) -> None:
    run(sequence, handshake=True)


@settings(max_examples=300, deadline=None)
@given(any_frames)
def test_random_frames_during_the_handshake_keep_the_invariants(sequence: list[Any]) -> None:
    server = run(sequence, handshake=False)
    if server.conn.state is ConnectionState.RUNNING:
        assert [what for _, what in server.sent[:3]] == ["LOGIN", "TUNE_OK", "OPEN"]


@settings(max_examples=300, deadline=None)
@given(any_frames)
def test_a_closing_channel_answers_only_close(sequence: list[Any]) -> None:
    server = Server()
    for f in (
        frame(0, spec.ConnectionStartOk({}, "PLAIN", b"", "en_US")),
        frame(0, spec.ConnectionTuneOk(CHANNEL_MAX, 131072, 0)),
        frame(0, spec.ConnectionOpen("/")),
        frame(1, spec.ChannelOpen("")),
        frame(1, spec.TxSelect()),
        frame(1, spec.ConfirmSelect(False)),  # 406: the channel closes
    ):
        server.receive(f)
    assert server.sent[-1] == (1, "channel.close")
    assert server.channels[1].state is ChannelState.CLOSING
    start = len(server.sent)
    for f in sequence:
        server.receive(f)
    if server.conn.state is ConnectionState.RUNNING:
        said = [what for number, what in server.sent[start:] if number == 1]
        reopened = "channel.open-ok" in said
        before_reopen = said[: said.index("channel.open-ok")] if reopened else said
        assert set(before_reopen) <= {"channel.close-ok"}


# -- the tables themselves -------------------------------------------------------------------


def test_every_state_is_reachable_and_closed_is_terminal() -> None:
    reached = {ConnectionState.AWAIT_HEADER}
    for _ in ConnectionState:
        reached |= {new for (old, _e), new in CONNECTION_TRANSITIONS.items() if old in reached}
    assert reached == set(ConnectionState)
    assert {
        new for (old, _e), new in CONNECTION_TRANSITIONS.items() if old is ConnectionState.CLOSED
    } == {ConnectionState.CLOSED}
    assert {
        new for (old, _e), new in CHANNEL_TRANSITIONS.items() if old is ChannelState.CLOSED
    } == {ChannelState.CLOSED}


def test_a_transition_missing_from_the_table_is_a_server_bug() -> None:
    machine = ConnectionMachine({}, 1)
    with pytest.raises(ProtocolBug):
        machine.event(ConnectionEvent.OPEN)
    channel = ChannelMachine()
    channel.event(ChannelEvent.CLIENT_CLOSE)
    with pytest.raises(ProtocolBug):
        channel.event(ChannelEvent.SERVER_CLOSE)


def running() -> ConnectionMachine:
    machine = ConnectionMachine({1: object()}, 2)
    for event in (
        ConnectionEvent.PROTOCOL_HEADER,
        ConnectionEvent.LOGIN,
        ConnectionEvent.TUNE_OK,
        ConnectionEvent.OPEN,
    ):
        machine.event(event)
    return machine


@pytest.mark.parametrize(
    ("f", "code", "text"),
    [
        (frame(0, spec.ChannelOpen("")), 504, "unexpected method in connection state running"),
        (frame(2, spec.BasicQos(0, 1, False)), 504, "expected 'channel.open'"),
        (frames.Frame(frames.BODY, 2, b"x"), 504, "expected 'channel.open'"),
        (frames.Frame(frames.HEARTBEAT, 1, b""), 505, None),
    ],
)
def test_errors_while_running_are_rabbitmqs(f: frames.Frame, code: int, text: str | None) -> None:
    with pytest.raises(ConnectionError) as raised:
        running().receive(f)
    assert raised.value.code == code
    if text is not None:
        assert raised.value.detail == text


def test_channel_max_is_enforced_with_rabbitmqs_text() -> None:
    machine = running()
    machine.channel_max = 1
    with pytest.raises(ConnectionError) as raised:
        machine.receive(frame(2, spec.ChannelOpen("")))
    assert (raised.value.code, raised.value.detail) == (
        530,
        "number of channels opened (1) has reached the negotiated channel_max (1)",
    )


def test_handshake_expects_its_method() -> None:
    machine = ConnectionMachine({}, 1)
    machine.event(ConnectionEvent.PROTOCOL_HEADER)
    assert machine.handshake_method(frames.Frame(frames.HEARTBEAT, 0, b"")) is None
    with pytest.raises(ConnectionError) as raised:
        machine.handshake_method(frame(0, spec.ConnectionOpen("/")))
    assert (raised.value.code, raised.value.detail) == (
        503,
        "expected 'connection.start-ok', got 'connection.open'",
    )
    assert not machine.tuned


@pytest.mark.parametrize(
    ("mode", "method", "text"),
    [
        (ChannelMode.CONFIRM, spec.TxSelect(), "cannot switch from confirm to tx mode"),
        (ChannelMode.TX, spec.ConfirmSelect(False), "cannot switch from tx to confirm mode"),
        (ChannelMode.PLAIN, spec.TxCommit(), "channel is not transactional"),
        (ChannelMode.CONFIRM, spec.TxRollback(), "channel is not transactional"),
    ],
)
def test_mode_changes_refused_with_rabbitmqs_406(
    mode: ChannelMode, method: spec.Method, text: str
) -> None:
    machine = ChannelMachine()
    machine.mode = mode
    with pytest.raises(ChannelError) as raised:
        machine.select(method)
    assert (raised.value.code, raised.value.detail, machine.mode) == (406, text, mode)


def test_second_channel_open_and_unknown_methods_are_hard_errors() -> None:
    with pytest.raises(ConnectionError) as raised:
        ChannelMachine().method(spec.ChannelOpen(""))
    assert (raised.value.code, raised.value.detail) == (504, "second 'channel.open' seen")
    with pytest.raises(ConnectionError) as raised:
        ChannelMachine().method(spec.ConnectionTune(0, 0, 0))
    assert (raised.value.code, raised.value.detail) == (503, "unimplemented method")
