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
from ctl_helpers import ctl

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: administers its own trimq-server"
)


def count(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def test_policy_applies_to_existing_queues_and_the_lower_limit_wins(node: Broker) -> None:
    """RabbitMQ 3.10: x-max-length 3 under a policy max-length 1 keeps 1 message."""
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("lim.a")
    ch.queue_declare("lim.b", arguments={"x-max-length": 3})
    ch.queue_declare("other")
    assert (
        ctl(node, "set_policy", "cap", "^lim\\.", '{"max-length": 1}', "--apply-to", "queues")[0]
        == 0
    )
    for q in ("lim.a", "lim.b", "other"):
        for n in range(4):
            ch.basic_publish("", q, b"%d" % n)
    assert (count(ch, "lim.a"), count(ch, "lim.b"), count(ch, "other")) == (1, 1, 4)
    _code, out, _ = ctl(node, "list_queues", "-s", "name", "policy")
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
    _code, out, _ = ctl(node, "list_policies", "-q")
    assert out == [
        "vhost\tname\tpattern\tapply-to\tdefinition\tpriority",
        '/\thigh\t^p\\.\tall\t{"max-length":2}\t7',
        '/\tlow\t.*\tall\t{"max-length":5}\t1',
    ]
    conn.close()


def test_ttl_and_dead_letter_policy(node: Broker) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.exchange_declare("dlx", "fanout")
    ch.queue_declare("graveyard")
    ch.queue_bind("graveyard", "dlx")
    ctl(
        node,
        "set_policy",
        "expire",
        "^short$",
        '{"message-ttl": 50, "dead-letter-exchange": "dlx"}',
        "--apply-to",
        "queues",
    )
    ch.queue_declare("short")
    ch.basic_publish("", "short", b"gone soon")
    deadline = time.monotonic() + 5
    while count(ch, "graveyard") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    _method, props, body = ch.basic_get("graveyard", auto_ack=True)
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
    ctl(
        node,
        "set_policy",
        "ae",
        "^main$",
        '{"alternate-exchange": "ae"}',
        "--apply-to",
        "exchanges",
    )
    ch.basic_publish("main", "nowhere", b"caught")
    assert ch.basic_get("unrouted", auto_ack=True)[2] == b"caught"
    conn.close()


@pytest.mark.parametrize(
    "definition,problem",
    [
        # texts as rabbitmqctl 3.10 prints them
        (
            '{"no-such-key": 1, "other": "x"}',
            '[{<<"no-such-key">>,1},{<<"other">>,<<"x">>}] are not recognised policy settings',
        ),
        ('{"message-ttl": "abc"}', '<<"abc">> is not a valid message TTL'),
        ('{"message-ttl": -1}', "-1 is not a valid message TTL"),
        ('{"message-ttl": true}', "true is not a valid message TTL"),
        ('{"expires": 0}', "0 is not a valid queue expiry"),
        ('{"max-length": -1}', "-1 is not a valid maximum length"),
        ('{"max-length-bytes": "x"}', '<<"x">> is not a valid maximum length in bytes'),
        ('{"overflow": "bogus"}', '<<"bogus">> is not a valid overflow value'),
        ('{"dead-letter-exchange": 5}', "5 is not a valid dead letter exchange name"),
        ('{"dead-letter-routing-key": 5}', "5 is not a valid dead letter routing key"),
        ('{"delivery-limit": -2}', "-2 is not a valid delivery limit"),
        ('{"alternate-exchange": 1}', "1 is not a valid alternate exchange name"),
        (
            '{"dead-letter-exchange": "x", "message-ttl": "y", "max-length": -1}',
            "-1 is not a valid maximum length",
        ),  # the first in key order
        ('{"ha-mode": "bogus"}', '<<"bogus">> is not a valid ha-mode value'),
        (
            '{"queue-leader-locator": "min-masters"}',
            '<<"min-masters">> is not a valid queue leader locator value',
        ),
        ('{"queue-leader-locator": 5}', "5 is not a valid queue leader locator value"),
        (
            '{"ha-params": 2}',
            "ha-mode must be specified to specify ha-params, ha-sync-mode or "
            "ha-promote-on-shutdown",
        ),
        ('{"ha-mode": "exactly"}', 'ha-mode="exactly" takes an integer, none given'),
        ("{}", "no policy provided"),
    ],
)
def test_invalid_policies_are_refused_with_rabbitmq_texts(
    node: Broker, definition: str, problem: str
) -> None:
    code, _out, err = ctl(node, "set_policy", "bad", ".*", definition)
    assert (code, err[:3]) == (69, ["Error:", "Validation failed", ""])
    assert err[3] == problem
    assert not any("\tbad\t" in line for line in ctl(node, "list_policies")[1])  # not set


def test_invalid_policy_arguments_are_refused(node: Broker) -> None:
    code, _out, err = ctl(node, "set_policy", "bad", ".*", "not json")
    assert (code, err) == (69, ["Error:", "JSON decoding error. Reason: badarg"])
    code, _out, err = ctl(
        node, "set_policy", "--apply-to", "bogus", "bad", ".*", '{"max-length": 1}'
    )
    assert code == 69 and err[3] == (
        "apply-to 'bogus' unrecognised; should be 'queues', 'exchanges' or 'all'"
    )
    code, _out, err = ctl(node, "set_policy", "bad", "(", '{"max-length": 1}')
    assert code == 69 and err[3].startswith("pattern should be regular expression but is invalid: ")


def test_mirroring_and_other_cluster_keys_are_accepted_without_effect(node: Broker) -> None:
    """Operators' scripts set ha-* and similar keys; on one node they change nothing."""
    definition = (
        '{"ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "automatic", '
        '"queue-master-locator": "min-masters", "queue-mode": "lazy", '
        '"queue-leader-locator": "balanced", "max-in-memory-length": 5, "max-age": "1D", '
        '"max-length": 2}'
    )
    code, _out, err = ctl(node, "set_policy", "ha", "^ha\\.", definition, "--apply-to", "queues")
    assert code == 0, err
    listed = ctl(node, "list_policies")[1]
    assert any(line.startswith("/\tha\t") and '"ha-mode":"exactly"' in line for line in listed), (
        listed
    )
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("ha.q", auto_delete=True)
    for n in range(3):
        ch.basic_publish("", "ha.q", b"%d" % n)
    assert count(ch, "ha.q") == 2  # the max-length beside them applies
    conn.close()
    ctl(node, "clear_policy", "ha")


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
