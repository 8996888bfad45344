"""A client that sends requests and never reads the replies holds a bounded amount of the
broker's memory: the connection stops being read while the replies it has not taken are over
`connection_output_buffer` (TCP holds the client back), it is not dropped meanwhile, and it
gets every reply once it reads again. Deliveries waiting for a consumer that does not read
never stop the broker reading that connection (they stop by themselves).

trimq-only: it reads the RSS of its own trimq-server and asks its control socket.
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from amqp_wire import (
    BASIC_PUBLISH,
    CONNECTION_CLOSE_OK,
    QUEUE_DECLARE,
    QUEUE_DECLARE_OK,
    WireConnection,
    basic_publish_args,
    body_frame,
    content_header_frame,
    heartbeat_frame,
    method_frame,
    queue_declare_args,
    shortstr,
    table,
)
from conftest import Broker, start_server, stop_server
from ctl_helpers import control, rss

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: measures its own trimq-server"
)

MiB = 1024 * 1024
LIMIT = MiB  # connection_output_buffer in these tests
BODY_SIZE = 64000  # under 64 KiB, so each Get-Ok is a copy in the output: RSS shows it
PAIRS = 4000  # Get + Reject pairs: 256 MB of Get-Ok if nothing held the client back
BASIC_GET, BASIC_GET_OK, BASIC_GET_EMPTY, BASIC_REJECT = (60, 70), (60, 71), (60, 72), (60, 90)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Broker]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "trimq.toml").write_text(f"[limits]\nconnection_output_buffer = {LIMIT}\n")
    node = start_server(data, log_path=tmp_path / "server.log")
    yield node
    assert stop_server(node) == 0


class PeakRSS(threading.Thread):
    """Samples the broker's RSS until stopped; keeps the highest."""

    def __init__(self, server: Broker) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.highest = rss(server)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01) and self.server.process.poll() is None:  # type: ignore[union-attr]
            try:
                self.highest = max(self.highest, rss(self.server))
            except (OSError, AssertionError):  # the process just ended
                return


def get(queue: str) -> bytes:
    return method_frame(1, BASIC_GET, struct.pack(">H", 0) + shortstr(queue) + b"\x00")


def reject(tag: int, requeue: bool = True) -> bytes:
    return method_frame(1, BASIC_REJECT, struct.pack(">QB", tag, requeue))


def the_connection(server: Broker) -> dict[str, Any]:
    rows = control(server, "list_connections", items=["state", "send_oct", "send_pend"])
    assert len(rows) == 1, rows
    return rows[0]


def read_replies(
    conn: WireConnection, unsent: bytes, until: tuple[int, int], timeout: float = 120
) -> tuple[list[tuple[int, int]], bytes]:
    """Read every frame until the method `until`, sending `unsent` on the way and a heartbeat
    now and then (a client reading again behaves); returns the methods and the last body."""
    sock = conn.sock
    sock.setblocking(False)
    buffer = bytearray(conn.buffer)
    methods: list[tuple[int, int]] = []
    body = b""
    deadline = time.monotonic() + timeout
    last_beat = 0.0
    try:
        while time.monotonic() < deadline:
            if time.monotonic() - last_beat > 0.3:
                unsent += heartbeat_frame()
                last_beat = time.monotonic()
            readable, writable, _ = select.select([sock], [sock] if unsent else [], [], 0.3)
            if writable:
                with contextlib.suppress(BlockingIOError):
                    unsent = unsent[sock.send(unsent) :]
            if not readable:
                continue
            data = sock.recv(1 << 20)
            assert data, "the broker closed the connection"
            buffer += data
            pos = 0
            while len(buffer) - pos >= 7:
                kind, _channel, size = struct.unpack_from(">BHI", buffer, pos)
                if len(buffer) - pos < size + 8:
                    break
                if kind == 1:
                    methods.append(struct.unpack_from(">HH", buffer, pos + 7))
                elif kind == 3:
                    body = bytes(buffer[pos + 7 : pos + 7 + size])
                pos += size + 8
            del buffer[:pos]
            if methods and methods[-1] == until:
                conn.buffer = bytes(buffer)
                return methods, body
    finally:
        sock.setblocking(True)
    raise AssertionError(f"no {until} within {timeout} s; {len(methods)} methods read")


def test_client_that_does_not_read_is_held_back_not_dropped(server: Broker) -> None:
    conn = WireConnection(server.host, server.port, timeout=30).handshake(heartbeat=1)
    conn.open_channel(1)
    conn.send_method(1, QUEUE_DECLARE, queue_declare_args("held", exclusive=True))
    assert conn.read_method().class_method == QUEUE_DECLARE_OK
    body = bytes(range(256)) * (BODY_SIZE // 256)
    conn.send(
        method_frame(1, BASIC_PUBLISH, basic_publish_args("", "held"))
        + content_header_frame(1, 60, len(body))
        + body_frame(1, body)
    )

    sampler = PeakRSS(server)
    sampler.start()
    before = sampler.highest
    # Pipelined: Get, Reject(requeue) of the delivery it will have, PAIRS times, then a
    # Queue.Declare whose Declare-Ok marks the end. Nothing is read meanwhile.
    requests = b"".join(get("held") + reject(tag) for tag in range(1, PAIRS + 1))
    requests += method_frame(1, QUEUE_DECLARE, queue_declare_args("held", passive=True))
    conn.sock.setblocking(False)
    try:
        sent = conn.sock.send(requests)  # the kernel takes what it can; the rest waits
    except BlockingIOError:
        sent = 0
    conn.sock.setblocking(True)
    unsent = requests[sent:]

    deadline = time.monotonic() + 15
    while the_connection(server)["state"] != "flow":
        assert time.monotonic() < deadline, the_connection(server)
        time.sleep(0.05)
    # Not read for longer than two heartbeat intervals (1 s): still open, still held back,
    # and what it was sent or holds stays bounded (kernel buffers, twice the limit).
    held_since = time.monotonic()
    while time.monotonic() - held_since < 2.5:
        row = the_connection(server)
        assert row["state"] == "flow", row
        assert row["send_pend"] <= LIMIT + BODY_SIZE + 4096, row
        assert row["send_oct"] + row["send_pend"] < 48 * MiB, row
        time.sleep(0.1)
    sampler.done.set()
    sampler.join()
    growth = sampler.highest - before
    assert growth < 2 * LIMIT + 24 * MiB, growth / MiB

    methods, _ = read_replies(conn, unsent, QUEUE_DECLARE_OK)
    assert methods.count(BASIC_GET_OK) == PAIRS  # every request answered, in order
    assert BASIC_GET_EMPTY not in methods
    conn.send(get("held"))  # and the connection goes on working
    methods, last_body = read_replies(conn, b"", BASIC_GET_OK)
    assert methods == [BASIC_GET_OK] and last_body == body
    conn.close()
    log = (server.data_dir.parent / "server.log").read_text()
    assert "heartbeat_timeout" not in log


def test_closing_a_held_back_connection(server: Broker) -> None:
    """A connection held back can still be closed by the operator: the client that reads
    again finds the 320 after the replies it was owed, and the connection goes away."""
    conn = WireConnection(server.host, server.port, timeout=30).handshake()
    conn.open_channel(1)
    conn.send_method(1, QUEUE_DECLARE, queue_declare_args("held2", exclusive=True))
    assert conn.read_method().class_method == QUEUE_DECLARE_OK
    body = b"x" * BODY_SIZE
    conn.send(
        method_frame(1, BASIC_PUBLISH, basic_publish_args("", "held2"))
        + content_header_frame(1, 60, len(body))
        + body_frame(1, body)
    )
    requests = b"".join(get("held2") + reject(tag) for tag in range(1, 2001))
    conn.sock.setblocking(False)
    try:
        sent = conn.sock.send(requests)
    except BlockingIOError:
        sent = 0
    conn.sock.setblocking(True)
    deadline = time.monotonic() + 15
    while the_connection(server)["state"] != "flow":
        assert time.monotonic() < deadline, the_connection(server)
        time.sleep(0.05)
    closer = threading.Thread(
        target=control, args=(server, "close_all_connections"), kwargs={"reason": "maintenance"}
    )
    closer.start()
    methods, _ = read_replies(conn, requests[sent:], (10, 50))
    assert BASIC_GET_OK in methods
    conn.send_method(0, CONNECTION_CLOSE_OK)
    conn.read_until_closed(timeout=15)
    closer.join()
    assert control(server, "list_connections", items=["state"]) == []


def test_deliveries_waiting_do_not_stop_reading(server: Broker) -> None:
    """A consumer that does not read, with far more deliveries waiting than the limit, still
    has its input read: a blocking client publishing a large message on that connection
    meanwhile must not be stuck with the broker (the message is routed)."""
    conn = WireConnection(server.host, server.port, timeout=30).handshake()
    conn.open_channel(1)
    conn.send_method(1, QUEUE_DECLARE, queue_declare_args("backlog", auto_delete=True))
    assert conn.read_method().class_method == QUEUE_DECLARE_OK
    body = b"d" * 65536
    message = (
        method_frame(1, BASIC_PUBLISH, basic_publish_args("", "backlog"))
        + content_header_frame(1, 60, len(body))
        + body_frame(1, body)
    )
    conn.send(message * 400)  # 26 MB waiting for a consumer
    observer = server.connect()
    channel = observer.channel()
    channel.queue_declare("large-target")
    consume = struct.pack(">H", 0) + shortstr("backlog") + shortstr("ctag") + b"\x02"
    conn.send(method_frame(1, (60, 20), consume + table()))  # no_ack, never read from now on
    waiting, previous = 400, -1
    deadline = time.monotonic() + 15
    while waiting != previous:  # until deliveries stall: the consumer's buffers are full
        assert time.monotonic() < deadline
        time.sleep(0.3)
        previous = waiting
        waiting = channel.queue_declare("backlog", passive=True).method.message_count
    assert 0 < waiting <= 400 - LIMIT // len(body)  # at least the limit waits to go out
    # Now the broker's writer is stuck; deliveries from another publisher fill the output.
    channel.queue_purge("backlog")
    for _ in range(2 * LIMIT // len(body)):
        channel.basic_publish("", "backlog", body)
    deadline = time.monotonic() + 15
    while first_connection(server)["send_pend"] < LIMIT:  # delivered until it is full
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert channel.queue_declare("backlog", passive=True).method.message_count > 0
    large = b"L" * (16 * MiB)  # more than the kernel buffers hold: sendall needs the broker
    conn.sock.settimeout(15)
    conn.send(
        method_frame(1, BASIC_PUBLISH, basic_publish_args("", "large-target"))
        + content_header_frame(1, 60, len(large))
        + b"".join(body_frame(1, large[i : i + 131064]) for i in range(0, len(large), 131064))
    )
    deadline = time.monotonic() + 30
    while channel.queue_declare("large-target", passive=True).method.message_count != 1:
        assert time.monotonic() < deadline, "the large publish was not read"
        time.sleep(0.05)
    channel.queue_delete("large-target")
    conn.close()
    observer.close()


def first_connection(server: Broker) -> dict[str, Any]:
    """The first connection opened (the raw consumer)."""
    rows = control(server, "list_connections", items=["pid", "state", "send_pend"])
    return rows[0]
