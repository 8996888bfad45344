"""Queues: declaration, equivalence, exclusivity, auto-delete, bindings, purge, deletion.

Every expectation here was checked against RabbitMQ 3.10.8.
"""

from __future__ import annotations

import os
import re
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest
from amqp_raw import RawClient
from conftest import Broker
from pika import spec
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.select_connection import SelectConnection
from pika_helpers import pump

Channel = BlockingChannel


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A short unique name: long ones would push reply texts past 255 bytes, where RabbitMQ
    truncates them (see test_long_reply_text_is_truncated)."""
    node = request.node
    digest = zlib.crc32(node.nodeid.encode())
    return f"{node.originalname[:18]}.{digest:08x}.{os.getpid()}"


@pytest.fixture
def channel(connection: pika.BlockingConnection) -> Channel:
    """A channel in confirm mode: basic_publish returns once the broker has routed and
    enqueued the message, so counts read right afterwards are exact (RabbitMQ enqueues
    asynchronously otherwise)."""
    ch = connection.channel()
    ch.confirm_delivery()
    return ch


SERVER_NAMED = re.compile(r"^amq\.gen-[A-Za-z0-9_-]{22}$")


def locked(queue: str) -> str:
    return (
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{queue}' in "
        "vhost '/'. It could be originally declared on another connection or the exclusive "
        "property value does not match that of the original declaration."
    )


def closed_by_broker(ch: Channel, call, *args, **kwargs) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        call(*args, **kwargs)
    assert ch.is_closed
    return info.value.reply_code, info.value.reply_text


@pytest.fixture
def cleanup(broker: Broker) -> Iterator[list[str]]:
    """Queues named here are deleted after the test, from a fresh connection."""
    names: list[str] = []
    yield names
    if names:
        conn = broker.connect()
        ch = conn.channel()
        for name in names:
            ch.queue_delete(name)
        conn.close()


@pytest.fixture
def other(broker: Broker) -> Iterator[pika.BlockingConnection]:
    conn = broker.connect()
    yield conn
    if conn.is_open:
        conn.close()


def declare_ok(frame: Any) -> tuple[str, int, int]:
    m = frame.method
    assert isinstance(m, pika.spec.Queue.DeclareOk)
    return m.queue, m.message_count, m.consumer_count


def publish(ch: Channel, queue: str, n: int, prefix: str = "m") -> None:
    for i in range(n):
        ch.basic_publish("", queue, f"{prefix}{i}".encode())


# --------------------------------------------------------------------------- declare


def test_server_named_queue(channel: Channel) -> None:
    names = set()
    for _ in range(5):
        name, messages, consumers = declare_ok(channel.queue_declare("", exclusive=True))
        assert SERVER_NAMED.match(name), name
        assert (messages, consumers) == (0, 0)
        names.add(name)
    assert len(names) == 5


def test_declare_named_queue(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    assert declare_ok(channel.queue_declare(unique)) == (unique, 0, 0)


def test_declare_ok_counts(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique)
    publish(channel, unique, 3)
    assert declare_ok(channel.queue_declare(unique)) == (unique, 3, 0)
    consumer_ch = connection.channel()
    consumer_ch.basic_qos(prefetch_count=1)
    delivered: list[bytes] = []
    consumer_ch.basic_consume(unique, lambda _c, _m, _p, body: delivered.append(body))
    consumer_ch.basic_consume(unique, lambda _c, _m, _p, body: delivered.append(body))
    assert pump(connection, lambda: len(delivered) == 2)
    # ready messages only: the two consumers hold one unacked message each
    assert declare_ok(channel.queue_declare(unique, passive=True)) == (unique, 1, 2)


def test_passive_declare(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique, durable=True, arguments={"x-message-ttl": 1000})
    publish(channel, unique, 2)
    # other fields of a passive declare are ignored
    assert declare_ok(channel.queue_declare(unique, passive=True)) == (unique, 2, 0)


def test_passive_declare_missing(channel: Channel, unique: str) -> None:
    assert closed_by_broker(channel, channel.queue_declare, unique, passive=True) == (
        404,
        f"NOT_FOUND - no queue '{unique}' in vhost '/'",
    )


def test_passive_declare_empty_name(channel: Channel) -> None:
    assert closed_by_broker(channel, channel.queue_declare, "", passive=True) == (
        404,
        "NOT_FOUND - no queue '' in vhost '/'",
    )


@pytest.mark.parametrize("name", ["amq.foo", "amq.gen-abc", "amq."])
def test_reserved_prefix(channel: Channel, name: str) -> None:
    assert closed_by_broker(channel, channel.queue_declare, name) == (
        403,
        f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'",
    )


def test_reserved_prefix_passive_missing(channel: Channel) -> None:
    assert closed_by_broker(channel, channel.queue_declare, "amq.nosuch", passive=True) == (
        404,
        "NOT_FOUND - no queue 'amq.nosuch' in vhost '/'",
    )


def test_redeclare_server_named_queue_by_name(
    connection: pika.BlockingConnection, channel: Channel
) -> None:
    name = channel.queue_declare("", exclusive=True).method.queue
    # only a passive declare may name it; an active one hits the reserved prefix check
    assert declare_ok(channel.queue_declare(name, passive=True)) == (name, 0, 0)
    assert closed_by_broker(channel, channel.queue_declare, name, exclusive=True) == (
        403,
        f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'",
    )
    assert declare_ok(connection.channel().queue_declare(name, passive=True)) == (name, 0, 0)


def test_long_reply_text_is_truncated(channel: Channel, unique: str) -> None:
    """reply-text is a shortstr: RabbitMQ cuts it to 252 bytes and appends "..."."""
    name = (unique + "-" + "x" * 255)[:240]
    code, text = closed_by_broker(channel, channel.queue_declare, name, passive=True)
    assert code == 404
    full = f"NOT_FOUND - no queue '{name}' in vhost '/'"
    assert len(text) == 255
    assert text == full[:252] + "..."


# --------------------------------------------------------------------------- equivalence


def inequivalent(arg: str, queue: str, detail: str) -> str:
    return (
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{queue}' in vhost '/': {detail}"
    )


@pytest.mark.parametrize(
    ("first", "second", "arg", "detail"),
    [
        ({}, {"durable": True}, "durable", "received 'true' but current is 'false'"),
        ({"durable": True}, {}, "durable", "received 'false' but current is 'true'"),
        ({}, {"auto_delete": True}, "auto_delete", "received 'true' but current is 'false'"),
        ({"auto_delete": True}, {}, "auto_delete", "received 'false' but current is 'true'"),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {"arguments": {"x-message-ttl": 2000}},
            "x-message-ttl",
            "received '2000' but current is '1000'",
        ),
        (
            {},
            {"arguments": {"x-message-ttl": 60000}},
            "x-message-ttl",
            "received the value '60000' of type 'signedint' but current is none",
        ),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {},
            "x-message-ttl",
            "received none but current is the value '1000' of type 'signedint'",
        ),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {"arguments": {"x-message-ttl": 2**40}},
            "x-message-ttl",
            "received '1099511627776' but current is '1000'",
        ),
        (
            {"arguments": {"x-max-length": 10}},
            {"arguments": {"x-max-length": "10"}},
            "x-max-length",
            "received '10' but current is '10'",
        ),
        (
            {"arguments": {"x-dead-letter-exchange": "a"}},
            {"arguments": {"x-dead-letter-exchange": "b"}},
            "x-dead-letter-exchange",
            "received 'b' but current is 'a'",
        ),
        (
            {},
            {"arguments": {"x-dead-letter-exchange": "dlx"}},
            "x-dead-letter-exchange",
            "received the value 'dlx' of type 'longstr' but current is none",
        ),
    ],
)
def test_redeclare_inequivalent(
    other: pika.BlockingConnection,
    channel: Channel,
    unique: str,
    cleanup: list[str],
    first: dict,
    second: dict,
    arg: str,
    detail: str,
) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique, **first)
    assert closed_by_broker(channel, channel.queue_declare, unique, **second) == (
        406,
        inequivalent(arg, unique, detail),
    )
    # the queue keeps its original definition
    assert declare_ok(other.channel().queue_declare(unique, **first)) == (unique, 0, 0)


def test_unknown_arguments_are_not_compared(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique, arguments={"custom": "a"})
    assert declare_ok(channel.queue_declare(unique, arguments={"custom": "b"})) == (unique, 0, 0)
    assert declare_ok(channel.queue_declare(unique)) == (unique, 0, 0)


@pytest.mark.parametrize(
    ("arguments", "detail"),
    [
        ({"x-max-length": -1}, "{value_negative,-1}"),
        ({"x-expires": 0}, "{value_zero,0}"),
        ({"x-message-ttl": "abc"}, '"expected integer, got longstr"'),
        ({"x-overflow": "foo"}, "invalid_overflow"),
        ({"x-dead-letter-routing-key": "rk"}, "routing_key_but_no_dlx_defined"),
    ],
)
def test_invalid_arguments(channel: Channel, unique: str, arguments: dict, detail: str) -> None:
    arg = next(iter(arguments))
    assert closed_by_broker(channel, channel.queue_declare, unique, arguments=arguments) == (
        406,
        f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{unique}' in vhost '/': {detail}",
    )


@pytest.mark.parametrize(
    ("first", "second"), [({}, {"exclusive": True}), ({"exclusive": True}, {})]
)
def test_redeclare_exclusive_mismatch(
    channel: Channel, unique: str, cleanup: list[str], first: dict, second: dict
) -> None:
    if not first:
        cleanup.append(unique)  # an exclusive queue goes away with its connection
    channel.queue_declare(unique, **first)
    assert closed_by_broker(channel, channel.queue_declare, unique, **second) == (
        405,
        locked(unique),
    )


@pytest.mark.parametrize(
    ("first", "second", "answer"),
    [
        # RabbitMQ 3.10 makes an exclusive queue non-durable whatever the flag said
        ({}, {"durable": True}, None),
        ({"durable": True}, {}, None),
        ({}, {"durable": True, "arguments": {"x-queue-type": "classic"}}, None),
        ({}, {"arguments": {"other": 1}}, None),  # not compared
        ({}, {"auto_delete": True}, (406, "auto_delete", "received 'true' but current is 'false'")),
        (
            {},
            {"durable": True, "auto_delete": True},
            (406, "auto_delete", "received 'true' but current is 'false'"),
        ),
        (
            {},
            {"durable": True, "arguments": {"x-message-ttl": 1000}},
            (
                406,
                "x-message-ttl",
                "received the value '1000' of type 'signedint' but current is none",
            ),
        ),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {"durable": True, "arguments": {"x-message-ttl": 2000}},
            (406, "x-message-ttl", "received '2000' but current is '1000'"),
        ),
        (
            {},
            {"arguments": {"x-max-length": -1}},
            (
                406,
                "x-max-length",
                "received the value '-1' of type 'signedint' but current is none",
            ),
        ),
        ({}, {"exclusive": False, "durable": True}, (405, "", "")),
    ],
)
def test_exclusive_queue_redeclared_by_its_owner(
    connection: pika.BlockingConnection,
    unique: str,
    first: dict,
    second: dict,
    answer: tuple[int, str, str] | None,
) -> None:
    ch = connection.channel()
    ch.queue_declare(unique, exclusive=True, **first)
    ch.basic_publish("", unique, b"kept")
    ch = connection.channel()
    redeclare = {"exclusive": True, **second}
    if answer is None:
        assert declare_ok(ch.queue_declare(unique, **redeclare)) == (unique, 1, 0)
        return
    code, arg, detail = answer
    expected = locked(unique) if code == 405 else inequivalent(arg, unique, detail)
    assert closed_by_broker(ch, ch.queue_declare, unique, **redeclare) == (code, expected)
    assert declare_ok(connection.channel().queue_declare(unique, passive=True)) == (unique, 1, 0)


@pytest.mark.parametrize(
    ("first", "second", "detail"),
    [
        ({}, {"x-queue-type": "classic"}, None),
        ({"x-queue-type": "classic"}, {}, None),
        (
            {"x-queue-type": "classic"},
            {"x-queue-type": "quorum"},
            "received 'quorum' but current is 'classic'",
        ),
        (
            {},
            {"x-queue-type": "quorum"},
            "received the value 'quorum' of type 'longstr' but current is none",
        ),
    ],
)
def test_redeclare_queue_type_classic_is_the_default(
    channel: Channel, unique: str, cleanup: list[str], first: dict, second: dict, detail: str | None
) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique, arguments=first)
    if detail is None:
        assert declare_ok(channel.queue_declare(unique, arguments=second)) == (unique, 0, 0)
    else:
        assert closed_by_broker(channel, channel.queue_declare, unique, arguments=second) == (
            406,
            inequivalent("x-queue-type", unique, detail),
        )


# --------------------------------------------------------------------------- exclusive


def test_exclusive_queue_from_another_connection(
    channel: Channel, other: pika.BlockingConnection, unique: str
) -> None:
    channel.queue_declare(unique, exclusive=True)
    operations = {
        "declare": lambda ch: ch.queue_declare(unique),
        "declare exclusive": lambda ch: ch.queue_declare(unique, exclusive=True),
        "passive": lambda ch: ch.queue_declare(unique, passive=True),
        "consume": lambda ch: ch.basic_consume(unique, lambda *a: None),
        "get": lambda ch: ch.basic_get(unique),
        "purge": lambda ch: ch.queue_purge(unique),
        "delete": lambda ch: ch.queue_delete(unique),
        "bind": lambda ch: ch.queue_bind(unique, "amq.fanout"),
    }
    for name, operation in operations.items():
        ch = other.channel()
        assert closed_by_broker(ch, operation, ch) == (405, locked(unique)), name
    # the owner is unaffected
    assert declare_ok(channel.queue_declare(unique, passive=True)) == (unique, 0, 0)


def test_publish_to_exclusive_queue_from_another_connection(
    channel: Channel, other: pika.BlockingConnection, unique: str
) -> None:
    channel.queue_declare(unique, exclusive=True)
    publisher = other.channel()
    publisher.confirm_delivery()
    publisher.basic_publish("", unique, b"from outside")
    assert channel.basic_get(unique, auto_ack=True)[2] == b"from outside"


def test_exclusive_queue_vanishes_with_connection(
    broker: Broker, other: pika.BlockingConnection, unique: str
) -> None:
    owner = broker.connect()
    owner.channel().queue_declare(unique, exclusive=True)
    owner.close()
    ch = other.channel()
    assert closed_by_broker(ch, ch.queue_declare, unique, passive=True) == (
        404,
        f"NOT_FOUND - no queue '{unique}' in vhost '/'",
    )
    # the name is free again
    assert declare_ok(other.channel().queue_declare(unique, exclusive=True)) == (unique, 0, 0)


def test_exclusive_queue_survives_channel_close(
    connection: pika.BlockingConnection, unique: str
) -> None:
    ch = connection.channel()
    ch.queue_declare(unique, exclusive=True)
    ch.close()
    assert declare_ok(connection.channel().queue_declare(unique, passive=True)) == (unique, 0, 0)


# --------------------------------------------------------------------------- auto-delete


def test_auto_delete_on_last_consumer_cancel(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique, auto_delete=True)
    # no consumer yet: the queue stays, even across basic.get
    channel.basic_publish("", unique, b"x")
    channel.basic_get(unique, auto_ack=True)
    assert declare_ok(channel.queue_declare(unique, passive=True)) == (unique, 0, 0)
    tag1 = channel.basic_consume(unique, lambda *a: None)
    tag2 = channel.basic_consume(unique, lambda *a: None)
    channel.basic_cancel(tag1)
    assert declare_ok(channel.queue_declare(unique, passive=True)) == (unique, 0, 1)
    channel.basic_cancel(tag2)
    ch = connection.channel()
    assert closed_by_broker(ch, ch.queue_declare, unique, passive=True) == (
        404,
        f"NOT_FOUND - no queue '{unique}' in vhost '/'",
    )


def test_auto_delete_when_consumer_channel_closes(
    connection: pika.BlockingConnection, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    ch = connection.channel()
    ch.queue_declare(unique, auto_delete=True)
    ch.basic_consume(unique, lambda *a: None)
    ch.close()
    probe = connection.channel()
    assert closed_by_broker(probe, probe.queue_declare, unique, passive=True)[0] == 404


def test_auto_delete_without_consumers_survives_connection(
    broker: Broker, other: pika.BlockingConnection, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    conn = broker.connect()
    conn.channel().queue_declare(unique, auto_delete=True)
    conn.close()
    assert declare_ok(other.channel().queue_declare(unique, passive=True)) == (unique, 0, 0)


# --------------------------------------------------------------------------- bindings


def test_bind_unbind(channel: Channel, unique: str) -> None:
    exchange = f"{unique}.x"
    channel.exchange_declare(exchange, "direct", auto_delete=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    assert isinstance(channel.queue_bind(queue, exchange, "a").method, pika.spec.Queue.BindOk)
    channel.queue_bind(queue, exchange, "b")
    for key in ("a", "b", "c"):
        channel.basic_publish(exchange, key, key.encode())
    assert declare_ok(channel.queue_declare(queue, passive=True))[1] == 2
    assert isinstance(channel.queue_unbind(queue, exchange, "a").method, pika.spec.Queue.UnbindOk)
    channel.basic_publish(exchange, "a", b"a2")
    channel.basic_publish(exchange, "b", b"b2")
    bodies = [channel.basic_get(queue, auto_ack=True)[2] for _ in range(3)]
    assert bodies == [b"a", b"b", b"b2"]
    assert channel.basic_get(queue)[0] is None


def test_default_exchange_binding(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"by name")
    channel.basic_publish("amq.direct", unique, b"not bound to amq.direct")
    assert declare_ok(channel.queue_declare(unique, passive=True))[1] == 1


def test_bind_missing_queue(channel: Channel, unique: str) -> None:
    assert closed_by_broker(channel, channel.queue_bind, unique, "amq.direct", "k") == (
        404,
        f"NOT_FOUND - no queue '{unique}' in vhost '/'",
    )


def test_bind_missing_exchange(channel: Channel, unique: str) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    assert closed_by_broker(channel, channel.queue_bind, queue, unique, "k") == (
        404,
        f"NOT_FOUND - no exchange '{unique}' in vhost '/'",
    )


def test_bind_both_missing_reports_exchange(channel: Channel, unique: str) -> None:
    assert closed_by_broker(channel, channel.queue_bind, f"{unique}.q", f"{unique}.x") == (
        404,
        f"NOT_FOUND - no exchange '{unique}.x' in vhost '/'",
    )


def test_empty_queue_name_means_last_declared(channel: Channel) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind("", "amq.direct", queue)
    channel.basic_publish("amq.direct", queue, b"x")
    assert declare_ok(channel.queue_declare(queue, passive=True)) == (queue, 1, 0)
    assert channel.queue_purge("").method.message_count == 1
    channel.queue_unbind("", "amq.direct", queue)
    assert channel.queue_delete("").method.message_count == 0
    assert closed_by_broker(channel, channel.queue_declare, queue, passive=True)[0] == 404


@pytest.mark.parametrize("operation", ["bind", "purge", "delete"])
def test_empty_queue_name_without_declaration(channel: Channel, operation: str) -> None:
    call = {
        "bind": lambda: channel.queue_bind("", "amq.direct", "k"),
        "purge": lambda: channel.queue_purge(""),
        "delete": lambda: channel.queue_delete(""),
    }[operation]
    assert closed_by_broker(channel, call) == (404, "NOT_FOUND - no previously declared queue")


# --------------------------------------------------------------------------- purge / delete


def test_purge(channel: Channel) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    publish(channel, queue, 5)
    method, _, _ = channel.basic_get(queue)  # one unacked message is not purged
    ok = channel.queue_purge(queue).method
    assert isinstance(ok, pika.spec.Queue.PurgeOk) and ok.message_count == 4
    assert declare_ok(channel.queue_declare(queue, passive=True)) == (queue, 0, 0)
    assert channel.queue_purge(queue).method.message_count == 0
    channel.basic_reject(method.delivery_tag, requeue=True)
    # the reject is asynchronous: poll briefly for the requeued message
    deadline = time.monotonic() + 2
    while declare_ok(channel.queue_declare(queue, passive=True))[1] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert declare_ok(channel.queue_declare(queue, passive=True)) == (queue, 1, 0)


def test_purge_missing(channel: Channel, unique: str) -> None:
    assert closed_by_broker(channel, channel.queue_purge, unique) == (
        404,
        f"NOT_FOUND - no queue '{unique}' in vhost '/'",
    )


def test_delete_returns_message_count(channel: Channel, unique: str) -> None:
    channel.queue_declare(unique)
    publish(channel, unique, 3)
    channel.basic_get(unique)  # unacked messages are not counted
    ok = channel.queue_delete(unique).method
    assert isinstance(ok, pika.spec.Queue.DeleteOk) and ok.message_count == 2
    assert closed_by_broker(channel, channel.queue_declare, unique, passive=True)[0] == 404


def test_delete_missing_is_ok(channel: Channel, unique: str) -> None:
    assert channel.queue_delete(unique).method.message_count == 0
    assert channel.queue_delete(unique, if_unused=True, if_empty=True).method.message_count == 0


def test_delete_if_unused(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique)
    consumer = connection.channel()
    tag = consumer.basic_consume(unique, lambda *a: None)
    assert closed_by_broker(channel, channel.queue_delete, unique, if_unused=True) == (
        406,
        f"PRECONDITION_FAILED - queue '{unique}' in vhost '/' in use",
    )
    consumer.basic_cancel(tag)
    assert connection.channel().queue_delete(unique, if_unused=True).method.message_count == 0


def test_delete_if_empty(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"x")
    assert closed_by_broker(channel, channel.queue_delete, unique, if_empty=True) == (
        406,
        f"PRECONDITION_FAILED - queue '{unique}' in vhost '/' not empty",
    )
    ch = connection.channel()
    ch.basic_get(unique)  # only an unacked message left: counts as empty
    assert ch.queue_delete(unique, if_empty=True).method.message_count == 0


def test_delete_removes_bindings(channel: Channel, unique: str) -> None:
    exchange = f"{unique}.x"
    channel.exchange_declare(exchange, "fanout", auto_delete=False)
    try:
        channel.queue_declare(unique)
        channel.queue_bind(unique, exchange)
        channel.queue_delete(unique)
        channel.queue_declare(unique)
        channel.basic_publish(exchange, "", b"x")
        assert declare_ok(channel.queue_declare(unique, passive=True)) == (unique, 0, 0)
        channel.queue_delete(unique)
    finally:
        channel.exchange_delete(exchange)


def test_consume_and_get_missing_queue(
    connection: pika.BlockingConnection, channel: Channel, unique: str
) -> None:
    assert closed_by_broker(channel, channel.basic_consume, unique, lambda *a: None) == (
        404,
        f"NOT_FOUND - no queue '{unique}' in vhost '/'",
    )
    ch = connection.channel()
    assert closed_by_broker(ch, ch.basic_get, unique) == (
        404,
        f"NOT_FOUND - no queue '{unique}' in vhost '/'",
    )


# --------------------------------------------------------------------------- consumer cancel


def test_consumers_get_cancel_when_queue_deleted(
    connection: pika.BlockingConnection,
    channel: Channel,
    other: pika.BlockingConnection,
    unique: str,
) -> None:
    channel.queue_declare(unique)
    cancelled: list[str] = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag1 = channel.basic_consume(unique, lambda *a: None)
    tag2 = channel.basic_consume(unique, lambda *a: None)
    assert other.channel().queue_delete(unique).method.message_count == 0
    assert pump(connection, lambda: len(cancelled) == 2)
    assert sorted(cancelled) == sorted([tag1, tag2])
    assert channel.is_open
    assert channel.consumer_tags == []


def test_select_connection_consumer_cancel_notification(broker: Broker, unique: str) -> None:
    state: dict[str, Any] = {"events": []}

    def on_open(conn: SelectConnection) -> None:
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch: pika.channel.Channel) -> None:
        state["channel"] = ch
        ch.add_on_cancel_callback(on_cancel)
        ch.queue_declare(unique, callback=on_declared)

    def on_declared(frame: pika.frame.Method) -> None:
        ch = state["channel"]
        state["tag"] = ch.basic_consume(
            unique, lambda *a: None, callback=lambda f: ch.queue_delete(unique)
        )

    def on_cancel(frame: pika.frame.Method) -> None:
        state["events"].append(("cancel", frame.method.consumer_tag))
        state["channel"].connection.close()

    def on_closed(conn: SelectConnection, reason: BaseException) -> None:
        state["events"].append(("closed", type(reason).__name__))
        conn.ioloop.stop()

    conn = SelectConnection(
        broker.params(),
        on_open_callback=on_open,
        on_open_error_callback=lambda c, e: c.ioloop.stop(),
        on_close_callback=on_closed,
    )
    conn.ioloop.call_later(5, conn.ioloop.stop)
    conn.ioloop.start()
    assert state["events"] == [("cancel", state["tag"]), ("closed", "ConnectionClosedByClient")]


def commands(client: RawClient, count: int) -> list[tuple[int, str, str | None]]:
    """The next `count` commands: (channel, method name, consumer tag if it has one)."""
    got = []
    for _ in range(count):
        cmd = client.read_command()
        got.append((cmd.channel, cmd.method.NAME, getattr(cmd.method, "consumer_tag", None)))
    return got


@pytest.mark.parametrize("kind", ["plain", "durable", "exclusive", "auto_delete"])
def test_queue_delete_ok_comes_before_the_cancel_of_own_consumers(
    broker: Broker, unique: str, kind: str
) -> None:
    """As RabbitMQ: the deleting channel hears Delete-Ok, then Basic.Cancel for its own
    consumers, then the reply to its next method; another channel of the connection gets its
    Basic.Cancel too (in no particular order with the first channel's frames)."""
    flags = {kind: True} if kind != "plain" else {}
    with RawClient(broker.host, broker.port) as client:
        client.open_channel(1)
        client.open_channel(2)
        client.rpc(1, spec.Queue.Declare(queue=unique, **flags), spec.Queue.DeclareOk)
        for channel, tag in ((1, "own.1"), (2, "other"), (1, "own.2")):
            client.rpc(
                channel, spec.Basic.Consume(queue=unique, consumer_tag=tag), spec.Basic.ConsumeOk
            )
        client.send_method(1, spec.Queue.Delete(queue=unique))
        client.send_method(1, spec.Basic.Qos(prefetch_count=1))
        got = commands(client, 5)
    assert [c for c in got if c[0] == 1] == [
        (1, "Queue.DeleteOk", None),
        (1, "Basic.Cancel", "own.1"),
        (1, "Basic.Cancel", "own.2"),
        (1, "Basic.QosOk", None),
    ]
    assert [c for c in got if c[0] == 2] == [(2, "Basic.Cancel", "other")]


def test_queue_delete_nowait_cancels_before_the_next_reply(broker: Broker, unique: str) -> None:
    with RawClient(broker.host, broker.port) as client:
        client.open_channel(1)
        client.rpc(1, spec.Queue.Declare(queue=unique), spec.Queue.DeclareOk)
        client.rpc(1, spec.Basic.Consume(queue=unique, consumer_tag="own"), spec.Basic.ConsumeOk)
        client.send_method(1, spec.Queue.Delete(queue=unique, nowait=True))
        client.send_method(1, spec.Basic.Qos(prefetch_count=1))
        assert commands(client, 2) == [(1, "Basic.Cancel", "own"), (1, "Basic.QosOk", None)]


def test_cancelling_the_last_consumer_of_an_auto_delete_queue(broker: Broker, unique: str) -> None:
    """The queue goes with its last consumer: the client hears only Cancel-Ok."""
    with RawClient(broker.host, broker.port) as client:
        client.open_channel(1)
        client.rpc(1, spec.Queue.Declare(queue=unique, auto_delete=True), spec.Queue.DeclareOk)
        client.rpc(1, spec.Basic.Consume(queue=unique, consumer_tag="last"), spec.Basic.ConsumeOk)
        client.send_method(1, spec.Basic.Cancel(consumer_tag="last"))
        client.send_method(1, spec.Queue.Declare(queue=unique, passive=True))
        got = commands(client, 2)
        assert got[0] == (1, "Basic.CancelOk", "last")
        assert got[1][:2] == (1, "Channel.Close")


def test_exclusive_consume(
    connection: pika.BlockingConnection,
    channel: Channel,
    other: pika.BlockingConnection,
    unique: str,
    cleanup: list[str],
) -> None:
    cleanup.append(unique)
    channel.queue_declare(unique)
    channel.basic_consume(unique, lambda *a: None, exclusive=True)
    ch = other.channel()
    assert closed_by_broker(ch, ch.basic_consume, unique, lambda *a: None) == (
        403,
        f"ACCESS_REFUSED - queue '{unique}' in vhost '/' in exclusive use",
    )
    ch = connection.channel()
    assert closed_by_broker(ch, ch.basic_consume, unique, lambda *a: None, exclusive=True) == (
        403,
        f"ACCESS_REFUSED - queue '{unique}' in vhost '/' in exclusive use",
    )
