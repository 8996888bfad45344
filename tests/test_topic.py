"""Topic exchange routing, for many (binding key, routing key) pairs, through a live broker.

One exchange with one queue per binding key is declared once per module; every routing key is
published once; each queue then holds exactly the routing keys its binding matched. All the
expectations were checked against RabbitMQ 3.10.8. Note that RabbitMQ splits the routing key ""
into zero words (so "#" matches it and "*" does not), and "a..b", ".a", "a." have empty words.
"""

from __future__ import annotations

import os
import time

import pytest
from pika.exceptions import UnroutableError
from pika_helpers import get_all

pytestmark = pytest.mark.timeout(60)

# (binding key, routing key, routed?)
CASES = [
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", "", False),
    ("*", ".", False),
    ("*", "ab", True),
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", ".", True),
    ("", "", True),
    ("", "a", False),
    ("", ".", False),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.c.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a..b", True),
    ("a.#.b", "a.b.c", False),
    ("a.#.b", "b.a", False),
    ("*.*", "a", False),
    ("*.*", "a.b", True),
    ("*.*", "a.b.c", False),
    ("*.*", ".", True),
    ("*.*", ".a", True),
    ("*.*", "a.", True),
    ("*.*", "", False),
    ("a.*", "a", False),
    ("a.*", "a.", True),
    ("a.*", "a.b", True),
    ("a.*", "a.b.c", False),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "ab", False),
    ("a.#", "b.a", False),
    ("#.b", "b", True),
    ("#.b", "a.c.b", True),
    ("#.b", "a.bc", False),
    ("*.b", "b", False),
    ("*.b", "a.b", True),
    ("*.b", "a.c.b", False),
    ("a.*.b", "a.b", False),
    ("a.*.b", "a..b", True),
    ("a.*.b", "a.c.b", True),
    ("a.*.b", "a.x.y.b", False),
    ("a.b", "a.b", True),
    ("a.b", "a.b.c", False),
    ("a.b", "A.B", False),
    ("#.a.#", "a", True),
    ("#.a.#", "x.a.y", True),
    ("#.a.#", "ab", False),
    ("*.#", "", False),
    ("*.#", "a", True),
    ("*.#", ".", True),
    ("#.*", "", False),
    ("#.*", "a.b.c", True),
    ("#.*.#", "", False),
    ("#.*.#", "a", True),
    ("a..b", "a..b", True),
    ("a..b", "a.b", False),
    ("a..b", "a.c.b", False),
    (".a", ".a", True),
    (".a", "a", False),
    ("a.", "a.", True),
    ("a.", "a", False),
    (".", ".", True),
    (".", "", False),
    ("*..*", "..", True),
    ("*..*", "a..b", True),
    ("*..*", "a.b", False),
    ("*.*.*", "..", True),
    ("*.*.*", "a.b", False),
    ("*.a", ".a", True),
    ("*.a", "a", False),
    ("a.b.#", "a.b", True),
    ("a.b.#", "a.bc", False),
    ("#.b.#", "b", True),
    ("#.b.#", "b.a", True),
    ("a.#.#.b", "a.b", True),
    ("a.#.#.b", "a.x.y.b", True),
    ("#.#.b", "b", True),
    ("a#", "a#", True),
    ("a#", "a", False),
    ("a#", "a.b", False),
    ("a*", "a*", True),
    ("a*", "ab", False),
    ("*", "#", True),
    ("#", "*", True),
    ("caf\u00e9.*", "caf\u00e9.au-lait", True),
    ("x.*.*.*.*.*.y", "x.1.2.3.4.5.y", True),
    ("x.*.*.*.*.*.y", "x.1.2.3.4.y", False),
    ("#.x.#.y.#", "p.x.q.y.r", True),
    ("#.x.#.y.#", "p.y.q.x.r", False),
]

# The complete outcome for a grid of binding keys and routing keys: binding -> routed keys.
GRID_KEYS = [
    "",
    "a",
    "b",
    "a.b",
    "a.b.c",
    "a.c.b",
    "a.x.y.b",
    "a..b",
    ".a",
    "a.",
    ".",
    "..",
    "b.a",
    "a.b.b",
    "a.a",
    "ab",
    "a.bc",
    "x.a.y",
    "a.b.a.b",
]
ALL_KEYS = set(GRID_KEYS) - {""}
GRID = {
    "*": {"a", "ab", "b"},
    "#": set(GRID_KEYS),
    "": {""},
    "#.#": set(GRID_KEYS),
    "a.#.b": {"a..b", "a.b", "a.b.a.b", "a.b.b", "a.c.b", "a.x.y.b"},
    "*.*": {".", ".a", "a.", "a.a", "a.b", "a.bc", "b.a"},
    "a.*": {"a.", "a.a", "a.b", "a.bc"},
    "a.#": {
        "a",
        "a.",
        "a..b",
        "a.a",
        "a.b",
        "a.b.a.b",
        "a.b.b",
        "a.b.c",
        "a.bc",
        "a.c.b",
        "a.x.y.b",
    },
    "#.b": {"a..b", "a.b", "a.b.a.b", "a.b.b", "a.c.b", "a.x.y.b", "b"},
    "*.b": {"a.b"},
    "a.*.b": {"a..b", "a.b.b", "a.c.b"},
    "a.b": {"a.b"},
    "#.a.#": {
        ".a",
        "a",
        "a.",
        "a..b",
        "a.a",
        "a.b",
        "a.b.a.b",
        "a.b.b",
        "a.b.c",
        "a.bc",
        "a.c.b",
        "a.x.y.b",
        "b.a",
        "x.a.y",
    },
    "*.#": ALL_KEYS,
    "#.*": ALL_KEYS,
    "a..b": {"a..b"},
    ".a": {".a"},
    "a.": {"a."},
    "*.*.*": {"..", "a..b", "a.b.b", "a.b.c", "a.c.b", "x.a.y"},
    "a.*.#": {"a.", "a..b", "a.a", "a.b", "a.b.a.b", "a.b.b", "a.b.c", "a.bc", "a.c.b", "a.x.y.b"},
    "#.#.b": {"a..b", "a.b", "a.b.a.b", "a.b.b", "a.c.b", "a.x.y.b", "b"},
    "a.b.#": {"a.b", "a.b.a.b", "a.b.b", "a.b.c"},
    "#.b.#": {"a..b", "a.b", "a.b.a.b", "a.b.b", "a.b.c", "a.c.b", "a.x.y.b", "b", "b.a"},
    "*.a": {".a", "a.a", "b.a"},
    ".": {"."},
    "*..*": {"..", "a..b"},
    "a.#.#.b": {"a..b", "a.b", "a.b.a.b", "a.b.b", "a.c.b", "a.x.y.b"},
    "#.*.#": ALL_KEYS,
}


@pytest.fixture(scope="module")
def routed(broker) -> dict[str, set[str]]:
    """Route every routing key through one topic exchange: binding key -> routed keys."""
    bindings = sorted({b for b, _, _ in CASES} | set(GRID))
    keys = sorted({k for _, k, _ in CASES} | set(GRID_KEYS))
    exchange = f"test_topic.{os.getpid()}"
    conn = broker.connect()
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange, "topic", auto_delete=True)
        queues = {}
        for binding in bindings:
            queues[binding] = ch.queue_declare("", exclusive=True).method.queue
            ch.queue_bind(queues[binding], exchange, binding)
        ch.confirm_delivery()  # each publish returns once routed
        for key in keys:
            ch.basic_publish(exchange, key, key.encode())
        result = {}
        for binding, queue in queues.items():
            result[binding] = {body.decode() for _, _, body in get_all(ch, queue)}
        ch.exchange_delete(exchange)
        return result
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("binding", "key", "expected"), CASES, ids=[f"{b!r}-{k!r}" for b, k, _ in CASES]
)
def test_topic_match(routed, binding, key, expected):
    assert (key in routed[binding]) is expected


@pytest.mark.parametrize("binding", list(GRID), ids=[repr(b) for b in GRID])
def test_topic_grid(routed, binding):
    grid_keys = set(GRID_KEYS)
    assert routed[binding] & grid_keys == GRID[binding]


def test_one_copy_per_queue_however_many_bindings_match(channel, unique):
    channel.exchange_declare(unique, "topic", auto_delete=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    for binding in ("#", "a.*", "*.b", "a.b", "#.#"):
        channel.queue_bind(queue, unique, binding)
    channel.basic_publish(unique, "a.b", b"once")
    channel.basic_publish(unique, "c", b"also-once")
    deadline = time.monotonic() + 2
    while channel.queue_declare(queue, passive=True).method.message_count < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [body for _, _, body in get_all(channel, queue)] == [b"once", b"also-once"]


def test_unbind_stops_routing(channel, unique):
    channel.exchange_declare(unique, "topic", auto_delete=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, unique, "a.*")
    channel.queue_bind(queue, unique, "#.b")
    channel.queue_unbind(queue, unique, "a.*")
    channel.confirm_delivery()
    channel.basic_publish(unique, "a.x", b"no")
    channel.basic_publish(unique, "a.b", b"yes")
    assert [body for _, _, body in get_all(channel, queue)] == [b"yes"]


def test_mandatory_unroutable_on_topic(channel, unique):
    channel.exchange_declare(unique, "topic", auto_delete=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, unique, "a.*")
    channel.confirm_delivery()
    channel.basic_publish(unique, "a.b", b"ok", mandatory=True)
    with pytest.raises(UnroutableError) as exc:
        channel.basic_publish(unique, "a.b.c", b"back", mandatory=True)
    (msg,) = exc.value.messages
    assert (
        msg.method.reply_code,
        msg.method.reply_text,
        msg.method.exchange,
        msg.method.routing_key,
    ) == (312, "NO_ROUTE", unique, "a.b.c")
