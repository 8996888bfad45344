"""Exchanges: declaration, equivalence, deletion, routing by type, exchange-to-exchange bindings.

Every expectation here was checked against RabbitMQ 3.10.8 unless marked trimq-only.
"""

from __future__ import annotations

import gc
import os
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterator

import pika
import pika.exceptions
import pytest
from amqp_raw import RawClient, encode_typed_table, header_payload_with_headers
from conftest import Broker
from pika import spec
from pika.adapters.blocking_connection import BlockingChannel
from pika_helpers import pump, round_trip

from trimq.broker.vhost import VHost

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


@pytest.fixture
def cleanup(connection: pika.BlockingConnection) -> Iterator[list[str]]:
    """Exchanges named here are deleted after the test, on a fresh channel."""
    names: list[str] = []
    yield names
    if names and connection.is_open:
        ch = connection.channel()
        for name in names:
            ch.exchange_delete(name)
        ch.close()


def closed_by_broker(ch: Channel, call, *args, **kwargs) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        call(*args, **kwargs)
    assert ch.is_closed
    return info.value.reply_code, info.value.reply_text


def temp_queue(ch: Channel) -> str:
    return ch.queue_declare("", exclusive=True).method.queue


def drain(ch: Channel, queue: str) -> list[bytes]:
    bodies = []
    while True:
        method, _, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def inequivalent(arg: str, name: str, received: str, current: str) -> str:
    return (
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for exchange '{name}' in vhost '/': "
        f"received '{received}' but current is '{current}'"
    )


# --------------------------------------------------------------------------- declare


@pytest.mark.parametrize("kind", ["direct", "fanout", "topic", "headers"])
def test_declare_each_type(channel: Channel, unique: str, cleanup: list[str], kind: str) -> None:
    cleanup.append(unique)
    frame = channel.exchange_declare(unique, kind)
    assert isinstance(frame.method, pika.spec.Exchange.DeclareOk)
    # redeclaring identically and passive declaring both succeed
    assert isinstance(channel.exchange_declare(unique, kind).method, pika.spec.Exchange.DeclareOk)
    passive = channel.exchange_declare(unique, passive=True)
    assert isinstance(passive.method, pika.spec.Exchange.DeclareOk)


def test_passive_declare_ignores_other_fields(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "direct")
    frame = channel.exchange_declare(unique, "fanout", passive=True, durable=True)
    assert isinstance(frame.method, pika.spec.Exchange.DeclareOk)


def test_passive_declare_missing(channel: Channel, unique: str) -> None:
    assert closed_by_broker(channel, channel.exchange_declare, unique, passive=True) == (
        404,
        f"NOT_FOUND - no exchange '{unique}' in vhost '/'",
    )


def test_predeclared_exchanges_exist(channel: Channel) -> None:
    for name in ("amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"):
        channel.exchange_declare(name, passive=True)
    # redeclaring one with its own properties is allowed
    channel.exchange_declare("amq.direct", "direct", durable=True)


@pytest.mark.parametrize(
    ("first", "second", "arg", "received", "current"),
    [
        ({"exchange_type": "direct"}, {"exchange_type": "fanout"}, "type", "fanout", "direct"),
        ({"exchange_type": "topic"}, {"exchange_type": "headers"}, "type", "headers", "topic"),
        ({}, {"durable": True}, "durable", "true", "false"),
        ({"durable": True}, {"durable": False}, "durable", "false", "true"),
        ({}, {"auto_delete": True}, "auto_delete", "true", "false"),
        ({"auto_delete": True}, {}, "auto_delete", "false", "true"),
        ({}, {"internal": True}, "internal", "true", "false"),
    ],
)
def test_redeclare_inequivalent(
    connection: pika.BlockingConnection,
    channel: Channel,
    unique: str,
    cleanup: list[str],
    first: dict,
    second: dict,
    arg: str,
    received: str,
    current: str,
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, **first)
    assert closed_by_broker(channel, channel.exchange_declare, unique, **second) == (
        406,
        inequivalent(arg, unique, received, current),
    )
    # the original is untouched
    connection.channel().exchange_declare(unique, **first)


def test_redeclare_alternate_exchange_differs(
    channel: Channel, unique: str, cleanup: list[str], connection: pika.BlockingConnection
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, arguments={"alternate-exchange": "ae1"})
    assert closed_by_broker(
        channel, channel.exchange_declare, unique, arguments={"alternate-exchange": "ae2"}
    ) == (406, inequivalent("alternate-exchange", unique, "ae2", "ae1"))
    ch = connection.channel()
    assert closed_by_broker(ch, ch.exchange_declare, unique) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
        f"'{unique}' in vhost '/': received none but current is the value 'ae1' of type "
        f"'longstr'",
    )


def test_redeclare_adding_alternate_exchange(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique)
    assert closed_by_broker(
        channel, channel.exchange_declare, unique, arguments={"alternate-exchange": "ae"}
    ) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
        f"'{unique}' in vhost '/': received the value 'ae' of type 'longstr' but current is "
        f"none",
    )


def test_other_exchange_arguments_are_not_compared(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, arguments={"x-custom": "a"})
    channel.exchange_declare(unique, arguments={"x-custom": "b"})
    channel.exchange_declare(unique)


@pytest.mark.parametrize("name", ["amq.foo", "amq.direct.mine", "amq."])
def test_declare_reserved_prefix(channel: Channel, name: str) -> None:
    assert closed_by_broker(channel, channel.exchange_declare, name) == (
        403,
        f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'",
    )


def test_passive_declare_reserved_prefix_missing(channel: Channel) -> None:
    assert closed_by_broker(channel, channel.exchange_declare, "amq.nosuch", passive=True) == (
        404,
        "NOT_FOUND - no exchange 'amq.nosuch' in vhost '/'",
    )


@pytest.mark.parametrize("passive", [False, True])
def test_declare_default_exchange(channel: Channel, passive: bool) -> None:
    assert closed_by_broker(channel, channel.exchange_declare, "", passive=passive) == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )


@pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: RabbitMQ 3.10 closes the connection with 503 "
    "COMMAND_INVALID - unknown exchange type 'ZZwwInvalid'",
)
def test_declare_unknown_type(
    connection: pika.BlockingConnection, channel: Channel, unique: str
) -> None:
    # trimq follows RabbitMQ 4 here (a channel error, 406), as pika's acceptance suite
    # expects (TestInvalidExchangeTypeRaisesConnectionClosed asserts ChannelClosedByBroker 406).
    # RabbitMQ 4's rabbit_exchange:check_type raises precondition_failed with this text.
    assert closed_by_broker(channel, channel.exchange_declare, unique, "ZZwwInvalid") == (
        406,
        "PRECONDITION_FAILED - unknown exchange type 'ZZwwInvalid'",
    )
    assert connection.is_open
    ch = connection.channel()
    assert closed_by_broker(ch, ch.exchange_declare, unique, passive=True)[0] == 404


def test_passive_declare_unknown_type_of_missing_exchange(channel: Channel, unique: str) -> None:
    assert closed_by_broker(
        channel, channel.exchange_declare, unique, "ZZwwInvalid", passive=True
    ) == (404, f"NOT_FOUND - no exchange '{unique}' in vhost '/'")


# --------------------------------------------------------------------------- delete


def test_delete(channel: Channel, unique: str, connection: pika.BlockingConnection) -> None:
    channel.exchange_declare(unique, "fanout")
    assert isinstance(channel.exchange_delete(unique).method, pika.spec.Exchange.DeleteOk)
    assert closed_by_broker(channel, channel.exchange_declare, unique, passive=True)[0] == 404


def test_delete_missing_is_ok(channel: Channel, unique: str) -> None:
    assert isinstance(channel.exchange_delete(unique).method, pika.spec.Exchange.DeleteOk)
    assert isinstance(
        channel.exchange_delete(unique, if_unused=True).method, pika.spec.Exchange.DeleteOk
    )


def test_delete_if_unused(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique)
    queue = temp_queue(channel)
    channel.queue_bind(queue, unique, "k")
    assert closed_by_broker(channel, channel.exchange_delete, unique, if_unused=True) == (
        406,
        f"PRECONDITION_FAILED - exchange '{unique}' in vhost '/' in use",
    )
    ch = connection.channel()
    ch.exchange_declare(unique, passive=True)  # still there
    ch.queue_unbind(queue, unique, "k")
    ch.exchange_delete(unique, if_unused=True)
    assert closed_by_broker(ch, ch.exchange_declare, unique, passive=True)[0] == 404


def test_delete_if_unused_counts_only_outgoing_bindings(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    source, dest = f"{unique}.src", f"{unique}.dst"
    cleanup.extend([source, dest])
    channel.exchange_declare(source)
    channel.exchange_declare(dest)
    channel.exchange_bind(dest, source, "k")
    # dest is only a binding destination: not "in use"
    channel.exchange_delete(dest, if_unused=True)
    # and deleting it removed the binding, so source is unused now
    channel.exchange_delete(source, if_unused=True)


def test_delete_if_unused_with_exchange_binding(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    source, dest = f"{unique}.src", f"{unique}.dst"
    cleanup.extend([source, dest])
    channel.exchange_declare(source)
    channel.exchange_declare(dest)
    channel.exchange_bind(dest, source, "k")
    assert closed_by_broker(channel, channel.exchange_delete, source, if_unused=True) == (
        406,
        f"PRECONDITION_FAILED - exchange '{source}' in vhost '/' in use",
    )


@pytest.mark.parametrize(
    "name", ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match", "amq.nosuch"]
)
def test_delete_system_exchange(channel: Channel, name: str) -> None:
    assert closed_by_broker(channel, channel.exchange_delete, name) == (
        403,
        f"ACCESS_REFUSED - deletion of system exchange '{name}' in vhost '/' not allowed",
    )


def test_delete_default_exchange(channel: Channel) -> None:
    assert closed_by_broker(channel, channel.exchange_delete, "") == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )


def test_delete_exchange_removes_bindings(channel: Channel, unique: str) -> None:
    queue = temp_queue(channel)
    channel.exchange_declare(unique, "fanout")
    channel.queue_bind(queue, unique)
    channel.exchange_delete(unique)
    channel.exchange_declare(unique, "fanout")
    channel.basic_publish(unique, "", b"after")
    assert drain(channel, queue) == []
    channel.exchange_delete(unique)


def test_auto_delete_exchange(channel: Channel, unique: str) -> None:
    channel.exchange_declare(unique, auto_delete=True)
    # never bound: stays
    channel.exchange_declare(unique, passive=True)
    queue = temp_queue(channel)
    channel.queue_bind(queue, unique, "a")
    channel.queue_bind(queue, unique, "b")
    channel.queue_unbind(queue, unique, "a")
    channel.exchange_declare(unique, passive=True)
    channel.queue_unbind(queue, unique, "b")  # last binding gone: exchange deleted
    assert closed_by_broker(channel, channel.exchange_declare, unique, passive=True) == (
        404,
        f"NOT_FOUND - no exchange '{unique}' in vhost '/'",
    )


def test_auto_delete_exchange_when_queue_deleted(
    connection: pika.BlockingConnection, channel: Channel, unique: str
) -> None:
    channel.exchange_declare(unique, auto_delete=True)
    queue = temp_queue(channel)
    channel.queue_bind(queue, unique, "k")
    channel.queue_delete(queue)
    assert closed_by_broker(channel, channel.exchange_declare, unique, passive=True)[0] == 404


def exchange_exists(connection: pika.BlockingConnection, name: str) -> bool:
    """Whether a passive declare finds `name` (on a channel of its own)."""
    ch = connection.channel()
    try:
        ch.exchange_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404, error
        return False
    ch.close()
    return True


def test_auto_delete_exchange_survives_unrelated_deletions(
    broker: Broker,
    connection: pika.BlockingConnection,
    channel: Channel,
    unique: str,
    cleanup: list[str],
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, auto_delete=True)
    other = broker.connect()
    try:
        ch = other.channel()
        ch.queue_declare(f"{unique}.unrelated")
        ch.queue_delete(f"{unique}.unrelated")
        ch.exchange_declare(f"{unique}.unrelated")
        ch.exchange_delete(f"{unique}.unrelated")
        ch.queue_declare("", exclusive=True)
    finally:
        other.close()  # its exclusive queue goes too
    queue = temp_queue(channel)
    assert isinstance(channel.queue_bind(queue, unique, "k").method, pika.spec.Queue.BindOk)
    assert exchange_exists(connection, unique)


def test_auto_delete_exchange_unbinding_nothing_keeps_it(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    source, dest = f"{unique}.src", f"{unique}.dst"
    cleanup.extend([source, dest])
    channel.exchange_declare(source, auto_delete=True)
    channel.exchange_declare(dest, auto_delete=True)
    queue = temp_queue(channel)
    channel.queue_unbind(queue, source, "never bound")
    channel.exchange_unbind(dest, source, "never bound")
    assert exchange_exists(connection, source) and exchange_exists(connection, dest)
    channel.queue_bind(queue, source, "a")
    channel.queue_unbind(queue, source, "b")  # a binding it does not have
    assert exchange_exists(connection, source)


def test_auto_delete_exchange_as_destination_stays(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    source, dest = f"{unique}.src", f"{unique}.dst"
    cleanup.extend([source, dest])
    channel.exchange_declare(source, "fanout")
    channel.exchange_declare(dest, "fanout", auto_delete=True)
    channel.exchange_bind(dest, source)
    channel.exchange_unbind(dest, source)  # the source's binding, not the destination's
    assert exchange_exists(connection, dest)
    channel.exchange_bind(dest, source)
    channel.exchange_delete(source)
    assert exchange_exists(connection, dest)
    # an auto-delete source going (deleted by a client) takes no auto-delete destination along
    channel.exchange_declare(source, "fanout", auto_delete=True)
    channel.exchange_bind(dest, source)
    channel.exchange_delete(source)
    assert exchange_exists(connection, dest)


def test_auto_delete_exchange_chain_goes_link_by_link(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    first, second, third = f"{unique}.1", f"{unique}.2", f"{unique}.3"
    cleanup.extend([first, second, third])
    for name in (first, second):
        channel.exchange_declare(name, "fanout", auto_delete=True)
    channel.exchange_declare(third, "fanout")
    queue = temp_queue(channel)
    channel.queue_bind(queue, second)
    channel.exchange_bind(second, first)  # first -> second -> queue
    channel.exchange_bind(third, first)  # first -> third
    channel.queue_delete(queue)  # second loses its last binding; first keeps one to third
    assert not exchange_exists(connection, second)
    assert exchange_exists(connection, first)
    channel.exchange_delete(third)  # first's last binding goes with its destination
    assert not exchange_exists(connection, first)


def test_auto_delete_exchange_bound_to_itself(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, auto_delete=True)
    channel.exchange_bind(unique, unique, "k")
    channel.exchange_unbind(unique, unique, "k")
    assert not exchange_exists(connection, unique)


def test_auto_delete_exchange_goes_with_an_exclusive_queue(
    broker: Broker,
    connection: pika.BlockingConnection,
    channel: Channel,
    unique: str,
    cleanup: list[str],
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "fanout", auto_delete=True)
    owner = broker.connect()
    ch = owner.channel()
    ch.queue_bind(ch.queue_declare("", exclusive=True).method.queue, unique)
    owner.close()
    deadline = time.monotonic() + 5  # RabbitMQ removes exclusive queues asynchronously
    while exchange_exists(connection, unique):
        assert time.monotonic() < deadline, "the auto-delete exchange outlived its binding"
        connection.sleep(0.02)


def test_deleting_never_visits_the_other_exchanges() -> None:
    """Model level (no broker): deleting a queue or an exchange costs the same with 10 or
    with 10,000 other exchanges in the vhost, because bindings are indexed by their
    destination; the work is counted as the Python calls the deletion makes."""

    def calls(action: Callable[[], object]) -> int:
        count = 0

        def profile(frame: object, event: str, arg: object) -> None:
            nonlocal count
            count += event == "call"

        # No collection meanwhile: finalizers of other tests' garbage would count as calls.
        gc.disable()
        sys.setprofile(profile)
        try:
            action()
        finally:
            sys.setprofile(None)
            gc.enable()
        return count

    def deletion_calls(others: int) -> tuple[int, int]:
        vhost = VHost("/")
        for i in range(others):  # auto-delete exchanges that keep a binding
            other, _ = vhost.declare_exchange(f"x{i}", "direct", auto_delete=True)
            vhost.bind(other, vhost.exchanges["amq.direct"], "k", {})
        queue, _ = vhost.declare_queue("q", owner=None)
        gone, _ = vhost.declare_exchange("gone", "fanout", auto_delete=True)
        kept, _ = vhost.declare_exchange("kept", "fanout", auto_delete=True)
        target, _ = vhost.declare_exchange("target", "fanout")
        vhost.bind(gone, queue, "", {})
        vhost.bind(kept, queue, "", {})
        vhost.bind(kept, target, "", {})
        queue_calls = calls(lambda: vhost.delete_queue(queue))
        assert "gone" not in vhost.exchanges and "kept" in vhost.exchanges
        exchange_calls = calls(lambda: vhost.delete_exchange("target"))
        assert "kept" not in vhost.exchanges
        assert len(vhost.exchanges) == others + 6  # the default one and amq.*
        return queue_calls, exchange_calls

    few, many = deletion_calls(10), deletion_calls(10_000)
    assert many == few, (few, many)


# --------------------------------------------------------------------------- routing


def test_direct_routing(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "direct")
    q1, q2 = temp_queue(channel), temp_queue(channel)
    channel.queue_bind(q1, unique, "red")
    channel.queue_bind(q2, unique, "red")
    channel.queue_bind(q2, unique, "green")
    for key in ("red", "green", "blue", "RED", ""):
        channel.basic_publish(unique, key, key.encode())
    assert drain(channel, q1) == [b"red"]
    assert drain(channel, q2) == [b"red", b"green"]


def test_duplicate_binding_delivers_once(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "direct")
    queue = temp_queue(channel)
    channel.queue_bind(queue, unique, "k")
    channel.queue_bind(queue, unique, "k")
    channel.basic_publish(unique, "k", b"once")
    assert drain(channel, queue) == [b"once"]


def test_fanout_routing(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "fanout")
    queues = [temp_queue(channel) for _ in range(3)]
    for i, q in enumerate(queues):
        channel.queue_bind(q, unique, f"ignored-{i}")
    channel.basic_publish(unique, "whatever", b"all")
    for q in queues:
        assert drain(channel, q) == [b"all"]


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("a.b.c", ["a.b.c"], ["a.b", "a.b.c.d", "a.B.c"]),
        ("a.*.c", ["a.b.c", "a..c", "a.xyz.c"], ["a.c", "a.b.b.c", "b.b.c"]),
        ("a.#", ["a", "a.b", "a.b.c"], ["b", "ab", "b.a"]),
        ("#.c", ["c", "a.c", "a.b.c"], ["a.c.d", "ac"]),
        ("a.#.c", ["a.c", "a.b.c", "a.b.b.c"], ["a.b", "a.b.c.d"]),
        ("#", ["", "a", "a.b.c"], []),
        ("*", ["a"], ["a.b", ""]),
        ("*.*", ["a.b", "."], ["a", "a.b.c"]),
        ("#.#", ["", "a", "a.b"], []),
        ("*.#", ["a", "a.b", "a.b.c"], [""]),
    ],
)
def test_topic_routing(
    channel: Channel,
    unique: str,
    cleanup: list[str],
    pattern: str,
    matching: list[str],
    not_matching: list[str],
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "topic")
    queue = temp_queue(channel)
    channel.queue_bind(queue, unique, pattern)
    for key in matching + not_matching:
        channel.basic_publish(unique, key, key.encode())
    assert drain(channel, queue) == [k.encode() for k in matching]


def test_topic_multiple_patterns_deliver_once(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "topic")
    queue = temp_queue(channel)
    for pattern in ("stock.#", "*.usd.*", "stock.usd.nyse"):
        channel.queue_bind(queue, unique, pattern)
    channel.basic_publish(unique, "stock.usd.nyse", b"1")
    channel.basic_publish(unique, "bond.usd.nyse", b"2")
    channel.basic_publish(unique, "bond.eur.nyse", b"3")
    assert drain(channel, queue) == [b"1", b"2"]


def publish_headers(ch: Channel, exchange: str, headers: dict | None, body: bytes) -> None:
    ch.basic_publish(exchange, "ignored", body, pika.BasicProperties(headers=headers))


def test_headers_match_all(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "headers")
    queue = temp_queue(channel)
    channel.queue_bind(
        queue, unique, arguments={"x-match": "all", "format": "pdf", "type": "report"}
    )
    publish_headers(channel, unique, {"format": "pdf", "type": "report"}, b"exact")
    publish_headers(channel, unique, {"format": "pdf", "type": "report", "x": 1}, b"extra")
    publish_headers(channel, unique, {"format": "pdf"}, b"partial")
    publish_headers(channel, unique, {"format": "pdf", "type": "log"}, b"wrong")
    publish_headers(channel, unique, None, b"none")
    assert drain(channel, queue) == [b"exact", b"extra"]


def test_headers_match_any(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "headers")
    queue = temp_queue(channel)
    channel.queue_bind(
        queue, unique, arguments={"x-match": "any", "format": "pdf", "type": "report"}
    )
    publish_headers(channel, unique, {"format": "pdf"}, b"one")
    publish_headers(channel, unique, {"type": "report", "other": "x"}, b"other-one")
    publish_headers(channel, unique, {"format": "zip", "type": "log"}, b"neither")
    publish_headers(channel, unique, {}, b"empty")
    assert drain(channel, queue) == [b"one", b"other-one"]


def test_headers_default_is_all(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "headers")
    queue = temp_queue(channel)
    channel.queue_bind(queue, unique, arguments={"a": 1, "b": 2})
    publish_headers(channel, unique, {"a": 1}, b"partial")
    publish_headers(channel, unique, {"a": 1, "b": 2}, b"both")
    publish_headers(channel, unique, {"a": 1, "b": 3}, b"wrong value")
    assert drain(channel, queue) == [b"both"]


def test_headers_empty_binding_matches_everything(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "headers")
    queue = temp_queue(channel)
    channel.queue_bind(queue, unique, arguments={"x-match": "all"})
    publish_headers(channel, unique, None, b"none")
    publish_headers(channel, unique, {"k": "v"}, b"some")
    assert drain(channel, queue) == [b"none", b"some"]


def test_headers_x_arguments_are_not_matched(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "headers")
    queue = temp_queue(channel)
    channel.queue_bind(queue, unique, arguments={"x-match": "all", "x-extra": "ignored", "k": "v"})
    publish_headers(channel, unique, {"k": "v"}, b"match")
    assert drain(channel, queue) == [b"match"]


def test_headers_unbind_by_arguments(channel: Channel, unique: str, cleanup: list[str]) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "headers")
    queue = temp_queue(channel)
    channel.queue_bind(queue, unique, arguments={"x-match": "any", "a": 1})
    channel.queue_bind(queue, unique, arguments={"x-match": "any", "b": 1})
    channel.queue_unbind(queue, unique, arguments={"x-match": "any", "a": 1})
    publish_headers(channel, unique, {"a": 1}, b"a")
    publish_headers(channel, unique, {"b": 1}, b"b")
    assert drain(channel, queue) == [b"b"]


# Field values by name, as (type letter, value) for amqp_raw.encode_typed_table.
FIELD_VALUES: dict[str, tuple[str, object]] = {
    "t0": ("t", 0),
    "t1": ("t", 1),
    "t2": ("t", 2),  # bool: any non-zero octet is true
    "b1": ("b", 1),
    "B1": ("B", 1),
    "s1": ("s", 1),
    "u1": ("u", 1),
    "I1": ("I", 1),
    "i1": ("i", 1),
    "l1": ("l", 1),
    "I0": ("I", 0),
    "l_big": ("l", 2**53 + 1),
    "d_big": ("d", float(2**53)),
    "f1": ("f", 1.0),
    "d1": ("d", 1.0),
    "f1.5": ("f", 1.5),
    "d1.5": ("d", 1.5),
    "f0.1": ("f", 0.1),
    "d0.1": ("d", 0.1),
    "d0": ("d", 0.0),
    "d-0": ("d", -0.0),
    "D(0,1)": ("D", (0, 1)),
    "D(1,10)": ("D", (1, 10)),  # 1 and 1.0: (scale, digits)
    "S1": ("S", "1"),
    "x1": ("x", b"1"),
    "Strue": ("S", "true"),
    "S": ("S", ""),
    "x": ("x", b""),
    "T1": ("T", 1),
    "V": ("V", None),
    "F_I": ("F", [("a", "I", 1)]),
    "F_l": ("F", [("a", "l", 1)]),
    "F_ab": ("F", [("a", "I", 1), ("b", "I", 2)]),
    "F_ba": ("F", [("b", "I", 2), ("a", "I", 1)]),
    "F_S": ("F", [("a", "S", "z")]),
    "F_x": ("F", [("a", "x", b"z")]),
    "F_t": ("F", [("a", "t", 1)]),
    "F_t2": ("F", [("a", "t", 2)]),
    "F_d": ("F", [("a", "d", 1.0)]),
    "F_empty": ("F", []),
    "A_empty": ("A", []),
    "A_I": ("A", [("I", 1)]),
    "A_l": ("A", [("l", 1)]),
    "A_S": ("A", [("S", "a")]),
    "A_x": ("A", [("x", b"a")]),
    "A_d": ("A", [("d", 1.0)]),
}


def routes_through_headers(
    broker: Broker, binding: list[tuple[str, str, object]], headers: list[tuple[str, str, object]]
) -> bool:
    """Bind a queue to a new headers exchange with exactly these typed arguments, publish
    (mandatory, confirmed) a message with exactly these typed headers, and tell whether it
    was routed (acked) or returned."""

    def shortstr(text: str) -> bytes:
        return bytes([len(text)]) + text.encode()

    with RawClient(broker.host, broker.port) as client:
        client.open_channel(1)
        client.rpc(1, spec.Confirm.Select(), spec.Confirm.SelectOk)
        queue = client.rpc(1, spec.Queue.Declare(exclusive=True), spec.Queue.DeclareOk).queue
        exchange = "headers." + queue.removeprefix("amq.gen-")
        client.rpc(
            1,
            spec.Exchange.Declare(exchange=exchange, type="headers", auto_delete=True),
            spec.Exchange.DeclareOk,
        )
        bind = (
            struct.pack(">HHH", 50, 20, 0)
            + shortstr(queue)
            + shortstr(exchange)
            + shortstr("")
            + b"\x00"
            + encode_typed_table(binding)
        )
        client.send_frame(1, 1, bind)
        client.expect(1, spec.Queue.BindOk)
        client.send_method(1, spec.Basic.Publish(exchange=exchange, mandatory=True))
        client.send_content(1, b"m", header_payload_with_headers(1, encode_typed_table(headers)))
        reply = client.read_command().method
        if isinstance(reply, spec.Basic.Return):
            client.expect(1, spec.Basic.Ack)
            return False
        assert isinstance(reply, spec.Basic.Ack), reply
        return True


@pytest.mark.parametrize(
    ("bound", "sent", "matches"),
    [
        # booleans never equal numbers or strings
        ("t1", "I1", False),
        ("t1", "t2", True),
        ("t0", "I0", False),
        ("I1", "t1", False),
        ("t1", "Strue", False),
        ("t1", "S1", False),
        ("t0", "d0", False),
        # integers of any width (and timestamps) equal by number
        ("b1", "l1", True),
        ("B1", "i1", True),
        ("s1", "u1", True),
        ("I1", "l1", True),
        ("i1", "b1", True),
        ("l_big", "d_big", False),
        ("l_big", "l_big", True),
        ("T1", "I1", True),
        ("l1", "T1", True),
        ("T1", "d1", True),
        ("T1", "t1", False),
        # floats and doubles equal integers of the same value; float32 0.1 is not double 0.1
        ("d1", "I1", True),
        ("f1", "b1", True),
        ("I1", "d1", True),
        ("f1.5", "d1.5", True),
        ("f0.1", "d0.1", False),
        ("d-0", "I0", True),
        ("d0", "d-0", True),
        # decimals compare scale and digits: 1 is not 1.0, nor any number
        ("D(0,1)", "D(0,1)", True),
        ("D(0,1)", "D(1,10)", False),
        ("D(0,1)", "I1", False),
        ("D(0,1)", "d1", False),
        ("I1", "D(0,1)", False),
        # a byte array equals the string of the same bytes
        ("S1", "x1", True),
        ("x1", "S1", True),
        ("S", "x", True),
        ("S1", "I1", False),
        ("Strue", "t1", False),
        ("S", "V", False),
        # a void argument asks only for presence; a void header equals only that
        ("V", "I1", True),
        ("V", "t0", True),
        ("V", "V", True),
        ("V", "S", True),
        ("V", "F_empty", True),
        ("I1", "V", False),
        # nested tables and arrays: entries in order, types included
        ("F_I", "F_I", True),
        ("F_I", "F_l", False),
        ("F_ab", "F_ba", False),
        ("F_S", "F_x", False),
        ("F_t", "F_t2", True),
        ("F_t", "F_I", False),
        ("F_d", "F_I", False),
        ("F_empty", "A_empty", True),
        ("A_empty", "F_empty", True),
        ("A_I", "A_I", True),
        ("A_I", "A_l", False),
        ("A_S", "A_x", False),
        ("A_d", "A_I", False),
        ("A_I", "F_I", False),
    ],
)
def test_headers_compare_decoded_values(
    broker: Broker, bound: str, sent: str, matches: bool
) -> None:
    binding = [("x-match", "S", "all"), ("k", *FIELD_VALUES[bound])]
    assert routes_through_headers(broker, binding, [("k", *FIELD_VALUES[sent])]) is matches


def test_headers_any_compares_decoded_values_too(broker: Broker) -> None:
    binding = [("x-match", "S", "any"), ("a", "t", 1), ("b", "S", "x")]
    assert routes_through_headers(broker, binding, [("a", "I", 1), ("b", "x", b"x")])
    assert not routes_through_headers(broker, binding, [("a", "I", 1), ("b", "x", b"y")])
    # arguments and headers in any order at the top level
    binding = [("zz", "I", 1), ("x-match", "S", "all"), ("aa", "b", 1)]
    assert routes_through_headers(
        broker, binding, [("aa", "l", 1), ("mm", "I", 5), ("zz", "d", 1.0)]
    )
    # with all-with-x, x- arguments are compared like the others
    binding = [("x-match", "S", "all-with-x"), ("x-a", "t", 1)]
    assert not routes_through_headers(broker, binding, [("x-a", "I", 1)])
    assert routes_through_headers(broker, binding, [("x-a", "t", 1)])
    # a byte array of bytes that are no UTF-8 still equals the string of those bytes
    assert routes_through_headers(broker, [("k", "S", b"\xff\xfe")], [("k", "x", b"\xff\xfe")])


def test_headers_bool_number_and_bytes_from_pika(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    """pika sends True as a bool, 1 as a signed int and b"1" as a byte array."""
    cleanup.append(unique)
    channel.exchange_declare(unique, "headers")
    flag, text = temp_queue(channel), temp_queue(channel)
    channel.queue_bind(flag, unique, arguments={"flag": True})
    channel.queue_bind(text, unique, arguments={"text": "1"})
    publish_headers(channel, unique, {"flag": 1}, b"number, not a bool")
    publish_headers(channel, unique, {"flag": True}, b"bool")
    publish_headers(channel, unique, {"text": b"1"}, b"bytes")
    publish_headers(channel, unique, {"text": 1}, b"number, not a string")
    assert drain(channel, flag) == [b"bool"]
    assert drain(channel, text) == [b"bytes"]


@pytest.mark.parametrize(
    ("x_match", "text"),
    [
        (
            "foo",
            'Invalid x-match field value <<"foo">>; expected all, any, all-with-x, or any-with-x',
        ),
        ("", "Invalid x-match field value <<>>; expected all, any, all-with-x, or any-with-x"),
        (b"any", 'Invalid x-match field type binary (value <<"any">>); expected longstr'),
        (1, "Invalid x-match field type signedint (value 1); expected longstr"),
        (True, "Invalid x-match field type bool (value true); expected longstr"),
        (None, "Invalid x-match field type void (value undefined); expected longstr"),
        (
            {"a": 1},
            'Invalid x-match field type table (value [{<<"a">>,signedint,1}]); expected longstr',
        ),
    ],
)
def test_headers_binding_with_unknown_x_match_is_refused(
    connection: pika.BlockingConnection,
    channel: Channel,
    unique: str,
    cleanup: list[str],
    x_match: object,
    text: str,
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "headers")
    queue = temp_queue(channel)
    ch = connection.channel()
    assert closed_by_broker(
        ch, ch.queue_bind, queue, unique, arguments={"x-match": x_match, "k": "v"}
    ) == (406, f"PRECONDITION_FAILED - {text}")
    ch = connection.channel()
    assert closed_by_broker(
        ch, ch.exchange_bind, unique, unique, arguments={"x-match": x_match}
    ) == (406, f"PRECONDITION_FAILED - {text}")


def test_amq_match_is_a_headers_exchange(channel: Channel) -> None:
    queue = temp_queue(channel)
    channel.queue_bind(queue, "amq.match", arguments={"x-match": "all", "tag": queue})
    publish_headers(channel, "amq.match", {"tag": queue}, b"via amq.match")
    assert drain(channel, queue) == [b"via amq.match"]


def test_mandatory_unroutable_is_returned(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    cleanup.append(unique)
    channel.exchange_declare(unique, "direct")
    returned: list[tuple[int, str, str, str, bytes]] = []
    plain = connection.channel()  # without confirms pika reports returns by callback
    plain.add_on_return_callback(
        lambda ch, method, props, body: returned.append(
            (method.reply_code, method.reply_text, method.exchange, method.routing_key, body)
        )
    )
    plain.basic_publish(unique, "nobody", b"lost", mandatory=True)
    assert pump(connection, lambda: bool(returned))
    round_trip(plain)  # and no second return
    assert returned == [(312, "NO_ROUTE", unique, "nobody", b"lost")]


# --------------------------------------------------------------------------- e2e bindings


def test_exchange_to_exchange_binding(channel: Channel, unique: str, cleanup: list[str]) -> None:
    source, dest = f"{unique}.src", f"{unique}.dst"
    cleanup.extend([source, dest])
    channel.exchange_declare(source, "topic")
    channel.exchange_declare(dest, "direct")
    queue = temp_queue(channel)
    channel.queue_bind(queue, dest, "a.b")
    assert isinstance(channel.exchange_bind(dest, source, "a.*").method, pika.spec.Exchange.BindOk)
    channel.basic_publish(source, "a.b", b"routed")
    channel.basic_publish(source, "a.c", b"dest drops it")
    channel.basic_publish(source, "b.b", b"source drops it")
    assert drain(channel, queue) == [b"routed"]
    assert isinstance(
        channel.exchange_unbind(dest, source, "a.*").method, pika.spec.Exchange.UnbindOk
    )
    channel.basic_publish(source, "a.b", b"after unbind")
    assert drain(channel, queue) == []


def test_exchange_binding_chain_and_cycle(
    channel: Channel, unique: str, cleanup: list[str]
) -> None:
    a, b, c = f"{unique}.a", f"{unique}.b", f"{unique}.c"
    cleanup.extend([a, b, c])
    for name in (a, b, c):
        channel.exchange_declare(name, "fanout")
    queue = temp_queue(channel)
    channel.exchange_bind(b, a)
    channel.exchange_bind(c, b)
    channel.exchange_bind(a, c)  # a cycle: each message still reaches the queue once
    channel.queue_bind(queue, c)
    channel.queue_bind(queue, b)
    channel.basic_publish(a, "", b"once")
    assert drain(channel, queue) == [b"once"]


def test_internal_exchange(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    source, internal = f"{unique}.src", f"{unique}.int"
    cleanup.extend([source, internal])
    channel.exchange_declare(source, "fanout")
    channel.exchange_declare(internal, "fanout", internal=True)
    queue = temp_queue(channel)
    channel.queue_bind(queue, internal)
    channel.exchange_bind(internal, source)
    channel.basic_publish(source, "", b"through the internal exchange")
    assert drain(channel, queue) == [b"through the internal exchange"]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.basic_publish(internal, "", b"direct to internal")
        channel.basic_qos(prefetch_count=1)  # without confirms, a later call surfaces it
    assert (info.value.reply_code, info.value.reply_text) == (
        403,
        f"ACCESS_REFUSED - cannot publish to internal exchange '{internal}' in vhost '/'",
    )


def test_publish_to_missing_exchange(connection: pika.BlockingConnection, unique: str) -> None:
    ch = connection.channel()  # no confirms: the error arrives after the publish
    ch.basic_publish(unique, "k", b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_qos(prefetch_count=1)
    assert (info.value.reply_code, info.value.reply_text) == (
        404,
        f"NOT_FOUND - no exchange '{unique}' in vhost '/'",
    )


def test_exchange_bind_missing(
    connection: pika.BlockingConnection, channel: Channel, unique: str, cleanup: list[str]
) -> None:
    existing = f"{unique}.x"
    cleanup.append(existing)
    channel.exchange_declare(existing)
    assert closed_by_broker(channel, channel.exchange_bind, f"{unique}.nodest", existing) == (
        404,
        f"NOT_FOUND - no exchange '{unique}.nodest' in vhost '/'",
    )
    ch = connection.channel()
    assert closed_by_broker(ch, ch.exchange_bind, existing, f"{unique}.nosrc") == (
        404,
        f"NOT_FOUND - no exchange '{unique}.nosrc' in vhost '/'",
    )
    ch = connection.channel()
    # both missing: the source is reported
    assert closed_by_broker(ch, ch.exchange_bind, f"{unique}.d", f"{unique}.s") == (
        404,
        f"NOT_FOUND - no exchange '{unique}.s' in vhost '/'",
    )


def test_unbind_missing_is_ok(channel: Channel, unique: str) -> None:
    assert isinstance(
        channel.exchange_unbind(f"{unique}.d", f"{unique}.s", "k").method,
        pika.spec.Exchange.UnbindOk,
    )
    assert isinstance(
        channel.queue_unbind(f"{unique}.q", f"{unique}.s", "k").method, pika.spec.Queue.UnbindOk
    )


def test_bind_to_default_exchange(connection: pika.BlockingConnection, channel: Channel) -> None:
    queue = temp_queue(channel)
    assert closed_by_broker(channel, channel.queue_bind, queue, "", "k") == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )
    ch = connection.channel()
    assert closed_by_broker(ch, ch.queue_unbind, queue, "", queue) == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )


def test_exchange_survives_channel_close(broker: Broker, unique: str) -> None:
    conn = broker.connect()
    try:
        ch = conn.channel()
        ch.exchange_declare(unique, "topic")
        ch.close()
        conn.close()
        conn = broker.connect()
        ch = conn.channel()
        ch.exchange_declare(unique, passive=True)
        ch.exchange_delete(unique)
    finally:
        if conn.is_open:
            conn.close()
