"""Bad input ends in the right close and exactly one structured log line; stalled peers go.

trimq-only: these start their own trimq-server to read its JSON log.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from amqp_wire import CONNECTION_CLOSE_OK, PeerClosed, WireConnection
from conftest import Broker, start_server, stop_server

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: reads the log of its own trimq-server",
)


@pytest.fixture
def logged_server(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    log_path = tmp_path / "server.log"
    server = start_server(tmp_path / "data", log_path=log_path)
    yield server, log_path
    assert stop_server(server) == 0


def events(log_path: Path, name: str, deadline: float = 5.0) -> list[dict]:
    """The log records with event `name`, waiting up to `deadline` seconds for the first."""
    end = time.monotonic() + deadline
    while True:
        records = []
        for line in log_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line still being written, or not JSON at all
        found = [r for r in records if isinstance(r, dict) and r.get("event") == name]
        if found or time.monotonic() > end:
            return found
        time.sleep(0.05)


def test_frame_error_logs_one_line_with_code(logged_server: tuple[Broker, Path]) -> None:
    server, log_path = logged_server
    with WireConnection(server.host, server.port).handshake() as conn:
        conn.send(struct.pack(">BHI", 1, 0, 5) + b"\x00\x14\x00\x0a\x00" + b"\x00")
        close = conn.expect_close()
        assert close.reply_code == 501
        conn.send_method(0, CONNECTION_CLOSE_OK)
    errors = events(log_path, "connection.error")
    assert len(errors) == 1
    assert errors[0]["code"] == 501
    # the client's octets are in the reply text (as RabbitMQ), not in the log
    assert close.reply_text == (
        "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: {invalid_frame_end_marker,0}"
    )
    assert errors[0]["text"] == (
        "FRAME_ERROR - type 1, octets = <<5 octets>>: {invalid_frame_end_marker,0}"
    )
    assert errors[0]["level"] == "info"


def test_channel_error_logs_one_line(logged_server: tuple[Broker, Path]) -> None:
    server, log_path = logged_server
    conn = server.connect()
    channel = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        channel.queue_declare("nosuch-queue", passive=True)
    conn.close()
    errors = events(log_path, "channel.error")
    assert [(e["code"], e["text"], e["channel"]) for e in errors] == [
        (404, "NOT_FOUND - no queue 'nosuch-queue' in vhost '/'", 1)
    ]


def test_failed_login_is_logged_without_password(logged_server: tuple[Broker, Path]) -> None:
    server, log_path = logged_server
    params = pika.ConnectionParameters(
        server.host,
        server.port,
        credentials=pika.PlainCredentials("guest", "s3cr3t-value"),
        connection_attempts=1,
    )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(params)
    failures = events(log_path, "connection.auth_failed")
    assert len(failures) == 1 and failures[0]["user"] == "guest"
    assert "s3cr3t-value" not in log_path.read_text()


def test_open_and_close_are_logged(logged_server: tuple[Broker, Path]) -> None:
    server, log_path = logged_server
    conn = server.connect()
    conn.close()
    opened = events(log_path, "connection.opened")
    closed = events(log_path, "connection.closed")
    assert len(opened) == 1 and opened[0]["user"] == "guest" and opened[0]["vhost"] == "/"
    assert len(closed) == 1 and closed[0]["peer"] == opened[0]["peer"]


def test_client_stalled_mid_frame_is_dropped(logged_server: tuple[Broker, Path]) -> None:
    """Half a frame and then silence: with heartbeat 1 s the server drops the peer after two
    intervals without anything received, and keeps serving others."""
    server, log_path = logged_server
    with WireConnection(server.host, server.port, timeout=10).handshake(heartbeat=1) as conn:
        conn.send(struct.pack(">BHI", 1, 1, 100) + b"\x00\x14")  # a method frame cut short
        started = time.monotonic()
        with pytest.raises(PeerClosed):
            while True:  # heartbeats arrive until the server gives up on us
                conn.read_frame(timeout=5)
        assert 1.5 < time.monotonic() - started < 6
    timeouts = events(log_path, "connection.heartbeat_timeout")
    assert len(timeouts) == 1 and timeouts[0]["timeout"] == 1
    other = server.connect()
    assert other.channel().queue_declare("", exclusive=True).method.queue
    other.close()


def test_handshake_stalled_before_open_is_dropped(tmp_path: Path) -> None:
    """A client that connects and never finishes the handshake is dropped after the handshake
    timeout (10 s by default, 1 s here)."""
    server = start_server(tmp_path / "data", "--handshake-timeout", "1")
    try:
        sock = socket.create_connection((server.host, server.port), timeout=5)
        sock.sendall(b"AMQP")  # half a protocol header, then nothing
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 4
        sock.close()
    finally:
        assert stop_server(server) == 0
