"""message_stats in the management API's answers (overview, vhosts, queues, exchanges,
channels): the counts RabbitMQ 3.10.8 reports for a fixed scenario (tests/stats_scenario.py),
each with `NAME_details.rate`, and a rate that shows a burst of publishes.

Runs against RabbitMQ too (TRIMQ_TEST_URL and TRIMQ_TEST_MANAGEMENT_URL). RabbitMQ updates its
statistics every 5 s, so answers are polled against a deadline. The scenario runs in a vhost
of its own, so the vhost's counts are the scenario's alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from http_helpers import Api, temp_vhost

from tests import stats_scenario
from tests.conftest import Broker

DEADLINE = 20.0  # seconds: RabbitMQ's statistics are emitted every 5 s


def poll(fetch: Callable[[], Any], check: Callable[[Any], bool], timeout: float = DEADLINE) -> Any:
    """fetch() until check(result) or the deadline; the last result."""
    deadline = time.monotonic() + timeout
    result = fetch()
    while not check(result) and time.monotonic() < deadline:
        time.sleep(0.25)
        result = fetch()
    return result


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


@pytest.fixture
def scenario_vhost(api: Api, unique: str) -> Iterator[str]:
    with temp_vhost(api, unique) as name:
        answer = api.put(
            "permissions", name, "guest", json={"configure": ".*", "write": ".*", "read": ".*"}
        )
        assert answer.status_code in (201, 204), answer.text
        yield name


def _connect(broker: Broker, vhost: str) -> pika.BlockingConnection:
    return broker.connect(virtual_host=vhost)


def _stats(answer: dict[str, Any]) -> dict[str, int]:
    return stats_scenario.counts(answer.get("message_stats", {}))


def test_vhost_message_stats(api: Api, broker: Broker, scenario_vhost: str) -> None:
    connection = _connect(broker, scenario_vhost)
    try:
        stats_scenario.run(connection, "s")
        answer = poll(
            lambda: api.get("vhosts", scenario_vhost).json(),
            lambda a: _stats(a) == stats_scenario.VHOST_DELTA,
        )
        assert _stats(answer) == stats_scenario.VHOST_DELTA
        details = answer["message_stats"]
        assert all(
            isinstance(details[f"{name}_details"]["rate"], float)
            for name in stats_scenario.VHOST_DELTA
        )
        listed = [v for v in api.get("vhosts").json() if v["name"] == scenario_vhost]
        assert _stats(listed[0]) == stats_scenario.VHOST_DELTA
    finally:
        connection.close()


def test_overview_message_stats_lists_every_counter(api: Api) -> None:
    stats = api.get("overview").json()["message_stats"]
    for name in (*stats_scenario.VHOST_DELTA, "disk_reads", "disk_writes"):
        assert isinstance(stats[name], int), name
        assert isinstance(stats[f"{name}_details"]["rate"], float), name


def test_overview_counts_grow_with_the_scenario(
    api: Api, broker: Broker, scenario_vhost: str
) -> None:
    before = _stats(api.get("overview").json())
    connection = _connect(broker, scenario_vhost)
    try:
        stats_scenario.run(connection, "s")

        def grown(answer: dict[str, Any]) -> bool:
            now = _stats(answer)
            return all(now[k] - before[k] >= v for k, v in stats_scenario.VHOST_DELTA.items())

        assert grown(poll(lambda: api.get("overview").json(), grown))
    finally:
        connection.close()


def test_publish_rate_shows_a_burst(api: Api, broker: Broker, scenario_vhost: str) -> None:
    """1,000 publishes at once: the overview's publish rate shows them within two sampling
    intervals (RabbitMQ: 200.0 for one 5 s interval), and the vhost's count is exact."""
    connection = _connect(broker, scenario_vhost)
    try:
        channel = connection.channel()
        channel.queue_declare("burst")
        for _ in range(1000):
            channel.basic_publish("", "burst", b"b")
        channel.queue_declare("burst", passive=True)  # a round trip: all are in

        def rate(answer: dict[str, Any]) -> float:
            return float(answer.get("message_stats", {}).get("publish_details", {}).get("rate", 0))

        answer = poll(lambda: api.get("overview").json(), lambda a: rate(a) > 0)
        assert 0 < rate(answer) <= 1000 / 4  # spread over at least one interval (5 s)
        answer = poll(
            lambda: api.get("vhosts", scenario_vhost).json(),
            lambda a: _stats(a).get("publish") == 1000,
        )
        assert _stats(answer)["publish"] == 1000
    finally:
        connection.close()


def test_queue_exchange_and_channel_message_stats(
    api: Api, broker: Broker, scenario_vhost: str
) -> None:
    connection = _connect(broker, scenario_vhost)
    try:
        scenario = stats_scenario.run(connection, "s")
        for short, expected in stats_scenario.QUEUES.items():
            answer = poll(
                lambda short=short: api.get("queues", scenario_vhost, scenario.name(short)).json(),
                lambda a, expected=expected: _stats(a) == expected,
            )
            assert _stats(answer) == expected, short
            assert isinstance(answer["message_stats"]["publish_details"]["rate"], float)
        for short, expected in stats_scenario.EXCHANGES.items():
            answer = poll(
                lambda short=short: api.get(
                    "exchanges", scenario_vhost, scenario.name(short)
                ).json(),
                lambda a, expected=expected: _stats(a) == expected,
            )
            assert _stats(answer) == expected, short

        def channels() -> list[dict[str, Any]]:
            listed = [c for c in api.get("channels").json() if c["vhost"] == scenario_vhost]
            return sorted(listed, key=lambda c: c["number"])

        answer = poll(channels, lambda cs: [_stats(c) for c in cs] == stats_scenario.CHANNELS)
        assert [_stats(c) for c in answer] == stats_scenario.CHANNELS
        # Listed queues carry them too.
        listed = api.get("queues", scenario_vhost).json()
        by_name = {q["name"]: _stats(q) for q in listed}
        assert by_name[scenario.name("q3")] == stats_scenario.QUEUES["q3"]
    finally:
        connection.close()


def test_nothing_counted_no_message_stats(api: Api, broker: Broker, scenario_vhost: str) -> None:
    """As RabbitMQ: a queue, exchange or channel on which nothing was counted has no
    message_stats key at all."""
    connection = _connect(broker, scenario_vhost)
    try:
        channel = connection.channel()
        channel.queue_declare("idle")
        channel.exchange_declare("idle.x", "direct")
        assert "message_stats" not in api.get("queues", scenario_vhost, "idle").json()
        assert "message_stats" not in api.get("exchanges", scenario_vhost, "idle.x").json()
        listed = poll(
            lambda: [c for c in api.get("channels").json() if c["vhost"] == scenario_vhost],
            lambda cs: len(cs) == 1,
        )
        assert "message_stats" not in listed[0]
    finally:
        connection.close()
