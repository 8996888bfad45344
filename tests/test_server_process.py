"""The trimq-server process itself: port reporting and graceful shutdown on SIGTERM.

trimq-only: these start their own server with conftest.start_server, so they are skipped when
TRIMQ_TEST_URL points the suite at another broker. The shutdown reply matches what RabbitMQ
sends to its clients when the node stops.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest
from amqp_wire import CONNECTION_CLOSE_OK, QUEUE_DECLARE, QUEUE_DECLARE_OK, WireConnection
from amqp_wire import queue_declare_args as declare_args
from conftest import start_server, stop_server

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: starts its own trimq-server process"
)

SHUTDOWN = (320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'")


def test_port_zero_reports_chosen_port(tmp_path: Path) -> None:
    first = start_server(tmp_path / "a")  # --port 0
    second = start_server(tmp_path / "b")
    try:
        assert first.port > 0 and second.port > 0 and first.port != second.port
        for server in (first, second):
            with socket.create_connection((server.host, server.port), timeout=5):
                pass
        conn = first.connect()
        assert conn.channel().queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")
        conn.close()
    finally:
        assert stop_server(first) == 0
        assert stop_server(second) == 0


def test_sigterm_closes_connections_and_exits_zero(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    assert server.process is not None
    conn = server.connect()
    ch = conn.channel()
    ch.queue_declare("", exclusive=True)
    raw = WireConnection(server.host, server.port, timeout=5).handshake()
    try:
        server.process.send_signal(signal.SIGTERM)

        close = raw.expect_close()
        assert (close.channel, close.reply_code, close.reply_text) == (0, *SHUTDOWN)
        assert (close.class_id, close.method_id) == (0, 0)
        raw.send_method(0, CONNECTION_CLOSE_OK)

        deadline = time.monotonic() + 5
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.1)
        assert (info.value.reply_code, info.value.reply_text) == SHUTDOWN
        assert conn.is_closed and ch.is_closed

        assert server.process.wait(10) == 0
    finally:
        raw.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_sigterm_with_no_clients_exits_zero(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    with WireConnection(server.host, server.port, timeout=5) as raw:
        raw.handshake()
        raw.open_channel(1)
        raw.send_method(1, QUEUE_DECLARE, declare_args("", exclusive=True))
        assert raw.read_method().class_method == QUEUE_DECLARE_OK
        raw.send_method(0, (10, 50), b"\x00\xc8\x03bye\x00\x00\x00\x00")
        assert raw.read_method().class_method == CONNECTION_CLOSE_OK
    assert stop_server(server) == 0


def test_sigterm_during_handshake(tmp_path: Path) -> None:
    """A client that has only sent the protocol header is simply disconnected."""
    server = start_server(tmp_path)
    assert server.process is not None
    with WireConnection(server.host, server.port, timeout=5) as raw:
        raw.start()
        server.process.send_signal(signal.SIGTERM)
        raw.read_until_closed(timeout=5)
    assert server.process.wait(10) == 0
