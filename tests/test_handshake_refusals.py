"""Before a client has logged in it is not trusted: oversized frames, malformed logins and
refused passwords cost it time, and the sockets not yet authenticated are limited.

Observed on RabbitMQ 3.10 with raw sockets (these tests pass against it, TRIMQ_TEST_URL):
- Until Tune-Ok, a frame whose payload is over 4096 octets (the protocol's minimum frame_max;
  4096 itself is accepted, as after Tune-Ok) closes the socket 3 s later without any frame;
  likewise an unknown mechanism, a PLAIN or AMQPLAIN response that does not parse, and a
  Start-Ok that does not decode. Nothing sent meanwhile is read.
- A refused password: Connection.Close 403 at once to a client with the
  authentication_failure_close capability, nothing to others; then the socket stays open up to
  3 s, a Connection.Close gets its Close-Ok, and the client's Close-Ok ends it at once.

Times are measured, not slept: the close must come no earlier than 3 s (less a tolerance).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from amqp_wire import (
    CONNECTION_CLOSE,
    CONNECTION_CLOSE_OK,
    CONNECTION_START_OK,
    CONNECTION_TUNE,
    Frame,
    PeerClosed,
    WireConnection,
    frame,
    longstr,
    method_payload,
    shortstr,
    table,
)
from conftest import Broker, start_server, stop_server

DELAY = 3.0  # RabbitMQ's SILENT_CLOSE_DELAY and CLOSING_TIMEOUT
EARLIEST = DELAY - 0.3  # the close must not come before this
LATEST = DELAY + 3.0  # nor long after
PROMPT = 1.5  # "at once", with room for a loaded machine
LOGIN_REFUSED = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism {}. "
    "For details see the broker logfile."
)


def start_ok_args(
    mechanism: str = "PLAIN",
    response: bytes = b"\0guest\0guest",
    capability: bool = True,
    padding: int = 0,
) -> bytes:
    properties: dict[str, object] = {"product": "handshake-tests"}
    if capability:
        properties["capabilities"] = {"authentication_failure_close": True}
    if padding:
        properties["padding"] = "p" * padding
    return table(properties) + shortstr(mechanism) + longstr(response) + shortstr("en_US")


def start_ok_of_size(size: int) -> bytes:
    """A valid Start-Ok method frame whose payload is exactly `size` octets."""
    base = len(method_payload(CONNECTION_START_OK, start_ok_args(padding=1))) - 1
    payload = method_payload(CONNECTION_START_OK, start_ok_args(padding=size - base))
    assert len(payload) == size
    return frame(1, 0, payload)


@dataclass
class Outcome:
    """What the server sent after the request, and when it closed the socket (seconds after
    the request was sent)."""

    frames: list[tuple[float, Frame]] = field(default_factory=list)
    closed_after: float = -1.0

    def methods(self) -> list[tuple[int, int] | None]:
        return [f.class_method for _, f in self.frames]


def attempt(
    broker: Broker,
    request: Callable[[WireConnection], None],
    answer: Callable[[WireConnection, Frame], None] | None = None,
) -> Outcome:
    """Connect, read Connection.Start, run `request`, then read until the socket closes,
    letting `answer` reply to what arrives."""
    outcome = Outcome()
    with WireConnection(broker.host, broker.port, timeout=10) as conn:
        conn.start()
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server closed while a request was going out
            request(conn)
        try:
            while True:
                received = conn.read_frame(timeout=LATEST + 4)
                outcome.frames.append((time.monotonic() - started, received))
                if answer is not None:
                    answer(conn, received)
        except (PeerClosed, ConnectionResetError):
            outcome.closed_after = time.monotonic() - started
    return outcome


def send(data: bytes) -> Callable[[WireConnection], None]:
    return lambda conn: conn.send(data)


def then_after_tune(data: bytes) -> Callable[[WireConnection], None]:
    """A good login, then `data` while Tune-Ok is awaited."""

    def request(conn: WireConnection) -> None:
        conn.send_method(0, CONNECTION_START_OK, start_ok_args())
        assert conn.read_method().class_method == CONNECTION_TUNE
        conn.send(data)

    return request


def start_ok(mechanism: str, response: bytes, capability: bool = True) -> bytes:
    return frame(
        1, 0, method_payload(CONNECTION_START_OK, start_ok_args(mechanism, response, capability))
    )


def amqplain(values: dict[str, object]) -> bytes:
    return table(values)[4:]  # AMQPLAIN's response is a table without its length


CLOSE_OK = frame(1, 0, method_payload(CONNECTION_CLOSE_OK))
CLIENT_CLOSE = frame(
    1, 0, method_payload(CONNECTION_CLOSE, struct.pack(">H", 200) + shortstr("bye") + b"\0\0\0\0")
)

SILENT = {
    "start-ok-4097-octets": send(start_ok_of_size(4097)),
    "start-ok-106-KB": send(start_ok_of_size(106_000)),
    "frame-over-4096-before-tune-ok": then_after_tune(
        frame(1, 0, method_payload((10, 31), b"\0" * 5000))
    ),
    "unknown-mechanism": send(start_ok("NOSUCH", b"\0guest\0guest")),
    "plain-with-authorisation-id": send(start_ok("PLAIN", b"guest\0guest\0guest")),
    "plain-without-password": send(start_ok("PLAIN", b"\0guest")),
    "plain-with-a-third-nul": send(start_ok("PLAIN", b"\0guest\0gu\0est")),
    "amqplain-malformed": send(start_ok("AMQPLAIN", b"\x05LOGINS\x00\x00\x00\x09gu")),
    "amqplain-without-password": send(start_ok("AMQPLAIN", amqplain({"LOGIN": "guest"}))),
    "client-properties-truncated": send(
        frame(
            1, 0, method_payload(CONNECTION_START_OK, struct.pack(">I", 500) + start_ok_args()[4:])
        )
    ),
    "close-ok-does-not-shorten-it": send(start_ok_of_size(5000) + CLOSE_OK),
}


def test_silent_refusals_close_the_socket_3_s_later(broker: Broker) -> None:
    with ThreadPoolExecutor(len(SILENT)) as pool:
        outcomes = dict(
            zip(SILENT, pool.map(lambda r: attempt(broker, r), SILENT.values()), strict=True)
        )
    for name, outcome in outcomes.items():
        assert outcome.frames == [], name
        assert EARLIEST <= outcome.closed_after <= LATEST, (name, outcome.closed_after)


def test_start_ok_of_4096_octets_is_accepted(broker: Broker) -> None:
    with WireConnection(broker.host, broker.port) as conn:
        conn.start()
        conn.send(start_ok_of_size(4096))
        assert conn.read_method().class_method == CONNECTION_TUNE


REFUSED = {
    "capability": send(start_ok("PLAIN", b"\0guest\0wrong")),
    "no-capability": send(start_ok("PLAIN", b"\0guest\0wrong", capability=False)),
    "amqplain-password-not-a-string": send(
        start_ok("AMQPLAIN", amqplain({"LOGIN": "guest", "PASSWORD": 5}))
    ),
    "no-capability-close-ok-at-once": send(
        start_ok("PLAIN", b"\0guest\0wrong", capability=False) + CLOSE_OK
    ),
}


def answer_close(conn: WireConnection, received: Frame) -> None:
    if received.class_method == CONNECTION_CLOSE:
        conn.send(CLIENT_CLOSE)


def answer_close_ok(conn: WireConnection, received: Frame) -> None:
    if received.class_method == CONNECTION_CLOSE:
        conn.send(CLOSE_OK)


def test_refused_logins(broker: Broker) -> None:
    runs = [(name, request, None) for name, request in REFUSED.items()]
    runs += [
        ("capability-close-ok", REFUSED["capability"], answer_close_ok),
        ("capability-then-close", REFUSED["capability"], answer_close),
    ]
    with ThreadPoolExecutor(len(runs)) as pool:
        outcomes = dict(
            zip(
                [r[0] for r in runs],
                pool.map(lambda r: attempt(broker, r[1], r[2]), runs),
                strict=True,
            )
        )

    refused = LOGIN_REFUSED.format("PLAIN")
    # With the capability: 403 at once, then the socket stays until 3 s have passed...
    outcome = outcomes["capability"]
    assert outcome.methods() == [CONNECTION_CLOSE]
    elapsed, close = outcome.frames[0]
    args = close.args()
    assert (args.short(), args.shortstr(), args.short(), args.short()) == (403, refused, 0, 0)
    assert elapsed < PROMPT
    assert EARLIEST <= outcome.closed_after <= LATEST, outcome.closed_after
    # ... unless the client answers Close-Ok, which ends it at once;
    outcome = outcomes["capability-close-ok"]
    assert outcome.methods() == [CONNECTION_CLOSE] and outcome.closed_after < PROMPT
    # a Connection.Close from the client gets its Close-Ok, and the 3 s run on.
    outcome = outcomes["capability-then-close"]
    assert outcome.methods() == [CONNECTION_CLOSE, CONNECTION_CLOSE_OK]
    assert EARLIEST <= outcome.closed_after <= LATEST, outcome.closed_after
    # Without the capability: no frame, the same 3 s, and Close-Ok ends it at once too.
    outcome = outcomes["no-capability"]
    assert outcome.frames == []
    assert EARLIEST <= outcome.closed_after <= LATEST, outcome.closed_after
    outcome = outcomes["no-capability-close-ok-at-once"]
    assert outcome.frames == [] and outcome.closed_after < PROMPT
    # An AMQPLAIN password that is not a string is a refused login, not a syntax error.
    outcome = outcomes["amqplain-password-not-a-string"]
    assert outcome.methods() == [CONNECTION_CLOSE]
    args = outcome.frames[0][1].args()
    assert (args.short(), args.shortstr()) == (403, LOGIN_REFUSED.format("AMQPLAIN"))
    assert EARLIEST <= outcome.closed_after <= LATEST, outcome.closed_after


# --------------------------------------------------------------------------- trimq only

HANDSHAKE_MAX = 3


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "trimq.toml").write_text(f"[limits]\nhandshake_max = {HANDSHAKE_MAX}\n")
    log_path = tmp_path / "server.log"
    server = start_server(data, log_path=log_path)
    yield server, log_path
    assert stop_server(server) == 0


def refused_at_once(server: Broker) -> bool:
    """Whether a new socket is closed without a byte of Connection.Start."""
    with socket.create_connection((server.host, server.port), timeout=PROMPT) as sock:
        try:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(100) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def accepted(server: Broker, within: float = 5.0) -> WireConnection:
    """A new socket that got its Connection.Start (and so holds a place), trying until a
    place is free: the server frees one only once it has closed a socket."""
    deadline = time.monotonic() + within
    while True:
        conn = WireConnection(server.host, server.port, timeout=PROMPT)
        try:
            conn.start()
            return conn
        except (PeerClosed, ConnectionResetError, TimeoutError):
            conn.close()
            assert time.monotonic() < deadline, "no place came free"


@pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: configures its own trimq-server"
)
def test_sockets_not_yet_authenticated_are_limited(limited: tuple[Broker, Path]) -> None:
    server, log_path = limited
    waiting = [accepted(server) for _ in range(HANDSHAKE_MAX)]  # counted from the accept
    assert refused_at_once(server)
    assert "connection.handshake_limit_reached" in log_path.read_text()

    # Logging in frees a place (before Tune is sent); open connections do not count.
    waiting[0].start_ok()
    waiting[0].tune()
    waiting[0].open()
    others = [server.connect() for _ in range(HANDSHAKE_MAX)]
    waiting[0] = accepted(server)
    assert refused_at_once(server)

    # A refused login holds its place until its socket closes, 3 s later.
    waiting[1].send_method(
        0, CONNECTION_START_OK, start_ok_args(response=b"\0guest\0wrong", capability=False)
    )
    failed_at = time.monotonic()
    assert refused_at_once(server)
    assert waiting[1].read_until_closed(timeout=LATEST + 1) == b""
    assert time.monotonic() - failed_at >= EARLIEST
    waiting[1] = accepted(server)
    for conn in waiting:
        conn.close()
    for connection in others:
        assert connection.is_open
        connection.close()
