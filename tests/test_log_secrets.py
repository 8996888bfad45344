"""No password and no message body byte reaches the log, whatever fails to decode.

Logins fail on purpose in every way (refused password, malformed PLAIN and AMQPLAIN responses,
a truncated Start-Ok, an oversized one, a bad frame end, an unknown mechanism, a malformed
Update-Secret), and content frames carrying a recognisable body are sent where they cannot
be decoded. Then the whole log is searched for any 6-octet (password) or 8-octet (body)
piece of them as text, repr, decimal, hex and base64. The close text sent to the client may
echo its own octets, as RabbitMQ's does; the log may not.

trimq-only: it reads the log of its own trimq-server.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pika
import pika.exceptions
import pytest
from amqp_wire import (
    BASIC_PUBLISH,
    CONNECTION_CLOSE,
    CONNECTION_CLOSE_OK,
    CONNECTION_START_OK,
    PeerClosed,
    WireConnection,
    basic_publish_args,
    content_header_frame,
    frame,
    longstr,
    method_frame,
    method_payload,
    shortstr,
    table,
)
from conftest import Broker, start_server, stop_server

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: reads the log of its own trimq-server",
)

PASSWORD = b"Zq7-pW9-xK3-mR5"
BODY = b"BODY-k8Jq-3vWx-7NzT-p2Lm-9cRd-4hYs"


def renderings(secret: bytes, window: int) -> set[str]:
    """Every way a piece of `secret` at least `window` octets long could be written."""
    found: set[str] = set()
    for start in range(len(secret) - window + 1):
        piece = secret[start : start + window]
        found |= {
            piece.decode("latin-1"),
            repr(piece)[2:-1],
            ",".join(map(str, piece)),
            ", ".join(map(str, piece)),
            " ".join(map(str, piece)),
            piece.hex(),
            piece.hex().upper(),
            piece.hex(" "),
            piece.hex(":"),
            "".join(f"\\x{b:02x}" for b in piece),
        }
    for shift in range(3):  # base64 of anything holding the secret, at each alignment
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + secret).decode()
            found.add(encoded[4 if shift else 0 : -4])
    return found


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    log_path = tmp_path / "server.log"
    server = start_server(tmp_path / "data", "--log-level", "debug", log_path=log_path)
    yield server, log_path
    if server.process is not None and server.process.poll() is None:
        stop_server(server)


def start_ok(mechanism: str, response: bytes, properties: bytes | None = None) -> bytes:
    props = (
        properties
        if properties is not None
        else table({"product": "secrets", "capabilities": {"authentication_failure_close": True}})
    )
    return method_payload(
        CONNECTION_START_OK, props + shortstr(mechanism) + longstr(response) + shortstr("en_US")
    )


LOGINS: dict[str, bytes] = {
    "refused-password": frame(1, 0, start_ok("PLAIN", b"\0guest\0" + PASSWORD)),
    "plain-with-authorisation-id": frame(1, 0, start_ok("PLAIN", b"x\0guest\0" + PASSWORD)),
    "plain-extra-nul": frame(1, 0, start_ok("PLAIN", b"\0guest\0" + PASSWORD + b"\0more")),
    "plain-no-user": frame(1, 0, start_ok("PLAIN", b"\0" + PASSWORD)),
    "truncated-table": frame(
        1,
        0,
        start_ok(
            "PLAIN",
            b"\0guest\0" + PASSWORD,
            properties=struct.pack(">I", 400) + table({"product": "secrets"})[4:],
        ),
    ),
    "oversized-start-ok": frame(
        1, 0, start_ok("PLAIN", b"\0guest\0" + PASSWORD, properties=table({"padding": "p" * 5000}))
    ),
    "bad-frame-end": frame(1, 0, start_ok("PLAIN", b"\0guest\0" + PASSWORD), end=0x00),
    "unknown-mechanism": frame(1, 0, start_ok("NOSUCH", b"\0guest\0" + PASSWORD)),
    "amqplain-bad-password": frame(
        1, 0, start_ok("AMQPLAIN", table({"LOGIN": "guest", "PASSWORD": PASSWORD})[4:])
    ),
    "amqplain-unknown-field-type": frame(
        1,
        0,
        start_ok(
            "AMQPLAIN", table({"LOGIN": "guest"})[4:] + shortstr("PASSWORD") + b"Q" + PASSWORD
        ),
    ),
    "amqplain-truncated": frame(
        1, 0, start_ok("AMQPLAIN", table({"LOGIN": "guest", "PASSWORD": PASSWORD})[4:-3])
    ),
    "amqplain-without-password": frame(
        1, 0, start_ok("AMQPLAIN", table({"LOGIN": "guest", "SECRET": PASSWORD})[4:])
    ),
    "method-on-channel-1": frame(1, 1, start_ok("PLAIN", b"\0guest\0" + PASSWORD)),
}


def after_login(data: bytes) -> Callable[[WireConnection], None]:
    def run(conn: WireConnection) -> None:
        conn.handshake()
        conn.open_channel(1)
        conn.send(data)

    return run


def publish(channel: int = 1) -> bytes:
    return method_frame(channel, BASIC_PUBLISH, basic_publish_args("", "nowhere"))


CONTENT: dict[str, bytes] = {
    "body-on-channel-0": frame(3, 0, BODY),
    "body-bad-frame-end": publish()
    + content_header_frame(1, 60, len(BODY))
    + frame(3, 1, BODY, end=0x41),
    "body-as-unknown-frame-type": frame(9, 1, BODY),
    "body-as-heartbeat-payload": frame(8, 0, BODY),
    "body-in-a-header-frame": publish() + frame(2, 1, BODY),
    "header-on-channel-0": frame(2, 0, struct.pack(">HHQ", 60, 0, len(BODY)) + BODY),
    "body-before-header": publish() + frame(3, 1, BODY),
    "body-without-publish": frame(3, 1, BODY),
    "body-in-publish-arguments": method_frame(1, BASIC_PUBLISH, b"\0\0" + BODY),
    "body-too-large": publish()
    + content_header_frame(1, 60, 10)
    + frame(3, 1, BODY)
    + method_frame(1, BASIC_PUBLISH, basic_publish_args("", "x")),
    "update-secret-malformed": method_frame(0, (10, 70), longstr(PASSWORD)[:-2]),
    "update-secret-bad-frame-end": frame(
        1, 0, method_payload((10, 70), longstr(PASSWORD) + shortstr("rotate")), end=0x00
    ),
}


def exchange(server: Broker, run: Callable[[WireConnection], None]) -> bytes:
    """Run one failing exchange; answer a Connection.Close; return what the server sent."""
    with WireConnection(server.host, server.port, timeout=10) as conn:
        try:
            run(conn)
            while True:
                received = conn.read_method(timeout=8)
                if received.class_method == CONNECTION_CLOSE:
                    conn.send_method(0, CONNECTION_CLOSE_OK)
                    return received.payload
        except (PeerClosed, ConnectionResetError, BrokenPipeError):
            return b""


def login_with(data: bytes) -> Callable[[WireConnection], None]:
    def run(conn: WireConnection) -> None:
        conn.start()
        conn.send(data)

    return run


def test_no_password_or_body_octet_reaches_the_log(logged: tuple[Broker, Path]) -> None:
    server, log_path = logged
    runs = {
        **{name: login_with(data) for name, data in LOGINS.items()},
        **{name: after_login(data) for name, data in CONTENT.items()},
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        closes = dict(
            zip(runs, pool.map(lambda run: exchange(server, run), runs.values()), strict=True)
        )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(
            pika.ConnectionParameters(
                server.host,
                server.port,
                connection_attempts=1,
                credentials=pika.PlainCredentials("guest", PASSWORD.decode()),
            )
        )
    # The client hears its own octets back, as from RabbitMQ (the first 16 of them) ...
    assert b"BODY-k8Jq-3vWx-7" in closes["body-on-channel-0"]
    assert stop_server(server) == 0

    log = log_path.read_text()
    # ... the log records every failure, without them.
    leaks = sorted(piece for piece in renderings(PASSWORD, 6) | renderings(BODY, 8) if piece in log)
    assert leaks == [], [line for line in log.splitlines() if any(p in line for p in leaks)]
    refused = ("refused-password", "amqplain-bad-password")  # and pika's: auth_failed
    assert log.count('"connection.auth_failed"') == len(refused) + 1
    assert log.count('"connection.error"') == len(LOGINS) + len(CONTENT) - len(refused)
