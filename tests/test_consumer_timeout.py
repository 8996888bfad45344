"""consumer_timeout: a delivery not acknowledged in time closes its channel with RabbitMQ's 406.

Against another broker (TRIMQ_TEST_URL) these tests need TRIMQ_TEST_CONSUMER_TIMEOUT, the
consumer_timeout in milliseconds that broker runs with (RabbitMQ: `consumer_timeout = 2000` in
rabbitmq.conf; it checks on its channel tick, every minute unless advanced.config sets
`{rabbit, [{channel_tick_interval, 500}]}`); without it they are skipped. Against trimq they
start their own server with a short timeout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
import trio
import trio.testing
from amqp_raw import RawClient
from conftest import Broker, start_server, stop_server
from pika import spec

from trimq.amqp.spec import BasicProperties
from trimq.broker.broker import Broker as Model
from trimq.broker.message import Message
from trimq.cli import config
from trimq.cli.server import broker_config
from trimq.server.channel import Channel
from trimq.server.connection import ServerConnection
from trimq.server.consumer_timeout import check_interval

REFERENCE = os.environ.get("TRIMQ_TEST_URL")
TRIMQ_TIMEOUT_MS = 400
trimq_only = pytest.mark.skipif(bool(REFERENCE), reason="trimq-only: starts its own server")


def timeout_text(channel: int, timeout_ms: int) -> str:
    """RabbitMQ 3.10.8's text, observed with consumer_timeout = 2000."""
    return (
        f"PRECONDITION_FAILED - delivery acknowledgement on channel {channel} timed out. "
        f"Timeout value used: {timeout_ms} ms. This timeout value can be configured, see "
        "consumers doc guide to learn more"
    )


def start_with_timeout(data_dir: Path, timeout_ms: int) -> Broker:
    data_dir.mkdir(parents=True)
    (data_dir / "trimq.toml").write_text(f"[limits]\nconsumer_timeout = {timeout_ms}\n")
    return start_server(data_dir)


@pytest.fixture
def timed(broker: Broker, tmp_path: Path) -> Iterator[tuple[Broker, int]]:
    """A broker with a short consumer_timeout, and that timeout in milliseconds."""
    if REFERENCE:
        configured = os.environ.get("TRIMQ_TEST_CONSUMER_TIMEOUT")
        if not configured:
            pytest.skip("TRIMQ_TEST_CONSUMER_TIMEOUT (the reference's consumer_timeout) unset")
        yield broker, int(configured)
        return
    server = start_with_timeout(tmp_path / "data", TRIMQ_TIMEOUT_MS)
    yield server, TRIMQ_TIMEOUT_MS
    stop_server(server)


def deadline_for(timeout_ms: int) -> float:
    """How long to wait for a timeout to fire: RabbitMQ checks once a minute by default."""
    return timeout_ms / 1000 + (75.0 if REFERENCE else 5.0)


def test_unacked_delivery_closes_its_channel(timed: tuple[Broker, int], unique: str) -> None:
    server, timeout_ms = timed
    conn = server.connect()
    setup = conn.channel()
    setup.queue_declare(unique)
    setup.basic_publish("", unique, b"held")
    channel = conn.channel()
    delivered: list[float] = []
    channel.basic_consume(unique, lambda *_: delivered.append(time.monotonic()))
    conn.call_later(deadline_for(timeout_ms), channel.stop_consuming)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.start_consuming()
    closed = time.monotonic()
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        timeout_text(channel.channel_number, timeout_ms),
    )
    assert len(delivered) == 1 and (closed - delivered[0]) * 1000 >= timeout_ms * 0.95
    # the message went back to its queue; the connection and its other channels carry on
    method, _, body = setup.basic_get(unique, auto_ack=True)
    assert method is not None and method.redelivered and body == b"held"
    setup.queue_delete(unique)
    conn.close()


def test_basic_get_delivery_times_out_too(timed: tuple[Broker, int], unique: str) -> None:
    server, timeout_ms = timed
    with RawClient(server.host, server.port, timeout=deadline_for(timeout_ms)) as raw:
        raw.open_channel(1)
        raw.rpc(1, spec.Queue.Declare(queue=unique), spec.Queue.DeclareOk)
        raw.publish(1, "", unique, b"got")
        raw.open_channel(2)
        raw.send_method(2, spec.Basic.Get(queue=unique, no_ack=False))
        assert isinstance(raw.read_command().method, spec.Basic.GetOk)
        close = raw.expect(2, spec.Channel.Close)
        assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
            406,
            timeout_text(2, timeout_ms),
            0,
            0,
        )
        raw.send_method(2, spec.Channel.CloseOk())
        ok = raw.rpc(1, spec.Queue.Declare(queue=unique, passive=True), spec.Queue.DeclareOk)
        assert ok.message_count == 1  # requeued
        raw.rpc(1, spec.Queue.Delete(queue=unique), spec.Queue.DeleteOk)


def test_acked_and_no_ack_deliveries_are_left_alone(timed: tuple[Broker, int], unique: str) -> None:
    """For three timeouts a consumer acks each delivery at once, another never acks (no-ack):
    neither channel is closed. (Proving that nothing happens needs an observation window.)"""
    server, timeout_ms = timed
    conn = server.connect()
    acking, auto = conn.channel(), conn.channel()
    acking.queue_declare(unique)
    auto.queue_declare(unique + ".auto")
    acking.basic_consume(unique, lambda ch, m, *_: ch.basic_ack(m.delivery_tag))
    auto.basic_consume(unique + ".auto", lambda *_: None, auto_ack=True)
    window = 3 * timeout_ms / 1000 + (2.0 if REFERENCE else 0.5)
    end = time.monotonic() + window
    while time.monotonic() < end:
        acking.basic_publish("", unique, b"m")
        auto.basic_publish("", unique + ".auto", b"m")
        conn.process_data_events(time_limit=0.1)
    assert acking.is_open and auto.is_open
    acking.queue_delete(unique)
    acking.queue_delete(unique + ".auto")
    conn.close()


@trimq_only
def test_zero_disables_the_timeout(tmp_path: Path) -> None:
    server = start_with_timeout(tmp_path / "data", 0)
    try:
        conn = server.connect()
        channel = conn.channel()
        channel.queue_declare("kept")
        channel.basic_publish("", "kept", b"x")
        method, _, _ = channel.basic_get("kept")
        assert method is not None
        end = time.monotonic() + 2.0  # five times the timeout the other tests use
        while time.monotonic() < end:
            conn.process_data_events(time_limit=0.1)
        assert channel.is_open
        channel.basic_ack(method.delivery_tag)
        assert channel.queue_declare("kept", passive=True).method.message_count == 0
        conn.close()
    finally:
        stop_server(server)


@trimq_only
@pytest.mark.parametrize(
    ("steps", "closed_at"),
    [
        # tag 1 delivered before the check at 0.5, which records it: closed one timeout after that
        ([("deliver", 0.0), ("check", 0.5), ("check", 1.49), ("check", 1.5)], 1.5),
        # tag 1 acked after tag 2 was delivered: tag 2 is judged by the first record covering it
        (
            [
                ("deliver", 0.0),
                ("check", 0.5),
                ("deliver", 0.7),
                ("check", 1.0),
                ("ack", 1.2),
                ("check", 1.5),
                ("check", 1.99),
                ("check", 2.0),
            ],
            2.0,
        ),
        # every delivery acked between checks: the records go, nothing closes
        ([("deliver", 0.0), ("check", 0.5), ("ack", 0.6), ("check", 1.0), ("check", 3.0)], None),
    ],
)
def test_the_check_is_never_early(steps: list[tuple[str, float]], closed_at: float | None) -> None:
    """Channel.check_ack_timeout (timeout 1 s) at chosen times. Deliveries carry no timestamp:
    each check records the newest delivery tag, and the oldest unacked delivery is judged by the
    first record covering it, so a channel closes at least a timeout after the delivery and at
    most two check intervals later."""

    async def scenario() -> float | None:
        model = Model()
        _, server_stream = trio.testing.memory_stream_pair()
        connection = ServerConnection(server_stream, model, ("127.0.0.1", 40000))
        connection.vhost = vhost = model.vhosts["/"]
        queue, _ = vhost.declare_queue("q", None)
        channel = Channel(connection, 1)
        for step, now in steps:
            if step == "deliver":
                vhost.publish(Message("", "q", BasicProperties(), b"", b"x"), [queue])
                entry = queue.get(False)
                assert entry is not None
                channel.next_delivery_tag += 1
                channel.unacked[channel.next_delivery_tag] = (entry, queue, None)
            elif step == "ack":
                channel.unacked.pop(next(iter(channel.unacked)))
            elif channel.check_ack_timeout(now, 1000):
                return now
        return None

    assert trio.run(scenario) == closed_at


def test_check_interval() -> None:
    assert check_interval(1_800_000) == 60.0  # RabbitMQ's default: checked once a minute
    assert check_interval(5000) == 0.5
    assert check_interval(100) == 0.05


def test_configuration(tmp_path: Path) -> None:
    """`[limits] consumer_timeout` (ms), or TRIMQ_LIMITS_CONSUMER_TIMEOUT; RabbitMQ's default
    of 30 minutes; 0 disables; anything else is refused naming the key."""
    environ = {"TRIMQ_DATA_DIR": str(tmp_path)}
    assert config.load(None, environ, {}).consumer_timeout == 1_800_000
    settings = config.load(None, {**environ, "TRIMQ_LIMITS_CONSUMER_TIMEOUT": "250"}, {})
    assert broker_config(settings).consumer_timeout == 250
    for bad in ("-1", "soon", "2147483648"):
        with pytest.raises(
            config.ConfigError,
            match=r"'limits\.consumer_timeout' must be an integer from 0 to 2147483647",
        ):
            config.load(None, {**environ, "TRIMQ_LIMITS_CONSUMER_TIMEOUT": bad}, {})
