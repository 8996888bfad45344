"""Looking at messages without taking them: peek (ready and unacked) and find, in the model
(ReadyList.window), over the control socket and with `trimqctl peek_queue` / `find_message`.

trimq-only: RabbitMQ has no such operation; these tests drive their own trimq-server.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pika
import pytest
from conftest import Broker
from ctl_helpers import control, control_reply, ctl

from trimq.amqp.spec import BasicProperties
from trimq.broker.message import Message, QueuedMessage
from trimq.broker.ready import ReadyList
from trimq.cli.commands.messages import one_line

live = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: peek and find are trimq's own"
)


def _entry(seq: int, priority: int | None = None) -> QueuedMessage:
    properties = BasicProperties(priority=priority, message_id=str(seq))
    return QueuedMessage(Message("", "q", properties, properties.encode(), b"x"), seq)


def _ids(entries: list[QueuedMessage]) -> list[int]:
    return [e.seq for e in entries]


def test_window_is_delivery_order_from_an_offset() -> None:
    ready = ReadyList()
    entries = [_entry(i) for i in range(10)]
    ready.extend(entries)
    assert _ids(ready.window(0, 3)) == [0, 1, 2]
    assert _ids(ready.window(8, 5)) == [8, 9]
    assert ready.window(10, 5) == [] and ready.window(0, 0) == []
    ready.discard(entries[1])  # only marked: positions count live entries
    ready.discard(entries[4])
    assert _ids(ready.window(0, 4)) == [0, 2, 3, 5]
    assert _ids(ready.window(3, 2)) == [5, 6]
    assert len(ready) == 8  # nothing was taken
    assert all(e.in_ready and not e.redelivered for e in ready.window(0, 8))


def test_window_of_a_priority_queue_walks_levels_highest_first() -> None:
    ready = ReadyList(max_priority=5)
    for seq, priority in enumerate([1, 5, None, 5, 3, 9]):
        ready.append(_entry(seq, priority))
    order = [1, 3, 5, 4, 0, 2]  # priority 9 counts as 5, then arrival order within a level
    assert _ids(ready.window(0, 6)) == order
    assert _ids(ready.window(2, 3)) == order[2:5]
    assert _ids(ready.window(5, 9)) == order[5:]
    assert _ids(list(ready)) == order


def test_table_cells_stay_on_one_line() -> None:
    assert one_line("a\tb\nc\\d\x00é") == "a\\tb\\nc\\\\d\\x00é"


def _publish(channel: Any, queue: str, body: bytes, **properties: Any) -> None:
    channel.basic_publish("", queue, body, pika.BasicProperties(**properties))


def _peek(node: Broker, *args: str) -> list[dict[str, Any]]:
    code, out, err = ctl(node, "peek_queue", "--formatter", "json", *args)
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads("".join(out))
    return rows


@live
def test_peek_shows_messages_without_taking_them(node: Broker) -> None:
    connection = node.connect()
    channel = connection.channel()
    channel.queue_declare("work")
    for i in range(5):
        _publish(channel, "work", f"job {i}".encode(), message_id=f"m{i}", headers={"n": i})
    _publish(channel, "work", b"\xff\xfe", message_id="bin")

    rows = _peek(node, "work", "--offset", "1", "--count", "2")
    assert [r["position"] for r in rows] == [1, 2]
    assert rows[0] == {
        "position": 1,
        "state": "ready",
        "payload_bytes": 5,
        "redelivered": False,
        "exchange": "",
        "routing_key": "work",
        "properties": {"headers": {"n": 1}, "message_id": "m1"},
        "payload": "job 1",
        "payload_encoding": "string",
    }
    assert _peek(node, "work", "--offset", "5")[0]["payload"] == "//4="  # base64: not UTF-8
    # Peeking twice changes nothing: same answer, nothing delivered or marked redelivered.
    assert _peek(node, "work", "--offset", "1", "--count", "2") == rows
    method, _, body = channel.basic_get("work", auto_ack=True)
    assert body == b"job 0" and not method.redelivered and method.message_count == 5

    _publish(channel, "work", b"two\nlines\tand a tab")
    code, out, _ = ctl(node, "peek_queue", "work", "--count", "1")
    assert code == 0
    assert out == [
        "Peeking at messages of queue 'work' in vhost '/' from position 0 ...",
        "position\tredelivered\texchange\trouting_key\tpayload_bytes\tpayload_encoding\tpayload",
        "0\tfalse\t\twork\t5\tstring\tjob 1",
    ]
    code, out, _ = ctl(node, "peek_queue", "work", "-s", "--offset", "5")
    assert code == 0 and out == ["5\tfalse\t\twork\t19\tstring\ttwo\\nlines\\tand a tab"]
    connection.close()


@live
def test_peek_unacked_names_channel_and_consumer(node: Broker) -> None:
    connection = node.connect()
    channel = connection.channel()
    channel.queue_declare("held")
    for i in range(4):
        _publish(channel, "held", f"m{i}".encode(), message_id=f"m{i}")
    channel.basic_qos(prefetch_count=2)
    channel.basic_consume("held", lambda *a: None, consumer_tag="worker-1")
    connection.process_data_events(0.2)
    getter = connection.channel()
    got = getter.basic_get("held")
    assert got[2] == b"m2"

    result = control(node, "peek_queue", queue="held", unacked=True, count=10)
    assert [(r["payload"], r["consumer_tag"], r["state"]) for r in result] == [
        ("m0", "worker-1", "unacked"),
        ("m1", "worker-1", "unacked"),
        ("m2", None, "unacked"),
    ]
    assert result[0]["channel"].startswith("127.0.0.1:") and result[0]["channel"].endswith("(1)")
    assert result[2]["channel"].endswith("(2)") and result[2]["delivery_tag"] == 1
    assert [r["payload"] for r in control(node, "peek_queue", queue="held")] == ["m3"]

    code, out, _ = ctl(node, "peek_queue", "held", "--unacked", "--offset", "2")
    assert code == 0
    assert out[1].split("\t") == [
        "position",
        "channel",
        "consumer_tag",
        "delivery_tag",
        "redelivered",
        "exchange",
        "routing_key",
        "payload_bytes",
        "payload_encoding",
        "payload",
    ]
    assert out[2].split("\t")[2:] == ["", "1", "false", "", "held", "2", "string", "m2"]
    connection.close()


@live
def test_find_message_across_queues_ready_unacked_and_dead_lettered(node: Broker) -> None:
    connection = node.connect()
    channel = connection.channel()
    channel.exchange_declare("fan", "fanout")
    channel.queue_declare("dead")
    channel.queue_declare(
        "a", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
    )
    channel.queue_declare("b")
    channel.queue_bind("a", "fan")
    channel.queue_bind("b", "fan")
    _publish(channel, "b", b"first", message_id="other")
    channel.basic_publish("fan", "", b"order", pika.BasicProperties(message_id="order-7"))
    channel.basic_publish("fan", "", b"reply", pika.BasicProperties(correlation_id="corr-1"))
    method, _, _ = channel.basic_get("a")  # order-7 leaves a: dead-lettered into dead
    channel.basic_nack(method.delivery_tag, requeue=False)
    consumer = connection.channel()
    held = consumer.basic_get("a")  # corr-1 is held unacked from a
    assert held[2] == b"reply"

    found = control(node, "find_message", message_id="order-7")
    by_queue = {f["queue"]: f for f in found}
    assert sorted(by_queue) == ["b", "dead"]
    assert by_queue["b"]["state"] == "ready" and by_queue["b"]["position"] == 1
    dead = by_queue["dead"]
    assert dead["position"] == 0 and dead["routing_key"] == "dead"
    assert [(d["queue"], d["reason"], d["count"]) for d in dead["x_death"]] == [
        ("a", "rejected", 1)
    ]
    assert by_queue["b"]["x_death"] is None

    found = control(node, "find_message", correlation_id="corr-1")
    states = sorted((f["queue"], f["state"], f["position"], f["consumer_tag"]) for f in found)
    assert states == [("a", "unacked", None, None), ("b", "ready", 2, None)]
    unacked = next(f for f in found if f["state"] == "unacked")
    assert unacked["channel"].endswith("(2)") and unacked["delivery_tag"] == 1

    code, out, _ = ctl(node, "find_message", "--message-id", "order-7")
    assert code == 0
    assert out[0] == "Finding messages with message_id 'order-7' in vhost '/' ..."
    assert out[1].split("\t")[:3] == ["queue", "state", "position"]
    assert [line.split("\t")[:3] for line in out[2:]] == [
        ["b", "ready", "1"],
        ["dead", "ready", "0"],
    ]
    assert ctl(node, "find_message", "--message-id", "nothing-has-it") == (
        0,
        ["Finding messages with message_id 'nothing-has-it' in vhost '/' ..."],
        [],
    )
    connection.close()


@live
def test_peek_and_find_refuse_bad_requests(node: Broker) -> None:
    code, _, err = ctl(node, "peek_queue", "nosuch")
    assert code == 67 and err == ["Error:", "queue 'nosuch' in vhost '/' not found"]
    code, _, err = ctl(node, "peek_queue", "-p", "novhost", "q")
    assert code == 67
    code, _, err = ctl(node, "peek_queue", "q", "--count", "0")
    assert code == 64 and err[0] == "Error (argument validation): count must be from 1 to 10000"
    code, _, err = ctl(node, "peek_queue", "q", "--offset", "-1")
    assert code == 64 and err[0] == "Error (argument validation): offset must be 0 or more"
    code, _, err = ctl(node, "find_message")
    assert code == 64
    assert err[0] == "Error (argument validation): give --message-id or --correlation-id"
    assert node.data_dir is not None
    reply = control_reply(node.data_dir, "find_message", vhost="/")
    assert reply == {
        "ok": False,
        "kind": "usage",
        "error": "give a message_id or a correlation_id",
    }
    reply = control_reply(node.data_dir, "peek_queue", queue="q", count=10_001)
    assert reply["kind"] == "usage"
