"""Queue and exchange features real applications rely on: message TTL (queue and per-message),
dead-lettering and x-death, max length with overflow modes, priorities, single active consumer,
consumer priorities, delivery limits, x-expires, alternate exchanges, CC/BCC, and the 406 texts
for invalid or inequivalent arguments.

Every expectation here was checked against RabbitMQ 3.10.8 (run with TRIMQ_TEST_URL), except the
tests marked trimq-only, where trimq does better than RabbitMQ classic queues on purpose.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions
import pytest
from conftest import Broker
from pika.adapters.blocking_connection import BlockingChannel
from pika_helpers import (
    Delivery,
    collector,
    get_all,
    message_count,
    pump,
    round_trip,
    wait_for_count,
)

Channel = BlockingChannel

AGAINST_OTHER_BROKER = bool(os.environ.get("TRIMQ_TEST_URL"))
trimq_only = pytest.mark.skipif(
    AGAINST_OTHER_BROKER, reason="trimq does better than RabbitMQ classic queues here on purpose"
)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A short unique name, so reply texts that quote it stay under RabbitMQ's 255 bytes."""
    node = request.node
    digest = zlib.crc32(node.nodeid.encode())
    return f"qf.{node.originalname[:16]}.{digest:08x}.{os.getpid()}"


@pytest.fixture
def channel(connection: pika.BlockingConnection) -> Channel:
    """A channel in confirm mode: basic_publish returns once the broker has routed and enqueued
    the message, so counts read right afterwards are exact."""
    ch = connection.channel()
    ch.confirm_delivery()
    return ch


class Tidy:
    """Declares queues and exchanges and remembers them so they are deleted after the test
    (the RabbitMQ node used for validation is shared)."""

    def __init__(self, ch: Channel, prefix: str) -> None:
        self.ch = ch
        self.prefix = prefix
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def name(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    def queue(self, suffix: str, ch: Channel | None = None, **arguments: Any) -> str:
        name = self.name(suffix)
        self.queues.append(name)
        (ch or self.ch).queue_declare(name, arguments=arguments or None)
        return name

    def exchange(self, suffix: str, type_: str = "direct", **arguments: Any) -> str:
        name = self.name(suffix)
        self.exchanges.append(name)
        self.ch.exchange_declare(name, type_, arguments=arguments or None)
        return name

    def dead_letter_target(self, suffix: str = "dlx") -> tuple[str, str]:
        """A fanout dead-letter exchange bound to a queue: (exchange, queue)."""
        exchange = self.exchange(suffix, "fanout")
        queue = self.queue(suffix + ".q")
        self.ch.queue_bind(queue, exchange)
        return exchange, queue


@pytest.fixture
def tidy(broker: Broker, channel: Channel, unique: str) -> Iterator[Tidy]:
    t = Tidy(channel, unique)
    yield t
    conn = broker.connect()
    ch = conn.channel()
    for queue in t.queues:
        ch.queue_delete(queue)
    for exchange in t.exchanges:
        ch.exchange_delete(exchange)
    conn.close()


def publish(
    ch: Channel, exchange: str, key: str, body: str, mandatory: bool = False, **props: Any
) -> None:
    ch.basic_publish(
        exchange, key, body.encode(), pika.BasicProperties(**props), mandatory=mandatory
    )


def bodies(deliveries: list[Delivery]) -> list[str]:
    return [body.decode() for _m, _p, body in deliveries]


def wait_get_all(ch: Channel, queue: str, expected: int, timeout: float = 5.0) -> list[Delivery]:
    """Wait until `queue` holds `expected` ready messages, then take them all."""
    assert wait_for_count(ch, queue, expected, timeout) == expected
    return get_all(ch, queue)


def deaths(properties: Any) -> list[dict[str, Any]]:
    """The x-death entries with their `time` checked (a recent timestamp) and removed."""
    out = []
    for death in properties.headers["x-death"]:
        entry = dict(death)
        stamp = entry.pop("time")
        assert isinstance(stamp, datetime)
        assert abs(stamp.timestamp() - datetime.now(UTC).timestamp()) < 30
        out.append(entry)
    return out


def first_death(properties: Any) -> tuple[str, str, str]:
    h = properties.headers
    return h["x-first-death-reason"], h["x-first-death-queue"], h["x-first-death-exchange"]


def closed_by_broker(ch: Channel, call: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        call(*args, **kwargs)
    assert ch.is_closed
    return info.value.reply_code, info.value.reply_text


def wait_deleted(broker: Broker, queue: str, timeout: float = 5.0) -> bool:
    """Poll (less often than the queue's x-expires, since a passive declare counts as use)
    until `queue` is gone."""
    conn = broker.connect()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.4)
            ch = conn.channel()
            try:
                ch.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                assert exc.reply_code == 404
                assert exc.reply_text == f"NOT_FOUND - no queue '{queue}' in vhost '/'"
                return True
            ch.close()
        return False
    finally:
        conn.close()


# -- message TTL ----------------------------------------------------------------------------


def test_queue_ttl_expired_messages_are_removed_and_never_delivered(
    channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q", **{"x-message-ttl": 100})
    for i in range(3):
        publish(channel, "", q, f"m{i}")
    assert message_count(channel, q) == 3
    assert wait_for_count(channel, q, 0) == 0
    assert channel.basic_get(q, auto_ack=True) == (None, None, None)
    # a consumer arriving later gets nothing
    got: list[Delivery] = []
    channel.basic_consume(q, collector(got), auto_ack=True)
    round_trip(channel, q)
    assert got == []


def test_per_message_expiration_is_removed_and_never_delivered(
    channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q")
    publish(channel, "", q, "short", expiration="100")
    publish(channel, "", q, "long", expiration="60000")
    assert message_count(channel, q) == 2
    assert wait_for_count(channel, q, 1) == 1
    got = get_all(channel, q)
    assert bodies(got) == ["long"]
    assert got[0][1].expiration == "60000"


def test_lower_of_queue_and_message_ttl_applies(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-message-ttl": 60000})
    publish(channel, "", q, "a", expiration="100")
    publish(channel, "", q, "b")
    assert wait_for_count(channel, q, 1) == 1
    assert bodies(get_all(channel, q)) == ["b"]
    q2 = tidy.queue("q2", **{"x-message-ttl": 100})
    publish(channel, "", q2, "c", expiration="60000")
    assert wait_for_count(channel, q2, 0) == 0


def test_queue_ttl_dead_letters_with_x_death(channel: Channel, tidy: Tidy) -> None:
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue("q", **{"x-message-ttl": 100, "x-dead-letter-exchange": dlx})
    publish(channel, "", q, "m0", headers={"app": "x"}, content_type="text/plain")
    publish(channel, "", q, "m1")
    got = wait_get_all(channel, dead, 2)
    assert message_count(channel, q) == 0
    assert bodies(got) == ["m0", "m1"]
    method, props, _ = got[0]
    assert method.exchange == dlx
    assert method.routing_key == q
    assert props.content_type == "text/plain"
    assert props.expiration is None
    assert props.headers["app"] == "x"
    assert deaths(props) == [
        {
            "count": 1,
            "reason": "expired",
            "queue": q,
            "exchange": "",
            "routing-keys": [q],
        }
    ]
    assert first_death(props) == ("expired", q, "")


def test_per_message_ttl_dead_letters_with_original_expiration(
    channel: Channel, tidy: Tidy
) -> None:
    dlx, dead = tidy.dead_letter_target()
    x = tidy.exchange("x", "direct")
    q = tidy.queue("q", **{"x-dead-letter-exchange": dlx})
    channel.queue_bind(q, x, "rk")
    publish(channel, x, "rk", "m", expiration="100")
    got = wait_get_all(channel, dead, 1)
    method, props, body = got[0]
    assert body == b"m"
    assert (method.exchange, method.routing_key) == (dlx, "rk")
    assert props.expiration is None  # moved into x-death
    assert deaths(props) == [
        {
            "count": 1,
            "reason": "expired",
            "queue": q,
            "exchange": x,
            "routing-keys": ["rk"],
            "original-expiration": "100",
        }
    ]
    assert first_death(props) == ("expired", q, x)
    assert message_count(channel, q) == 0


def test_ttl_zero_is_delivered_only_to_a_waiting_consumer(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q", **{"x-message-ttl": 0})
    publish(channel, "", q, "nobody-waiting")
    publish(channel, "", q, "nobody-waiting-either", expiration="0")
    assert message_count(channel, q) == 0
    got: list[Delivery] = []
    channel.basic_consume(q, collector(got), auto_ack=True)
    publish(channel, "", q, "waited-for")
    q2 = tidy.queue("q2")
    channel.basic_consume(q2, collector(got), auto_ack=True)
    publish(channel, "", q2, "expiration-0", expiration="0")
    assert pump(connection, lambda: len(got) == 2)
    round_trip(channel, q2)
    assert bodies(got) == ["waited-for", "expiration-0"]


def test_ttl_zero_without_consumer_dead_letters(channel: Channel, tidy: Tidy) -> None:
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue("q", **{"x-message-ttl": 0, "x-dead-letter-exchange": dlx})
    publish(channel, "", q, "m")
    got = wait_get_all(channel, dead, 1)
    assert bodies(got) == ["m"]
    assert deaths(got[0][1])[0]["reason"] == "expired"


def test_requeued_message_past_its_ttl_expires(channel: Channel, tidy: Tidy) -> None:
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue("q", **{"x-message-ttl": 150, "x-dead-letter-exchange": dlx})
    publish(channel, "", q, "m")
    publish(channel, "", q, "probe")
    method, _, _ = channel.basic_get(q)
    # the TTL runs while "m" is unacked: "probe", published after it, expiring proves it ran out
    assert bodies(wait_get_all(channel, dead, 1)) == ["probe"]
    channel.basic_nack(method.delivery_tag, requeue=True)
    got = wait_get_all(channel, dead, 1)
    assert bodies(got) == ["m"]
    assert deaths(got[0][1])[0]["reason"] == "expired"
    assert message_count(channel, q) == 0


@trimq_only
def test_per_message_ttl_expires_behind_a_longer_lived_head(channel: Channel, tidy: Tidy) -> None:
    # RabbitMQ classic queues expire per-message TTLs only at the head, so "short" would sit
    # there until "head" leaves. trimq expires it where it sits: this is where trimq does better.
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue("q", **{"x-dead-letter-exchange": dlx})
    publish(channel, "", q, "head")
    publish(channel, "", q, "short", expiration="100")
    publish(channel, "", q, "tail", expiration="60000")
    assert wait_for_count(channel, q, 2) == 2
    got = wait_get_all(channel, dead, 1)
    assert bodies(got) == ["short"]
    assert deaths(got[0][1])[0]["original-expiration"] == "100"
    assert bodies(get_all(channel, q)) == ["head", "tail"]


@pytest.mark.parametrize(
    ("expiration", "detail"),
    [
        ("abc", "no_integer"),
        ("-5", "{value_negative,-5}"),
        ("", "no_integer"),
        ("1.5", '{leftover_string,".5"}'),
        ("315360000001", "{value_too_large,315360000001}"),
    ],
)
def test_invalid_expiration(channel: Channel, tidy: Tidy, expiration: str, detail: str) -> None:
    q = tidy.queue("q")
    code, text = closed_by_broker(channel, publish, channel, "", q, "m", expiration=expiration)
    assert code == 406
    assert text == f"PRECONDITION_FAILED - invalid expiration '{expiration}': {detail}"


def test_expiration_parsed_as_erlang_integer(channel: Channel, tidy: Tidy) -> None:
    # RabbitMQ parses the expiration with string:to_integer: a sign and leading zeros are fine
    q = tidy.queue("q")
    publish(channel, "", q, "plus", expiration="+50")
    publish(channel, "", q, "zeros", expiration="0050")
    publish(channel, "", q, "max", expiration="315360000000")
    assert channel.is_open
    assert wait_for_count(channel, q, 1) == 1
    assert bodies(get_all(channel, q)) == ["max"]


# -- dead-lettering on reject / nack ----------------------------------------------------------


@pytest.mark.parametrize("how", ["reject", "nack"])
def test_reject_without_requeue_dead_letters(channel: Channel, tidy: Tidy, how: str) -> None:
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue("q", **{"x-dead-letter-exchange": dlx})
    publish(channel, "", q, "m", expiration="60000", priority=3)
    method, _, _ = channel.basic_get(q)
    if how == "reject":
        channel.basic_reject(method.delivery_tag, requeue=False)
    else:
        channel.basic_nack(method.delivery_tag, requeue=False)
    got = wait_get_all(channel, dead, 1)
    method, props, body = got[0]
    assert body == b"m"
    assert method.redelivered is False
    assert props.priority == 3
    # whatever the reason, the expiration moves into x-death as original-expiration
    assert props.expiration is None
    assert deaths(props) == [
        {
            "count": 1,
            "reason": "rejected",
            "queue": q,
            "exchange": "",
            "routing-keys": [q],
            "original-expiration": "60000",
        }
    ]
    assert first_death(props) == ("rejected", q, "")
    assert message_count(channel, q) == 0


def test_dead_letter_routing_key(channel: Channel, tidy: Tidy) -> None:
    dlx = tidy.exchange("dlx", "direct")
    dead = tidy.queue("dead")
    other = tidy.queue("other")
    channel.queue_bind(dead, dlx, "dead-key")
    channel.queue_bind(other, dlx, "orig")
    x = tidy.exchange("x", "direct")
    q = tidy.queue("q", **{"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead-key"})
    channel.queue_bind(q, x, "orig")
    publish(channel, x, "orig", "m")
    method, _, _ = channel.basic_get(q)
    channel.basic_reject(method.delivery_tag, requeue=False)
    got = wait_get_all(channel, dead, 1)
    method, props, _ = got[0]
    assert (method.exchange, method.routing_key) == (dlx, "dead-key")
    assert deaths(props) == [
        {
            "count": 1,
            "reason": "rejected",
            "queue": q,
            "exchange": x,
            "routing-keys": ["orig"],
        }
    ]
    assert message_count(channel, other) == 0


def test_missing_dead_letter_exchange_drops(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-dead-letter-exchange": tidy.name("nosuch")})
    publish(channel, "", q, "m")
    method, _, _ = channel.basic_get(q)
    channel.basic_reject(method.delivery_tag, requeue=False)
    assert message_count(channel, q) == 0
    assert channel.is_open


def test_dead_letter_exchange_routing_nowhere_drops(channel: Channel, tidy: Tidy) -> None:
    dlx = tidy.exchange("dlx", "direct")  # no bindings
    q = tidy.queue("q", **{"x-dead-letter-exchange": dlx, "x-message-ttl": 50})
    publish(channel, "", q, "m")
    assert wait_for_count(channel, q, 0) == 0


def test_rejected_twice_in_the_same_queue_counts_two(channel: Channel, tidy: Tidy) -> None:
    # q dead-letters rejected messages back to itself through the default exchange: a
    # rejection is the client's decision, so this is not a cycle.
    q = tidy.name("q")
    tidy.queue("q", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q})
    publish(channel, "", q, "m")
    for count in (1, 2, 3):
        method, _, _ = channel.basic_get(q)
        assert method is not None
        channel.basic_reject(method.delivery_tag, requeue=False)
        assert wait_for_count(channel, q, 1) == 1
        method, props, body = channel.basic_get(q, auto_ack=False)
        assert body == b"m"
        assert deaths(props) == [
            {
                "count": count,
                "reason": "rejected",
                "queue": q,
                "exchange": "",
                "routing-keys": [q],
            }
        ]
        assert first_death(props) == ("rejected", q, "")
        channel.basic_nack(method.delivery_tag, requeue=True)


def test_retry_loop_through_a_delay_queue(channel: Channel, tidy: Tidy) -> None:
    """The usual retry pattern: work rejects to a delay queue whose TTL sends it back."""
    work = tidy.name("work")
    delay = tidy.name("delay")
    tidy.queue("work", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": delay})
    tidy.queue(
        "delay",
        **{"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": work},
    )
    publish(channel, "", work, "job")
    for count in (1, 2):
        method, _, _ = channel.basic_get(work)
        channel.basic_reject(method.delivery_tag, requeue=False)
        assert wait_for_count(channel, work, 1) == 1
        method, props, body = channel.basic_get(work, auto_ack=True)
        assert body == b"job"
        assert (method.exchange, method.routing_key) == ("", work)
        assert deaths(props) == [
            {
                "count": count,
                "reason": "expired",
                "queue": delay,
                "exchange": "",
                "routing-keys": [delay],
            },
            {
                "count": count,
                "reason": "rejected",
                "queue": work,
                "exchange": "",
                "routing-keys": [work],
            },
        ]
        assert first_death(props) == ("rejected", work, "")
        publish(channel, "", work, "job", headers=props.headers)


def test_expiry_cycle_to_itself_is_dropped(channel: Channel, tidy: Tidy) -> None:
    q = tidy.name("q")
    other = tidy.queue("other")
    dlx = tidy.exchange("dlx", "fanout")
    tidy.queue("q", **{"x-message-ttl": 50, "x-dead-letter-exchange": dlx})
    channel.queue_bind(q, dlx)
    channel.queue_bind(other, dlx)
    publish(channel, "", q, "m")
    # the copy reaches `other` but not `q` again
    got = wait_get_all(channel, other, 1)
    assert bodies(got) == ["m"]
    assert message_count(channel, q) == 0


def test_expiry_cycle_through_two_queues_is_dropped(channel: Channel, tidy: Tidy) -> None:
    a = tidy.name("a")
    b = tidy.name("b")
    tidy.queue(
        "a", **{"x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": b}
    )
    tidy.queue(
        "b", **{"x-message-ttl": 400, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": a}
    )
    publish(channel, "", a, "m")
    assert wait_for_count(channel, b, 1) == 1  # expired from a into b
    assert wait_for_count(channel, b, 0) == 0  # expired from b: dropped, not back into a
    assert message_count(channel, a) == 0


def test_dead_lettering_with_routing_key_strips_cc(channel: Channel, tidy: Tidy) -> None:
    x = tidy.exchange("x", "direct")
    q = tidy.queue(
        "q", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": tidy.name("dead")}
    )
    dead = tidy.queue("dead")
    cc = tidy.queue("cc")
    channel.queue_bind(q, x, "a")
    channel.queue_bind(cc, x, "b")
    publish(channel, x, "a", "m", headers={"CC": ["b"], "keep": 1})
    method, _, _ = channel.basic_get(q)
    channel.basic_reject(method.delivery_tag, requeue=False)
    got = wait_get_all(channel, dead, 1)
    props = got[0][1]
    assert deaths(props) == [
        {
            "count": 1,
            "reason": "rejected",
            "queue": q,
            "exchange": x,
            "routing-keys": ["a", "b"],
        }
    ]
    assert "CC" not in props.headers
    assert props.headers["keep"] == 1


def test_dead_lettering_without_routing_key_uses_cc_keys(channel: Channel, tidy: Tidy) -> None:
    x = tidy.exchange("x", "direct")
    dlx = tidy.exchange("dlx", "direct")
    q = tidy.queue("q", **{"x-dead-letter-exchange": dlx})
    da = tidy.queue("da")
    db = tidy.queue("db")
    channel.queue_bind(q, x, "a")
    channel.queue_bind(da, dlx, "a")
    channel.queue_bind(db, dlx, "b")
    publish(channel, x, "a", "m", headers={"CC": ["b"]})
    method, _, _ = channel.basic_get(q)
    channel.basic_reject(method.delivery_tag, requeue=False)
    for dq in (da, db):
        got = wait_get_all(channel, dq, 1)
        assert got[0][1].headers["CC"] == ["b"]
        assert deaths(got[0][1])[0]["routing-keys"] == ["a", "b"]


# -- max length -------------------------------------------------------------------------------


def test_max_length_drop_head_dead_letters_oldest(channel: Channel, tidy: Tidy) -> None:
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue("q", **{"x-max-length": 2, "x-dead-letter-exchange": dlx})
    for i in range(5):
        publish(channel, "", q, f"m{i}")
    assert message_count(channel, q) == 2
    dropped = wait_get_all(channel, dead, 3)
    assert bodies(dropped) == ["m0", "m1", "m2"]
    assert deaths(dropped[0][1]) == [
        {
            "count": 1,
            "reason": "maxlen",
            "queue": q,
            "exchange": "",
            "routing-keys": [q],
        }
    ]
    assert first_death(dropped[0][1]) == ("maxlen", q, "")
    assert bodies(get_all(channel, q)) == ["m3", "m4"]


def test_max_length_drop_head_without_dlx(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-max-length": 3, "x-overflow": "drop-head"})
    for i in range(10):
        publish(channel, "", q, f"m{i}")
    assert bodies(get_all(channel, q)) == ["m7", "m8", "m9"]


def test_max_length_counts_only_ready_messages(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-max-length": 1})
    publish(channel, "", q, "m0")
    method, _, _ = channel.basic_get(q)
    publish(channel, "", q, "m1")  # m0 is unacked, not ready: nothing dropped
    assert message_count(channel, q) == 1
    channel.basic_nack(method.delivery_tag, requeue=True)
    # the requeued m0 goes back to the head, over the limit: the head is dropped
    assert bodies(get_all(channel, q)) == ["m1"]


def test_max_length_bytes_drop_head(channel: Channel, tidy: Tidy) -> None:
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue("q", **{"x-max-length-bytes": 10, "x-dead-letter-exchange": dlx})
    for body in ("aaaa", "bbbb", "cccc", "dddddddd"):
        publish(channel, "", q, body, headers={"big": "x" * 100})  # headers do not count
    assert bodies(wait_get_all(channel, dead, 3)) == ["aaaa", "bbbb", "cccc"]
    assert bodies(get_all(channel, q)) == ["dddddddd"]


def test_max_length_bytes_drops_a_message_bigger_than_the_limit(
    channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q", **{"x-max-length-bytes": 4})
    publish(channel, "", q, "ab")
    publish(channel, "", q, "toolong")
    assert message_count(channel, q) == 0


def test_reject_publish_nacks_confirming_publisher(channel: Channel, tidy: Tidy) -> None:
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue(
        "q", **{"x-max-length": 2, "x-overflow": "reject-publish", "x-dead-letter-exchange": dlx}
    )
    publish(channel, "", q, "m0")
    publish(channel, "", q, "m1")
    with pytest.raises(pika.exceptions.NackError):
        publish(channel, "", q, "m2")
    assert channel.is_open
    assert message_count(channel, dead) == 0  # reject-publish does not dead-letter
    assert bodies(get_all(channel, q)) == ["m0", "m1"]
    publish(channel, "", q, "m3")  # room again
    assert bodies(get_all(channel, q)) == ["m3"]


def test_reject_publish_drops_silently_without_confirms(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q", **{"x-max-length": 1, "x-overflow": "reject-publish"})
    plain = connection.channel()
    for i in range(3):
        publish(plain, "", q, f"m{i}")
    assert wait_for_count(plain, q, 1) == 1
    round_trip(plain, q)
    assert plain.is_open
    assert bodies(get_all(plain, q)) == ["m0"]


def test_reject_publish_bytes(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-max-length-bytes": 6, "x-overflow": "reject-publish"})
    publish(channel, "", q, "abc")
    publish(channel, "", q, "def")
    with pytest.raises(pika.exceptions.NackError):
        publish(channel, "", q, "g")
    assert bodies(get_all(channel, q)) == ["abc", "def"]


def test_reject_publish_dlx_nacks_and_dead_letters(channel: Channel, tidy: Tidy) -> None:
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue(
        "q",
        **{"x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": dlx},
    )
    publish(channel, "", q, "m0")
    with pytest.raises(pika.exceptions.NackError):
        publish(channel, "", q, "m1")
    got = wait_get_all(channel, dead, 1)
    assert bodies(got) == ["m1"]
    assert deaths(got[0][1]) == [
        {
            "count": 1,
            "reason": "maxlen",
            "queue": q,
            "exchange": "",
            "routing-keys": [q],
        }
    ]
    assert bodies(get_all(channel, q)) == ["m0"]


def test_reject_publish_nacks_when_any_queue_refuses(channel: Channel, tidy: Tidy) -> None:
    x = tidy.exchange("x", "fanout")
    full = tidy.queue("full", **{"x-max-length": 0, "x-overflow": "reject-publish"})
    free = tidy.queue("free")
    channel.queue_bind(full, x)
    channel.queue_bind(free, x)
    with pytest.raises(pika.exceptions.NackError):
        publish(channel, x, "", "m")
    assert message_count(channel, full) == 0
    assert bodies(get_all(channel, free)) == ["m"]


# -- priorities -------------------------------------------------------------------------------


def test_priority_queue_order(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-max-priority": 10})
    sent = [("a", 1), ("b", 5), ("c", 1), ("d", 9), ("e", 5), ("f", 0), ("g", None), ("h", 10)]
    for body, priority in sent:
        publish(channel, "", q, body, priority=priority)
    got = get_all(channel, q)
    assert bodies(got) == ["h", "d", "b", "e", "a", "c", "f", "g"]
    assert [p.priority for _m, p, _b in got] == [10, 9, 5, 5, 1, 1, 0, None]


def test_priority_above_max_is_treated_as_max(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-max-priority": 5})
    for body, priority in (("a", 3), ("b", 7), ("c", 5), ("d", 200), ("e", 4)):
        publish(channel, "", q, body, priority=priority)
    got = get_all(channel, q)
    assert bodies(got) == ["b", "c", "d", "e", "a"]
    assert [p.priority for _m, p, _b in got] == [7, 5, 200, 4, 3]  # the property is kept


def test_priority_ignored_without_max_priority(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q")
    for body, priority in (("a", 1), ("b", 9), ("c", 5)):
        publish(channel, "", q, body, priority=priority)
    assert bodies(get_all(channel, q)) == ["a", "b", "c"]


def test_priority_with_prefetch(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q", **{"x-max-priority": 10})
    publish(channel, "", q, "low1", priority=1)
    publish(channel, "", q, "low2", priority=1)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    got: list[Delivery] = []
    consumer.basic_consume(q, collector(got))
    assert pump(connection, lambda: len(got) == 1)
    publish(channel, "", q, "high", priority=9)
    publish(channel, "", q, "mid", priority=5)
    round_trip(consumer, q)
    assert bodies(got) == ["low1"]  # prefetch 1: nothing else until the ack
    for n in (2, 3, 4):
        consumer.basic_ack(got[-1][0].delivery_tag)
        assert pump(connection, lambda n=n: len(got) == n)
        round_trip(consumer, q)
        assert len(got) == n
    assert bodies(got) == ["low1", "high", "mid", "low2"]


def test_priority_requeue_keeps_priority_order(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-max-priority": 5})
    publish(channel, "", q, "high", priority=5)
    publish(channel, "", q, "low", priority=1)
    method, _, body = channel.basic_get(q)
    assert body == b"high"
    publish(channel, "", q, "high2", priority=5)
    channel.basic_nack(method.delivery_tag, requeue=True)
    got = get_all(channel, q)
    assert bodies(got) == ["high", "high2", "low"]
    assert [m.redelivered for m, _p, _b in got] == [True, False, False]


# -- single active consumer -------------------------------------------------------------------


def test_single_active_consumer_only_first_receives_then_next_takes_over(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q", **{"x-single-active-consumer": True})
    ch1, ch2 = connection.channel(), connection.channel()
    got1: list[Delivery] = []
    got2: list[Delivery] = []
    tag1 = ch1.basic_consume(q, collector(got1), auto_ack=True)
    ch2.basic_consume(q, collector(got2), auto_ack=True)
    for i in range(4):
        publish(channel, "", q, f"m{i}")
    assert pump(connection, lambda: len(got1) == 4)
    round_trip(ch2, q)
    assert bodies(got1) == ["m0", "m1", "m2", "m3"]
    assert got2 == []
    ch1.basic_cancel(tag1)
    for i in range(4, 6):
        publish(channel, "", q, f"m{i}")
    assert pump(connection, lambda: len(got2) == 2)
    round_trip(ch1, q)
    assert bodies(got2) == ["m4", "m5"]
    assert len(got1) == 4


def test_single_active_consumer_failover_redelivers_unacked(
    broker: Broker, connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q", **{"x-single-active-consumer": True})
    first = broker.connect()
    try:
        ch1 = first.channel()
        ch1.basic_qos(prefetch_count=1)
        got1: list[Delivery] = []
        ch1.basic_consume(q, collector(got1))
        ch2 = connection.channel()
        got2: list[Delivery] = []
        ch2.basic_consume(q, collector(got2), auto_ack=True)
        for i in range(3):
            publish(channel, "", q, f"m{i}")
        assert pump(first, lambda: len(got1) == 1)
        round_trip(ch2, q)
        assert got2 == []
        assert message_count(channel, q) == 2
    finally:
        first.close()  # the active consumer goes away with m0 unacked
    assert pump(connection, lambda: len(got2) == 3)
    assert bodies(got2) == ["m0", "m1", "m2"]
    assert [m.redelivered for m, _p, _b in got2] == [True, False, False]


def test_single_active_consumer_refuses_exclusive_consume(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q", **{"x-single-active-consumer": True})
    ch1 = connection.channel()
    ch1.basic_consume(q, collector([]))
    ch2 = connection.channel()
    code, text = closed_by_broker(ch2, ch2.basic_consume, q, collector([]), exclusive=True)
    assert (code, text) == (403, f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")


def test_exclusive_consumer_refuses_others(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q")
    ch1 = connection.channel()
    ch1.basic_consume(q, collector([]), exclusive=True)
    ch2 = connection.channel()
    code, text = closed_by_broker(ch2, ch2.basic_consume, q, collector([]))
    assert (code, text) == (403, f"ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use")


# -- consumer priorities ----------------------------------------------------------------------


def test_consumer_priority_high_first_low_when_full(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q")
    high, low = connection.channel(), connection.channel()
    high.basic_qos(prefetch_count=2)
    got_high: list[Delivery] = []
    got_low: list[Delivery] = []
    low.basic_consume(q, collector(got_low), arguments={"x-priority": 0})
    high.basic_consume(q, collector(got_high), arguments={"x-priority": 10})
    for i in range(5):
        publish(channel, "", q, f"m{i}")
    assert pump(connection, lambda: len(got_high) + len(got_low) == 5)
    round_trip(low, q)
    assert bodies(got_high) == ["m0", "m1"]
    assert bodies(got_low) == ["m2", "m3", "m4"]
    # once the high-priority consumer has credit again it gets the next messages
    high.basic_ack(got_high[-1][0].delivery_tag, multiple=True)
    for i in range(5, 7):
        publish(channel, "", q, f"m{i}")
    assert pump(connection, lambda: len(got_high) == 4)
    round_trip(low, q)
    assert bodies(got_high) == ["m0", "m1", "m5", "m6"]
    assert len(got_low) == 3


def test_consumer_priority_higher_gets_backlog_on_ack(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q")
    for i in range(4):
        publish(channel, "", q, f"m{i}")
    low, high = connection.channel(), connection.channel()
    low.basic_qos(prefetch_count=1)
    high.basic_qos(prefetch_count=1)
    got_low: list[Delivery] = []
    got_high: list[Delivery] = []
    high.basic_consume(q, collector(got_high), arguments={"x-priority": 5})
    low.basic_consume(q, collector(got_low), arguments={"x-priority": -5})
    assert pump(connection, lambda: len(got_high) == 1 and len(got_low) == 1)
    assert bodies(got_high) == ["m0"]
    assert bodies(got_low) == ["m1"]
    high.basic_ack(got_high[0][0].delivery_tag)
    assert pump(connection, lambda: len(got_high) == 2)
    round_trip(low, q)
    assert bodies(got_high) == ["m0", "m2"]
    assert len(got_low) == 1


def test_equal_consumer_priorities_round_robin(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q")
    a, b = connection.channel(), connection.channel()
    got_a: list[Delivery] = []
    got_b: list[Delivery] = []
    a.basic_consume(q, collector(got_a), auto_ack=True, arguments={"x-priority": 3})
    b.basic_consume(q, collector(got_b), auto_ack=True, arguments={"x-priority": 3})
    for i in range(4):
        publish(channel, "", q, f"m{i}")
    assert pump(connection, lambda: len(got_a) + len(got_b) == 4)
    assert bodies(got_a) == ["m0", "m2"]
    assert bodies(got_b) == ["m1", "m3"]


# -- delivery limit ---------------------------------------------------------------------------


@trimq_only
def test_delivery_limit_dead_letters_with_delivery_count(
    connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    # RabbitMQ only supports x-delivery-limit on quorum queues; trimq on classic ones too.
    # The header is as a RabbitMQ 3.10 quorum queue sends it: 0 on the first delivery.
    dlx, dead = tidy.dead_letter_target()
    q = tidy.queue("q", **{"x-delivery-limit": 1, "x-dead-letter-exchange": dlx})
    publish(channel, "", q, "m", headers={"app": "x"})
    consumer = connection.channel()
    got: list[Delivery] = []
    consumer.basic_consume(q, collector(got))
    assert pump(connection, lambda: len(got) == 1)
    method, props, _ = got[0]
    assert method.redelivered is False
    assert props.headers == {"app": "x", "x-delivery-count": 0}
    consumer.basic_nack(method.delivery_tag, requeue=True)
    assert pump(connection, lambda: len(got) == 2)
    method, props, _ = got[1]
    assert method.redelivered is True
    assert props.headers == {"app": "x", "x-delivery-count": 1}
    consumer.basic_nack(method.delivery_tag, requeue=True)
    dead_got = wait_get_all(channel, dead, 1)
    round_trip(consumer, q)
    assert len(got) == 2
    assert bodies(dead_got) == ["m"]
    props = dead_got[0][1]
    assert deaths(props) == [
        {
            "count": 1,
            "reason": "delivery_limit",
            "queue": q,
            "exchange": "",
            "routing-keys": [q],
        }
    ]
    assert first_death(props) == ("delivery_limit", q, "")
    assert message_count(channel, q) == 0


@trimq_only
def test_delivery_limit_without_dlx_drops(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-delivery-limit": 0})
    publish(channel, "", q, "m")
    method, _, _ = channel.basic_get(q)
    channel.basic_nack(method.delivery_tag, requeue=True)
    assert message_count(channel, q) == 0


# -- x-expires --------------------------------------------------------------------------------


def test_unused_queue_expires(broker: Broker, channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-expires": 150})
    publish(channel, "", q, "m")  # messages do not keep a queue alive
    assert wait_deleted(broker, q)


def test_consumed_queue_does_not_expire_until_unused(
    broker: Broker, connection: pika.BlockingConnection, channel: Channel, tidy: Tidy
) -> None:
    q = tidy.queue("q", **{"x-expires": 150})
    consumer = connection.channel()
    tag = consumer.basic_consume(q, collector([]))
    # an unused queue declared after it expiring proves that q's expiry time has passed
    assert wait_deleted(broker, tidy.queue("probe", **{"x-expires": 150}))
    assert channel.queue_declare(q, passive=True).method.consumer_count == 1
    consumer.basic_cancel(tag)
    assert wait_deleted(broker, q)


# -- alternate exchanges ----------------------------------------------------------------------


def test_alternate_exchange_gets_unroutable(channel: Channel, tidy: Tidy) -> None:
    ae = tidy.exchange("ae", "fanout")
    x = tidy.exchange("x", "direct", **{"alternate-exchange": ae})
    qa = tidy.queue("qa")
    qk = tidy.queue("qk")
    channel.queue_bind(qa, ae)
    channel.queue_bind(qk, x, "k")
    publish(channel, x, "k", "routed")
    publish(channel, x, "other", "unroutable", mandatory=True)  # no Basic.Return
    assert bodies(get_all(channel, qk)) == ["routed"]
    got = get_all(channel, qa)
    assert bodies(got) == ["unroutable"]
    assert (got[0][0].exchange, got[0][0].routing_key) == (x, "other")


def test_alternate_exchange_chain(channel: Channel, tidy: Tidy) -> None:
    x3 = tidy.exchange("x3", "fanout")
    x2 = tidy.exchange("x2", "direct", **{"alternate-exchange": x3})
    x1 = tidy.exchange("x1", "topic", **{"alternate-exchange": x2})
    q2 = tidy.queue("q2")
    q3 = tidy.queue("q3")
    channel.queue_bind(q2, x2, "two")
    channel.queue_bind(q3, x3)
    publish(channel, x1, "two", "to-q2", mandatory=True)
    publish(channel, x1, "three", "to-q3", mandatory=True)
    assert bodies(get_all(channel, q2)) == ["to-q2"]
    assert bodies(get_all(channel, q3)) == ["to-q3"]


def test_alternate_exchange_routing_nowhere_returns(channel: Channel, tidy: Tidy) -> None:
    ae = tidy.exchange("ae", "direct")
    x = tidy.exchange("x", "direct", **{"alternate-exchange": ae})
    with pytest.raises(pika.exceptions.UnroutableError):
        publish(channel, x, "k", "m", mandatory=True)
    missing = tidy.exchange("x2", "direct", **{"alternate-exchange": tidy.name("nosuch")})
    with pytest.raises(pika.exceptions.UnroutableError):
        publish(channel, missing, "k", "m", mandatory=True)


def test_alternate_exchange_loop_terminates(channel: Channel, tidy: Tidy) -> None:
    a = tidy.name("a")
    b = tidy.exchange("b", "direct", **{"alternate-exchange": a})
    tidy.exchange("a", "direct", **{"alternate-exchange": b})
    q = tidy.queue("q")
    channel.queue_bind(q, b, "hit")
    with pytest.raises(pika.exceptions.UnroutableError):
        publish(channel, a, "miss", "m", mandatory=True)
    publish(channel, a, "hit", "m2", mandatory=True)
    assert bodies(get_all(channel, q)) == ["m2"]


def test_inequivalent_alternate_exchange(channel: Channel, tidy: Tidy) -> None:
    x = tidy.exchange("x", "direct", **{"alternate-exchange": "ae1"})
    code, text = closed_by_broker(
        channel, channel.exchange_declare, x, "direct", arguments={"alternate-exchange": "ae2"}
    )
    assert code == 406
    assert text == (
        f"PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
        f"'{x}' in vhost '/': received 'ae2' but current is 'ae1'"
    )


# -- CC and BCC -------------------------------------------------------------------------------


def test_cc_and_bcc_route_and_bcc_is_stripped(channel: Channel, tidy: Tidy) -> None:
    x = tidy.exchange("x", "direct")
    qs = {k: tidy.queue(k) for k in ("a", "b", "c", "d")}
    for k, q in qs.items():
        channel.queue_bind(q, x, k)
    publish(channel, x, "a", "m", headers={"CC": ["b"], "BCC": ["c"], "other": "v"})
    for k in ("a", "b", "c"):
        got = get_all(channel, qs[k])
        assert bodies(got) == ["m"], k
        method, props, _ = got[0]
        assert (method.exchange, method.routing_key) == (x, "a")
        assert props.headers == {"CC": ["b"], "other": "v"}
    assert message_count(channel, qs["d"]) == 0


def test_cc_delivers_once_per_queue(channel: Channel, tidy: Tidy) -> None:
    x = tidy.exchange("x", "topic")
    q = tidy.queue("q")
    channel.queue_bind(q, x, "a.*")
    publish(channel, x, "a.1", "m", headers={"CC": ["a.2", "a.1"], "BCC": ["a.3"]})
    assert bodies(get_all(channel, q)) == ["m"]


def test_cc_on_default_exchange(channel: Channel, tidy: Tidy) -> None:
    q1 = tidy.queue("q1")
    q2 = tidy.queue("q2")
    q3 = tidy.queue("q3")
    publish(channel, "", q1, "m", headers={"CC": [q2], "BCC": [q3]})
    assert bodies(get_all(channel, q1)) == ["m"]
    assert bodies(get_all(channel, q2)) == ["m"]
    got = get_all(channel, q3)
    assert bodies(got) == ["m"]
    assert got[0][1].headers == {"CC": [q2]}


def test_bcc_makes_message_routable(channel: Channel, tidy: Tidy) -> None:
    x = tidy.exchange("x", "direct")
    q = tidy.queue("q")
    channel.queue_bind(q, x, "b")
    publish(channel, x, "nowhere", "m", mandatory=True, headers={"BCC": ["b"]})
    got = get_all(channel, q)
    assert bodies(got) == ["m"]
    assert got[0][1].headers == {}


# -- invalid and inequivalent arguments -------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "name", "detail"),
    [
        ({"x-max-priority": 256}, "x-max-priority", "{max_value_exceeded,256}"),
        ({"x-max-priority": -1}, "x-max-priority", "{value_negative,-1}"),
        ({"x-max-priority": "high"}, "x-max-priority", '"expected integer, got longstr"'),
        ({"x-message-ttl": -1}, "x-message-ttl", "{value_negative,-1}"),
        ({"x-message-ttl": "1000"}, "x-message-ttl", '"expected integer, got longstr"'),
        ({"x-expires": 0}, "x-expires", "{value_zero,0}"),
        ({"x-expires": -10}, "x-expires", "{value_negative,-10}"),
        ({"x-expires": 315360000001}, "x-expires", "{value_too_large,315360000001}"),
        ({"x-message-ttl": 315360000001}, "x-message-ttl", "{value_too_large,315360000001}"),
        ({"x-max-length": -1}, "x-max-length", "{value_negative,-1}"),
        ({"x-max-length-bytes": -2}, "x-max-length-bytes", "{value_negative,-2}"),
        ({"x-overflow": "drop-tail"}, "x-overflow", "invalid_overflow"),
        (
            {"x-dead-letter-routing-key": "k"},
            "x-dead-letter-routing-key",
            "routing_key_but_no_dlx_defined",
        ),
        (
            {"x-single-active-consumer": "yes"},
            "x-single-active-consumer",
            "{unacceptable_type,longstr}",
        ),
        ({"x-queue-mode": 5}, "x-queue-mode", "{unacceptable_type,signedint}"),
        ({"x-queue-mode": "bogus"}, "x-queue-mode", "\"unsupported queue mode 'bogus'\""),
        # the text as Erlang's ~p prints it: escaped, and a list of bytes when not Latin-1
        ({"x-queue-mode": 'a"b\t'}, "x-queue-mode", '"unsupported queue mode \'a\\"b\\t\'"'),
        ({"x-queue-mode": "é"}, "x-queue-mode", "\"unsupported queue mode 'é'\""),
        (
            {"x-queue-mode": "€"},
            "x-queue-mode",
            "[" + ",".join(str(b) for b in "unsupported queue mode '€'".encode()) + "]",
        ),
        ({"x-queue-type": "bogus"}, "x-queue-type", "\"unsupported queue type 'bogus'\""),
        ({"x-queue-version": 3}, "x-queue-version", "\"unsupported queue version '3'\""),
        ({"x-queue-version": 0}, "x-queue-version", "\"unsupported queue version '0'\""),
        ({"x-queue-version": -1}, "x-queue-version", "{value_negative,-1}"),
        ({"x-queue-version": "2"}, "x-queue-version", '"expected integer, got longstr"'),
        # the first in RabbitMQ's order is told
        (
            {"x-queue-version": 5, "x-single-active-consumer": "yes"},
            "x-queue-version",
            "\"unsupported queue version '5'\"",
        ),
    ],
)
def test_invalid_queue_argument(
    channel: Channel, unique: str, arguments: dict[str, Any], name: str, detail: str
) -> None:
    code, text = closed_by_broker(channel, channel.queue_declare, unique, arguments=arguments)
    assert code == 406
    assert text == (
        f"PRECONDITION_FAILED - invalid arg '{name}' for queue '{unique}' in vhost '/': {detail}"
    )


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"x-max-in-memory-length": 10}, "x-max-in-memory-length"),
        ({"x-max-in-memory-bytes": 10}, "x-max-in-memory-bytes"),
        ({"x-dead-letter-strategy": "at-least-once"}, "x-dead-letter-strategy"),
        ({"x-max-age": "1D"}, "x-max-age"),
        ({"x-stream-max-segment-size-bytes": 100}, "x-stream-max-segment-size-bytes"),
        ({"x-initial-cluster-size": 3}, "x-initial-cluster-size"),
        ({"x-quorum-initial-group-size": 3}, "x-quorum-initial-group-size"),
        ({"x-queue-leader-locator": "client-local"}, "x-queue-leader-locator"),
        # whatever the value
        ({"x-max-in-memory-length": "abc"}, "x-max-in-memory-length"),
        # the first in the client's table
        ({"x-max-in-memory-length": 1, "x-max-age": "1D"}, "x-max-in-memory-length"),
        ({"x-max-age": "1D", "x-max-in-memory-length": 1}, "x-max-age"),
    ],
)
def test_other_queue_types_arguments_refused(
    channel: Channel, unique: str, arguments: dict[str, Any], name: str
) -> None:
    code, text = closed_by_broker(channel, channel.queue_declare, unique, arguments=arguments)
    assert (code, text) == (
        406,
        f"PRECONDITION_FAILED - invalid arg '{name}' for queue '{unique}' in vhost '/' "
        "of queue type rabbit_classic_queue",
    )


def test_other_queue_types_arguments_checked_after_the_others(
    channel: Channel, unique: str
) -> None:
    arguments = {"x-max-in-memory-length": 10, "x-message-ttl": -1}
    code, text = closed_by_broker(channel, channel.queue_declare, unique, arguments=arguments)
    assert (code, text) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '{unique}' in vhost '/': "
        "{value_negative,-1}",
    )


def test_arguments_without_effect_are_accepted_and_kept(channel: Channel, tidy: Tidy) -> None:
    arguments = {
        "x-queue-mode": "lazy",
        "x-queue-version": 2,
        "x-queue-master-locator": "client-local",
    }
    q = tidy.queue("q", **arguments)
    assert channel.queue_declare(q, arguments=arguments).method.queue == q
    publish(channel, "", q, "m")
    assert bodies(get_all(channel, q)) == ["m"]


def test_largest_ttl_and_expires_accepted(channel: Channel, tidy: Tidy) -> None:
    q = tidy.queue("q", **{"x-message-ttl": 315360000000, "x-expires": 315360000000})
    assert channel.queue_declare(q, passive=True).method.queue == q


def test_dead_letter_exchange_of_wrong_type(channel: Channel, unique: str) -> None:
    # RabbitMQ checks the dead-letter exchange name apart, with a text of its own
    code, text = closed_by_broker(
        channel, channel.queue_declare, unique, arguments={"x-dead-letter-exchange": 5}
    )
    assert code == 406
    assert text == (
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg "
        f"'x-dead-letter-exchange' in queue '{unique}' in vhost '/'"
    )


@pytest.mark.parametrize(
    ("first", "second", "name", "detail"),
    [
        (
            {"x-max-priority": 5},
            {"x-max-priority": 10},
            "x-max-priority",
            "received '10' but current is '5'",
        ),
        (
            {"x-message-ttl": 1000},
            {"x-message-ttl": 2000},
            "x-message-ttl",
            "received '2000' but current is '1000'",
        ),
        (
            {},
            {"x-max-length": 10},
            "x-max-length",
            "received the value '10' of type 'signedint' but current is none",
        ),
        (
            {"x-overflow": "drop-head"},
            {"x-overflow": "reject-publish"},
            "x-overflow",
            "received 'reject-publish' but current is 'drop-head'",
        ),
        (
            {"x-dead-letter-exchange": "dlx"},
            {},
            "x-dead-letter-exchange",
            "received none but current is the value 'dlx' of type 'longstr'",
        ),
        (
            {"x-single-active-consumer": True},
            {"x-single-active-consumer": False},
            "x-single-active-consumer",
            "received 'false' but current is 'true'",
        ),
        (
            {"x-expires": 60000},
            {"x-expires": 30000},
            "x-expires",
            "received '30000' but current is '60000'",
        ),
        (
            {"x-queue-mode": "lazy"},
            {"x-queue-mode": "default"},
            "x-queue-mode",
            "received 'default' but current is 'lazy'",
        ),
        (
            {"x-queue-version": 1},
            {"x-queue-version": 2},
            "x-queue-version",
            "received '2' but current is '1'",
        ),
        (
            {},
            {"x-queue-version": 1},
            "x-queue-version",
            "received the value '1' of type 'signedint' but current is none",
        ),
        (
            {"x-queue-master-locator": "min-masters"},
            {"x-queue-master-locator": "random"},
            "x-queue-master-locator",
            "received 'random' but current is 'min-masters'",
        ),
        # the first in RabbitMQ's order is told
        (
            {"x-queue-version": 1, "x-single-active-consumer": True},
            {"x-queue-version": 2, "x-single-active-consumer": False},
            "x-queue-version",
            "received '2' but current is '1'",
        ),
        (
            {"x-queue-master-locator": "random", "x-queue-version": 1},
            {"x-queue-master-locator": "min-masters", "x-queue-version": 2},
            "x-queue-version",
            "received '2' but current is '1'",
        ),
    ],
)
def test_inequivalent_queue_argument(
    channel: Channel,
    tidy: Tidy,
    first: dict[str, Any],
    second: dict[str, Any],
    name: str,
    detail: str,
) -> None:
    q = tidy.queue("q", **first)
    code, text = closed_by_broker(channel, channel.queue_declare, q, arguments=second or None)
    assert code == 406
    assert text == (
        f"PRECONDITION_FAILED - inequivalent arg '{name}' for queue '{q}' in vhost '/': {detail}"
    )
