"""Message counters and their rates in the broker model, and `message_stats` as RabbitMQ 3.10.8
renders it. The broker runs in-process so the tests read its objects directly; the
expectations (tests/stats_scenario.py) are what a RabbitMQ 3.10.8 node reported for the same
operations. The HTTP answers are tested in test_management_*.py."""

from __future__ import annotations

import os
from functools import partial

import pika
import pytest
import trio

from tests import stats_scenario
from trimq.broker.broker import Broker, BrokerConfig
from trimq.broker.stats import MessageStats, message_stats, total, vhost_sum
from trimq.server.app import serve
from trimq.server.rates import overview_stats
from trimq.server.state import ServerState

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: runs the broker in-process to read its counters",
)


def _counts(stats: MessageStats, kind: str) -> dict[str, int]:
    return stats_scenario.counts(message_stats(stats, kind))


async def test_counters_match_rabbitmqs_for_the_scenario() -> None:
    broker = Broker(BrokerConfig())
    vhost = broker.vhosts["/"]
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(serve, broker, "127.0.0.1", 0))
        port = listeners[0][1]
        connection = await trio.to_thread.run_sync(
            lambda: pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        )
        try:
            scenario = await trio.to_thread.run_sync(stats_scenario.run, connection, "s")
            for short, expected in stats_scenario.QUEUES.items():
                queue = vhost.queues[scenario.name(short)]
                assert _counts(queue.counters(), "queue") == expected, short
            for short, expected in stats_scenario.EXCHANGES.items():
                exchange = vhost.exchanges[scenario.name(short)]
                assert _counts(exchange.stats, "exchange") == expected, short
            # The channels that consume: found through their consumers.
            channel2 = vhost.queues[scenario.name("q2")].consumers[0].stats
            channel3 = vhost.queues[scenario.name("q3")].consumers[0].stats
            assert _counts(channel2, "channel") == stats_scenario.CHANNELS[1]
            assert _counts(channel3, "channel") == stats_scenario.CHANNELS[2]
            totals = broker.totals
            assert (totals.queues_declared, totals.queues_created, totals.queues_deleted) == (
                3,
                3,
                0,
            )
            assert (totals.connections_opened, totals.channels_opened) == (1, 3)
        finally:
            await trio.to_thread.run_sync(connection.close)
        # Auto-delete queues went with their consumers; the channels and connection closed.
        with trio.fail_after(5):
            while totals.connections_closed < 1:
                await trio.sleep(0.01)
        assert totals.channels_closed == 3
        assert totals.queues_deleted == 2  # q2 and q3 (q1 never had a consumer)
        # The vhost's counts: kept from the closed channels and deleted queues, and counted
        # by those still there.
        summed = vhost_sum(
            vhost.stats,
            (q.stats for q in vhost.queues.values()),
            (x.stats for x in vhost.exchanges.values()),
            [],
        )
        counted = _counts(summed, "vhost")
        assert list(counted) == list(stats_scenario.VHOST_DELTA)  # RabbitMQ's key order
        assert counted == stats_scenario.VHOST_DELTA
        nursery.cancel_scope.cancel()


def test_rates_are_the_change_over_the_last_sampling_interval() -> None:
    stats = MessageStats()
    stats.sample(5.0)
    assert stats._last is None  # nothing counted yet: nothing kept
    stats.publish += 10
    stats.sample(5.0)  # the first sample: counted since the previous one (from zero)
    assert stats.rate("publish") == 2.0
    stats.sample(5.0)
    assert stats.rate("publish") == 0.0
    stats.publish += 10
    stats.deliver += 3
    stats.get += 2
    stats.sample(5.0)
    assert stats.rate("publish") == 2.0
    assert stats.rate("deliver_get") == 1.0
    rendered = message_stats(stats, "channel")
    assert rendered["publish"] == 20
    assert rendered["publish_details"] == {"rate": 2.0}
    assert rendered["deliver_get_details"] == {"rate": 1.0}
    stats.sample(5.0)  # nothing happened over this interval
    assert stats.rate("publish") == 0.0
    assert message_stats(stats, "channel")["publish_details"] == {"rate": 0.0}


def test_message_stats_groups_as_rabbitmq() -> None:
    fresh = MessageStats()
    assert message_stats(fresh, "queue") == {}
    assert message_stats(fresh, "exchange") == {}
    assert message_stats(fresh, "vhost") == {}
    overview = message_stats(fresh, "overview")  # the overview lists every counter
    assert list(overview) == sorted(overview)
    assert {"publish", "deliver_get", "disk_reads", "disk_writes_details"} <= set(overview)

    published = MessageStats()
    published.publish += 1
    published.publish_in += 1
    assert list(message_stats(published, "queue")) == ["publish", "publish_details"]
    assert list(message_stats(published, "exchange")) == ["publish_in", "publish_in_details"]
    assert list(message_stats(published, "channel")) == [
        "confirm",
        "confirm_details",
        "drop_unroutable",
        "drop_unroutable_details",
        "publish",
        "publish_details",
        "return_unroutable",
        "return_unroutable_details",
    ]
    both = total([published, published])
    assert both.publish == 2


async def test_broker_totals_keep_a_deleted_vhosts_messages() -> None:
    broker = Broker(BrokerConfig())
    broker.add_vhost("gone")
    broker.set_permissions("gone", "guest", ".*", ".*", ".*")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(serve, broker, "127.0.0.1", 0))
        port = listeners[0][1]

        def publish_three() -> pika.BlockingConnection:
            params = pika.ConnectionParameters("127.0.0.1", port, virtual_host="gone")
            connection = pika.BlockingConnection(params)
            channel = connection.channel()
            channel.queue_declare("q")
            for _ in range(3):
                channel.basic_publish("", "q", b"m")
            channel.queue_declare("q", passive=True)  # a round trip: all three are in
            return connection

        connection = await trio.to_thread.run_sync(publish_three)
        broker.delete_vhost("gone")  # its connection is still open: its channel closes later
        await trio.to_thread.run_sync(connection.close)
        with trio.fail_after(5):
            while broker.totals.channels_closed < 1:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    counted = overview_stats(ServerState(broker))
    assert (counted.publish, counted.publish_out) == (3, 3)
