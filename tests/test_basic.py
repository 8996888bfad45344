"""Basic class over TCP with pika: publish/get/consume, acks, returns and their error replies.

Every expectation here was checked against RabbitMQ 3.10.8.
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime
from decimal import Decimal

import pika
import pytest
from amqp_raw import RawClient, encode_typed_table, header_payload_with_headers, headers_of
from pika import spec
from pika.compat import long
from pika.exceptions import (
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    UnroutableError,
)
from pika_helpers import collector, get_all, message_count, pump, round_trip, wait_for_count

pytestmark = pytest.mark.timeout(30)


def delete_queue(broker, name: str) -> None:
    conn = broker.connect()
    try:
        conn.channel().queue_delete(name)
    finally:
        conn.close()


@pytest.fixture
def queue(broker, channel, unique):
    """A fresh queue named after the test, deleted afterwards from a new connection."""
    channel.queue_declare(unique)
    yield unique
    delete_queue(broker, unique)


@pytest.fixture
def cleanup_queue(broker, unique):
    yield unique
    delete_queue(broker, unique)


@pytest.fixture
def raw(broker):
    client = RawClient(broker.host, broker.port)
    yield client
    client.close()


def publish_n(channel, queue: str, n: int, prefix: str = "m") -> list[bytes]:
    bodies = [f"{prefix}{i}".encode() for i in range(n)]
    for body in bodies:
        channel.basic_publish("", queue, body)
    return bodies


# --- publish / get round trips ---------------------------------------------------------------


def test_get_returns_every_basic_property(channel, queue):
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="gzip",
        headers={"h": "v"},
        delivery_mode=2,
        priority=5,
        correlation_id="corr-1",
        reply_to="reply.q",
        expiration="60000",
        message_id="msg-1",
        timestamp=1700000000,
        type="greeting",
        user_id="guest",
        app_id="trimq-tests",
        cluster_id="c1",
    )
    channel.basic_publish("", queue, b'{"a": 1}', props)
    method, got, body = channel.basic_get(queue, auto_ack=True)
    assert isinstance(method, spec.Basic.GetOk)
    assert (
        method.delivery_tag,
        method.redelivered,
        method.exchange,
        method.routing_key,
        method.message_count,
    ) == (1, False, "", queue, 0)
    assert body == b'{"a": 1}'
    for name in (
        "content_type",
        "content_encoding",
        "headers",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
        "cluster_id",
    ):
        assert getattr(got, name) == getattr(props, name), name


def test_unset_properties_stay_unset(channel, queue):
    channel.basic_publish("", queue, b"x")
    _, got, _ = channel.basic_get(queue, auto_ack=True)
    for name in (
        "content_type",
        "headers",
        "delivery_mode",
        "priority",
        "timestamp",
        "expiration",
        "message_id",
        "user_id",
    ):
        assert getattr(got, name) is None, name


def test_header_values_come_back_as_pika_sent_them(channel, queue):
    when = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    headers = {
        "str": "hello",
        "unicode": "h\u00e9llo \u2603",
        "empty": "",
        "bytes": b"\x00\x01\xff",
        "true": True,
        "false": False,
        "int": 42,
        "negative": -7,
        "int32max": 2**31 - 1,
        "big": 2**40,
        "bignegative": -(2**40),
        "decimal": Decimal("123.45"),
        "when": when,
        "none": None,
        "table": {"inner": "x", "n": 1, "deeper": {"z": True}},
        "array": [1, "two", b"3", None, [4], {"k": "v"}],
        "emptyarray": [],
        "emptytable": {},
    }
    channel.basic_publish("", queue, b"x", pika.BasicProperties(headers=headers))
    _, got, _ = channel.basic_get(queue, auto_ack=True)
    h = got.headers
    assert h == headers
    # pika decodes by wire type: S -> str, x -> bytes, t -> bool, I -> int, l -> pika long,
    # D -> Decimal, T -> aware UTC datetime, F -> dict, A -> list, V -> None.
    assert type(h["str"]) is str and type(h["bytes"]) is bytes
    assert type(h["true"]) is bool and type(h["false"]) is bool
    assert type(h["int"]) is int and type(h["negative"]) is int and type(h["int32max"]) is int
    assert type(h["big"]) is long and type(h["bignegative"]) is long
    assert type(h["decimal"]) is Decimal and h["decimal"].as_tuple().exponent == -2
    assert h["when"] == when and h["when"].tzinfo is not None
    assert type(h["table"]) is dict and type(h["table"]["deeper"]["z"]) is bool
    assert [type(v) for v in h["array"]] == [int, str, bytes, type(None), list, dict]


def test_header_values_keep_their_wire_type(raw, channel, queue):
    """Types pika cannot send or tell apart (b B s u i f ...) are returned with the same tag."""
    items = [
        ("t", "t", 1),
        ("b", "b", -5),
        ("B", "B", 250),
        ("s", "s", -300),
        ("u", "u", 65000),
        ("I", "I", -70000),
        ("i", "i", 4000000000),
        ("l", "l", -(2**40)),
        ("f", "f", 1.5),
        ("d", "d", 2.25),
        ("D", "D", (2, 12345)),
        ("S", "S", b"hello"),
        ("x", "x", b"\0\xff"),
        ("T", "T", 1700000000),
        ("V", "V", None),
        ("F", "F", [("in", "s", 7), ("b", "b", 1)]),
        ("A", "A", [("b", 1), ("S", b"z"), ("l", 5), ("f", 0.5), ("F", [])]),
    ]
    raw.open_channel(1)
    table = encode_typed_table(items)
    raw.publish(1, "", queue, b"body", header_payload=header_payload_with_headers(4, table))
    raw.send_method(1, spec.Basic.Get(queue=queue, no_ack=False))
    cmd = raw.read_command()
    assert isinstance(cmd.method, spec.Basic.GetOk)
    assert cmd.body == b"body"
    assert headers_of(cmd.header_payload) == items
    # and through pika, which decodes by tag
    raw.publish(1, "", queue, b"body", header_payload=header_payload_with_headers(4, table))
    assert wait_for_count(channel, queue, 1) == 1
    _, props, _ = channel.basic_get(queue, auto_ack=True)
    h = props.headers
    assert (h["b"], h["B"], h["s"], h["u"], h["I"], h["i"]) == (
        -5,
        250,
        -300,
        65000,
        -70000,
        4000000000,
    )
    assert h["D"] == Decimal("123.45") and h["S"] == "hello" and h["x"] == b"\0\xff"
    assert h["T"] == datetime.fromtimestamp(1700000000, UTC) and h["V"] is None
    assert h["F"] == {"in": 7, "b": 1} and h["t"] is True


def test_empty_body(channel, queue):
    channel.basic_publish("", queue, b"", pika.BasicProperties(content_type="text/plain"))
    method, props, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"" and props.content_type == "text/plain" and method.delivery_tag == 1
    channel.basic_publish("", queue, b"")
    got = []
    channel.basic_consume(queue, collector(got), auto_ack=True)
    assert pump(channel.connection, lambda: len(got) == 1)
    assert got[0][2] == b""


def test_body_larger_than_frame_max(channel, queue, raw):
    body = os.urandom(1024 * 1024)
    channel.basic_publish("", queue, body, pika.BasicProperties(message_id="big"))
    method, props, got = channel.basic_get(queue, auto_ack=False)
    assert got == body and props.message_id == "big"
    channel.basic_nack(method.delivery_tag, requeue=True)
    # the broker splits the body into frames of at most frame_max - 8 payload bytes
    raw.open_channel(1)
    raw.send_method(1, spec.Basic.Get(queue=queue, no_ack=True))
    cmd = raw.read_command()
    assert isinstance(cmd.method, spec.Basic.GetOk) and cmd.method.redelivered is True
    assert cmd.body == body
    assert cmd.body_frames == math.ceil(len(body) / (raw.frame_max - 8))


def test_raw_publish_split_into_many_small_frames(raw, channel, queue):
    raw.frame_max = 4096  # we may send smaller frames than negotiated
    body = bytes(range(256)) * 100
    raw.open_channel(1)
    raw.publish(1, "", queue, body)
    assert wait_for_count(channel, queue, 1) == 1
    assert channel.basic_get(queue, auto_ack=True)[2] == body


def test_get_message_count_tags_and_empty(channel, queue):
    assert channel.basic_get(queue) == (None, None, None)
    publish_n(channel, queue, 3)
    seen = []
    for _ in range(3):
        method, _, body = channel.basic_get(queue, auto_ack=False)
        seen.append((method.delivery_tag, method.message_count, method.redelivered, body))
    assert seen == [(1, 2, False, b"m0"), (2, 1, False, b"m1"), (3, 0, False, b"m2")]
    assert channel.basic_get(queue) == (None, None, None)


def test_get_through_named_exchange(channel, queue, unique):
    channel.exchange_declare(unique, "direct", auto_delete=True)
    channel.queue_bind(queue, unique, "rk")
    channel.basic_publish(unique, "rk", b"via-exchange")
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert (method.exchange, method.routing_key, body) == (unique, "rk", b"via-exchange")
    channel.exchange_delete(unique)


# --- acknowledgements -------------------------------------------------------------------------


def test_ack_multiple_then_close_requeues_rest(connection, channel, queue):
    publish_n(channel, queue, 5)
    tags = [channel.basic_get(queue)[0].delivery_tag for _ in range(5)]
    assert tags == [1, 2, 3, 4, 5]
    channel.basic_ack(3, multiple=True)
    channel.close()
    ch = connection.channel()
    rest = get_all(ch, queue)
    assert [(m.delivery_tag, m.redelivered, b) for m, _, b in rest] == [
        (1, True, b"m3"),
        (2, True, b"m4"),
    ]


def test_requeue_restores_original_order(channel, queue):
    publish_n(channel, queue, 6)
    assert [channel.basic_get(queue)[0].delivery_tag for _ in range(5)] == [1, 2, 3, 4, 5]
    # requeue m3, m1, m2 (tags 4, 2, 3) in that order: they return in queue order, first
    channel.basic_nack(4, requeue=True)
    channel.basic_reject(2, requeue=True)
    channel.basic_nack(3, requeue=True)
    got = get_all(channel, queue, auto_ack=False)
    assert [(b, m.delivery_tag, m.redelivered, m.message_count) for m, _, b in got] == [
        (b"m1", 6, True, 3),
        (b"m2", 7, True, 2),
        (b"m3", 8, True, 1),
        (b"m5", 9, False, 0),
    ]


def test_nack_multiple_requeue(channel, queue):
    publish_n(channel, queue, 5)
    for _ in range(4):
        channel.basic_get(queue)
    channel.basic_nack(3, multiple=True, requeue=True)  # m0 m1 m2 back, m3 still unacked
    got = get_all(channel, queue, auto_ack=False)
    assert [(b, m.delivery_tag, m.redelivered) for m, _, b in got] == [
        (b"m0", 5, True),
        (b"m1", 6, True),
        (b"m2", 7, True),
        (b"m4", 8, False),
    ]
    channel.basic_ack(0, multiple=True)
    assert message_count(channel, queue) == 0


def test_reject_and_nack_without_requeue_drop(channel, queue):
    publish_n(channel, queue, 4)
    for _ in range(4):
        channel.basic_get(queue)
    channel.basic_reject(1, requeue=False)
    channel.basic_nack(3, multiple=True, requeue=False)  # drops tags 2 and 3
    channel.basic_nack(4, requeue=False)
    channel.close()
    conn = channel.connection
    assert message_count(conn.channel(), queue) == 0


def test_ack_zero_multiple_acks_everything(connection, channel, queue):
    publish_n(channel, queue, 3)
    for _ in range(3):
        channel.basic_get(queue)
    channel.basic_ack(0, multiple=True)
    channel.close()
    assert message_count(connection.channel(), queue) == 0


def test_nack_zero_multiple_requeues_everything(channel, queue):
    publish_n(channel, queue, 2)
    channel.basic_get(queue)
    channel.basic_get(queue)
    channel.basic_nack(0, multiple=True, requeue=True)
    got = get_all(channel, queue)
    assert [(b, m.delivery_tag, m.redelivered) for m, _, b in got] == [
        (b"m0", 3, True),
        (b"m1", 4, True),
    ]


@pytest.mark.parametrize("op", ["ack", "ack-multiple", "nack", "nack-multiple", "reject"])
def test_unknown_delivery_tag(connection, channel, queue, op):
    channel.basic_publish("", queue, b"x")
    channel.basic_get(queue)
    action = {
        "ack": lambda: channel.basic_ack(5),
        "ack-multiple": lambda: channel.basic_ack(5, multiple=True),
        "nack": lambda: channel.basic_nack(5),
        "nack-multiple": lambda: channel.basic_nack(5, multiple=True),
        "reject": lambda: channel.basic_reject(5),
    }[op]
    action()
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.basic_get(queue)  # a synchronous call to receive the Channel.Close
    assert (exc.value.reply_code, exc.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 5",
    )
    assert connection.is_open
    # the unacked message went back to the queue when the channel closed
    assert message_count(connection.channel(), queue) == 1


def test_double_ack(channel, queue):
    channel.basic_publish("", queue, b"x")
    method, _, _ = channel.basic_get(queue)
    channel.basic_ack(method.delivery_tag)
    channel.basic_ack(method.delivery_tag)
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.basic_get(queue)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 1",
    )


def test_ack_zero_without_multiple_is_unknown(channel, queue):
    channel.basic_publish("", queue, b"x")
    channel.basic_get(queue)
    channel.basic_ack(0)
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.basic_get(queue)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 0",
    )


def test_delivery_tags_are_per_channel(connection, channel, queue):
    channel.basic_publish("", queue, b"x")
    assert channel.basic_get(queue)[0].delivery_tag == 1
    other = connection.channel()
    other.basic_ack(1)
    with pytest.raises(ChannelClosedByBroker) as exc:
        other.basic_get(queue)
    assert exc.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 1"
    channel.basic_ack(1)
    assert message_count(channel, queue) == 0


def test_ack_of_auto_acked_delivery_is_unknown(channel, queue):
    channel.basic_publish("", queue, b"x")
    method, _, _ = channel.basic_get(queue, auto_ack=True)
    assert method.delivery_tag == 1
    channel.basic_ack(1)
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.basic_get(queue)
    assert exc.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 1"


def test_recover_requeue_redelivers(connection, channel, queue):
    publish_n(channel, queue, 3)
    got = []
    channel.basic_consume(queue, collector(got))
    assert pump(connection, lambda: len(got) == 3)
    assert [(m.delivery_tag, m.redelivered, b) for m, _, b in got] == [
        (1, False, b"m0"),
        (2, False, b"m1"),
        (3, False, b"m2"),
    ]
    got.clear()
    channel.basic_recover(requeue=True)
    assert pump(connection, lambda: len(got) == 3)
    assert [(m.delivery_tag, m.redelivered, b) for m, _, b in got] == [
        (4, True, b"m0"),
        (5, True, b"m1"),
        (6, True, b"m2"),
    ]
    channel.basic_ack(6, multiple=True)
    # old tags are gone
    channel.basic_ack(1)
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.basic_qos(prefetch_count=0)
    assert exc.value.reply_text == "PRECONDITION_FAILED - unknown delivery tag 1"


def test_recover_without_requeue_not_implemented(channel):
    with pytest.raises(ConnectionClosedByBroker) as exc:
        channel.basic_recover(requeue=False)
    assert (exc.value.reply_code, exc.value.reply_text) == (540, "NOT_IMPLEMENTED - requeue=false")


# --- consumers --------------------------------------------------------------------------------


def test_consume_no_ack(connection, channel, queue):
    publish_n(channel, queue, 3)
    got = []
    tag = channel.basic_consume(queue, collector(got), auto_ack=True, consumer_tag="mine")
    assert tag == "mine"
    assert pump(connection, lambda: len(got) == 3)
    assert [
        (m.consumer_tag, m.delivery_tag, m.redelivered, m.exchange, m.routing_key, b)
        for m, _, b in got
    ] == [("mine", i + 1, False, "", queue, b"m%d" % i) for i in range(3)]
    channel.basic_cancel(tag)
    channel.close()
    assert message_count(connection.channel(), queue) == 0


def test_server_generated_consumer_tags(raw, queue):
    raw.open_channel(1)
    tags = [
        raw.rpc(
            1, spec.Basic.Consume(queue=queue, consumer_tag=""), spec.Basic.ConsumeOk
        ).consumer_tag
        for _ in range(2)
    ]
    for tag in tags:
        assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag), tag
    assert tags[0] != tags[1]
    raw.publish(1, "", queue, b"x")
    deliver = raw.read_command()
    assert isinstance(deliver.method, spec.Basic.Deliver)
    assert deliver.method.consumer_tag == tags[0] and deliver.body == b"x"
    cancel = raw.rpc(1, spec.Basic.Cancel(consumer_tag=tags[1]), spec.Basic.CancelOk)
    assert cancel.consumer_tag == tags[1]


def test_cancel_unknown_consumer_tag_is_ok(raw):
    raw.open_channel(1)
    ok = raw.rpc(1, spec.Basic.Cancel(consumer_tag="no-such-tag"), spec.Basic.CancelOk)
    assert ok.consumer_tag == "no-such-tag"


def test_reused_consumer_tag_closes_connection(raw, queue):
    raw.open_channel(1)
    raw.rpc(1, spec.Basic.Consume(queue=queue, consumer_tag="t1"), spec.Basic.ConsumeOk)
    raw.send_method(1, spec.Basic.Consume(queue=queue, consumer_tag="t1"))
    close = raw.expect(0, spec.Connection.Close)
    assert (close.reply_code, close.reply_text) == (
        530,
        "NOT_ALLOWED - attempt to reuse consumer tag 't1'",
    )
    assert (close.class_id, close.method_id) == (60, 20)
    raw.send_method(0, spec.Connection.CloseOk())


def test_cancel_stops_deliveries_and_keeps_unacked(connection, channel, queue):
    channel.basic_qos(prefetch_count=2)
    publish_n(channel, queue, 4)
    got = []
    tag = channel.basic_consume(queue, collector(got))
    assert pump(connection, lambda: len(got) == 2)
    channel.basic_cancel(tag)
    round_trip(channel, queue)
    assert len(got) == 2
    assert message_count(channel, queue) == 2
    # deliveries of a cancelled consumer can still be acked
    channel.basic_ack(got[0][0].delivery_tag)
    channel.basic_ack(got[1][0].delivery_tag)
    assert [m.delivery_tag for m, _, _ in get_all(channel, queue)] == [3, 4]


def test_exclusive_consumer_blocks_others(connection, channel, queue):
    channel.basic_consume(queue, collector([]), exclusive=True)
    other = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as exc:
        other.basic_consume(queue, collector([]))
    assert (exc.value.reply_code, exc.value.reply_text) == (
        403,
        f"ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use",
    )


def test_exclusive_consume_refused_when_queue_has_consumers(connection, channel, queue):
    channel.basic_consume(queue, collector([]))
    other = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as exc:
        other.basic_consume(queue, collector([]), exclusive=True)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        403,
        f"ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use",
    )


def test_consume_missing_queue(channel, unique):
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.basic_consume(unique + ".missing", collector([]))
    assert (exc.value.reply_code, exc.value.reply_text) == (
        404,
        f"NOT_FOUND - no queue '{unique}.missing' in vhost '/'",
    )


def test_get_missing_queue(channel, unique):
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.basic_get(unique + ".missing")
    assert (exc.value.reply_code, exc.value.reply_text) == (
        404,
        f"NOT_FOUND - no queue '{unique}.missing' in vhost '/'",
    )


# --- returns and routing failures -------------------------------------------------------------


def test_mandatory_unroutable_is_returned(connection, channel, unique):
    returned = []
    channel.add_on_return_callback(collector(returned))
    props = pika.BasicProperties(message_id="r1", headers={"k": 1})
    channel.basic_publish("", unique + ".nowhere", b"back", props, mandatory=True)
    channel.basic_publish("amq.direct", "nobody", b"back2", mandatory=True)
    assert pump(connection, lambda: len(returned) == 2)
    (m1, p1, b1), (m2, _, b2) = returned
    assert isinstance(m1, spec.Basic.Return)
    assert (m1.reply_code, m1.reply_text, m1.exchange, m1.routing_key, b1) == (
        312,
        "NO_ROUTE",
        "",
        unique + ".nowhere",
        b"back",
    )
    assert p1.message_id == "r1" and p1.headers == {"k": 1}
    assert (m2.reply_code, m2.reply_text, m2.exchange, m2.routing_key, b2) == (
        312,
        "NO_ROUTE",
        "amq.direct",
        "nobody",
        b"back2",
    )


def test_mandatory_unroutable_with_confirms_raises(channel, unique):
    channel.confirm_delivery()
    with pytest.raises(UnroutableError) as exc:
        channel.basic_publish("", unique + ".nowhere", b"back", mandatory=True)
    (msg,) = exc.value.messages
    assert (msg.method.reply_code, msg.method.reply_text, msg.method.routing_key, msg.body) == (
        312,
        "NO_ROUTE",
        unique + ".nowhere",
        b"back",
    )


def test_mandatory_routable_not_returned(connection, channel, queue):
    returned = []
    channel.add_on_return_callback(collector(returned))
    channel.basic_publish("", queue, b"ok", mandatory=True)
    assert wait_for_count(channel, queue, 1) == 1
    round_trip(channel)
    assert returned == []


def test_non_mandatory_unroutable_dropped(connection, channel, unique):
    returned = []
    channel.add_on_return_callback(collector(returned))
    channel.confirm_delivery()
    channel.basic_publish("", unique + ".nowhere", b"gone")  # acked, not returned
    channel.basic_publish("amq.fanout", "", b"gone")
    round_trip(channel)
    assert returned == []


def test_publish_to_missing_exchange_closes_channel(connection, channel, unique):
    channel.basic_publish(unique + ".nox", "rk", b"x")
    with pytest.raises(ChannelClosedByBroker) as exc:
        channel.basic_qos(prefetch_count=0)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        404,
        f"NOT_FOUND - no exchange '{unique}.nox' in vhost '/'",
    )
    assert connection.is_open
    connection.channel().basic_qos(prefetch_count=0)


def test_publish_to_missing_exchange_close_frame(raw, unique):
    raw.open_channel(1)
    raw.publish(1, unique + ".nox", "rk", b"x")
    close = raw.expect(1, spec.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        404,
        f"NOT_FOUND - no exchange '{unique}.nox' in vhost '/'",
        60,
        40,
    )
    raw.send_method(1, spec.Channel.CloseOk())
    raw.open_channel(1)  # the channel number can be reused


def test_immediate_publish_not_implemented(raw, queue):
    raw.open_channel(1)
    raw.publish(1, "", queue, b"x", immediate=True)
    close = raw.expect(0, spec.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540,
        "NOT_IMPLEMENTED - immediate=true",
        60,
        40,
    )
    raw.send_method(0, spec.Connection.CloseOk())


def test_qos_prefetch_size_not_implemented(channel):
    with pytest.raises(ConnectionClosedByBroker) as exc:
        channel.basic_qos(prefetch_size=1000)
    assert (exc.value.reply_code, exc.value.reply_text) == (
        540,
        "NOT_IMPLEMENTED - prefetch_size!=0 (1000)",
    )


def test_qos_prefetch_size_close_frame(raw):
    raw.open_channel(1)
    raw.send_method(1, spec.Basic.Qos(prefetch_size=1000, prefetch_count=0))
    close = raw.expect(0, spec.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540,
        "NOT_IMPLEMENTED - prefetch_size!=0 (1000)",
        60,
        10,
    )
    raw.send_method(0, spec.Connection.CloseOk())


def test_publish_then_consume_after_cleanup(broker, cleanup_queue):
    """A durable, persistent message survives closing the publishing connection."""
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare(cleanup_queue, durable=True)
    ch.basic_publish("", cleanup_queue, b"persist", pika.BasicProperties(delivery_mode=2))
    conn.close()
    conn = broker.connect()
    try:
        method, props, body = conn.channel().basic_get(cleanup_queue, auto_ack=True)
        assert (body, props.delivery_mode, method.redelivered) == (b"persist", 2, False)
    finally:
        conn.close()
