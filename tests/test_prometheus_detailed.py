"""/metrics/detailed as rabbitmq_prometheus 3.10.8 serves it: `family=` picks metric groups
(answered in RabbitMQ's order), `vhost=` filters the queue groups; parsed with
prometheus_client's parser and checked against what was done over AMQP.

Runs against RabbitMQ 3.10.8 too (TRIMQ_TEST_URL, TRIMQ_TEST_MANAGEMENT_URL and
TRIMQ_TEST_PROMETHEUS_URL): the family names, types and labels are RabbitMQ's. RabbitMQ
updates its per-object series on its statistics emission (every 5 s), so those are polled
against a deadline. Checks of what trimq leaves empty, and the scrape of 2,000 queues, are
trimq-only.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import pika
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Broker
from tests.pika_helpers import pump

TRIMQ_ONLY = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: what trimq leaves empty"
)
AUTH = ("guest", "guest")
STAMP = 1_700_000_000

# Each group's families (name, TYPE) as RabbitMQ 3.10.8 lists them, in its order.
GROUPS: dict[str, list[tuple[str, str]]] = {
    "connection_churn_metrics": [
        ("rabbitmq_detailed_connections_opened_total", "counter"),
        ("rabbitmq_detailed_connections_closed_total", "counter"),
        ("rabbitmq_detailed_channels_opened_total", "counter"),
        ("rabbitmq_detailed_channels_closed_total", "counter"),
        ("rabbitmq_detailed_queues_declared_total", "counter"),
        ("rabbitmq_detailed_queues_created_total", "counter"),
        ("rabbitmq_detailed_queues_deleted_total", "counter"),
    ],
    "node_coarse_metrics": [
        ("rabbitmq_detailed_process_open_fds", "gauge"),
        ("rabbitmq_detailed_process_open_tcp_sockets", "gauge"),
        ("rabbitmq_detailed_process_resident_memory_bytes", "gauge"),
        ("rabbitmq_detailed_disk_space_available_bytes", "gauge"),
        ("rabbitmq_detailed_erlang_processes_used", "gauge"),
        ("rabbitmq_detailed_erlang_gc_runs_total", "counter"),
        ("rabbitmq_detailed_erlang_gc_reclaimed_bytes_total", "counter"),
        ("rabbitmq_detailed_erlang_scheduler_context_switches_total", "counter"),
    ],
    "node_metrics": [
        ("rabbitmq_detailed_process_max_fds", "gauge"),
        ("rabbitmq_detailed_process_max_tcp_sockets", "gauge"),
        ("rabbitmq_detailed_resident_memory_limit_bytes", "gauge"),
        ("rabbitmq_detailed_disk_space_available_limit_bytes", "gauge"),
        ("rabbitmq_detailed_erlang_processes_limit", "gauge"),
        ("rabbitmq_detailed_erlang_scheduler_run_queue", "gauge"),
        ("rabbitmq_detailed_erlang_net_ticktime_seconds", "gauge"),
        ("rabbitmq_detailed_erlang_uptime_seconds", "gauge"),
    ],
    "node_persister_metrics": [
        (f"rabbitmq_detailed_{name}", "counter")
        for name in (
            "io_read_ops_total",
            "io_read_bytes_total",
            "io_write_ops_total",
            "io_write_bytes_total",
            "io_sync_ops_total",
            "io_seek_ops_total",
            "io_reopen_ops_total",
            "schema_db_ram_tx_total",
            "schema_db_disk_tx_total",
            "msg_store_read_total",
            "msg_store_write_total",
            "queue_index_read_ops_total",
            "queue_index_write_ops_total",
            "io_read_time_seconds_total",
            "io_write_time_seconds_total",
            "io_sync_time_seconds_total",
            "io_seek_time_seconds_total",
        )
    ],
    "ra_metrics": [
        ("rabbitmq_detailed_raft_term_total", "counter"),
        ("rabbitmq_detailed_raft_log_snapshot_index", "gauge"),
        ("rabbitmq_detailed_raft_log_last_applied_index", "gauge"),
        ("rabbitmq_detailed_raft_log_commit_index", "gauge"),
        ("rabbitmq_detailed_raft_log_last_written_index", "gauge"),
        ("rabbitmq_detailed_raft_entry_commit_latency_seconds", "gauge"),
    ],
    "auth_attempt_metrics": [
        ("rabbitmq_detailed_auth_attempts_total", "counter"),
        ("rabbitmq_detailed_auth_attempts_succeeded_total", "counter"),
        ("rabbitmq_detailed_auth_attempts_failed_total", "counter"),
    ],
    "auth_attempt_detailed_metrics": [
        ("rabbitmq_detailed_auth_attempts_detailed_total", "counter"),
        ("rabbitmq_detailed_auth_attempts_detailed_succeeded_total", "counter"),
        ("rabbitmq_detailed_auth_attempts_detailed_failed_total", "counter"),
    ],
    "queue_coarse_metrics": [
        ("rabbitmq_detailed_queue_messages_ready", "gauge"),
        ("rabbitmq_detailed_queue_messages_unacked", "gauge"),
        ("rabbitmq_detailed_queue_messages", "gauge"),
        ("rabbitmq_detailed_queue_process_reductions_total", "counter"),
    ],
    "queue_consumer_count": [("rabbitmq_detailed_queue_consumers", "gauge")],
    "queue_metrics": [
        (f"rabbitmq_detailed_queue_{name}", "gauge")
        for name in (
            "consumers",
            "consumer_capacity",
            "consumer_utilisation",
            "process_memory_bytes",
            "messages_ram",
            "messages_ram_bytes",
            "messages_ready_ram",
            "messages_unacked_ram",
            "messages_persistent",
            "messages_persistent_bytes",
            "messages_bytes",
            "messages_ready_bytes",
            "messages_unacked_bytes",
            "messages_paged_out",
            "messages_paged_out_bytes",
            "head_message_timestamp",
        )
    ]
    + [
        ("rabbitmq_detailed_queue_disk_reads_total", "counter"),
        ("rabbitmq_detailed_queue_disk_writes_total", "counter"),
    ],
    "channel_metrics": [
        ("rabbitmq_detailed_channel_consumers", "gauge"),
        ("rabbitmq_detailed_channel_messages_unacked", "gauge"),
        ("rabbitmq_detailed_channel_messages_unconfirmed", "gauge"),
        ("rabbitmq_detailed_channel_messages_uncommitted", "gauge"),
        ("rabbitmq_detailed_channel_acks_uncommitted", "gauge"),
        ("rabbitmq_detailed_consumer_prefetch", "gauge"),
        ("rabbitmq_detailed_channel_prefetch", "gauge"),
    ],
    "channel_exchange_metrics": [
        ("rabbitmq_detailed_channel_messages_published_total", "counter"),
        ("rabbitmq_detailed_channel_messages_confirmed_total", "counter"),
        ("rabbitmq_detailed_channel_messages_unroutable_returned_total", "counter"),
        ("rabbitmq_detailed_channel_messages_unroutable_dropped_total", "counter"),
    ],
    "channel_process_metrics": [("rabbitmq_detailed_channel_process_reductions_total", "counter")],
    "channel_queue_metrics": [
        ("rabbitmq_detailed_channel_get_ack_total", "counter"),
        ("rabbitmq_detailed_channel_get_total", "counter"),
        ("rabbitmq_detailed_channel_messages_delivered_ack_total", "counter"),
        ("rabbitmq_detailed_channel_messages_delivered_total", "counter"),
        ("rabbitmq_detailed_channel_messages_redelivered_total", "counter"),
        ("rabbitmq_detailed_channel_messages_acked_total", "counter"),
        ("rabbitmq_detailed_channel_get_empty_total", "counter"),
    ],
    "connection_coarse_metrics": [
        ("rabbitmq_detailed_connection_incoming_bytes_total", "counter"),
        ("rabbitmq_detailed_connection_outgoing_bytes_total", "counter"),
        ("rabbitmq_detailed_connection_process_reductions_total", "counter"),
    ],
    "connection_metrics": [
        ("rabbitmq_detailed_connection_incoming_packets_total", "counter"),
        ("rabbitmq_detailed_connection_outgoing_packets_total", "counter"),
        ("rabbitmq_detailed_connection_pending_packets", "gauge"),
        ("rabbitmq_detailed_connection_channels", "gauge"),
    ],
    "channel_queue_exchange_metrics": [
        ("rabbitmq_detailed_queue_messages_published_total", "counter")
    ],
    "vhost_status": [("rabbitmq_cluster_vhost_status", "gauge")],
    "exchange_bindings": [("rabbitmq_cluster_exchange_bindings", "gauge")],
    "exchange_names": [("rabbitmq_cluster_exchange_name", "gauge")],
}
ALWAYS = [
    ("rabbitmq_build_info", "unknown"),
    ("rabbitmq_identity_info", "unknown"),
    ("telemetry_scrape_duration_seconds", "summary"),
    ("telemetry_scrape_encoded_size_bytes", "summary"),
    ("telemetry_scrape_size_bytes", "summary"),
]
# Groups trimq has no figures for (no Erlang VM, Raft, message store, logins by source, nor
# per channel and exchange or queue breakdowns): families without series.
EMPTY_IN_TRIMQ = [
    "node_persister_metrics",
    "ra_metrics",
    "auth_attempt_detailed_metrics",
    "channel_exchange_metrics",
    "channel_process_metrics",
    "channel_queue_metrics",
    "channel_queue_exchange_metrics",
]


def parsed_name(name: str, kind: str) -> str:
    """The family name prometheus_client's parser gives (a counter's without `_total`)."""
    return name.removesuffix("_total") if kind == "counter" else name


class Scrape:
    """One answer of /metrics/detailed: its families in order, and every sample."""

    def __init__(self, url: str, **params: Any) -> None:
        answer = requests.get(url + "/metrics/detailed", params=params, timeout=60)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        self.families = list(text_string_to_metric_families(answer.text))
        self.order = [(f.name, f.type) for f in self.families]
        self.samples = [s for f in self.families for s in f.samples]

    def values(self, name: str, **labels: str) -> list[float]:
        """The values of the samples `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return [s.value for s in self.samples if s.name == name and wanted <= s.labels.items()]

    def value(self, name: str, **labels: str) -> float | None:
        found = self.values(name, **labels)
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None


def poll(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.25)
    return check()


@pytest.fixture
def vhost(management_url: str, unique: str) -> Any:
    """A vhost of the test's own (guest may use it), deleted afterwards."""
    name = f"detailed-{unique}"
    url = f"{management_url}/api/vhosts/{name}"
    assert requests.put(url, auth=AUTH, timeout=10).status_code in (201, 204)
    permissions = f"{management_url}/api/permissions/{name}/guest"
    body = {"configure": ".*", "write": ".*", "read": ".*"}
    assert requests.put(permissions, json=body, auth=AUTH, timeout=10).status_code in (201, 204)
    yield name
    requests.delete(url, auth=AUTH, timeout=10)


def test_no_family_answers_the_identity_and_telemetry(prometheus_url: str) -> None:
    scrape = Scrape(prometheus_url)
    assert scrape.order == ALWAYS
    scrape = Scrape(prometheus_url, family="no_such_group")  # unknown names: ignored
    assert scrape.order == ALWAYS
    # the scrapes before this one are counted
    assert (scrape.value("telemetry_scrape_duration_seconds_count", registry="detailed") or 0) >= 1
    assert (scrape.value("telemetry_scrape_size_bytes_sum", registry="detailed") or 0) > 0


def test_every_group_lists_rabbitmq_families_in_rabbitmq_order(prometheus_url: str) -> None:
    for group, families in GROUPS.items():
        expected = [(parsed_name(n, k), k) for n, k in families]
        assert Scrape(prometheus_url, family=group).order == expected + ALWAYS, group
    # several groups: RabbitMQ's order whatever the order asked
    scrape = Scrape(prometheus_url, family=["exchange_names", "connection_churn_metrics"])
    expected = [
        (parsed_name(n, k), k)
        for group in ("connection_churn_metrics", "exchange_names")
        for n, k in GROUPS[group]
    ]
    assert scrape.order == expected + ALWAYS
    # queue_metrics has queue_consumer_count's only family: it comes once
    scrape = Scrape(prometheus_url, family=["queue_consumer_count", "queue_metrics"])
    names = [name for name, _ in scrape.order]
    assert names.count("rabbitmq_detailed_queue_consumers") == 1
    assert scrape.order[: len(GROUPS["queue_metrics"])] == [
        (parsed_name(n, k), k) for n, k in GROUPS["queue_metrics"]
    ]


def test_churn_and_node_count_connections_and_queues(broker: Broker, prometheus_url: str) -> None:
    def figure(name: str) -> float:
        value = Scrape(prometheus_url, family="connection_churn_metrics").value(name)
        assert value is not None
        return value

    def sockets() -> float | None:
        scrape = Scrape(prometheus_url, family="node_coarse_metrics")
        return scrape.value("rabbitmq_detailed_process_open_tcp_sockets")

    opened = figure("rabbitmq_detailed_connections_opened_total")
    declared = figure("rabbitmq_detailed_queues_declared_total")
    connection = broker.connect()
    try:
        channel = connection.channel()
        channel.queue_declare("", exclusive=True)
        assert figure("rabbitmq_detailed_connections_opened_total") == opened + 1
        assert figure("rabbitmq_detailed_queues_declared_total") == declared + 1
        # the clients' sockets: this one at least (RabbitMQ refreshes its figure every 5 s)
        assert poll(lambda: (sockets() or 0) >= 1)
    finally:
        connection.close()


def test_auth_attempts_count_logins_by_protocol(
    broker: Broker, prometheus_url: str, management_url: str
) -> None:
    def figures() -> dict[tuple[str, str], float]:
        scrape = Scrape(prometheus_url, family="auth_attempt_metrics")
        return {
            (s.name.removeprefix("rabbitmq_detailed_auth_attempts_"), s.labels["protocol"]): (
                s.value
            )
            for s in scrape.samples
            if s.name.startswith("rabbitmq_detailed_auth_attempts_")
        }

    before = figures()
    broker.connect().close()
    for user in ("guest", "nobody"):  # a wrong password, an unknown user
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            broker.connect(credentials=pika.PlainCredentials(user, "wrong"), connection_attempts=1)
    overview = management_url + "/api/overview"
    assert requests.get(overview, auth=AUTH, timeout=10).status_code == 200
    assert requests.get(overview, auth=("guest", "wrong"), timeout=10).status_code == 401
    assert requests.get(overview, timeout=10).status_code == 401  # no user: not counted
    after = figures()
    delta = {key: after[key] - before.get(key, 0) for key in after}
    assert delta == {
        ("total", "amqp091"): 3,
        ("succeeded_total", "amqp091"): 1,
        ("failed_total", "amqp091"): 2,
        ("total", "http"): 2,
        ("succeeded_total", "http"): 1,
        ("failed_total", "http"): 1,
    }


def test_queue_groups_follow_the_queues_of_the_vhosts_asked(
    broker: Broker, prometheus_url: str, vhost: str, unique: str
) -> None:
    connection = broker.connect(virtual_host=vhost)
    other = broker.connect()
    try:
        channel = other.channel()
        channel.queue_declare(unique, auto_delete=True)  # in "/": never in vhost's answers
        channel.basic_publish("", unique, b"other")
        channel = connection.channel()
        channel.confirm_delivery()
        for queue in ("held", "empty"):
            channel.queue_declare(queue)
        for index in range(3):
            properties = pika.BasicProperties(timestamp=STAMP + index)
            channel.basic_publish("", "held", b"12345", properties)
        channel.queue_declare("kept", durable=True)
        for body, mode in ((b"1234", 2), (b"123", 1), (b"12", 2)):
            channel.basic_publish("", "kept", body, pika.BasicProperties(delivery_mode=mode))
        getter = connection.channel()
        method, _, _ = getter.basic_get("held", auto_ack=False)  # one out unacked
        assert method is not None
        consumer = connection.channel()
        consumer.basic_qos(prefetch_count=7)
        consumer.basic_consume("empty", lambda *args: None)
        pump(connection, lambda: True)

        asked = {"family": ["queue_coarse_metrics", "queue_metrics"], "vhost": vhost}
        held = {"vhost": vhost, "queue": "held"}
        empty = {"vhost": vhost, "queue": "empty"}
        expected = {
            ("rabbitmq_detailed_queue_messages_ready", "held"): 2,
            ("rabbitmq_detailed_queue_messages_unacked", "held"): 1,
            ("rabbitmq_detailed_queue_messages", "held"): 3,
            ("rabbitmq_detailed_queue_messages_ready", "empty"): 0,
            ("rabbitmq_detailed_queue_messages", "empty"): 0,
            ("rabbitmq_detailed_queue_consumers", "held"): 0,
            ("rabbitmq_detailed_queue_consumers", "empty"): 1,
            ("rabbitmq_detailed_queue_messages_ram", "held"): 3,
            ("rabbitmq_detailed_queue_messages_ready_ram", "held"): 2,
            ("rabbitmq_detailed_queue_messages_unacked_ram", "held"): 1,
            ("rabbitmq_detailed_queue_messages_bytes", "held"): 15,
            ("rabbitmq_detailed_queue_messages_ready_bytes", "held"): 10,
            ("rabbitmq_detailed_queue_messages_unacked_bytes", "held"): 5,
            ("rabbitmq_detailed_queue_messages_ram_bytes", "held"): 15,
            ("rabbitmq_detailed_queue_messages_paged_out", "held"): 0,
            ("rabbitmq_detailed_queue_head_message_timestamp", "held"): STAMP,
            ("rabbitmq_detailed_queue_messages_persistent", "held"): 0,  # not durable
            ("rabbitmq_detailed_queue_messages_persistent", "kept"): 2,
            ("rabbitmq_detailed_queue_messages_persistent_bytes", "kept"): 6,
            ("rabbitmq_detailed_queue_messages_bytes", "kept"): 9,
        }

        def matches() -> bool:
            scrape = Scrape(prometheus_url, **asked)
            return all(
                scrape.value(name, vhost=vhost, queue=queue) == value
                for (name, queue), value in expected.items()
            )

        assert poll(matches)
        scrape = Scrape(prometheus_url, **asked)
        assert {s.labels["vhost"] for s in scrape.samples if "queue" in s.labels} == {vhost}
        assert {s.labels["queue"] for s in scrape.samples if "queue" in s.labels} == {
            "held",
            "empty",
            "kept",
        }
        stamp = scrape.value("rabbitmq_detailed_queue_head_message_timestamp", **empty)
        assert stamp is not None and math.isnan(stamp)
        assert scrape.value("rabbitmq_detailed_queue_consumer_capacity", **held) == 0
        # a vhost that does not exist is ignored: with no other, no queue at all
        nothing = Scrape(prometheus_url, family="queue_coarse_metrics", vhost="no-such-vhost")
        assert not [s for s in nothing.samples if "queue" in s.labels]
        # with no vhost= every vhost's queues
        every = Scrape(prometheus_url, family="queue_consumer_count")
        assert every.value("rabbitmq_detailed_queue_consumers", vhost="/", queue=unique) == 0
        assert every.value("rabbitmq_detailed_queue_consumers", **empty) == 1
    finally:
        connection.close()
        other.close()


def test_channel_and_connection_groups(broker: Broker, prometheus_url: str, unique: str) -> None:
    connection = broker.connect()
    try:
        channel = connection.channel()
        channel.queue_declare(unique, auto_delete=True)
        channel.basic_qos(prefetch_count=7)
        channel.basic_consume(unique, lambda *args: None)
        pump(connection, lambda: True)
        groups = ["channel_metrics", "connection_coarse_metrics", "connection_metrics"]

        def matches() -> bool:
            scrape = Scrape(prometheus_url, family=groups)
            prefetch = [
                s.labels["channel"]
                for s in scrape.samples
                if s.name == "rabbitmq_detailed_consumer_prefetch" and s.value == 7
            ]
            return (
                len(prefetch) == 1
                and scrape.value("rabbitmq_detailed_channel_consumers", channel=prefetch[0]) == 1
            )

        assert poll(matches)
        scrape = Scrape(prometheus_url, family=groups)
        for sample in scrape.samples:
            if sample.name.startswith(("rabbitmq_detailed_channel", "rabbitmq_detailed_conn")):
                assert list(sample.labels) == ["channel"], sample  # the pid, nothing more
        assert min(scrape.values("rabbitmq_detailed_connection_channels")) >= 1
        assert min(scrape.values("rabbitmq_detailed_connection_incoming_bytes_total")) > 0
    finally:
        connection.close()


def test_exchange_groups_count_bindings_in_every_vhost(
    broker: Broker, prometheus_url: str, vhost: str
) -> None:
    connection = broker.connect(virtual_host=vhost)
    try:
        channel = connection.channel()
        channel.exchange_declare("routes", "direct")
        channel.exchange_declare("fans", "fanout")
        channel.exchange_declare("hidden", "topic", internal=True)
        channel.queue_declare("a")
        channel.queue_declare("b")
        channel.queue_bind("a", "routes", "ka")
        channel.queue_bind("b", "routes", "kb")
        channel.exchange_bind("fans", "routes", "ka")  # fans <- routes
        channel.queue_bind("a", "fans")
        # vhost= does not apply to these groups
        scrape = Scrape(
            prometheus_url,
            family=["exchange_bindings", "exchange_names", "vhost_status"],
            vhost="/",
        )
        bindings = {
            s.labels["exchange"]: (s.labels["type"], s.value)
            for s in scrape.samples
            if s.name == "rabbitmq_cluster_exchange_bindings" and s.labels["vhost"] == vhost
        }
        assert bindings == {
            "routes": ("direct", 3),
            "fans": ("fanout", 1),
            "amq.direct": ("direct", 0),
            "amq.fanout": ("fanout", 0),
            "amq.topic": ("topic", 0),
            "amq.headers": ("headers", 0),
            "amq.match": ("headers", 0),
        }  # neither the default exchange nor internal ones
        names = {
            (s.labels["exchange"], s.value)
            for s in scrape.samples
            if s.name == "rabbitmq_cluster_exchange_name" and s.labels["vhost"] == vhost
        }
        assert names == {(name, 1) for name in bindings}
        assert scrape.value("rabbitmq_cluster_vhost_status", vhost=vhost) == 1
        assert scrape.value("rabbitmq_cluster_vhost_status", vhost="/") == 1
    finally:
        connection.close()


@TRIMQ_ONLY
def test_groups_trimq_cannot_fill_have_no_series(prometheus_url: str) -> None:
    for group in EMPTY_IN_TRIMQ:
        scrape = Scrape(prometheus_url, family=group)
        assert len(scrape.order) == len(GROUPS[group]) + len(ALWAYS)
        assert all(not f.samples for f in scrape.families[: len(GROUPS[group])]), group


@TRIMQ_ONLY
def test_a_scrape_of_2000_queues_has_every_queue(
    broker: Broker, prometheus_url: str, unique: str
) -> None:
    """Read a slice of queues at a time, nothing is left out (trimq-only: RabbitMQ's series
    come from each queue's own emission)."""
    connection = broker.connect()
    try:
        channel = connection.channel()
        names = {f"{unique}-{index}" for index in range(2000)}
        for name in names:
            channel.queue_declare(name, exclusive=True)
        channel.basic_publish("", f"{unique}-1999", b"last")
        channel.queue_declare(f"{unique}-1999", passive=True)  # a round trip: it is in
        answer = requests.get(prometheus_url + "/metrics/per-object", timeout=60)
        ready = {
            s.labels["queue"]: s.value
            for f in text_string_to_metric_families(answer.text)
            for s in f.samples
            if s.name == "rabbitmq_queue_messages_ready" and s.labels["queue"].startswith(unique)
        }
        assert ready == {name: int(name == f"{unique}-1999") for name in names}
        scrape = Scrape(prometheus_url, family="queue_coarse_metrics", vhost="/")
        listed = {
            s.labels["queue"]
            for s in scrape.samples
            if s.name == "rabbitmq_detailed_queue_messages" and s.labels["queue"] in names
        }
        assert listed == names
    finally:
        connection.close()
