"""trimq's Prometheus listener: on the port given (a free one for every test server), printed,
logged and listed in the overview like RabbitMQ's `http/prometheus` listener, off with
--no-prometheus or port 0, configured from the file, stopped with the broker; and its figures
checked against the broker's own state."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import requests
from conftest import start_server, stop_server
from pika_helpers import wait_until
from prometheus_client.parser import text_string_to_metric_families

from tests import stats_scenario
from trimq.cli import config

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL") or os.environ.get("TRIMQ_TEST_PROMETHEUS_URL")),
    reason="trimq-only: starts its own trimq-server",
)


def _values(port: int, path: str = "/metrics") -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}{path}", timeout=10).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def test_listener_printed_logged_listed_and_stopped(tmp_path: Path) -> None:
    log = tmp_path / "log"
    server = start_server(tmp_path / "data", log_path=log)
    try:
        assert server.prometheus_port and server.management_port
        assert server.prometheus_port != server.management_port
        overview = requests.get(
            f"http://127.0.0.1:{server.management_port}/api/overview",
            auth=("guest", "guest"),
            timeout=10,
        ).json()
        listed = [lst for lst in overview["listeners"] if lst["protocol"] == "http/prometheus"]
        assert [(lst["ip_address"], lst["port"]) for lst in listed] == [
            ("127.0.0.1", server.prometheus_port)
        ]
        assert _values(server.prometheus_port)["rabbitmq_queues"] == 0
    finally:
        assert stop_server(server) == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    listening = [e for e in events if e["event"] == "prometheus.listening"]
    assert listening[0]["addresses"] == [f"127.0.0.1:{server.prometheus_port}"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.prometheus_port), timeout=2).close()


def test_no_prometheus_serves_nothing(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-prometheus")
    try:
        assert server.prometheus_port is None
        assert server.management_port  # the management listener is independent
    finally:
        assert stop_server(server) == 0


def test_port_0_turns_the_listener_off(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--prometheus-port", "0")
    try:
        assert server.prometheus_port is None
        assert server.management_port
    finally:
        assert stop_server(server) == 0
    settings = config.load(None, {"TRIMQ_PROMETHEUS_PORT": "0"}, {})
    assert not settings.serves_prometheus and settings.serves_management


def _totals(port: int) -> dict[str, float]:
    """Each sample name's sum over its label sets."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0) + sample.value
    return totals


def test_configuration_keys_and_flags() -> None:
    settings = config.load(
        None,
        {"TRIMQ_PROMETHEUS_PORT": "9419", "TRIMQ_PROMETHEUS_HOST": "127.0.0.1"},
        {"prometheus.enabled": None},
    )
    assert (settings.prometheus_enabled, settings.prometheus_host, settings.prometheus_port) == (
        True,
        "127.0.0.1",
        9419,
    )
    assert config.Settings().prometheus_port == 15692
    with pytest.raises(config.ConfigError, match=r"--prometheus-port"):
        config.load(None, {}, {"prometheus.port": 70000})
    settings = config.load(None, {}, {"prometheus.enabled": False})
    assert settings.prometheus_enabled is False


def test_figures_follow_the_broker(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        port = server.prometheus_port
        assert port
        connection = server.connect()
        channel = connection.channel()
        for name in ("a", "b", "c"):
            channel.queue_declare(name)
        channel.queue_delete("c")
        for _ in range(4):
            channel.basic_publish("", "a", b"x")
        channel.queue_declare("a", passive=True)  # a round trip: the publishes are in
        values = _values(server.prometheus_port)
        assert values["rabbitmq_queues"] == 2
        assert values["rabbitmq_queue_messages_ready"] == 4
        assert values["rabbitmq_queue_messages_published_total"] == 4
        assert values["rabbitmq_queues_declared_total"] == 3
        assert values["rabbitmq_queues_created_total"] == 3
        assert values["rabbitmq_queues_deleted_total"] == 1
        assert values["rabbitmq_connections"] == 1
        assert values["rabbitmq_channels"] == 1
        assert values["rabbitmq_channel_messages_published_total"] == 4
        assert values["rabbitmq_connections_opened_total"] == 1
        connection.close()  # the server finishes closing it on its own time
        assert wait_until(lambda: _values(port)["rabbitmq_connections_closed_total"] == 1)
        # Closed: gone from the per-channel sums once they are computed again (they are kept
        # for one statistics interval, 5 s, as RabbitMQ's), kept in the broker's counters.
        assert wait_until(lambda: _values(port)["rabbitmq_connections"] == 0, timeout=15)
        values = _values(server.prometheus_port)
        assert values["rabbitmq_channel_messages_published_total"] == 0
        assert values["rabbitmq_channels_closed_total"] == 1
        text = requests.get(f"http://127.0.0.1:{port}/metrics/per-object", timeout=10).text
        ready = {
            sample.labels["queue"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "rabbitmq_queue_messages_ready"
        }
        assert ready == {"a": 4, "b": 0}
    finally:
        assert stop_server(server) == 0


# rabbitmq_global_* counter -> the overview's message_stats key that counts the same.
GLOBAL_TO_OVERVIEW = {
    "rabbitmq_global_messages_received_total": "publish",
    "rabbitmq_global_messages_confirmed_total": "confirm",
    "rabbitmq_global_messages_unroutable_returned_total": "return_unroutable",
    "rabbitmq_global_messages_unroutable_dropped_total": "drop_unroutable",
    "rabbitmq_global_messages_delivered_total": "deliver_get",
    "rabbitmq_global_messages_delivered_consume_manual_ack_total": "deliver",
    "rabbitmq_global_messages_delivered_consume_auto_ack_total": "deliver_no_ack",
    "rabbitmq_global_messages_delivered_get_manual_ack_total": "get",
    "rabbitmq_global_messages_delivered_get_auto_ack_total": "get_no_ack",
    "rabbitmq_global_messages_get_empty_total": "get_empty",
    "rabbitmq_global_messages_acknowledged_total": "ack",
    "rabbitmq_global_messages_redelivered_total": "redeliver",
}


def test_global_counters_summed_from_channels_match_the_queues(tmp_path: Path) -> None:
    """/metrics sums the broker's counters from its channels, open and closed (no walk over
    the queues); /api/overview sums them from queues and exchanges: the same figures, with
    gets through the management API, a deleted queue and closed channels."""
    server = start_server(tmp_path / "data")
    try:
        port = server.prometheus_port
        assert port and server.management_port
        api = f"http://127.0.0.1:{server.management_port}/api"

        def compare() -> dict[str, tuple[float, float]]:
            overview = requests.get(api + "/overview", auth=("guest", "guest"), timeout=10)
            stats = overview.json()["message_stats"]
            values = _totals(port)
            return {
                name: (values[name], stats[key])
                for name, key in GLOBAL_TO_OVERVIEW.items()
                if values[name] != stats[key]
            }

        connection = server.connect()
        stats_scenario.run(connection, "g")
        channel = connection.channel()
        channel.queue_declare("gone")
        for _ in range(3):
            channel.basic_publish("", "gone", b"m")
        channel.queue_declare("gone", passive=True)
        for ackmode in ("ack_requeue_true", "ack_requeue_false"):
            taken = requests.post(
                api + "/queues/%2F/gone/get",
                json={"count": 1, "ackmode": ackmode, "encoding": "auto"},
                auth=("guest", "guest"),
                timeout=10,
            )
            assert taken.status_code == 200 and len(taken.json()) == 1
        got = channel.basic_get("gone", auto_ack=False)
        assert got[0] is not None
        channel.basic_ack(got[0].delivery_tag)
        channel.queue_delete("gone")
        assert compare() == {}
        connection.close()
        assert wait_until(lambda: _values(port)["rabbitmq_channels_closed_total"] == 4)
        assert compare() == {}
        assert _totals(port)["rabbitmq_global_messages_received_total"] == 10
    finally:
        assert stop_server(server) == 0
