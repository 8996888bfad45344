"""The protocol state of a connection and of its channels, without I/O (as h11's _state.py).

Which frame may come in which state, what the server does with it and the error RabbitMQ
answers when it may not come are decided here, from named states and transition tables; the
server (trimq/server/) only moves bytes, runs timers and calls the broker. Each decision is
a plain function of the state and the frame, so tests drive these machines in-process
without sockets or trio (tests/test_protocol_state.py).

The hot paths do not come here: an open channel's frames go straight to it, and a channel
dispatches the methods it has handlers for before asking `ChannelMachine.method`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from trimq.amqp import frames, spec
from trimq.errors import (
    CHANNEL_ERROR,
    COMMAND_INVALID,
    FRAME_ERROR,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    PRECONDITION_FAILED,
    AMQPError,
    ChannelError,
    ConnectionError,
)


class ProtocolBug(RuntimeError):
    """The server asked for a transition the table does not have: a bug, never the client's."""


# -- the connection -------------------------------------------------------------------------


class ConnectionState(Enum):
    AWAIT_HEADER = "awaiting the protocol header"
    AWAIT_START_OK = "awaiting connection.start-ok"
    AWAIT_TUNE_OK = "awaiting connection.tune-ok"
    AWAIT_OPEN = "awaiting connection.open"
    RUNNING = "running"
    CLOSING = "closing"  # we sent Connection.Close and wait for the Close-Ok
    REFUSED = "refused"  # the handshake was refused: only Close and Close-Ok are answered
    CLOSED = "closed"  # nothing more is read


class ConnectionEvent(Enum):
    PROTOCOL_HEADER = "a valid protocol header (Connection.Start sent)"
    LOGIN = "credentials accepted (Connection.Tune sent)"
    TUNE_OK = "Connection.Tune-Ok accepted"
    OPEN = "Connection.Open accepted (Open-Ok sent)"
    CLIENT_CLOSE = "the client's Connection.Close (answered with Close-Ok)"
    SERVER_CLOSE = "we send Connection.Close (an error, or a forced close)"
    REFUSE = "the handshake is refused after Tune-Ok, or the login is refused"
    CLOSE_OK = "the client's Connection.Close-Ok"
    GONE = "the socket is done (peer gone, heartbeat timeout, silent refusal, reader ended)"


_C = ConnectionState
_E = ConnectionEvent
_HANDSHAKE = (_C.AWAIT_HEADER, _C.AWAIT_START_OK, _C.AWAIT_TUNE_OK, _C.AWAIT_OPEN)

CONNECTION_TRANSITIONS: dict[tuple[ConnectionState, ConnectionEvent], ConnectionState] = {
    (_C.AWAIT_HEADER, _E.PROTOCOL_HEADER): _C.AWAIT_START_OK,
    (_C.AWAIT_START_OK, _E.LOGIN): _C.AWAIT_TUNE_OK,
    (_C.AWAIT_START_OK, _E.REFUSE): _C.REFUSED,
    (_C.AWAIT_TUNE_OK, _E.TUNE_OK): _C.AWAIT_OPEN,
    (_C.AWAIT_OPEN, _E.OPEN): _C.RUNNING,
    (_C.AWAIT_OPEN, _E.REFUSE): _C.REFUSED,
    (_C.RUNNING, _E.CLIENT_CLOSE): _C.CLOSED,
    (_C.RUNNING, _E.SERVER_CLOSE): _C.CLOSING,
    (_C.CLOSING, _E.CLIENT_CLOSE): _C.CLOSED,  # the closes crossed: ours is answered
    (_C.CLOSING, _E.CLOSE_OK): _C.CLOSED,
    (_C.CLOSING, _E.SERVER_CLOSE): _C.CLOSED,  # a second close while closing: give up
    (_C.CLOSED, _E.SERVER_CLOSE): _C.CLOSED,  # nothing more is sent
    (_C.REFUSED, _E.CLOSE_OK): _C.CLOSED,
    **{(state, _E.CLIENT_CLOSE): _C.CLOSED for state in _HANDSHAKE[1:]},
    **{(state, _E.GONE): _C.CLOSED for state in _C},
}

# The method each handshake state waits for.
EXPECTED: dict[ConnectionState, type[spec.Method]] = {
    _C.AWAIT_START_OK: spec.ConnectionStartOk,
    _C.AWAIT_TUNE_OK: spec.ConnectionTuneOk,
    _C.AWAIT_OPEN: spec.ConnectionOpen,
}


class Action(Enum):
    """What the server does with a frame, once the machine has taken it."""

    IGNORE = "nothing"
    TO_CHANNEL = "hand the frame to its open channel"
    OPEN_CHANNEL = "open the channel and answer Channel.Open-Ok"
    CLOSE = "run the cleanup and answer Connection.Close-Ok"
    CLOSE_OK = "answer Connection.Close-Ok"
    UPDATE_SECRET_OK = "answer Connection.Update-Secret-Ok"


class ConnectionMachine:
    """A connection's state; `channels` is the server's map of open channels (read only)."""

    __slots__ = ("channel_max", "channels", "opened", "state")

    def __init__(self, channels: Mapping[int, object], channel_max: int) -> None:
        self.state = ConnectionState.AWAIT_HEADER
        self.channels = channels
        self.channel_max = channel_max
        self.opened = False  # it reached RUNNING once (counted among open connections)

    def event(self, event: ConnectionEvent) -> ConnectionState:
        try:
            state = CONNECTION_TRANSITIONS[self.state, event]
        except KeyError:
            raise ProtocolBug(f"{event.name} in connection state {self.state.name}") from None
        if state is ConnectionState.RUNNING:
            self.opened = True
        self.state = state
        return state

    @property
    def tuned(self) -> bool:
        """Past Tune-Ok: an error is answered with Connection.Close, not a silent close."""
        return self.state not in _HANDSHAKE[:3]

    def handshake_method(self, frame: frames.Frame) -> spec.Method | None:
        """The method a handshake state waits for (None: a heartbeat, skipped); a
        Connection.Close is returned too (answer Close-Ok, then `CLIENT_CLOSE`)."""
        expected = EXPECTED[self.state]
        if frame.type == frames.HEARTBEAT:
            return None
        if frame.type != frames.METHOD or frame.channel != 0:
            raise ConnectionError(
                COMMAND_INVALID,
                f"expected '{expected.NAME}', got a frame of type "
                f"{frame.type} on channel {frame.channel}",
            )
        method = frames.decode_method(frame.payload)
        if type(method) is spec.ConnectionClose or type(method) is expected:
            return method
        raise ConnectionError(
            COMMAND_INVALID,
            f"expected '{expected.NAME}', got '{method.NAME}'",
            method.CLASS_ID,
            method.METHOD_ID,
        )

    def receive(self, frame: frames.Frame) -> Action:
        """A frame after the handshake (RUNNING, CLOSING or REFUSED); raises the connection
        error RabbitMQ answers. The server hands an open channel's frames to it directly
        while RUNNING, without asking (the same answer: `TO_CHANNEL`)."""
        state = self.state
        if state is ConnectionState.RUNNING:
            return self._running(frame)
        if state is ConnectionState.CLOSED:
            return Action.IGNORE
        if frame.channel or frame.type != frames.METHOD:
            return Action.IGNORE
        if state is ConnectionState.REFUSED:
            try:
                method = frames.decode_method(frame.payload)
            except AMQPError:
                return Action.IGNORE
        else:
            method = frames.decode_method(frame.payload)
        kind = type(method)
        if kind is spec.ConnectionCloseOk:
            self.event(ConnectionEvent.CLOSE_OK)
        elif kind is spec.ConnectionClose:
            if state is ConnectionState.CLOSING:
                self.event(ConnectionEvent.CLIENT_CLOSE)
            return Action.CLOSE_OK  # REFUSED answers and goes on waiting for the Close-Ok
        return Action.IGNORE

    def _running(self, frame: frames.Frame) -> Action:
        number = frame.channel
        if number:
            if frame.type == frames.HEARTBEAT:
                raise frames.unexpected_frame(frame.type, b"")
            if number in self.channels:
                return Action.TO_CHANNEL
            return self._open_channel(frame)
        if frame.type == frames.HEARTBEAT:
            return Action.IGNORE
        if frame.type != frames.METHOD:
            raise frames.unexpected_frame(frame.type, frame.payload)
        try:
            method = frames.decode_method(frame.payload)
        except ConnectionError as error:
            if error.code != FRAME_ERROR:
                raise
            # RabbitMQ's connection process fails on a channel-0 method it cannot decode once
            # the connection is open: 541 with no detail and no method named
            raise ConnectionError(INTERNAL_ERROR, "", log_detail=error.log_detail) from None
        kind = type(method)
        if kind is spec.ConnectionClose:
            self.event(ConnectionEvent.CLIENT_CLOSE)
            return Action.CLOSE
        if kind is spec.ConnectionUpdateSecret:
            return Action.UPDATE_SECRET_OK
        if kind is spec.ConnectionBlocked or kind is spec.ConnectionUnblocked:
            return Action.IGNORE
        raise ConnectionError(
            CHANNEL_ERROR,
            "unexpected method in connection state running",
            method.CLASS_ID,
            method.METHOD_ID,
        )

    def _open_channel(self, frame: frames.Frame) -> Action:
        if frame.type != frames.METHOD:
            raise ConnectionError(CHANNEL_ERROR, "expected 'channel.open'")
        method = frames.decode_method(frame.payload)
        if type(method) is not spec.ChannelOpen:
            raise ConnectionError(
                CHANNEL_ERROR, "expected 'channel.open'", method.CLASS_ID, method.METHOD_ID
            )
        count = len(self.channels)
        if count >= self.channel_max:
            raise ConnectionError(
                NOT_ALLOWED,
                f"number of channels opened ({count}) has reached "
                f"the negotiated channel_max ({self.channel_max})",
            )
        return Action.OPEN_CHANNEL


# -- channels -------------------------------------------------------------------------------


class ChannelState(Enum):
    OPEN = "open"
    CLOSING = "closing"  # we sent Channel.Close and wait for the Close-Ok
    CLOSED = "closed"  # gone: its number may be reused


class ChannelEvent(Enum):
    CLIENT_CLOSE = "the client's Channel.Close (answered with Close-Ok)"
    SERVER_CLOSE = "we send Channel.Close (a soft error)"
    CLOSE_OK = "the client's Channel.Close-Ok"
    GONE = "the connection ends"


_S = ChannelState
_V = ChannelEvent

CHANNEL_TRANSITIONS: dict[tuple[ChannelState, ChannelEvent], ChannelState] = {
    (_S.OPEN, _V.CLIENT_CLOSE): _S.CLOSED,
    (_S.OPEN, _V.SERVER_CLOSE): _S.CLOSING,
    (_S.CLOSING, _V.CLOSE_OK): _S.CLOSED,
    **{(state, _V.GONE): _S.CLOSED for state in _S},
}


class ChannelMode(Enum):
    """Publisher confirms and transactions exclude each other, and neither is left."""

    PLAIN = "plain"
    CONFIRM = "confirm"
    TX = "tx"


_M = ChannelMode

# (mode, method) -> the mode after it, or RabbitMQ's 406 detail refusing it.
MODE_TRANSITIONS: dict[tuple[ChannelMode, type[spec.Method]], ChannelMode | str] = {
    (_M.PLAIN, spec.ConfirmSelect): _M.CONFIRM,
    (_M.CONFIRM, spec.ConfirmSelect): _M.CONFIRM,
    (_M.TX, spec.ConfirmSelect): "cannot switch from tx to confirm mode",
    (_M.PLAIN, spec.TxSelect): _M.TX,
    (_M.TX, spec.TxSelect): _M.TX,
    (_M.CONFIRM, spec.TxSelect): "cannot switch from confirm to tx mode",
    (_M.TX, spec.TxCommit): _M.TX,
    (_M.TX, spec.TxRollback): _M.TX,
    **{
        (mode, kind): "channel is not transactional"
        for mode in (_M.PLAIN, _M.CONFIRM)
        for kind in (spec.TxCommit, spec.TxRollback)
    },
}


class ChannelAction(Enum):
    IGNORE = "nothing"
    CLOSE = "run the channel's cleanup and answer Channel.Close-Ok"
    CLOSE_OK = "answer Channel.Close-Ok"


class ChannelMachine:
    """A channel's state and mode."""

    __slots__ = ("mode", "state")

    def __init__(self) -> None:
        self.state = ChannelState.OPEN
        self.mode = ChannelMode.PLAIN

    def event(self, event: ChannelEvent) -> ChannelState:
        try:
            state = CHANNEL_TRANSITIONS[self.state, event]
        except KeyError:
            raise ProtocolBug(f"{event.name} in channel state {self.state.name}") from None
        self.state = state
        return state

    def select(self, method: spec.Method) -> ChannelMode:
        """Tx.Select, Confirm.Select, Tx.Commit or Tx.Rollback: the mode it leaves the channel
        in, or RabbitMQ's 406."""
        outcome = MODE_TRANSITIONS[self.mode, type(method)]
        if isinstance(outcome, str):
            raise ChannelError(PRECONDITION_FAILED, outcome)
        self.mode = outcome
        return outcome

    def method(self, method: spec.Method) -> ChannelAction:
        """A complete method with no handler on an open channel."""
        kind = type(method)
        if kind is spec.ChannelClose:
            self.event(ChannelEvent.CLIENT_CLOSE)
            return ChannelAction.CLOSE
        if kind is spec.ChannelCloseOk:
            return ChannelAction.IGNORE
        if kind is spec.ChannelOpen:
            raise ConnectionError(CHANNEL_ERROR, "second 'channel.open' seen")
        raise ConnectionError(COMMAND_INVALID, "unimplemented method")

    def while_closing(self, frame: frames.Frame) -> ChannelAction:
        """After we sent Channel.Close only Close-Ok (or a crossing Close) matters."""
        if frame.type != frames.METHOD:
            return ChannelAction.IGNORE
        kind = type(frames.decode_method(frame.payload))
        if kind is spec.ChannelCloseOk:
            self.event(ChannelEvent.CLOSE_OK)
            return ChannelAction.IGNORE
        if kind is spec.ChannelClose:
            return ChannelAction.CLOSE_OK
        return ChannelAction.IGNORE
