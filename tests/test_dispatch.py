"""Dispatch to consumers: round-robin, prefetch limits, and requeueing of unacked deliveries.

Every expectation here was checked against RabbitMQ 3.10.8.
"""

from __future__ import annotations

import queue as queue_mod
import signal
import subprocess
import sys
import threading

import pytest
from pika_helpers import collector, get_all, message_count, pump, round_trip, wait_for_count

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def queue(broker, channel, unique):
    channel.queue_declare(unique)
    yield unique
    conn = broker.connect()
    try:
        conn.channel().queue_delete(unique)
    finally:
        conn.close()


def publish_n(channel, queue: str, n: int, prefix: str = "m", start: int = 0) -> None:
    for i in range(start, start + n):
        channel.basic_publish("", queue, f"{prefix}{i}".encode())


def bodies(deliveries) -> list[bytes]:
    return [body for _, _, body in deliveries]


# --- round robin ------------------------------------------------------------------------------


def test_round_robin_across_connections(broker, channel, queue):
    conn_a, conn_b = broker.connect(), broker.connect()
    try:
        got_a, got_b = [], []
        conn_a.channel().basic_consume(queue, collector(got_a), auto_ack=True)
        conn_b.channel().basic_consume(queue, collector(got_b), auto_ack=True)
        publish_n(channel, queue, 10)
        assert pump(conn_a, lambda: len(got_a) == 5)
        assert pump(conn_b, lambda: len(got_b) == 5)
        # strict alternation, starting with the consumer that subscribed first
        assert bodies(got_a) == [b"m0", b"m2", b"m4", b"m6", b"m8"]
        assert bodies(got_b) == [b"m1", b"m3", b"m5", b"m7", b"m9"]
        round_trip(conn_a.channel(), queue)
        assert len(got_a) == 5
    finally:
        conn_a.close()
        conn_b.close()


def test_round_robin_on_one_channel(connection, channel, queue):
    got_a, got_b = [], []
    channel.basic_consume(queue, collector(got_a), auto_ack=True, consumer_tag="a")
    channel.basic_consume(queue, collector(got_b), auto_ack=True, consumer_tag="b")
    publish_n(channel, queue, 6)
    assert pump(connection, lambda: len(got_a) + len(got_b) == 6)
    assert bodies(got_a) == [b"m0", b"m2", b"m4"]
    assert bodies(got_b) == [b"m1", b"m3", b"m5"]
    assert {m.consumer_tag for m, _, _ in got_a} == {"a"}
    # delivery tags are per channel, shared by both consumers, in delivery order
    tags = sorted((m.delivery_tag, body) for m, _, body in got_a + got_b)
    assert tags == [(i + 1, b"m%d" % i) for i in range(6)]


# --- prefetch ---------------------------------------------------------------------------------


def test_prefetch_count_per_consumer(connection, channel, queue):
    channel.basic_qos(prefetch_count=3)
    publish_n(channel, queue, 6)
    got = []
    channel.basic_consume(queue, collector(got))
    assert pump(connection, lambda: len(got) == 3)
    round_trip(channel, queue)
    assert bodies(got) == [b"m0", b"m1", b"m2"]
    assert message_count(channel, queue) == 3
    channel.basic_ack(got[0][0].delivery_tag)
    assert pump(connection, lambda: len(got) == 4)
    round_trip(channel, queue)
    assert bodies(got) == [b"m0", b"m1", b"m2", b"m3"]
    channel.basic_ack(got[2][0].delivery_tag, multiple=True)  # acks m1 and m2
    assert pump(connection, lambda: len(got) == 6)
    assert [m.delivery_tag for m, _, _ in got] == [1, 2, 3, 4, 5, 6]


def test_prefetch_one_alternates_between_busy_consumers(broker, channel, queue):
    conn_a, conn_b = broker.connect(), broker.connect()
    try:
        ch_a, ch_b = conn_a.channel(), conn_b.channel()
        ch_a.basic_qos(prefetch_count=1)
        ch_b.basic_qos(prefetch_count=1)
        got_a, got_b = [], []
        ch_a.basic_consume(queue, collector(got_a))
        ch_b.basic_consume(queue, collector(got_b))
        publish_n(channel, queue, 5)
        assert pump(conn_a, lambda: len(got_a) == 1)
        assert pump(conn_b, lambda: len(got_b) == 1)
        round_trip(ch_a, queue)
        round_trip(ch_b, queue)
        assert (bodies(got_a), bodies(got_b)) == ([b"m0"], [b"m1"])
        assert message_count(channel, queue) == 3
        # only the consumer that acks gets more
        ch_b.basic_ack(got_b[0][0].delivery_tag)
        assert pump(conn_b, lambda: len(got_b) == 2)
        ch_b.basic_ack(got_b[1][0].delivery_tag)
        assert pump(conn_b, lambda: len(got_b) == 3)
        round_trip(ch_a, queue)
        assert bodies(got_a) == [b"m0"]
        assert bodies(got_b) == [b"m1", b"m2", b"m3"]
        assert [m.delivery_tag for m, _, _ in got_b] == [1, 2, 3]
    finally:
        conn_a.close()
        conn_b.close()


def test_full_consumer_is_skipped(connection, channel, queue):
    """A consumer at its prefetch limit is passed over; the others get everything."""
    limited = connection.channel()
    limited.basic_qos(prefetch_count=1)
    got_limited, got_free = [], []
    limited.basic_consume(queue, collector(got_limited))
    channel.basic_consume(queue, collector(got_free), auto_ack=True)
    publish_n(channel, queue, 6)
    assert pump(connection, lambda: len(got_limited) + len(got_free) == 6)
    assert bodies(got_limited) == [b"m0"]
    assert bodies(got_free) == [b"m1", b"m2", b"m3", b"m4", b"m5"]


def test_prefetch_global_is_shared_by_channel_consumers(connection, channel, unique):
    q1, q2 = unique + ".1", unique + ".2"
    for q in (q1, q2):
        channel.queue_declare(q, auto_delete=True)
    channel.basic_qos(prefetch_count=2, global_qos=True)
    got1, got2 = [], []
    channel.basic_consume(q1, collector(got1))
    channel.basic_consume(q2, collector(got2))
    for i in range(5):
        channel.basic_publish("", q1, b"a%d" % i)
        channel.basic_publish("", q2, b"b%d" % i)
    assert pump(connection, lambda: len(got1) + len(got2) == 2)
    round_trip(channel)
    # which queue delivers first is a race between queues; the channel total is not
    assert len(got1) + len(got2) == 2
    assert bodies(got1) == [b"a%d" % i for i in range(len(got1))]
    assert bodies(got2) == [b"b%d" % i for i in range(len(got2))]
    channel.basic_ack((got1 + got2)[0][0].delivery_tag)
    assert pump(connection, lambda: len(got1) + len(got2) == 3)
    round_trip(channel)
    assert len(got1) + len(got2) == 3
    channel.basic_ack(0, multiple=True)
    assert pump(connection, lambda: len(got1) + len(got2) == 5)
    round_trip(channel)
    assert len(got1) + len(got2) == 5


def test_prefetch_non_global_is_per_consumer(connection, channel, unique):
    q1, q2 = unique + ".1", unique + ".2"
    for q in (q1, q2):
        channel.queue_declare(q, auto_delete=True)
    channel.basic_qos(prefetch_count=2, global_qos=False)
    got1, got2 = [], []
    channel.basic_consume(q1, collector(got1))
    channel.basic_consume(q2, collector(got2))
    for i in range(5):
        channel.basic_publish("", q1, b"a%d" % i)
        channel.basic_publish("", q2, b"b%d" % i)
    assert pump(connection, lambda: len(got1) == 2 and len(got2) == 2)
    round_trip(channel)
    assert (bodies(got1), bodies(got2)) == ([b"a0", b"a1"], [b"b0", b"b1"])


def three_consumers(connection, channel, unique, qos_calls):
    names = [f"{unique}.{i}" for i in range(3)]
    for q in names:
        channel.queue_declare(q, auto_delete=True)
    for count, global_qos in qos_calls:
        channel.basic_qos(prefetch_count=count, global_qos=global_qos)
    got = {q: [] for q in names}
    for q in names:
        channel.basic_consume(q, collector(got[q]))
    for i in range(3):
        for q in names:
            channel.basic_publish("", q, b"%d" % i)
    return got


def test_prefetch_per_consumer_then_global_both_apply(connection, channel, unique):
    got = three_consumers(connection, channel, unique, [(1, False), (2, True)])
    assert pump(connection, lambda: sum(map(len, got.values())) == 2)
    round_trip(channel)
    # each consumer at most 1, the channel at most 2
    assert sorted(len(v) for v in got.values()) == [0, 1, 1]


def test_prefetch_non_global_qos_resets_global_limit(connection, channel, unique):
    """RabbitMQ quirk: basic.qos(global=false) clears an earlier global prefetch limit."""
    got = three_consumers(connection, channel, unique, [(2, True), (1, False)])
    assert pump(connection, lambda: sum(map(len, got.values())) == 3)
    round_trip(channel)
    assert sorted(len(v) for v in got.values()) == [1, 1, 1]


def test_prefetch_change_does_not_affect_existing_consumer(connection, channel, queue):
    """Non-global basic.qos applies to consumers created afterwards (RabbitMQ semantics)."""
    channel.basic_qos(prefetch_count=1)
    got = []
    channel.basic_consume(queue, collector(got))
    publish_n(channel, queue, 5)
    assert pump(connection, lambda: len(got) == 1)
    channel.basic_qos(prefetch_count=3)
    round_trip(channel, queue)
    assert len(got) == 1
    channel.basic_ack(got[0][0].delivery_tag)
    assert pump(connection, lambda: len(got) == 2)
    round_trip(channel, queue)
    assert bodies(got) == [b"m0", b"m1"]


def test_no_ack_consumer_ignores_prefetch(connection, channel, queue):
    channel.basic_qos(prefetch_count=1)
    got = []
    channel.basic_consume(queue, collector(got), auto_ack=True)
    publish_n(channel, queue, 5)
    assert pump(connection, lambda: len(got) == 5)


# --- requeue on close -------------------------------------------------------------------------


def test_unacked_requeued_when_channel_closes(connection, channel, queue):
    consumer_channel = connection.channel()
    got = []
    consumer_channel.basic_consume(queue, collector(got))
    publish_n(channel, queue, 3)
    assert pump(connection, lambda: len(got) == 3)
    consumer_channel.basic_ack(got[1][0].delivery_tag)  # m1 is done
    consumer_channel.close()
    assert wait_for_count(channel, queue, 2) == 2
    again = get_all(channel, queue)
    assert [(body, m.redelivered) for m, _, body in again] == [(b"m0", True), (b"m2", True)]


def test_unacked_requeued_when_connection_closes(broker, channel, queue):
    conn = broker.connect()
    got = []
    conn.channel().basic_consume(queue, collector(got))
    publish_n(channel, queue, 3)
    assert pump(conn, lambda: len(got) == 3)
    conn.close()
    assert wait_for_count(channel, queue, 3) == 3
    again = get_all(channel, queue)
    assert [(body, m.redelivered) for m, _, body in again] == [
        (b"m0", True),
        (b"m1", True),
        (b"m2", True),
    ]


def test_requeued_messages_go_to_other_consumer_in_order(broker, channel, queue):
    first = broker.connect()
    first_ch = first.channel()
    first_ch.basic_qos(prefetch_count=3)
    got_first = []
    first_ch.basic_consume(queue, collector(got_first))
    publish_n(channel, queue, 6)
    assert pump(first, lambda: len(got_first) == 3)
    second = broker.connect()
    try:
        got_second = []
        second.channel().basic_consume(queue, collector(got_second), auto_ack=True)
        assert pump(second, lambda: len(got_second) == 3)
        assert bodies(got_second) == [b"m3", b"m4", b"m5"]
        first.close()
        assert pump(second, lambda: len(got_second) == 6)
        assert [(body, m.redelivered) for m, _, body in got_second[3:]] == [
            (b"m0", True),
            (b"m1", True),
            (b"m2", True),
        ]
    finally:
        second.close()
        if first.is_open:
            first.close()


CHILD_CONSUMER = r"""
import sys
import pika

conn = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
ch = conn.channel()

def on_message(_ch, method, _props, body):
    print(body.decode(), method.delivery_tag, method.redelivered, flush=True)

ch.basic_consume(sys.argv[2], on_message)
print("ready", flush=True)
ch.start_consuming()
"""


def test_killed_consumer_process_messages_redelivered(broker, connection, channel, queue):
    publish_n(channel, queue, 4)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_CONSUMER, broker.url, queue], stdout=subprocess.PIPE, text=True
    )
    lines: queue_mod.Queue[str] = queue_mod.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line.strip()) for line in proc.stdout], daemon=True
    )
    reader.start()
    try:
        received = [lines.get(timeout=10) for _ in range(5)]
        assert received == ["ready", "m0 1 False", "m1 2 False", "m2 3 False", "m3 4 False"]
        got = []
        channel.basic_consume(queue, collector(got))
        round_trip(channel, queue)
        assert got == []  # everything is held, unacked, by the child
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        assert pump(connection, lambda: len(got) == 4)
        assert [(body, m.redelivered, m.delivery_tag) for m, _, body in got] == [
            (b"m0", True, 1),
            (b"m1", True, 2),
            (b"m2", True, 3),
            (b"m3", True, 4),
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
