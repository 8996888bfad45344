"""The Prometheus endpoint as rabbitmq_prometheus serves it: /metrics and /metrics/per-object
parsed with prometheus_client's parser, their values checked against what was done over AMQP.

Runs against RabbitMQ 3.10.8 too (TRIMQ_TEST_URL and TRIMQ_TEST_PROMETHEUS_URL): the expected
counts are RabbitMQ's (tests/stats_scenario.py). RabbitMQ updates its per-queue series on its
statistics emission (every 5 s), so those are polled against a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import stats_scenario
from tests.conftest import Broker
from tests.pika_helpers import pump

# The families the reference lists (and Grafana's RabbitMQ-Overview dashboard reads).
REQUIRED = {
    "rabbitmq_identity_info": "unknown",
    "rabbitmq_build_info": "unknown",
    "rabbitmq_queues": "gauge",
    "rabbitmq_connections": "gauge",
    "rabbitmq_channels": "gauge",
    "rabbitmq_consumers": "gauge",
    "rabbitmq_queue_messages": "gauge",
    "rabbitmq_queue_messages_ready": "gauge",
    "rabbitmq_queue_messages_unacked": "gauge",
    "rabbitmq_queue_consumers": "gauge",
    "rabbitmq_channel_messages_published": "counter",
    "rabbitmq_channel_messages_delivered": "counter",
    "rabbitmq_channel_messages_acked": "counter",
    "rabbitmq_channel_messages_confirmed": "counter",
    "rabbitmq_connections_opened": "counter",
    "rabbitmq_connections_closed": "counter",
    "rabbitmq_queues_declared": "counter",
    "rabbitmq_global_messages_received": "counter",
    "rabbitmq_global_messages_routed": "counter",
    "rabbitmq_global_messages_delivered": "counter",
    "rabbitmq_global_messages_acknowledged": "counter",
    "rabbitmq_process_open_fds": "gauge",
    "rabbitmq_process_resident_memory_bytes": "gauge",
    "rabbitmq_resident_memory_limit_bytes": "gauge",
    "rabbitmq_disk_space_available_bytes": "gauge",
    "rabbitmq_disk_space_available_limit_bytes": "gauge",
    "rabbitmq_alarms_memory_used_watermark": "unknown",
    "rabbitmq_alarms_free_disk_space_watermark": "unknown",
}

# Global counters and how much the scenario adds to them (RabbitMQ 3.10.8's figures).
GLOBAL_DELTA = {
    "rabbitmq_global_messages_received_total": 7,
    "rabbitmq_global_messages_received_confirm_total": 7,
    "rabbitmq_global_messages_confirmed_total": 7,
    "rabbitmq_global_messages_routed_total": 8,
    "rabbitmq_global_messages_unroutable_returned_total": 1,
    "rabbitmq_global_messages_unroutable_dropped_total": 1,
    "rabbitmq_global_messages_delivered_total": 8,
    "rabbitmq_global_messages_delivered_consume_manual_ack_total": 2,
    "rabbitmq_global_messages_delivered_consume_auto_ack_total": 3,
    "rabbitmq_global_messages_delivered_get_manual_ack_total": 2,
    "rabbitmq_global_messages_delivered_get_auto_ack_total": 1,
    "rabbitmq_global_messages_acknowledged_total": 3,
    "rabbitmq_global_messages_redelivered_total": 1,
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> tuple[dict[str, str], Samples, requests.Response]:
    """Family types by name, and every sample by (name, sorted labels)."""
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return types, samples, answer


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def poll(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.25)
    return check()


def test_metrics_are_rabbitmq_prometheus_families(prometheus_url: str) -> None:
    types, samples, answer = scrape(prometheus_url + "/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    missing = {name: kind for name, kind in REQUIRED.items() if types.get(name) != kind}
    assert not missing
    identity = [ls for (n, ls) in samples if n == "rabbitmq_identity_info"]
    assert len(identity) == 1
    assert {"rabbitmq_node", "rabbitmq_cluster"} <= dict(identity[0]).keys()
    # Aggregated: no per-object labels.
    assert all(not ls for (n, ls) in samples if n.startswith("rabbitmq_queue_"))


def test_build_info_names_the_versions(prometheus_url: str) -> None:
    _, samples, _ = scrape(prometheus_url + "/metrics/per-object")
    build = [dict(ls) for (n, ls) in samples if n == "rabbitmq_build_info"]
    assert len(build) == 1
    assert build[0]["rabbitmq_version"].split(".")[0].isdigit()
    assert {"prometheus_client_version", "erlang_version"} <= build[0].keys()


def test_counters_and_depths_follow_the_messages(
    broker: Broker, prometheus_url: str, unique: str
) -> None:
    _, before, _ = scrape(prometheus_url + "/metrics")
    connection = broker.connect()
    try:
        scenario = stats_scenario.run(connection, unique)
        _, after, _ = scrape(prometheus_url + "/metrics")
        delta = {name: total(after, name) - total(before, name) for name in GLOBAL_DELTA}
        assert delta == GLOBAL_DELTA
        assert total(after, "rabbitmq_connections_opened_total") >= 1 + total(
            before, "rabbitmq_connections_opened_total"
        )
        assert total(after, "rabbitmq_queues_declared_total") >= 3 + total(
            before, "rabbitmq_queues_declared_total"
        )

        # Per object: each queue's depth and consumers (q1 keeps 1 of its 3 messages; q2 and
        # q3 have a consumer each and nothing left).
        expected = {
            ("rabbitmq_queue_messages_ready", "q1"): 1,
            ("rabbitmq_queue_messages", "q1"): 1,
            ("rabbitmq_queue_consumers", "q1"): 0,
            ("rabbitmq_queue_messages_ready", "q2"): 0,
            ("rabbitmq_queue_consumers", "q2"): 1,
            ("rabbitmq_queue_consumers", "q3"): 1,
            ("rabbitmq_queue_messages_unacked", "q3"): 0,
        }

        def per_object_matches() -> bool:
            _, samples, _ = scrape(prometheus_url + "/metrics/per-object")
            return all(
                samples.get((name, (("queue", scenario.name(q)), ("vhost", "/")))) == value
                for (name, q), value in expected.items()
            )

        assert poll(per_object_matches)
        _, samples, _ = scrape(prometheus_url + "/metrics/per-object")
        channels = {dict(ls)["channel"] for (n, ls) in samples if n == "rabbitmq_channel_consumers"}
        assert len(channels) >= 3  # the scenario's three channels, each with its series
    finally:
        connection.close()


def of(samples: Samples, name: str) -> set[float]:
    """The values of every series of the family `name`."""
    return {v for (n, _), v in samples.items() if n == name}


def test_unacked_deliveries_show_on_queue_and_channel(
    broker: Broker, prometheus_url: str, unique: str
) -> None:
    connection = broker.connect()
    try:
        channel = connection.channel()
        channel.queue_declare(unique, auto_delete=True)
        for _ in range(5):
            channel.basic_publish("", unique, b"m")
        channel.basic_qos(prefetch_count=3)
        got: list[int] = []
        channel.basic_consume(unique, lambda c, m, p, b: got.append(m.delivery_tag))
        assert pump(connection, lambda: len(got) == 3)

        def matches() -> bool:
            # RabbitMQ's queue and channel figures are collected separately, each up to 5 s
            # late: wait until both show the deliveries
            _, samples, _ = scrape(prometheus_url + "/metrics/per-object")
            labels = (("queue", unique), ("vhost", "/"))
            return (
                samples.get(("rabbitmq_queue_messages_unacked", labels)) == 3
                and samples.get(("rabbitmq_queue_messages_ready", labels)) == 2
                and samples.get(("rabbitmq_queue_messages", labels)) == 5
                and 3 in of(samples, "rabbitmq_channel_messages_unacked")
            )

        assert poll(matches)
        _, samples, _ = scrape(prometheus_url + "/metrics/per-object")
        assert 3 in of(samples, "rabbitmq_channel_messages_unacked")
        assert 3 in of(samples, "rabbitmq_consumer_prefetch")
    finally:
        if connection.is_open:
            connection.close()


def test_unknown_path_is_not_found(prometheus_url: str) -> None:
    assert requests.get(prometheus_url + "/metrics/nothing-here", timeout=10).status_code == 404
