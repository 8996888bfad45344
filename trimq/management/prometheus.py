"""The Prometheus metrics (rabbitmq_prometheus's names, labels, HELP and TYPE, as RabbitMQ
3.10.8 exposes them), read from the running server at scrape time by a prometheus_client
collector: no background thread, no registry of per-object gauges.

Only what trimq can fill truthfully is exposed: no Erlang VM, Raft, Mnesia or message store
series. `/metrics` sums every family over its objects; `/metrics/per-object` labels queue
series with vhost and queue, channel series with channel (and vhost for the message
counters: trimq counts per channel, not per channel and exchange or queue), connection
series with `channel` (naming the connection, as RabbitMQ does).
"""

from __future__ import annotations

import platform
import resource
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

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
from trimq.amqp.state import ChannelMode
from trimq.server.control.node import count_open_files
from trimq.server.info import NODE, channel_pid, connection_pid
from trimq.server.rates import overview_stats

if TYPE_CHECKING:
    from trimq.broker.queue import Queue
    from trimq.server.channel import Channel
    from trimq.server.connection import ServerConnection
    from trimq.server.state import ServerState

# The exposition format RabbitMQ serves (prometheus_client's own constant names a newer one).
CONTENT_TYPE = "text/plain; version=0.0.4"
RABBITMQ_VERSION = "3.10.8"  # the RabbitMQ release whose metrics trimq reproduces
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
        lambda q: len(q.ready),
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
        lambda q: len(q.ready) + q.unacked,
    ),
    ("rabbitmq_queue_consumers", "gauge", "Consumers on a queue", lambda q: len(q.consumers)),
    (
        "rabbitmq_queue_messages_ready_bytes",
        "gauge",
        "Size in bytes of ready messages",
        lambda q: q.ready.bytes,
    ),
]

CHANNEL_GAUGES: list[Family] = [
    ("rabbitmq_channel_consumers", "gauge", "Consumers on a channel", lambda c: len(c.consumers)),
    (
        "rabbitmq_channel_messages_unacked",
        "gauge",
        "Delivered but not yet acknowledged messages",
        lambda c: len(c.unacked),
    ),
    (
        "rabbitmq_channel_messages_unconfirmed",
        "gauge",
        "Published but not yet confirmed messages",
        lambda c: c.confirm_seq - c.confirmed_upto if c.proto.mode is ChannelMode.CONFIRM else 0,
    ),
    (
        "rabbitmq_channel_messages_uncommitted",
        "gauge",
        "Messages received in a transaction but not yet committed",
        lambda c: len(c.tx_ops),
    ),
    (
        "rabbitmq_channel_acks_uncommitted",
        "gauge",
        "Message acknowledgements in a transaction not yet committed",
        lambda c: sum(len(taken) for taken, _ in c.tx_acks),
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
        lambda c: c.stats.recv_oct,
    ),
    (
        "rabbitmq_connection_outgoing_bytes_total",
        "counter",
        "Total number of bytes sent on a connection",
        lambda c: c.stats.send_oct,
    ),
    (
        "rabbitmq_connection_incoming_packets_total",
        "counter",
        "Total number of packets received on a connection",
        lambda c: c.stats.recv_cnt,
    ),
    (
        "rabbitmq_connection_outgoing_packets_total",
        "counter",
        "Total number of packets sent on a connection",
        lambda c: c.stats.send_cnt,
    ),
    (
        "rabbitmq_connection_channels",
        "gauge",
        "Channels on a connection",
        lambda c: len(c.channels),
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


def _channel_count(field: str) -> Callable[[Channel], float]:
    return lambda channel: channel.stats.value(field)


class BrokerCollector:
    """Reads the server's state each time Prometheus scrapes; `per_object` labels each queue,
    channel and connection's series instead of summing them."""

    def __init__(self, state: ServerState, per_object: bool) -> None:
        self.state = state
        self.per_object = per_object

    # The objects, walked at scrape time (no await meanwhile: nothing changes under us).

    def _queues(self) -> Iterator[Queue]:
        for vhost in self.state.broker.vhosts.values():
            yield from vhost.queues.values()

    def _connections(self) -> list[ServerConnection]:
        return [c for c in self.state.connections if c.opened]

    def _channels(self) -> Iterator[Channel]:
        for connection in self._connections():
            yield from connection.channels.values()

    def _families(
        self,
        families: list[Family],
        objects: Callable[[], Iterable[Any]],
        labels: list[str],
        label_values: Callable[[Any], list[str]],
    ) -> Iterator[Metric]:
        """The families of one kind of object, in one pass over the objects."""
        built = [
            _family(name, kind, doc, labels if self.per_object else [])
            for name, kind, doc, _ in families
        ]
        getters = [value for _, _, _, value in families]
        if self.per_object:
            for obj in objects():
                values = label_values(obj)
                for family, value in zip(built, getters, strict=True):
                    family.add_metric(values, value(obj))
        else:
            sums = [0.0] * len(getters)
            for obj in objects():
                for index, value in enumerate(getters):
                    sums[index] += value(obj)
            for family, summed in zip(built, sums, strict=True):
                family.add_metric([], summed)
        yield from built

    def collect(self) -> Iterator[Metric]:
        state = self.state
        broker = state.broker
        resources = state.resources
        totals = broker.totals
        yield _single(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            int(state.started_at),
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
            int("disk" in resources.alarms),
        )
        yield _single(
            "rabbitmq_alarms_memory_used_watermark",
            "untyped",
            "is 1 if VM memory watermark alarm is in effect",
            int("memory" in resources.alarms),
        )
        for name, doc, value in (
            ("connections_opened", "Total number of connections opened", totals.connections_opened),
            (
                "connections_closed",
                "Total number of connections closed or terminated",
                totals.connections_closed,
            ),
            ("channels_opened", "Total number of channels opened", totals.channels_opened),
            ("channels_closed", "Total number of channels closed", totals.channels_closed),
            ("queues_declared", "Total number of queues declared", totals.queues_declared),
            ("queues_created", "Total number of queues created", totals.queues_created),
            ("queues_deleted", "Total number of queues deleted", totals.queues_deleted),
        ):
            yield _single(f"rabbitmq_{name}_total", "counter", doc, value)
        yield _single(
            "rabbitmq_process_open_fds", "gauge", "Open file descriptors", count_open_files() or 0
        )
        yield _single(
            "rabbitmq_process_resident_memory_bytes",
            "gauge",
            "Memory used in bytes",
            resources.memory_used or 0,
        )
        yield _single(
            "rabbitmq_disk_space_available_bytes",
            "gauge",
            "Disk space available in bytes",
            resources.disk_free or 0,
        )
        yield _single(
            "rabbitmq_process_max_fds",
            "gauge",
            "Open file descriptors limit",
            resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )
        yield _single(
            "rabbitmq_resident_memory_limit_bytes",
            "gauge",
            "Memory high watermark in bytes",
            resources.memory_limit,
        )
        yield _single(
            "rabbitmq_disk_space_available_limit_bytes",
            "gauge",
            "Free disk space low watermark in bytes",
            resources.disk_free_limit,
        )
        yield from self._families(
            QUEUE_FAMILIES, self._queues, ["vhost", "queue"], lambda q: [q.vhost, q.name]
        )
        yield from self._families(
            CHANNEL_GAUGES, self._channels, ["channel"], lambda c: [channel_pid(c)]
        )
        yield from self._families(
            [
                (name, "counter", doc, _channel_count(field))
                for name, doc, field in CHANNEL_COUNTERS
            ],
            self._channels,
            ["channel", "vhost"],
            lambda c: [channel_pid(c), c.vhost.name],
        )
        yield from self._families(
            CONNECTION_FAMILIES,
            self._connections,
            ["channel"],  # sic: RabbitMQ names the connection's label "channel"
            lambda c: [connection_pid(c)],
        )
        yield from self._families(
            [
                (
                    "rabbitmq_queue_messages_published_total",
                    "counter",
                    "Total number of messages published to queues",
                    lambda q: q.counters().publish,
                )
            ],
            self._queues,
            ["vhost", "queue"],
            lambda q: [q.vhost, q.name],
        )
        connections = self._connections()
        consumers = sum(len(q.consumers) for q in self._queues())
        yield _single(
            "rabbitmq_connections", "gauge", "Connections currently open", len(connections)
        )
        yield _single(
            "rabbitmq_channels",
            "gauge",
            "Channels currently open",
            sum(len(c.channels) for c in connections),
        )
        yield _single("rabbitmq_consumers", "gauge", "Consumers currently connected", consumers)
        yield _single(
            "rabbitmq_queues",
            "gauge",
            "Queues available",
            sum(len(v.queues) for v in broker.vhosts.values()),
        )
        yield from self._identity()
        yield from self._global(consumers)

    def _identity(self) -> Iterator[Metric]:
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
                version("prometheus-client"),
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

    def _global(self, consumers: int) -> Iterator[Metric]:
        stats = overview_stats(self.state)
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


def registry(state: ServerState, per_object: bool) -> CollectorRegistry:
    """A registry holding only the broker's collector (no process or platform defaults)."""
    result = CollectorRegistry(auto_describe=False)
    result.register(BrokerCollector(state, per_object))
    return result


def exposition(metrics: CollectorRegistry) -> bytes:
    """The text exposition of everything `metrics` collects now."""
    return generate_latest(metrics)


class _Collected:
    """Families already collected, for formatting away from the event loop."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


async def scrape(collector: BrokerCollector) -> bytes:
    """Read the broker on the event loop (the only place it may be read), then format the
    text in a worker thread: with thousands of queues, formatting is most of the work and
    the thread touches nothing but the families collected."""
    families = list(collector.collect())
    collected = CollectorRegistry(auto_describe=False)
    collected.register(_Collected(families))
    return await trio.to_thread.run_sync(generate_latest, collected)
