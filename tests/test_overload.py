"""Overload: resource alarms block publishers (Connection.Blocked/Unblocked, as pika sees them)
and nothing is lost; a consumer that stops reading pauses only its own deliveries; limits on
connections, unacked deliveries and message size; many connections leave nothing behind.

trimq-only: each test configures and watches its own trimq-server. Nothing here is timed: the
checks are about what happens, not how fast.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from conftest import Broker, start_server, stop_server
from ctl_helpers import control, ctl, rss
from pika_helpers import pump, round_trip, wait_until

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: configures its own trimq-server"
)

MiB = 1024 * 1024


def configured_server(tmp_path: Path, toml: str) -> Broker:
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "trimq.toml").write_text(toml)
    return start_server(data, log_path=tmp_path / "server.log")


def status(server: Broker) -> dict[str, Any]:
    code, out, err = ctl(server, "status", "--formatter", "json")
    assert code == 0, err
    return json.loads("\n".join(out))


Configured = Callable[[str], Broker]


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Configured]:
    """Starts a server with this trimq.toml; stops it after the test."""
    started: list[Broker] = []

    def start(toml: str) -> Broker:
        started.append(configured_server(tmp_path, toml))
        return started[-1]

    yield start
    for node in started:
        stop_server(node)


@pytest.fixture
def server(configured: Configured) -> Broker:
    # without paging: a backlog would otherwise go to disk instead of raising the alarm
    return configured("[paging]\nenabled = false\n")


class Sampler(threading.Thread):
    """Samples the broker's RSS until stopped; keeps the highest."""

    def __init__(self, server: Broker) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.highest = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.highest = max(self.highest, rss(self.server))


def test_fast_publisher_is_blocked_under_the_memory_watermark_and_nothing_is_lost(
    server: Broker,
) -> None:
    body_size, count = 32 * 1024, 4000  # 128 MiB published in all
    setup = server.connect()
    ch = setup.channel()
    ch.queue_declare("flood")
    setup.close()
    watermark = rss(server) + 48 * MiB
    code, _out, err = ctl(server, "set_vm_memory_high_watermark", "absolute", str(watermark))
    assert code == 0, err

    received: list[bytes] = []
    consumer_done = threading.Event()

    def consume() -> None:
        conn = server.connect()
        cch = conn.channel()
        cch.basic_qos(prefetch_count=20)
        deadline = time.monotonic() + 120
        for method, _props, body in cch.consume("flood", inactivity_timeout=1):
            if method is None:
                if time.monotonic() > deadline or len(received) >= count:
                    break
                continue
            received.append(body[:8])
            cch.basic_ack(method.delivery_tag)
            time.sleep(0.001)  # a slow consumer: the publisher is many times faster
            if len(received) >= count:
                break
        conn.close()
        consumer_done.set()

    sampler = Sampler(server)
    sampler.start()
    events: list[tuple[str, str]] = []
    publisher = server.connect()
    publisher.add_on_connection_blocked_callback(
        lambda _c, frame: events.append(("blocked", frame.method.reason))
    )
    publisher.add_on_connection_unblocked_callback(
        lambda _c, _frame: events.append(("unblocked", ""))
    )
    pch = publisher.channel()
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    padding = b"x" * (body_size - 8)
    for n in range(count):
        pch.basic_publish("", "flood", b"%08d" % n + padding)
    publisher.process_data_events(0)
    assert consumer_done.wait(180), f"only {len(received)} of {count} consumed"
    assert pump(publisher, lambda: bool(events) and events[-1][0] == "unblocked", 10), events
    sampler.done.set()
    sampler.join()
    publisher.close()

    assert received == [b"%08d" % n for n in range(count)]  # all of them, in order
    assert ("blocked", "low on memory") in events
    assert events[-1] == ("unblocked", "")
    # Overshoot: what arrives between two checks (4 MiB), the read buffers and the bounded
    # output buffers of the two connections.
    assert sampler.highest <= watermark + 24 * MiB, (sampler.highest - watermark) / MiB
    log = (server.data_dir.parent / "server.log").read_text()
    assert '"resources.alarm_set"' in log and '"connection.blocked"' in log


def test_disk_alarm_blocks_publishers_until_it_clears(server: Broker) -> None:
    events: list[tuple[str, str]] = []
    conn = server.connect()
    conn.add_on_connection_blocked_callback(
        lambda _c, frame: events.append(("blocked", frame.method.reason))
    )
    conn.add_on_connection_unblocked_callback(lambda _c, _f: events.append(("unblocked", "")))
    ch = conn.channel()
    ch.queue_declare("disk")
    ch.basic_publish("", "disk", b"before")
    assert ctl(server, "set_disk_free_limit", "1000000TB")[0] == 0
    assert status(server)["alarms"] == ["disk"]
    ch.basic_publish("", "disk", b"during")
    assert pump(conn, lambda: bool(events))
    assert events == [("blocked", "low on disk")]
    rows = ctl(server, "list_connections", "state")[1]
    assert rows[-1] == "blocked"
    watcher = server.connect()  # a connection that does not publish keeps working
    assert watcher.channel().queue_declare("disk", passive=True).method.message_count >= 1
    watcher.close()
    assert ctl(server, "set_disk_free_limit", "50MB")[0] == 0
    assert pump(conn, lambda: len(events) == 2)
    assert events == [("blocked", "low on disk"), ("unblocked", "")]
    assert ch.queue_declare("disk", passive=True).method.message_count == 2
    assert [ch.basic_get("disk", auto_ack=True)[2] for _ in range(2)] == [b"before", b"during"]
    conn.close()


def test_status_reports_alarms_memory_and_disk(server: Broker) -> None:
    code, out, _err = ctl(server, "status")
    assert code == 0
    text = "\n".join(out)
    assert "Alarms\n\n(none)" in text
    assert "Calculation strategy: rss" in text
    assert "Memory high watermark setting: 0.4 of available memory, computed to: " in text
    assert "Low free disk space watermark: 0.05 gb" in text
    assert ctl(server, "set_vm_memory_high_watermark", "0.000001")[0] == 0
    assert wait_until(lambda: status(server)["alarms"] == ["memory"])
    code, out, _err = ctl(server, "status")
    assert any(line.startswith("Memory alarm on node ") for line in out), out
    assert ctl(server, "set_vm_memory_high_watermark", "0.4")[0] == 0
    code, _out, err = ctl(server, "set_vm_memory_high_watermark", "2")
    assert code == 65 and "The threshold should be a fraction between 0.0 and 1.0" in err[0]
    code, _out, err = ctl(server, "set_disk_free_limit", "bogus")
    assert code == 65 and err[0] == "Error (argument validation): Bad argument."


def test_a_consumer_that_never_reads_does_not_stop_others(configured: Configured) -> None:
    server = configured("[limits]\nconnection_output_buffer = 1048576\n")
    setup = server.connect()
    ch = setup.channel()
    ch.queue_declare("stuck")
    ch.queue_declare("flowing")
    setup.close()
    stuck = server.connect()  # consumes, then is never read again
    sch = stuck.channel()
    sch.basic_consume("stuck", lambda *a: None)
    publisher = server.connect()
    pch = publisher.channel()
    body = b"s" * 65536
    for _ in range(1000):  # 64 MiB for the consumer that does not read
        pch.basic_publish("", "stuck", body)
    for n in range(500):
        pch.basic_publish("", "flowing", b"%d" % n)
    reader = server.connect()
    rch = reader.channel()
    got = []
    for method, _props, payload in rch.consume("flowing", auto_ack=True, inactivity_timeout=5):
        if method is None:
            break
        got.append(payload)
        if len(got) == 500:
            break
    assert got == [b"%d" % n for n in range(500)]
    rows = control(server, "list_connections", items=["name", "send_pend"])
    pending = max(row["send_pend"] for row in rows)
    assert pending <= 1048576 + 65536 + 4096, pending  # one message past the limit at most
    stuck_queue = pch.queue_declare("stuck", passive=True).method.message_count
    assert stuck_queue > 500  # the rest wait in the queue, not in a buffer
    reader.close()
    publisher.close()


def test_connection_limit(configured: Configured) -> None:
    server = configured("[limits]\nconnection_max = 2\n")
    first, second = server.connect(), server.connect()
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        server.connect()  # closed in Connection.Open: pika takes it for a vhost refusal
    assert (
        "(530) 'NOT_ALLOWED - connection refused: node connection limit (2) is reached'"
    ) in str(info.value)
    first.close()
    third = server.connect()  # a place came free
    third.close()
    second.close()


def test_channel_unacked_limit_pauses_deliveries(configured: Configured) -> None:
    server = configured("[limits]\nchannel_unacked_max = 5\n")
    conn = server.connect()
    ch = conn.channel()
    ch.queue_declare("u")
    for n in range(12):
        ch.basic_publish("", "u", b"%d" % n)
    tags = []
    ch.basic_consume("u", lambda _c, method, _p, _b: tags.append(method.delivery_tag))
    assert pump(conn, lambda: len(tags) == 5)
    round_trip(ch, "u")
    assert len(tags) == 5  # no prefetch asked for, the broker's limit applies
    ch.basic_ack(tags[-1], multiple=True)
    assert pump(conn, lambda: len(tags) == 10)
    round_trip(ch, "u")
    assert len(tags) == 10
    ch.basic_qos(prefetch_count=2, global_qos=True)  # a lower channel prefetch wins
    ch.basic_ack(tags[-1], multiple=True)
    assert pump(conn, lambda: len(tags) == 12)
    round_trip(ch, "u")
    assert len(tags) == 12
    conn.close()


def test_message_size_limit(configured: Configured) -> None:
    server = configured("[limits]\nmax_message_size = 1000\n")
    conn = server.connect()
    ch = conn.channel()
    ch.queue_declare("big")
    ch.basic_publish("", "big", b"x" * 1000)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("", "big", b"x" * 1001)
        ch.queue_declare("big", passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000",
    )
    assert conn.channel().queue_declare("big", passive=True).method.message_count == 1
    conn.close()


def settled_status(server: Broker) -> dict[str, Any]:
    """The status once no connection is open and the task and file counts stopped moving."""
    previous: dict[str, Any] = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        current = control(server, "status")
        if current["connections"] == 0 and all(
            current[k] == previous.get(k) for k in ("tasks", "open_files")
        ):
            return current
        previous = current
        time.sleep(0.2)
    raise AssertionError(f"the broker did not settle: {previous}")


def test_many_connections_leave_no_tasks_or_descriptors_behind(server: Broker) -> None:
    warm = server.connect()  # the first connection creates lasting state (the vhost's caches)
    warm.channel()
    warm.close()
    before = settled_status(server)
    for _ in range(10):
        batch = [server.connect() for _ in range(200)]  # 2,000 in all, 200 open at a time
        for conn in batch:
            conn.channel()
        for conn in batch:
            conn.close()
    after = settled_status(server)
    assert (after["tasks"], after["open_files"]) == (before["tasks"], before["open_files"])
