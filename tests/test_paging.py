"""Queues larger than memory: ready messages beyond a queue's head window are paged out to
per-queue files in DATA/paging and read back ahead of the head (trimq/broker/paging.py,
ready.py, trimq/server/pager.py).

trimq-only: each test starts its own trimq-server with a paging budget of a few kilobytes, so
a backlog many times the budget is quick, and reads the queue's paging figures over the
control socket. Unit tests for the page file and the runs come first.
"""

from __future__ import annotations

import errno
import gc
import os
import random
import signal
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import requests
from conftest import Broker, start_server, stop_server
from ctl_helpers import control, control_reply, ctl, rss
from inprocess_broker import BrokerThread

import trimq.broker.paging
from trimq.amqp.spec import BasicProperties
from trimq.broker.broker import BrokerConfig
from trimq.broker.message import Message, QueuedMessage
from trimq.broker.paging import PageFile, Run, decode_run, encode_run, write_at
from trimq.broker.ready import ReadyList

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: pages its own broker's queues"
)

PAGING = """
[wal]
fsync = false
[paging]
budget = 32768
head_messages = 20
head_bytes = 16384
run_bytes = 32768
"""
PERSISTENT = pika.BasicProperties(delivery_mode=2)


# -- unit: records, page file, runs -----------------------------------------------------------


def _entry(seq: int, body: bytes, priority: int | None = None, **kwargs: Any) -> QueuedMessage:
    properties = BasicProperties(delivery_mode=2, priority=priority, message_id=f"m{seq}")
    message = Message("ex", f"key.{seq}", properties, properties.encode(), body)
    message.id = seq * 10
    return QueuedMessage(message, seq, **kwargs)


def _page(ready: ReadyList, run: Run) -> None:
    """What the pager does with a run, synchronously."""
    assert ready.pages is not None and run.entries is not None
    data = encode_run(run.entries)
    segment, offset = ready.pages.reserve(len(data))
    write_at(segment.path, offset, data)
    assert ready.paged_out(run, segment, offset, len(data))


def test_records_round_trip() -> None:
    entries = [
        _entry(1, b"a" * 100),
        _entry(2, b"", redelivered=True, delivery_count=3, expires_at=123.5),
        _entry(3, os.urandom(5000)),
    ]
    back = decode_run(encode_run(entries))
    assert [e.seq for e in back] == [1, 2, 3]
    for old, new in zip(entries, back, strict=True):
        assert new.message.body == old.message.body
        assert new.message.routing_key == old.message.routing_key
        assert new.message.exchange == "ex"
        assert new.message.properties_raw == old.message.properties_raw
        assert new.message.properties.message_id == old.message.properties.message_id
        assert new.message.id == old.message.id and new.message.persistent
        assert (new.redelivered, new.delivery_count, new.expires_at) == (
            old.redelivered,
            old.delivery_count,
            old.expires_at,
        )
        assert new.in_ready


def test_page_file_segments_are_deleted_once_read_back(tmp_path: Path) -> None:
    ready = ReadyList()
    ready.pages = PageFile(tmp_path, "q", segment_size=4096)
    for seq in range(1, 201):
        ready.append(_entry(seq, bytes([seq % 256]) * 100))
    while (run := ready.take_run(10, 10**9, 2000)) is not None:
        _page(ready, run)
    assert ready.paged_count == 190 and ready.count == 200
    assert ready.ram_bytes == 10 * 100
    assert len(list(tmp_path.iterdir())) > 2  # several segments
    # positions read through, paged runs included, without taking anything
    assert [e.seq for e in ready.window(95, 10)] == list(range(96, 106))
    assert ready.paged_count == 190
    taken = []
    while (entry := ready.popleft()) is not None:
        taken.append(entry)
    assert [e.seq for e in taken] == list(range(1, 201))
    assert all(e.message.body == bytes([e.seq % 256]) * 100 for e in taken)
    assert (ready.count, ready.bytes, ready.paged_count, ready.paged_bytes) == (0, 0, 0, 0)
    # every segment read back is gone; the one being written is empty
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) == 0
    assert len(list(tmp_path.iterdir())) <= 1


def test_runs_per_priority_requeue_and_purge(tmp_path: Path) -> None:
    ready = ReadyList(max_priority=2)
    ready.pages = PageFile(tmp_path, "p")
    for seq in range(1, 91):
        ready.append(_entry(seq, b"x" * 50, priority=seq % 3))
    while (run := ready.take_run(5, 10**9, 300)) is not None:
        _page(ready, run)
    assert ready.paged_count == 75
    first = [ready.popleft() for _ in range(3)]
    assert [e.seq for e in first if e] == [2, 5, 8]  # priority 2 first, in order
    ready.requeue([e for e in first if e])
    order = list(ready)
    assert [e.seq for e in order[:3]] == [2, 5, 8]
    expected = [s for p in (2, 1, 0) for s in range(1, 91) if s % 3 == p]
    assert [e.seq for e in order] == expected
    assert ready.persistent() == (90, 90 * 50)
    live, ids = ready.clear()
    assert len(live) + len(ids) == 90
    assert sorted([e.message.id for e in live] + list(ids)) == [s * 10 for s in range(1, 91)]
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) == 0


def test_a_paged_message_costs_at_most_16_bytes_of_memory(tmp_path: Path) -> None:
    """The issue's bound: no Python object per paged message; a persistent one costs its log
    id (8 bytes, for a purge), a transient one nothing, plus a few hundred bytes per run."""
    count = 40_000
    tracemalloc.start()
    try:
        ready = ReadyList()
        ready.pages = PageFile(tmp_path, "m")
        before = tracemalloc.get_traced_memory()[0]
        for seq in range(1, count + 1):
            ready.append(_entry(seq, b"x" * 100))
        while (run := ready.take_run(0, 0, 1 << 20)) is not None:
            _page(ready, run)
        del run
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert ready.paged_count == count and ready.ram_bytes == 0
    assert (after - before) / count <= 16


def test_a_run_whose_entry_expired_while_written_stays_in_memory(tmp_path: Path) -> None:
    ready = ReadyList()
    ready.pages = PageFile(tmp_path, "t")
    entries = [_entry(seq, b"y" * 10) for seq in range(1, 31)]
    for entry in entries:
        ready.append(entry)
    run = ready.take_run(5, 10**9, 10**6)
    assert run is not None and run.entries is not None
    data = encode_run(run.entries)
    segment, offset = ready.pages.reserve(len(data))
    ready.discard(entries[10])  # expired meanwhile
    assert not ready.paged_out(run, segment, offset, len(data))
    assert ready.paged_count == 0
    assert [e.seq for e in ready] == [s for s in range(1, 31) if s != 11]


# -- a broker of the test's own ---------------------------------------------------------------


def _server(tmp_path: Path, config: str = PAGING) -> Broker:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "trimq.toml").write_text(config)
    return start_server(data)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Broker]:
    broker = _server(tmp_path)
    yield broker
    if broker.process is not None and broker.process.poll() is None:
        stop_server(broker)


ITEMS = [
    "messages_persistent",
    "message_bytes_persistent",
    "name",
    "messages",
    "messages_ram",
    "messages_paged_out",
    "message_bytes_ram",
    "message_bytes_paged_out",
    "memory",
]


def queue_row(server: Broker, name: str) -> dict[str, Any]:
    rows = control(server, "list_queues", vhost="/", items=ITEMS)
    return next(row for row in rows if row["name"] == name)


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def paged(server: Broker, name: str, at_least: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        row = queue_row(server, name)
        return row if row["messages_paged_out"] >= at_least else None

    result: dict[str, Any] = wait_for(check)
    return result


def page_bytes(server: Broker) -> int:
    assert server.data_dir is not None
    directory = server.data_dir / "paging"
    if not directory.exists():
        return 0
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def publish(channel: Any, queue: str, bodies: list[bytes], **props: Any) -> None:
    for i, body in enumerate(bodies):
        channel.basic_publish(
            "", queue, body, pika.BasicProperties(delivery_mode=2, message_id=str(i), **props)
        )


def drain(channel: Any, queue: str, count: int, ack: bool = True) -> list[Any]:
    """`count` messages consumed from `queue` (acked as they come)."""
    got: list[Any] = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=20):
        assert method is not None, f"only {len(got)} of {count} came"
        got.append((method, properties, body))
        if ack:
            channel.basic_ack(method.delivery_tag)
        if len(got) == count:
            break
    channel.cancel()
    return got


def bodies(count: int, size: int = 1000) -> list[bytes]:
    rng = random.Random(count)
    return [i.to_bytes(4, "big") + rng.randbytes(size - 4) for i in range(count)]


def test_order_and_bodies_survive_page_out_and_in(server: Broker) -> None:
    sent = bodies(2000)
    with server.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("backlog", durable=True)
        ch.confirm_delivery()
        publish(ch, "backlog", sent)
        paged(server, "backlog", 1900)

        def settled() -> dict[str, Any] | None:  # the pager goes on until under the budget
            row = queue_row(server, "backlog")
            return row if row["message_bytes_ram"] <= 64 * 1024 else None  # + a head window

        row = wait_for(settled)
        assert row["messages"] == 2000
        assert row["messages_ram"] + row["messages_paged_out"] == 2000
        assert row["message_bytes_paged_out"] >= 1900 * 1000
        assert row["memory"] < 2000 * 1000
        assert page_bytes(server) >= 1900 * 1000
        api = requests.get(
            f"http://127.0.0.1:{server.management_port}/api/queues/%2F/backlog",
            auth=("guest", "guest"),
            timeout=30,
        ).json()
        assert api["messages_paged_out"] >= 1900
        assert api["message_bytes_paged_out"] >= 1900 * 1000
        assert api["messages_ram"] + api["messages_paged_out"] == api["messages"] == 2000
        assert api["message_bytes_ram"] + api["message_bytes_paged_out"] == 2000 * 1000
        got = drain(ch, "backlog", 2000)
    assert [body for _m, _p, body in got] == sent
    assert [p.message_id for _m, p, _b in got] == [str(i) for i in range(2000)]
    assert not any(m.redelivered for m, _p, _b in got)
    row = wait_for(lambda: (r := queue_row(server, "backlog"))["messages"] == 0 and r)
    assert row["messages_paged_out"] == 0
    assert page_bytes(server) == 0  # every segment read back was deleted or emptied


def test_publishing_past_the_budget_is_never_blocked_for_memory(tmp_path: Path) -> None:
    """The budget follows the watermark (times the paging ratio); the memory alarm compares
    RSS, and paged bodies are not in memory: a backlog well above the watermark is accepted
    without the alarm (here 96 MB against a watermark 96 MB above the idle broker's RSS).
    Transient messages: a persistent one's body is also held by the log's live state
    (storage.replay.StoredMessage, for checkpoints), which paging does not release yet."""
    server = _server(
        tmp_path,
        "[wal]\nfsync = false\n[resources]\nmemory_high_watermark_paging_ratio = 0.2\n"
        "[paging]\nhead_bytes = 1048576\n",
    )
    try:
        watermark = rss(server) + 96 * 2**20
        control(server, "set_memory_high_watermark", absolute=watermark)
        with server.connect(blocked_connection_timeout=30) as conn:
            ch = conn.channel()
            ch.queue_declare("big", durable=True)
            body = b"z" * 16384
            for _ in range(6144):
                ch.basic_publish("", "big", body)
            row = wait_for(lambda: (r := queue_row(server, "big"))["messages"] == 6144 and r)
            assert row["messages_paged_out"] > 3000
            assert control(server, "status")["alarms"] == []
            assert rss(server) < watermark
            got = drain(ch, "big", 6144)
        assert all(b == body for _m, _p, b in got)
    finally:
        stop_server(server)


def test_priorities_with_paged_messages(server: Broker) -> None:
    with server.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 3})
        ch.confirm_delivery()
        for i in range(600):
            ch.basic_publish(
                "",
                "prio",
                i.to_bytes(4, "big") + b"p" * 400,
                pika.BasicProperties(delivery_mode=2, priority=i % 4),
            )
        paged(server, "prio", 400)
        got = drain(ch, "prio", 600)
    order = [int.from_bytes(body[:4], "big") for _m, _p, body in got]
    assert order == [i for p in (3, 2, 1, 0) for i in range(600) if i % 4 == p]


def test_per_message_ttl_deep_in_a_paged_run(server: Broker) -> None:
    """A message with a short TTL in the middle of a paged run expires there (dead-lettered),
    the others stay, in order."""
    with server.connect() as conn:
        ch = conn.channel()
        ch.exchange_declare("dlx", "fanout")
        ch.queue_declare("dead")
        ch.queue_bind("dead", "dlx")
        ch.queue_declare("ttl", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
        ch.confirm_delivery()
        sent = bodies(800, 500)
        for i, body in enumerate(sent):
            expiration = "1500" if i == 600 else None
            ch.basic_publish(
                "",
                "ttl",
                body,
                pika.BasicProperties(delivery_mode=2, expiration=expiration),
            )
        paged(server, "ttl", 700)
        wait_for(lambda: queue_row(server, "dead")["messages"] == 1)
        assert queue_row(server, "ttl")["messages"] == 799
        method, _props, body = ch.basic_get("dead", auto_ack=True)
        assert method is not None and body == sent[600]
        got = drain(ch, "ttl", 799)
    assert [b for _m, _p, b in got] == sent[:600] + sent[601:]


def test_per_queue_ttl_expires_paged_messages(server: Broker) -> None:
    with server.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("qttl", durable=True, arguments={"x-message-ttl": 1500})
        ch.confirm_delivery()
        publish(ch, "qttl", bodies(500, 500))
        paged(server, "qttl", 400)
        wait_for(lambda: queue_row(server, "qttl")["messages"] == 0)
        assert queue_row(server, "qttl")["messages_paged_out"] == 0


def test_max_length_drop_head_counts_paged_messages(server: Broker) -> None:
    with server.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("capped", durable=True, arguments={"x-max-length": 300})
        ch.confirm_delivery()
        sent = bodies(300, 500)
        publish(ch, "capped", sent)
        paged(server, "capped", 200)
        more = bodies(1000, 500)[:100]
        publish(ch, "capped", more)
        assert queue_row(server, "capped")["messages"] == 300
        got = drain(ch, "capped", 300)
    assert [b for _m, _p, b in got] == sent[100:] + more


def test_max_length_reject_publish_counts_paged_messages(server: Broker) -> None:
    with server.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("full", arguments={"x-max-length": 300, "x-overflow": "reject-publish"})
        ch.confirm_delivery()
        publish(ch, "full", bodies(300, 500))
        paged(server, "full", 200)
        with pytest.raises(pika.exceptions.NackError):
            ch.basic_publish("", "full", b"one too many", PERSISTENT)
        assert queue_row(server, "full")["messages"] == 300


def test_requeue_of_unacked_with_paged_messages(server: Broker) -> None:
    sent = bodies(600, 500)
    with server.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("rq", durable=True)
        ch.confirm_delivery()
        publish(ch, "rq", sent)
        paged(server, "rq", 500)
        ch.basic_qos(prefetch_count=50)
        first = drain(ch, "rq", 50, ack=False)
        ch.basic_nack(first[-1][0].delivery_tag, multiple=True, requeue=True)
        got = drain(ch, "rq", 600)
    assert [b for _m, _p, b in got] == sent
    assert [m.redelivered for m, _p, _b in got] == [True] * 50 + [False] * 550


def test_purge_and_delete_drop_the_page_files(server: Broker) -> None:
    with server.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("purged", durable=True)
        ch.queue_declare("deleted", durable=True)
        ch.confirm_delivery()
        publish(ch, "purged", bodies(500, 500))
        publish(ch, "deleted", bodies(500, 500))
        paged(server, "purged", 400)
        paged(server, "deleted", 400)
        before = queue_row(server, "purged")
        assert (before["messages_persistent"], before["message_bytes_persistent"]) == (
            500,
            500 * 500,
        )
        assert ch.queue_purge("purged").method.message_count == 500
        after = queue_row(server, "purged")  # paged ones counted off too
        assert (after["messages"], after["messages_persistent"]) == (0, 0)
        assert after["message_bytes_persistent"] == 0
        assert ch.queue_delete("deleted").method.message_count == 500
        wait_for(lambda: page_bytes(server) == 0)
        # the queue works on after the purge
        publish(ch, "purged", [b"after"])
        method, _p, body = ch.basic_get("purged", auto_ack=True)
        assert method is not None and body == b"after"
    # the purge was journaled for the paged messages too: nothing comes back on restart
    stop_server(server)
    assert server.data_dir is not None
    again = start_server(server.data_dir)
    try:
        rows = control(again, "list_queues", vhost="/", items=["name", "messages"])
        assert {r["name"]: r["messages"] for r in rows} == {"purged": 0}
    finally:
        stop_server(again)


def test_peek_reads_paged_messages(server: Broker) -> None:
    sent = bodies(500, 300)
    with server.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("peeked", durable=True)
        ch.confirm_delivery()
        publish(ch, "peeked", sent)
        paged(server, "peeked", 350)  # the 32 KB budget holds up to 109 of them
    result = control(server, "peek_queue", vhost="/", queue="peeked", offset=250, count=5)
    messages = result["messages"] if isinstance(result, dict) else result
    assert [m["position"] for m in messages] == [250, 251, 252, 253, 254]
    assert [m["properties"]["message_id"] for m in messages] == ["250", "251", "252", "253", "254"]
    assert queue_row(server, "peeked")["messages"] == 500


def test_lazy_queue_pages_at_once(server: Broker) -> None:
    """x-queue-mode lazy (or a queue-mode policy) pages beyond the head window whatever the
    budget (the budget here is far above the backlog)."""
    server_config = PAGING.replace("budget = 32768", "budget = 1000000000")
    assert server.data_dir is not None
    stop_server(server)
    (server.data_dir / "trimq.toml").write_text(server_config)
    lazy = start_server(server.data_dir)
    try:
        code, _out, err = ctl(
            lazy, "set_policy", "lazy", "^pol\\.", '{"queue-mode": "lazy"}', "--apply-to", "queues"
        )
        assert code == 0, err
        with lazy.connect() as conn:
            ch = conn.channel()
            ch.queue_declare("lazy", arguments={"x-queue-mode": "lazy"})
            ch.queue_declare("pol.lazy")
            ch.queue_declare("default")
            ch.confirm_delivery()
            publish(ch, "lazy", bodies(300, 200))
            publish(ch, "pol.lazy", bodies(300, 200))
            publish(ch, "default", bodies(300, 200))
            row = paged(lazy, "lazy", 280)
            assert row["messages_ram"] <= 20
            assert paged(lazy, "pol.lazy", 280)["messages_ram"] <= 20
            assert queue_row(lazy, "default")["messages_paged_out"] == 0
            got = drain(ch, "lazy", 300)
            assert [b for _m, _p, b in got] == bodies(300, 200)
    finally:
        stop_server(lazy)


def test_sigkill_while_paging_then_restart(tmp_path: Path) -> None:
    """Killed with a backlog paged out: every confirmed persistent message comes back from the
    log, in order, and the old page files are gone."""
    server = _server(tmp_path)
    sent = bodies(1500, 1000)
    with server.connect() as conn:
        ch = conn.channel()
        ch.queue_declare("kept", durable=True)
        ch.confirm_delivery()
        publish(ch, "kept", sent)
        paged(server, "kept", 1000)
    assert server.process is not None and server.data_dir is not None
    assert page_bytes(server) > 0
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    again = start_server(server.data_dir)
    try:
        assert queue_row(again, "kept")["messages"] == 1500
        with again.connect() as conn:
            got = drain(conn.channel(), "kept", 1500)
        assert [b for _m, _p, b in got] == sent
    finally:
        stop_server(again)


def test_a_full_disk_while_paging_raises_the_disk_alarm_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(path: Path, offset: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trimq.broker.paging, "write_at", no_space)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = BrokerConfig(
        paging_budget=32768,
        paging_head_messages=20,
        paging_head_bytes=16384,
        paging_run_bytes=32768,
    )
    broker = BrokerThread(data, config, sync=False).start()

    def row() -> dict[str, Any]:
        rows = control_reply(data, "list_queues", vhost="/", items=ITEMS)["result"]
        return next(r for r in rows if r["name"] == "spill")

    def alarms() -> list[str]:
        result: list[str] = control_reply(data, "status")["result"]["alarms"]
        return result

    sent = bodies(400, 500)
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
        ch = conn.channel()
        ch.queue_declare("spill", durable=True)
        for i, body in enumerate(sent):
            ch.basic_publish("", "spill", body, PERSISTENT if i % 2 else None)
        wait_for(lambda: "disk" in alarms())
        held = row()
        assert held["messages_paged_out"] == 0
        assert held["messages"] == held["messages_ram"] > 0
        monkeypatch.undo()  # the disk has room again
        wait_for(lambda: not alarms() and row()["messages"] == 400)
        assert wait_for(lambda: row()["messages_paged_out"] > 0)
        got = drain(ch, "spill", 400)
        assert [b for _m, _p, b in got] == sent
        conn.close()
    finally:
        broker.stop()


def test_sigkill_while_reading_back_then_restart(tmp_path: Path) -> None:
    """Killed while a paged backlog is being drained (runs read back ahead of the head, some
    delivered and unacked): the acked messages stay gone, every other one comes back in
    order, the unacked ones redelivered."""
    server = _server(tmp_path)
    sent = bodies(1500, 1000)
    conn = server.connect()  # never closed: the broker is killed under it
    ch = conn.channel()
    ch.queue_declare("draining", durable=True)
    ch.confirm_delivery()
    publish(ch, "draining", sent)
    paged(server, "draining", 1000)
    ch.basic_qos(prefetch_count=100)
    acked = drain(ch, "draining", 500)  # acked one by one
    held = drain(ch, "draining", 100, ack=False)  # delivered, not acked
    assert [b for _m, _p, b in acked + held] == sent[:600]
    wait_for(lambda: queue_row(server, "draining")["messages"] == 1000)
    assert server.process is not None and server.data_dir is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    again = start_server(server.data_dir)
    try:
        assert queue_row(again, "draining")["messages"] == 1000
        with again.connect() as conn:
            got = drain(conn.channel(), "draining", 1000)
        assert [b for _m, _p, b in got] == sent[500:]
        assert [m.redelivered for m, _p, _b in got] == [True] * 100 + [False] * 900
    finally:
        stop_server(again)


def test_delivery_limit_and_rejection_dead_letter_paged_messages(server: Broker) -> None:
    with server.connect() as conn:
        ch = conn.channel()
        ch.exchange_declare("dlx", "fanout")
        ch.queue_declare("limited.dead")
        ch.queue_bind("limited.dead", "dlx")
        ch.queue_declare(
            "limited",
            durable=True,
            arguments={"x-delivery-limit": 1, "x-dead-letter-exchange": "dlx"},
        )
        ch.confirm_delivery()
        sent = bodies(600, 500)
        publish(ch, "limited", sent)
        paged(server, "limited", 500)
        ch.basic_qos(prefetch_count=10)
        for _ in range(2):  # delivered twice, returned twice: over the limit
            first = drain(ch, "limited", 10, ack=False)
            assert [b for _m, _p, b in first] == sent[:10]
            ch.basic_nack(first[-1][0].delivery_tag, multiple=True, requeue=True)
        wait_for(lambda: queue_row(server, "limited.dead")["messages"] == 10)
        ch.basic_qos(prefetch_count=5)  # nothing more delivered than taken here
        nxt = drain(ch, "limited", 5, ack=False)
        ch.basic_reject(nxt[0][0].delivery_tag, requeue=False)
        wait_for(lambda: queue_row(server, "limited.dead")["messages"] == 11)
        ch.basic_nack(nxt[-1][0].delivery_tag, multiple=True, requeue=True)
        rest = drain(ch, "limited", 589)
    assert [b for _m, _p, b in rest] == sent[11:]
