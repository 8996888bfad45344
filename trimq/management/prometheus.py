"""The Prometheus metrics of /metrics and /metrics/per-object (rabbitmq_prometheus's names,
labels, HELP and TYPE, as RabbitMQ 3.10.8 exposes them), built from the rows a scrape read
of the broker (prometheus_rows.py): no background thread, no registry of per-object gauges.

Only what trimq can fill truthfully is exposed: no Erlang VM, Raft, Mnesia or message store
series. `/metrics` sums every family over its objects; `/metrics/per-object` labels queue
series with vhost and queue, channel series with channel (and vhost for the message
counters: trimq counts per channel, not per channel and exchange or queue), connection
series with `channel` (naming the connection, as RabbitMQ does).

The per-object sums of `/metrics` are kept for one statistics interval (5 s), as RabbitMQ's
come from tables each object refreshes every 5 s; the broker's counters (connections
opened, messages received...) are read at every scrape, as RabbitMQ's are live.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import version
from typing import Any

import trio
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.exposition import generate_latest

from trimq import __version__
from trimq.broker.stats import SAMPLE_INTERVAL, MessageStats
from trimq.management.prometheus_rows import (
    CHANNEL_COUNTER_FIELDS,
    ChannelRow,
    ConnectionRow,
    NodeRow,
    QueueRow,
    Rows,
    read_broker,
)
from trimq.server.info import NODE
from trimq.server.state import ServerState

# The exposition format RabbitMQ serves (prometheus_client's own constant names a newer one).
CONTENT_TYPE = "text/plain; version=0.0.4"
RABBITMQ_VERSION = "3.10.8"  # the RabbitMQ release whose metrics trimq reproduces
PROMETHEUS_CLIENT_VERSION = version("prometheus-client")  # read once: a lookup costs ~3 ms
CLUSTER_NAME = NODE
PROTOCOL = "amqp091"
QUEUE_TYPE = "rabbit_classic_queue"

# (name, type, HELP text, value) for the series of one kind of object.
Family = tuple[str, str, str, Callable[[Any], float]]


AnyFamily = CounterMetricFamily | GaugeMetricFamily | UnknownMetricFamily


def _family(name: str, kind: str, doc: str, labels: list[str] | None = None) -> AnyFamily:
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    if kind == "gauge":
        return GaugeMetricFamily(name, doc, labels=labels)
    return UnknownMetricFamily(name, doc, labels=labels)


def _single(name: str, kind: str, doc: str, value: float) -> AnyFamily:
    family = _family(name, kind, doc, [])
    family.add_metric([], value)
    return family


QUEUE_FAMILIES: list[Family] = [
    (
        "rabbitmq_queue_messages_ready",
        "gauge",
        "Messages ready to be delivered to consumers",
        lambda q: q.ready,
    ),
    (
        "rabbitmq_queue_messages_unacked",
        "gauge",
        "Messages delivered to consumers but not yet acknowledged",
        lambda q: q.unacked,
    ),
    (
        "rabbitmq_queue_messages",
        "gauge",
        "Sum of ready and unacknowledged messages - total queue depth",
        lambda q: q.ready + q.unacked,
    ),
    ("rabbitmq_queue_consumers", "gauge", "Consumers on a queue", lambda q: q.consumers),
    (
        "rabbitmq_queue_messages_ready_bytes",
        "gauge",
        "Size in bytes of ready messages",
        lambda q: q.ready_bytes,
    ),
]

CHANNEL_GAUGES: list[Family] = [
    ("rabbitmq_channel_consumers", "gauge", "Consumers on a channel", lambda c: c.consumers),
    (
        "rabbitmq_channel_messages_unacked",
        "gauge",
        "Delivered but not yet acknowledged messages",
        lambda c: c.unacked,
    ),
    (
        "rabbitmq_channel_messages_unconfirmed",
        "gauge",
        "Published but not yet confirmed messages",
        lambda c: c.unconfirmed,
    ),
    (
        "rabbitmq_channel_messages_uncommitted",
        "gauge",
        "Messages received in a transaction but not yet committed",
        lambda c: c.uncommitted,
    ),
    (
        "rabbitmq_channel_acks_uncommitted",
        "gauge",
        "Message acknowledgements in a transaction not yet committed",
        lambda c: c.acks_uncommitted,
    ),
    (
        "rabbitmq_consumer_prefetch",
        "gauge",
        "Limit of unacknowledged messages for each consumer",
        lambda c: c.prefetch_consumer,
    ),
    (
        "rabbitmq_channel_prefetch",
        "gauge",
        "Total limit of unacknowledged messages for all consumers on a channel",
        lambda c: c.prefetch_channel,
    ),
]

# Channel message counters: (name, HELP, the MessageStats field).
CHANNEL_COUNTERS = [
    (
        "rabbitmq_channel_messages_published_total",
        "Total number of messages published into an exchange on a channel",
        "publish",
    ),
    (
        "rabbitmq_channel_messages_confirmed_total",
        "Total number of messages published into an exchange and confirmed on the channel",
        "confirm",
    ),
    (
        "rabbitmq_channel_messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to "
        "the publisher as unroutable",
        "return_unroutable",
    ),
    (
        "rabbitmq_channel_messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as "
        "unroutable",
        "drop_unroutable",
    ),
    (
        "rabbitmq_channel_get_ack_total",
        "Total number of messages fetched with basic.get in manual acknowledgement mode",
        "get",
    ),
    (
        "rabbitmq_channel_get_total",
        "Total number of messages fetched with basic.get in automatic acknowledgement mode",
        "get_no_ack",
    ),
    (
        "rabbitmq_channel_messages_delivered_ack_total",
        "Total number of messages delivered to consumers in manual acknowledgement mode",
        "deliver",
    ),
    (
        "rabbitmq_channel_messages_delivered_total",
        "Total number of messages delivered to consumers in automatic acknowledgement mode",
        "deliver_no_ack",
    ),
    (
        "rabbitmq_channel_messages_redelivered_total",
        "Total number of messages redelivered to consumers",
        "redeliver",
    ),
    (
        "rabbitmq_channel_messages_acked_total",
        "Total number of messages acknowledged by consumers",
        "ack",
    ),
    (
        "rabbitmq_channel_get_empty_total",
        "Total number of times basic.get operations fetched no message",
        "get_empty",
    ),
]

CONNECTION_FAMILIES: list[Family] = [
    (
        "rabbitmq_connection_incoming_bytes_total",
        "counter",
        "Total number of bytes received on a connection",
        lambda c: c.recv_oct,
    ),
    (
        "rabbitmq_connection_outgoing_bytes_total",
        "counter",
        "Total number of bytes sent on a connection",
        lambda c: c.send_oct,
    ),
    (
        "rabbitmq_connection_incoming_packets_total",
        "counter",
        "Total number of packets received on a connection",
        lambda c: c.recv_cnt,
    ),
    (
        "rabbitmq_connection_outgoing_packets_total",
        "counter",
        "Total number of packets sent on a connection",
        lambda c: c.send_cnt,
    ),
    (
        "rabbitmq_connection_channels",
        "gauge",
        "Channels on a connection",
        lambda c: c.channels,
    ),
]

# The broker's message counters (every vhost's, and deleted ones'): (name, HELP, field,
# whether RabbitMQ labels them with the queue type too).
GLOBAL_COUNTERS = [
    (
        "rabbitmq_global_messages_acknowledged_total",
        "Total number of messages acknowledged by consumers",
        "ack",
        True,
    ),
    (
        "rabbitmq_global_messages_confirmed_total",
        "Total number of messages confirmed to publishers",
        "confirm",
        False,
    ),
    (
        "rabbitmq_global_messages_delivered_consume_auto_ack_total",
        "Total number of messages delivered to consumers using basic.consume with automatic "
        "acknowledgment",
        "deliver_no_ack",
        True,
    ),
    (
        "rabbitmq_global_messages_delivered_consume_manual_ack_total",
        "Total number of messages delivered to consumers using basic.consume with manual "
        "acknowledgment",
        "deliver",
        True,
    ),
    (
        "rabbitmq_global_messages_delivered_get_auto_ack_total",
        "Total number of messages delivered to consumers using basic.get with automatic "
        "acknowledgment",
        "get_no_ack",
        True,
    ),
    (
        "rabbitmq_global_messages_delivered_get_manual_ack_total",
        "Total number of messages delivered to consumers using basic.get with manual "
        "acknowledgment",
        "get",
        True,
    ),
    (
        "rabbitmq_global_messages_delivered_total",
        "Total number of messages delivered to consumers",
        "deliver_get",
        True,
    ),
    (
        "rabbitmq_global_messages_get_empty_total",
        "Total number of times basic.get operations fetched no message",
        "get_empty",
        True,
    ),
    (
        "rabbitmq_global_messages_received_confirm_total",
        "Total number of messages received from publishers expecting confirmations",
        "received_confirm",
        False,
    ),
    (
        "rabbitmq_global_messages_received_total",
        "Total number of messages received from publishers",
        "publish",
        False,
    ),
    (
        "rabbitmq_global_messages_redelivered_total",
        "Total number of messages redelivered to consumers",
        "redeliver",
        True,
    ),
    (
        "rabbitmq_global_messages_routed_total",
        "Total number of messages routed to queues or streams",
        "publish_out",
        False,
    ),
    (
        "rabbitmq_global_messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as "
        "unroutable",
        "drop_unroutable",
        False,
    ),
    (
        "rabbitmq_global_messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to the "
        "publisher as unroutable",
        "return_unroutable",
        False,
    ),
]


def _channel_count(field: str) -> Callable[[ChannelRow], float]:
    index = CHANNEL_COUNTER_FIELDS.index(field)
    return lambda channel: channel.counters[index]


CHANNEL_COUNTER_FAMILIES: list[Family] = [
    (name, "counter", doc, _channel_count(field)) for name, doc, field in CHANNEL_COUNTERS
]

QUEUE_PUBLISHED: list[Family] = [
    (
        "rabbitmq_queue_messages_published_total",
        "counter",
        "Total number of messages published to queues",
        lambda q: q.published,
    )
]


def table(
    families: Sequence[Family],
    rows: Iterable[Any],
    labels: Sequence[str],
    label_values: Callable[[Any], Sequence[str]],
) -> Iterator[Metric]:
    """The families of one kind of object, a series per object (a value None: no series)."""
    built = [_family(name, kind, doc, list(labels)) for name, kind, doc, _ in families]
    getters = [value for _, _, _, value in families]
    for row in rows:
        values = list(label_values(row))
        for family, value in zip(built, getters, strict=True):
            figure = value(row)
            if figure is not None:
                family.add_metric(values, figure)
    yield from built


def summed(families: Sequence[Family], rows: Iterable[Any]) -> list[float]:
    """Each family's sum over the objects."""
    sums = [0.0] * len(families)
    getters = [value for _, _, _, value in families]
    for row in rows:
        for index, value in enumerate(getters):
            sums[index] += value(row)
    return sums


def _summed_families(families: Sequence[Family], sums: Sequence[float]) -> Iterator[Metric]:
    for (name, kind, doc, _), value in zip(families, sums, strict=True):
        yield _single(name, kind, doc, value)


def node_families(node: NodeRow) -> Iterator[Metric]:
    """The node's own figures, the same in both endpoints."""
    yield _single(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        node.started_at,
    )
    yield _single(
        "rabbitmq_alarms_file_descriptor_limit",
        "untyped",
        "is 1 if file descriptor limit alarm is in effect",
        0,
    )
    yield _single(
        "rabbitmq_alarms_free_disk_space_watermark",
        "untyped",
        "is 1 if free disk space watermark alarm is in effect",
        int(node.disk_alarm),
    )
    yield _single(
        "rabbitmq_alarms_memory_used_watermark",
        "untyped",
        "is 1 if VM memory watermark alarm is in effect",
        int(node.memory_alarm),
    )
    for name, kind, doc, value in CHURN + NODE_FIGURES:
        yield _single(f"rabbitmq_{name}", kind, doc, value(node))
    yield from table(
        [(f"rabbitmq_{name}", kind, doc, value) for name, kind, doc, value in LOGINS],
        node.logins,
        ["protocol"],
        _protocol,
    )


Login = tuple[str, int, int]  # (protocol, succeeded, failed)

# auth_attempt_metrics: (name without prefix, TYPE, HELP, value of a Login).
LOGINS: list[tuple[str, str, str, Callable[[Login], float]]] = [
    (
        "auth_attempts_total",
        "counter",
        "Total number of authorization attempts",
        lambda login: login[1] + login[2],
    ),
    (
        "auth_attempts_succeeded_total",
        "counter",
        "Total number of successful authentication attempts",
        lambda login: login[1],
    ),
    (
        "auth_attempts_failed_total",
        "counter",
        "Total number of failed authentication attempts",
        lambda login: login[2],
    ),
]


def _protocol(login: Login) -> list[str]:
    return [login[0]]


# (name without prefix, TYPE, HELP, value) of the node's figures: connection_churn_metrics,
# then what node_coarse_metrics and node_metrics have that trimq can tell.
CHURN: list[tuple[str, str, str, Callable[[NodeRow], float]]] = [
    (
        "connections_opened_total",
        "counter",
        "Total number of connections opened",
        lambda n: n.connections_opened,
    ),
    (
        "connections_closed_total",
        "counter",
        "Total number of connections closed or terminated",
        lambda n: n.connections_closed,
    ),
    (
        "channels_opened_total",
        "counter",
        "Total number of channels opened",
        lambda n: n.channels_opened,
    ),
    (
        "channels_closed_total",
        "counter",
        "Total number of channels closed",
        lambda n: n.channels_closed,
    ),
    (
        "queues_declared_total",
        "counter",
        "Total number of queues declared",
        lambda n: n.queues_declared,
    ),
    (
        "queues_created_total",
        "counter",
        "Total number of queues created",
        lambda n: n.queues_created,
    ),
    (
        "queues_deleted_total",
        "counter",
        "Total number of queues deleted",
        lambda n: n.queues_deleted,
    ),
]
NODE_FIGURES: list[tuple[str, str, str, Callable[[NodeRow], float]]] = [
    ("process_open_fds", "gauge", "Open file descriptors", lambda n: n.open_fds),
    ("process_resident_memory_bytes", "gauge", "Memory used in bytes", lambda n: n.memory_used),
    ("disk_space_available_bytes", "gauge", "Disk space available in bytes", lambda n: n.disk_free),
    ("process_max_fds", "gauge", "Open file descriptors limit", lambda n: n.max_fds),
    (
        "resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        lambda n: n.memory_limit,
    ),
    (
        "disk_space_available_limit_bytes",
        "gauge",
        "Free disk space low watermark in bytes",
        lambda n: n.disk_free_limit,
    ),
]


def _channel_labels(c: ChannelRow) -> list[str]:
    return [c.pid]


def _channel_vhost_labels(c: ChannelRow) -> list[str]:
    return [c.pid, c.vhost]


def _connection_labels(c: ConnectionRow) -> list[str]:
    return [c.pid]  # labelled "channel" (sic), as RabbitMQ does


def _queue_labels(q: QueueRow) -> list[str]:
    return [q.vhost, q.name]


class ObjectSums:
    """The per-object sums of /metrics, and when they were computed."""

    def __init__(self, rows: Rows, at: float) -> None:
        self.at = at
        self.queues = summed(QUEUE_FAMILIES, rows.queues)
        self.published = summed(QUEUE_PUBLISHED, rows.queues)
        self.channels = summed(CHANNEL_GAUGES, rows.channels)
        self.channel_counters = summed(CHANNEL_COUNTER_FAMILIES, rows.channels)
        self.connection_figures = summed(CONNECTION_FAMILIES, rows.connections)
        self.connections = len(rows.connections)
        self.channel_count = len(rows.channels)
        self.consumers = sum(q.consumers for q in rows.queues)
        self.queue_count = len(rows.queues)


def object_families(rows: Rows) -> Iterator[Metric]:
    """/metrics/per-object's queue, channel and connection series."""
    yield from table(QUEUE_FAMILIES, rows.queues, ["vhost", "queue"], _queue_labels)
    yield from table(CHANNEL_GAUGES, rows.channels, ["channel"], _channel_labels)
    yield from table(
        CHANNEL_COUNTER_FAMILIES, rows.channels, ["channel", "vhost"], _channel_vhost_labels
    )
    yield from table(CONNECTION_FAMILIES, rows.connections, ["channel"], _connection_labels)
    yield from table(QUEUE_PUBLISHED, rows.queues, ["vhost", "queue"], _queue_labels)


def summed_families(sums: ObjectSums) -> Iterator[Metric]:
    """/metrics's queue, channel and connection families, each one sum."""
    yield from _summed_families(QUEUE_FAMILIES, sums.queues)
    yield from _summed_families(CHANNEL_GAUGES, sums.channels)
    yield from _summed_families(CHANNEL_COUNTER_FAMILIES, sums.channel_counters)
    yield from _summed_families(CONNECTION_FAMILIES, sums.connection_figures)
    yield from _summed_families(QUEUE_PUBLISHED, sums.published)


def metrics(
    node: NodeRow, sums: ObjectSums, objects: Iterable[Metric], stats: MessageStats
) -> Iterator[Metric]:
    """Every family of /metrics (`objects`: the summed families) or /metrics/per-object."""
    yield from node_families(node)
    yield from objects
    yield _single("rabbitmq_connections", "gauge", "Connections currently open", sums.connections)
    yield _single("rabbitmq_channels", "gauge", "Channels currently open", sums.channel_count)
    yield _single("rabbitmq_consumers", "gauge", "Consumers currently connected", sums.consumers)
    yield _single("rabbitmq_queues", "gauge", "Queues available", sums.queue_count)
    yield from identity()
    yield from global_families(sums.consumers, stats)


def identity() -> Iterator[Metric]:
    build = UnknownMetricFamily(
        "rabbitmq_build_info",
        "RabbitMQ & Erlang/OTP version info",
        labels=[
            "rabbitmq_version",
            "prometheus_plugin_version",
            "prometheus_client_version",
            "erlang_version",
            "product_name",
            "product_version",
        ],
    )
    build.add_metric(
        [
            RABBITMQ_VERSION,
            __version__,
            PROMETHEUS_CLIENT_VERSION,
            f"python-{platform.python_version()}",  # trimq runs on Python, not Erlang/OTP
            "trimq",
            __version__,
        ],
        1,
    )
    yield build
    identity = UnknownMetricFamily(
        "rabbitmq_identity_info",
        "RabbitMQ node & cluster identity info",
        labels=["rabbitmq_node", "rabbitmq_cluster", "rabbitmq_cluster_permanent_id"],
    )
    identity.add_metric([NODE, CLUSTER_NAME, f"trimq-cluster-id-{CLUSTER_NAME}"], 1)
    yield identity


def global_families(consumers: int, stats: MessageStats) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "rabbitmq_global_consumers", "Current number of consumers", labels=["protocol"]
    )
    family.add_metric([PROTOCOL], consumers)
    yield family
    for name, doc, field, typed in GLOBAL_COUNTERS:
        labels = ["protocol", "queue_type"] if typed else ["protocol"]
        counter = CounterMetricFamily(name, doc, labels=labels)
        counter.add_metric([PROTOCOL, QUEUE_TYPE] if typed else [PROTOCOL], stats.value(field))
        yield counter


class _Collected:
    """Families to format, handed to prometheus_client's formatter (a collector)."""

    def __init__(self, build: Callable[[], Iterable[Metric]]) -> None:
        self.build = build

    def collect(self) -> Iterable[Metric]:
        return self.build()


def exposition(build: Callable[[], Iterable[Metric]]) -> bytes:
    """The text of the families `build` makes from rows already read (no broker object)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(build))
    return generate_latest(registry)


async def render(build: Callable[[], Iterable[Metric]]) -> bytes:
    """Build the families and their text in a worker thread: with thousands of queues that
    is most of a scrape's work, and `build` touches nothing but rows."""
    return await trio.to_thread.run_sync(exposition, build)


class Scraper:
    """/metrics and /metrics/per-object of one server."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._sums: ObjectSums | None = None

    async def aggregated(self, extra: Sequence[Metric] = ()) -> bytes:
        """/metrics: the per-object sums as of at most one statistics interval ago, the
        broker's counters as of now."""
        now = trio.current_time()
        sums = self._sums
        if sums is None or now - sums.at >= SAMPLE_INTERVAL:
            rows = await read_broker(self.state)
            sums = self._sums = await trio.to_thread.run_sync(ObjectSums, rows, now)
            node, stats = rows.node, rows.global_stats
        else:
            rows = await read_broker(self.state, queues=False, channels=False)
            node, stats = rows.node, rows.global_stats
        assert stats is not None
        final = sums
        return await render(lambda: [*metrics(node, final, summed_families(final), stats), *extra])

    async def per_object(self, extra: Sequence[Metric] = ()) -> bytes:
        rows = await read_broker(self.state)
        stats = rows.global_stats
        assert stats is not None

        def build() -> list[Metric]:
            sums = ObjectSums(rows, 0.0)
            return [*metrics(rows.node, sums, object_families(rows), stats), *extra]

        return await render(build)
