"""Policies: set, applied to existing and new queues and exchanges, beaten by queue arguments,
ordered by priority, listed, cleared, and kept across restarts.

trimq-only: administers its own trimq-server with trimqctl.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pika
import pytest
from conftest import Broker, start_server, stop_server
from test_ctl_live import ctl

pytestmark = pytest.mark.skipif(bool(os.environ.get("TRIMQ_TEST_URL")),
                                reason="trimq-only: administers its own trimq-server")



def count(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def test_policy_applies_to_existing_queues_and_queue_arguments_win(node: Broker) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("lim.a")
    ch.queue_declare("lim.b", arguments={"x-max-length": 3})
    ch.queue_declare("other")
    assert ctl(node, "set_policy", "cap", "^lim\\.", '{"max-length": 1}',
               "--apply-to", "queues")[0] == 0
    for q in ("lim.a", "lim.b", "other"):
        for n in range(4):
            ch.basic_publish("", q, b"%d" % n)
    assert (count(ch, "lim.a"), count(ch, "lim.b"), count(ch, "other")) == (1, 3, 4)
    code, out, _ = ctl(node, "list_queues", "-s", "name", "policy")
    assert sorted(out) == ["lim.a\tcap", "lim.b\tcap", "other\t"]
    assert ctl(node, "clear_policy", "cap")[0] == 0
    ch.basic_publish("", "lim.a", b"more")
    assert count(ch, "lim.a") == 2
    conn.close()


def test_highest_priority_policy_wins(node: Broker) -> None:
    ctl(node, "set_policy", "low", ".*", '{"max-length": 5}', "--priority", "1")
    ctl(node, "set_policy", "high", "^p\\.", '{"max-length": 2}', "--priority", "7")
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("p.q")
    for n in range(6):
        ch.basic_publish("", "p.q", b"%d" % n)
    assert count(ch, "p.q") == 2
    code, out, _ = ctl(node, "list_policies", "-q")
    assert out == ["vhost\tname\tpattern\tapply-to\tdefinition\tpriority",
                   '/\thigh\t^p\\.\tall\t{"max-length":2}\t7',
                   '/\tlow\t.*\tall\t{"max-length":5}\t1']
    conn.close()


def test_ttl_and_dead_letter_policy(node: Broker) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("graveyard")
    ch.queue_bind("graveyard", "dlx")
    ctl(node, "set_policy", "expire", "^short$",
        '{"message-ttl": 50, "dead-letter-exchange": "dlx"}', "--apply-to", "queues")
    ch.queue_declare("short")
    ch.basic_publish("", "short", b"gone soon")
    deadline = time.monotonic() + 5
    while count(ch, "graveyard") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    method, props, body = ch.basic_get("graveyard", auto_ack=True)
    assert body == b"gone soon"
    assert props.headers["x-death"][0]["reason"] == "expired"
    conn.close()


def test_alternate_exchange_policy(node: Broker) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.exchange_declare("ae", "fanout")
    ch.queue_declare("unrouted")
    ch.queue_bind("unrouted", "ae")
    ch.exchange_declare("main", "direct")
    ctl(node, "set_policy", "ae", "^main$", '{"alternate-exchange": "ae"}',
        "--apply-to", "exchanges")
    ch.basic_publish("main", "nowhere", b"caught")
    assert ch.basic_get("unrouted", auto_ack=True)[2] == b"caught"
    conn.close()


def test_invalid_policies_are_refused(node: Broker) -> None:
    code, _out, err = ctl(node, "set_policy", "bad", ".*", '{"no-such-key": 1}')
    assert code == 70 and "are not recognised policy settings" in "\n".join(err)
    code, _out, err = ctl(node, "set_policy", "bad", ".*", "not json")
    assert code == 70 and "is not valid JSON" in "\n".join(err)


def test_policies_survive_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    ctl(server, "set_policy", "cap", "^capped$", '{"max-length": 1}', "--apply-to", "queues")
    assert stop_server(server) == 0
    server = start_server(tmp_path / "data")
    try:
        conn = server.connect()
        ch = conn.channel()
        ch.queue_declare("capped")
        for n in range(3):
            ch.basic_publish("", "capped", b"%d" % n)
        assert ch.basic_get("capped", auto_ack=True)[2] == b"2"
        conn.close()
    finally:
        assert stop_server(server) == 0
