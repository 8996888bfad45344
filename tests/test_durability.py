"""Durable definitions and persistent messages survive restarts, clean or kill -9.

trimq-only: each test runs its own trimq-server on a private data directory and restarts it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
from conftest import Broker, durable_dead_letter_target, start_server, stop_server
from pika_helpers import wait_until

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: restarts its own trimq-server"
)

PERSISTENT = pika.BasicProperties(delivery_mode=2)


class Node:
    """A trimq-server on one data directory that a test can stop, kill and start again."""

    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.logs = root
        self.server: Broker | None = None
        self.starts = 0

    def start(self) -> Broker:
        self.starts += 1
        self.server = start_server(
            self.data,
            "--wal-segment-size",
            "65536",
            log_path=self.logs / f"server-{self.starts}.log",
        )
        return self.server

    def stop(self) -> int:
        assert self.server is not None
        code = stop_server(self.server)
        self.server = None
        return code

    def kill(self) -> None:
        assert self.server is not None and self.server.process is not None
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait()
        self.server = None

    def log_events(self, name: str) -> list[dict]:
        """The log records named `name` (a line still being written is left out)."""
        records = []
        for line in (self.logs / f"server-{self.starts}.log").read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                records.append(record)
        return records


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    n.start()
    yield n
    if n.server is not None:
        n.stop()


def kill_when_durable(
    node: Node,
    channel: pika.adapters.blocking_connection.BlockingChannel,
) -> pika.adapters.blocking_connection.BlockingChannel:
    """Make everything done so far durable (a confirmed publish after it), SIGKILL the broker,
    start it again and return a channel on it."""
    channel.queue_declare("sync", durable=True)
    publish_confirmed(channel, [b"barrier"], "sync")
    node.kill()
    return node.start().connect().channel()


def drain(
    channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, ack: bool = True
) -> list[tuple[bytes, bool]]:
    """Every message in `queue` via basic_get: (body, redelivered)."""
    got = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=ack)
        if method is None:
            return got
        got.append((body, method.redelivered))


def publish_confirmed(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    bodies: list[bytes],
    routing_key: str,
    exchange: str = "",
    properties: pika.BasicProperties = PERSISTENT,
) -> None:
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish(exchange, routing_key, body, properties)


@pytest.mark.parametrize("stop", ["clean", "kill"])
def test_persistent_messages_survive_in_order(node: Node, stop: str) -> None:
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    ch.queue_declare("jobs", durable=True)
    ch.queue_declare("scratch")  # not durable: gone after a restart
    bodies = [b"job-%03d" % i for i in range(300)]
    publish_confirmed(ch, bodies, "jobs")
    ch.basic_publish("", "jobs", b"transient")  # delivery_mode 1: memory only
    ch.basic_publish("", "scratch", b"x", PERSISTENT)
    conn.close()
    node.stop() if stop == "clean" else node.kill()

    conn = node.start().connect()
    ch = conn.channel()
    assert ch.queue_declare("jobs", durable=True, passive=True).method.message_count == 300
    assert drain(ch, "jobs") == [(b, False) for b in bodies]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("scratch", passive=True)
    assert info.value.reply_code == 404
    conn.close()


def test_acked_messages_stay_acked_and_unacked_come_back_redelivered(node: Node) -> None:
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    ch.queue_declare("work", durable=True)
    publish_confirmed(ch, [b"a", b"b", b"c", b"d", b"e"], "work")
    first = ch.basic_get("work")  # a: acked
    ch.basic_ack(first[0].delivery_tag)
    ch.basic_get("work")  # b: delivered, never acked
    rejected = ch.basic_get("work")  # c: rejected without requeue
    ch.basic_reject(rejected[0].delivery_tag, requeue=False)
    # Acks are not awaited, but the log is ordered: once a later publish is confirmed, the
    # records of the ack and the reject before it are on disk too.
    publish_confirmed(ch, [b"f"], "work")
    node.kill()

    conn = node.start().connect()
    ch = conn.channel()
    assert drain(ch, "work") == [(b"b", True), (b"d", False), (b"e", False), (b"f", False)]
    conn.close()


def test_durable_topology_survives(node: Node) -> None:
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    ch.exchange_declare("logs", "topic", durable=True)
    ch.exchange_declare("fan", "fanout", durable=True)
    ch.exchange_declare("temp", "direct")  # not durable
    ch.queue_declare("errors", durable=True, arguments={"x-max-length": 100})
    ch.queue_bind("errors", "logs", "*.error")
    ch.exchange_bind("fan", "logs", "#")  # exchange-to-exchange
    ch.queue_declare("all", durable=True)
    ch.queue_bind("all", "fan")
    ch.queue_declare("gone", durable=True)
    ch.queue_delete("gone")
    conn.close()
    node.kill()

    conn = node.start().connect()
    ch = conn.channel()
    ch.exchange_declare("logs", "topic", durable=True, passive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.exchange_declare("temp", "direct", passive=True)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare("errors", durable=True, arguments={"x-max-length": 5})
    assert "inequivalent arg 'x-max-length'" in info.value.reply_text
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare("gone", passive=True)
    ch = conn.channel()
    publish_confirmed(ch, [b"disk full"], "db.error", exchange="logs")
    assert drain(ch, "errors") == [(b"disk full", False)]
    assert drain(ch, "all") == [(b"disk full", False)]
    conn.close()


def test_purge_and_delete_are_durable(node: Node) -> None:
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    ch.queue_declare("p", durable=True)
    ch.queue_declare("d", durable=True)
    publish_confirmed(ch, [b"1", b"2"], "p")
    publish_confirmed(ch, [b"3"], "d")
    assert ch.queue_purge("p").method.message_count == 2
    ch.queue_delete("d")
    ch.queue_declare("d", durable=True)  # a new queue of the same name starts empty
    publish_confirmed(ch, [b"4"], "p")  # confirmed after the purge and delete records: durable
    node.kill()

    conn = node.start().connect()
    ch = conn.channel()
    assert drain(ch, "p") == [(b"4", False)]
    assert drain(ch, "d") == []
    conn.close()


def test_message_routed_to_several_durable_queues(node: Node) -> None:
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    ch.exchange_declare("bcast", "fanout", durable=True)
    for q in ("q1", "q2", "q3"):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, "bcast")
    publish_confirmed(ch, [b"hello"], "", exchange="bcast")
    method, _, _ = ch.basic_get("q1")
    ch.basic_ack(method.delivery_tag)
    ch.queue_declare("sync", durable=True)
    publish_confirmed(ch, [b"barrier"], "sync")  # the ack's record is durable once this is
    node.kill()

    conn = node.start().connect()
    ch = conn.channel()
    assert drain(ch, "q1") == []
    assert drain(ch, "q2") == [(b"hello", False)]
    assert drain(ch, "q3") == [(b"hello", False)]
    conn.close()


def test_properties_and_large_bodies_survive(node: Node) -> None:
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    ch.queue_declare("big", durable=True)
    props = pika.BasicProperties(
        delivery_mode=2,
        content_type="application/json",
        headers={"n": 7, "tag": "x"},
        message_id="m-1",
        priority=3,
    )
    body = os.urandom(300_000)  # larger than a segment: a record may exceed segment size
    publish_confirmed(ch, [body], "big", properties=props)
    node.stop()

    conn = node.start().connect()
    ch = conn.channel()
    _method, got_props, got_body = ch.basic_get("big", auto_ack=True)
    assert got_body == body
    assert (
        got_props.content_type,
        got_props.headers,
        got_props.message_id,
        got_props.priority,
        got_props.delivery_mode,
    ) == ("application/json", {"n": 7, "tag": "x"}, "m-1", 3, 2)
    conn.close()


def test_recovery_is_logged(node: Node) -> None:
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    ch.queue_declare("one", durable=True)
    ch.queue_declare("two", durable=True)
    publish_confirmed(ch, [b"x"] * 5, "one")
    node.kill()
    node.start()
    recovered = node.log_events("wal.recovered")
    assert len(recovered) == 1
    assert (recovered[0]["queues"], recovered[0]["messages"]) == (2, 5)
    assert recovered[0]["message"].startswith("recovered 2 queues, 5 messages in ")


def test_second_broker_on_same_data_dir_is_refused(node: Node, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trimq.cli.server",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--data-dir",
            str(node.data),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "trimq-server:" in proc.stderr and "lock" in proc.stderr.lower()


def test_corrupt_sealed_segment_refuses_startup(node: Node) -> None:
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    ch.queue_declare("q", durable=True)
    publish_confirmed(ch, [os.urandom(1000) for _ in range(200)], "q")  # several segments
    node.kill()  # no checkpoint: the next start must read every segment
    segments = sorted((node.data / "wal").glob("*.seg"))
    assert len(segments) >= 2
    damaged = segments[0]
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError):
        node.start()
    log = (node.logs / f"server-{node.starts}.log").read_text()
    assert damaged.name in log and "offset" in log and "trimq-wal inspect" in log


def test_online_compaction_reclaims_acked_messages(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.server = start_server(
        node.data,
        "--wal-segment-size",
        "65536",
        "--wal-compaction-interval",
        "0.2",
        log_path=tmp_path / "server-1.log",
    )
    node.starts = 1
    conn = node.server.connect()
    ch = conn.channel()
    ch.queue_declare("churn", durable=True)
    ch.queue_declare("keep", durable=True)
    publish_confirmed(ch, [b"kept"], "keep")
    publish_confirmed(ch, [b"x" * 1000 for _ in range(1000)], "churn")
    assert len(drain(ch, "churn")) == 1000  # acked: all of that is dead now
    publish_confirmed(ch, [b"y"], "churn")  # the acks are durable once this is confirmed
    written = 1000 * 1000  # at least this much was appended for the churn queue

    def on_disk() -> int:
        return sum(p.stat().st_size for p in (node.data / "wal").glob("*.seg"))

    deadline = time.monotonic() + 20
    while (on_disk() > written / 4 or not node.log_events("wal.compacted")) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert on_disk() < written / 4, "online compaction did not reclaim the acked messages"
    assert node.log_events("wal.compacted")  # logged once the files are gone
    node.kill()
    conn = node.start().connect()
    ch = conn.channel()
    assert drain(ch, "keep") == [(b"kept", False)]
    assert drain(ch, "churn") == [(b"y", False)]
    conn.close()
    node.stop()


def test_delivery_limit_counts_survive_a_restart(node: Node) -> None:
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    durable_dead_letter_target(ch)
    ch.queue_declare(
        "limited", durable=True, arguments={"x-delivery-limit": 2, "x-dead-letter-exchange": "dlx"}
    )
    publish_confirmed(ch, [b"poison"], "limited")
    for expected in (0, 1):  # two deliveries, each returned
        method, props, _ = ch.basic_get("limited")
        assert props.headers["x-delivery-count"] == expected
        ch.basic_nack(method.delivery_tag, requeue=True)
    ch = kill_when_durable(node, ch)  # with the delivery records
    conn = ch.connection
    method, props, body = ch.basic_get("limited")
    assert (body, method.redelivered, props.headers["x-delivery-count"]) == (b"poison", True, 2)
    ch.basic_nack(method.delivery_tag, requeue=True)  # the third return: past the limit
    assert ch.queue_declare("limited", durable=True, passive=True).method.message_count == 0
    method, props, body = ch.basic_get("dead", auto_ack=True)
    assert body == b"poison"
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"
    conn.close()


def get_within(
    channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, seconds: float
) -> tuple[pika.BasicProperties, bytes] | None:
    """The first message basic_get finds in `queue` within `seconds`, or None."""
    deadline = time.monotonic() + seconds
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return props, body
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


@pytest.mark.parametrize("ttl_from", ["queue", "message"])
def test_ttl_deadline_that_passed_while_down_expires_on_start(node: Node, ttl_from: str) -> None:
    """A restart neither resets nor forgets a TTL: a message whose deadline passed while the
    broker was down is expired (here dead-lettered) as soon as it is back."""
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    durable_dead_letter_target(ch)
    arguments = {"x-dead-letter-exchange": "dlx"}
    properties = PERSISTENT
    if ttl_from == "queue":
        arguments["x-message-ttl"] = 1500  # type: ignore[assignment]
    else:
        properties = pika.BasicProperties(delivery_mode=2, expiration="1500")
    ch.queue_declare("short", durable=True, arguments=arguments)
    ch.queue_declare("long", durable=True, arguments={"x-message-ttl": 600_000})
    publish_confirmed(ch, [b"stale"], "short", properties=properties)
    publish_confirmed(ch, [b"fresh"], "long")
    published = time.monotonic()
    node.kill()
    time.sleep(max(0.0, 1.6 - (time.monotonic() - published)))  # past the deadline, down

    conn = node.start().connect()
    ch = conn.channel()
    got = get_within(ch, "dead", 10)
    assert got is not None, "the message whose TTL passed while down was not dead-lettered"
    props, body = got
    assert body == b"stale"
    assert props.headers["x-death"][0]["reason"] == "expired"
    assert props.headers["x-death"][0]["queue"] == "short"
    assert ch.queue_declare("short", durable=True, passive=True).method.message_count == 0
    assert drain(ch, "long") == [(b"fresh", False)]  # a deadline still ahead is kept
    conn.close()


def test_ttl_keeps_counting_from_publish_across_a_restart(node: Node) -> None:
    """A TTL deadline still ahead at the restart expires at the original time, not a full TTL
    after the restart."""
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    ttl_ms = 4000
    ch.queue_declare("ttl", durable=True, arguments={"x-message-ttl": ttl_ms})
    publish_confirmed(ch, [b"m"], "ttl")
    published = time.monotonic()
    conn.close()  # else the shutdown waits for this client's Close-Ok
    node.stop()
    conn = node.start().connect()
    ch = conn.channel()
    restarted = time.monotonic()
    assert ch.queue_declare("ttl", durable=True, passive=True).method.message_count == 1
    # It goes at the original deadline, although a full TTL after the restart has not passed.
    assert wait_until(
        lambda: ch.queue_declare("ttl", durable=True, passive=True).method.message_count == 0,
        timeout=ttl_ms / 1000 + 5,
    )
    gone = time.monotonic()
    assert gone - published > ttl_ms / 1000 - 0.2, "expired before its deadline"
    # nearer the original deadline than a full TTL after the restart
    assert gone - published < ttl_ms / 1000 + (restarted - published) / 2, "a restart reset the TTL"
    conn.close()


def test_dead_lettered_copies_survive_a_kill(node: Node) -> None:
    """A rejected persistent message's copy in a durable dead-letter queue, x-death and all,
    is in the log before the original's settlement."""
    conn = node.server.connect()  # type: ignore[union-attr]
    ch = conn.channel()
    durable_dead_letter_target(ch)
    ch.queue_declare("work", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
    publish_confirmed(ch, [b"a", b"b"], "work")
    for _ in range(2):
        method, _props, _body = ch.basic_get("work")
        ch.basic_reject(method.delivery_tag, requeue=False)
    ch = kill_when_durable(node, ch)
    conn = ch.connection
    assert drain(ch, "work") == []
    got = []
    while True:
        method, props, body = ch.basic_get("dead", auto_ack=True)
        if method is None:
            break
        death = props.headers["x-death"][0]
        got.append((body, props.delivery_mode, death["reason"], death["queue"], death["count"]))
    assert got == [(b"a", 2, "rejected", "work", 1), (b"b", 2, "rejected", "work", 1)]
    conn.close()
