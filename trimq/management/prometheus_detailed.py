"""/metrics/detailed as rabbitmq_prometheus 3.10.8 serves it: the metric groups asked for with
`family=` (repeatable; unknown names are ignored, none asked for: no group), each group's
families prefixed `rabbitmq_detailed_` (`rabbitmq_cluster_` for vhost_status,
exchange_bindings and exchange_names), in RabbitMQ's order whatever the order asked, and
`vhost=` (repeatable) keeping the queue groups' series to those vhosts (names of no vhost
are ignored; only unknown names: no queue series). As RabbitMQ, a group lists every family
it has, and a family lists the series trimq can fill: a figure trimq does not have (an
Erlang process's reductions or memory, the Erlang VM, Raft, the message store, per channel
and exchange or queue breakdowns) has no series, as RabbitMQ answers for an undefined one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from prometheus_client.core import Metric

from trimq.management.prometheus import (
    CHANNEL_GAUGES,
    CHURN,
    LOGINS,
    NODE_FIGURES,
    _family,
    _protocol,
    identity,
)
from trimq.management.prometheus_rows import (
    ChannelRow,
    ConnectionRow,
    NodeRow,
    QueueRow,
    Rows,
)

# A family of a group: (name without prefix, TYPE, HELP, value of a row; None: no series).
Entry = tuple[str, str, str, Callable[[Any], float | None] | None]


class Group(NamedTuple):
    """One metric group: its families, over which rows, with which labels."""

    entries: list[Entry]
    rows: Callable[[Rows], Sequence[Any]]  # the objects (the node: one row, no labels)
    labels: Sequence[str]
    label_values: Callable[[Any], Sequence[str]]
    prefix: str = "rabbitmq_detailed_"
    by_vhost: bool = False  # the vhost= filter applies


def _none(_: Any) -> None:
    return None


def _node(rows: Rows) -> list[NodeRow]:
    return [rows.node]


def _no_labels(_: Any) -> list[str]:
    return []


def _nothing(_: Rows) -> list[Any]:
    return []  # trimq has no such objects (or no such breakdown)


def _queues(rows: Rows) -> list[QueueRow]:
    return rows.queues


def _channels(rows: Rows) -> list[ChannelRow]:
    return rows.channels


def _connections(rows: Rows) -> list[ConnectionRow]:
    return rows.connections


def _queue_labels(q: QueueRow) -> list[str]:
    return [q.vhost, q.name]


def _pid(row: ChannelRow | ConnectionRow) -> list[str]:
    return [row.pid]


def _node_figure(name: str) -> Callable[[NodeRow], float]:
    return next(value for n, _, _, value in NODE_FIGURES if n == name)


def _empty(entries: list[tuple[str, str, str]], labels: Sequence[str]) -> Group:
    """A group trimq has nothing for: its families, with no series."""
    return Group([(n, k, d, None) for n, k, d in entries], _nothing, labels, _no_labels)


def _capacity(q: QueueRow) -> float:
    return 1.0 if q.consumers else 0  # trimq delivers at once to any consumer with credit


CHANNEL_COUNTERS_BY_EXCHANGE = [
    (
        "channel_messages_published_total",
        "counter",
        "Total number of messages published into an exchange on a channel",
    ),
    (
        "channel_messages_confirmed_total",
        "counter",
        "Total number of messages published into an exchange and confirmed on the channel",
    ),
    (
        "channel_messages_unroutable_returned_total",
        "counter",
        "Total number of messages published as mandatory into an exchange and returned to "
        "the publisher as unroutable",
    ),
    (
        "channel_messages_unroutable_dropped_total",
        "counter",
        "Total number of messages published as non-mandatory into an exchange and dropped as "
        "unroutable",
    ),
]

CHANNEL_COUNTERS_BY_QUEUE = [
    (
        "channel_get_ack_total",
        "counter",
        "Total number of messages fetched with basic.get in manual acknowledgement mode",
    ),
    (
        "channel_get_total",
        "counter",
        "Total number of messages fetched with basic.get in automatic acknowledgement mode",
    ),
    (
        "channel_messages_delivered_ack_total",
        "counter",
        "Total number of messages delivered to consumers in manual acknowledgement mode",
    ),
    (
        "channel_messages_delivered_total",
        "counter",
        "Total number of messages delivered to consumers in automatic acknowledgement mode",
    ),
    (
        "channel_messages_redelivered_total",
        "counter",
        "Total number of messages redelivered to consumers",
    ),
    (
        "channel_messages_acked_total",
        "counter",
        "Total number of messages acknowledged by consumers",
    ),
    (
        "channel_get_empty_total",
        "counter",
        "Total number of times basic.get operations fetched no message",
    ),
]

NODE_PERSISTER = [
    ("io_read_ops_total", "Total number of I/O read operations"),
    ("io_read_bytes_total", "Total number of I/O bytes read"),
    ("io_write_ops_total", "Total number of I/O write operations"),
    ("io_write_bytes_total", "Total number of I/O bytes written"),
    ("io_sync_ops_total", "Total number of I/O sync operations"),
    ("io_seek_ops_total", "Total number of I/O seek operations"),
    ("io_reopen_ops_total", "Total number of times files have been reopened"),
    ("schema_db_ram_tx_total", "Total number of Schema DB memory transactions"),
    ("schema_db_disk_tx_total", "Total number of Schema DB disk transactions"),
    ("msg_store_read_total", "Total number of Message Store read operations"),
    ("msg_store_write_total", "Total number of Message Store write operations"),
    ("queue_index_read_ops_total", "Total number of Queue Index read operations"),
    ("queue_index_write_ops_total", "Total number of Queue Index write operations"),
    ("io_read_time_seconds_total", "Total I/O read time"),
    ("io_write_time_seconds_total", "Total I/O write time"),
    ("io_sync_time_seconds_total", "Total I/O sync time"),
    ("io_seek_time_seconds_total", "Total I/O seek time"),
]

QUEUE_CONSUMERS: Entry = ("queue_consumers", "gauge", "Consumers on a queue", lambda q: q.consumers)

# Every group, in the order RabbitMQ 3.10.8 answers them.
GROUPS: dict[str, Group] = {
    "connection_churn_metrics": Group(CHURN, _node, [], _no_labels),  # type: ignore[arg-type]
    "node_coarse_metrics": Group(
        [
            (
                "process_open_fds",
                "gauge",
                "Open file descriptors",
                _node_figure("process_open_fds"),
            ),
            (
                "process_open_tcp_sockets",
                "gauge",
                "Open TCP sockets",
                lambda n: n.client_sockets,  # as RabbitMQ's: its clients' sockets
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Memory used in bytes",
                _node_figure("process_resident_memory_bytes"),
            ),
            (
                "disk_space_available_bytes",
                "gauge",
                "Disk space available in bytes",
                _node_figure("disk_space_available_bytes"),
            ),
            ("erlang_processes_used", "gauge", "Erlang processes used", None),
            (
                "erlang_gc_runs_total",
                "counter",
                "Total number of Erlang garbage collector runs",
                None,
            ),
            (
                "erlang_gc_reclaimed_bytes_total",
                "counter",
                "Total number of bytes of memory reclaimed by Erlang garbage collector",
                None,
            ),
            (
                "erlang_scheduler_context_switches_total",
                "counter",
                "Total number of Erlang scheduler context switches",
                None,
            ),
        ],
        _node,
        [],
        _no_labels,
    ),
    "node_metrics": Group(
        [
            (
                "process_max_fds",
                "gauge",
                "Open file descriptors limit",
                _node_figure("process_max_fds"),
            ),
            ("process_max_tcp_sockets", "gauge", "Open TCP sockets limit", None),
            (
                "resident_memory_limit_bytes",
                "gauge",
                "Memory high watermark in bytes",
                _node_figure("resident_memory_limit_bytes"),
            ),
            (
                "disk_space_available_limit_bytes",
                "gauge",
                "Free disk space low watermark in bytes",
                _node_figure("disk_space_available_limit_bytes"),
            ),
            ("erlang_processes_limit", "gauge", "Erlang processes limit", None),
            ("erlang_scheduler_run_queue", "gauge", "Erlang scheduler run queue", None),
            ("erlang_net_ticktime_seconds", "gauge", "Inter-node heartbeat interval", None),
            ("erlang_uptime_seconds", "gauge", "Node uptime", lambda n: round(n.uptime, 3)),
        ],
        _node,
        [],
        _no_labels,
    ),
    "node_persister_metrics": _empty([(n, "counter", d) for n, d in NODE_PERSISTER], []),
    "ra_metrics": _empty(
        [
            ("raft_term_total", "counter", "Current Raft term number"),
            ("raft_log_snapshot_index", "gauge", "Raft log snapshot index"),
            ("raft_log_last_applied_index", "gauge", "Raft log last applied index"),
            ("raft_log_commit_index", "gauge", "Raft log commit index"),
            ("raft_log_last_written_index", "gauge", "Raft log last written index"),
            (
                "raft_entry_commit_latency_seconds",
                "gauge",
                "Time taken for a log entry to be committed",
            ),
        ],
        ["vhost", "queue"],
    ),
    "auth_attempt_metrics": Group(
        LOGINS,  # type: ignore[arg-type]
        lambda rows: rows.node.logins,
        ["protocol"],
        _protocol,
    ),
    "auth_attempt_detailed_metrics": _empty(
        [
            (
                "auth_attempts_detailed_total",
                "counter",
                "Total number of authorization attempts with source info",
            ),
            (
                "auth_attempts_detailed_succeeded_total",
                "counter",
                "Total number of successful authorization attempts with source info",
            ),
            (
                "auth_attempts_detailed_failed_total",
                "counter",
                "Total number of failed authorization attempts with source info",
            ),
        ],
        ["remote_address", "username", "protocol"],
    ),
    "queue_coarse_metrics": Group(
        [
            (
                "queue_messages_ready",
                "gauge",
                "Messages ready to be delivered to consumers",
                lambda q: q.ready,
            ),
            (
                "queue_messages_unacked",
                "gauge",
                "Messages delivered to consumers but not yet acknowledged",
                lambda q: q.unacked,
            ),
            (
                "queue_messages",
                "gauge",
                "Sum of ready and unacknowledged messages - total queue depth",
                lambda q: q.ready + q.unacked,
            ),
            (
                "queue_process_reductions_total",
                "counter",
                "Total number of queue process reductions",
                None,
            ),
        ],
        _queues,
        ["vhost", "queue"],
        _queue_labels,
        by_vhost=True,
    ),
    "queue_consumer_count": Group(
        [QUEUE_CONSUMERS], _queues, ["vhost", "queue"], _queue_labels, by_vhost=True
    ),
    "queue_metrics": Group(
        [
            QUEUE_CONSUMERS,
            ("queue_consumer_capacity", "gauge", "Consumer capacity", _capacity),
            ("queue_consumer_utilisation", "gauge", "Same as consumer capacity", _capacity),
            (
                "queue_process_memory_bytes",
                "gauge",
                "Memory in bytes used by the Erlang queue process",
                None,
            ),
            (
                "queue_messages_ram",
                "gauge",
                "Ready and unacknowledged messages stored in memory",
                lambda q: q.ready - q.paged + q.unacked,
            ),
            (
                "queue_messages_ram_bytes",
                "gauge",
                "Size of ready and unacknowledged messages stored in memory",
                lambda q: q.ready_bytes - q.paged_bytes + q.unacked_bytes,
            ),
            (
                "queue_messages_ready_ram",
                "gauge",
                "Ready messages stored in memory",
                lambda q: q.ready - q.paged,
            ),
            (
                "queue_messages_unacked_ram",
                "gauge",
                "Unacknowledged messages stored in memory",
                lambda q: q.unacked,
            ),
            ("queue_messages_persistent", "gauge", "Persistent messages", lambda q: q.persistent),
            (
                "queue_messages_persistent_bytes",
                "gauge",
                "Size in bytes of persistent messages",
                lambda q: q.persistent_bytes,
            ),
            (
                "queue_messages_bytes",
                "gauge",
                "Size in bytes of ready and unacknowledged messages",
                lambda q: q.ready_bytes + q.unacked_bytes,
            ),
            (
                "queue_messages_ready_bytes",
                "gauge",
                "Size in bytes of ready messages",
                lambda q: q.ready_bytes,
            ),
            (
                "queue_messages_unacked_bytes",
                "gauge",
                "Size in bytes of all unacknowledged messages",
                lambda q: q.unacked_bytes,
            ),
            (
                "queue_messages_paged_out",
                "gauge",
                "Messages paged out to disk",
                lambda q: q.paged,
            ),
            (
                "queue_messages_paged_out_bytes",
                "gauge",
                "Size in bytes of messages paged out to disk",
                lambda q: q.paged_bytes,
            ),
            (
                "queue_head_message_timestamp",
                "gauge",
                "Timestamp of the first message in the queue, if any",
                lambda q: q.head_timestamp,
            ),
            (
                "queue_disk_reads_total",
                "counter",
                "Total number of times queue read messages from disk",
                lambda q: 0,  # trimq reads its log only at start-up
            ),
            (
                "queue_disk_writes_total",
                "counter",
                "Total number of times queue wrote messages to disk",
                None,
            ),
        ],
        _queues,
        ["vhost", "queue"],
        _queue_labels,
        by_vhost=True,
    ),
    "channel_metrics": Group(
        [(name.removeprefix("rabbitmq_"), k, d, v) for name, k, d, v in CHANNEL_GAUGES],
        _channels,
        ["channel"],
        _pid,
    ),
    "channel_exchange_metrics": _empty(
        CHANNEL_COUNTERS_BY_EXCHANGE, ["channel", "vhost", "exchange"]
    ),
    "channel_process_metrics": _empty(
        [
            (
                "channel_process_reductions_total",
                "counter",
                "Total number of channel process reductions",
            )
        ],
        ["channel"],
    ),
    "channel_queue_metrics": _empty(CHANNEL_COUNTERS_BY_QUEUE, ["channel", "vhost", "queue"]),
    "connection_coarse_metrics": Group(
        [
            (
                "connection_incoming_bytes_total",
                "counter",
                "Total number of bytes received on a connection",
                lambda c: c.recv_oct,
            ),
            (
                "connection_outgoing_bytes_total",
                "counter",
                "Total number of bytes sent on a connection",
                lambda c: c.send_oct,
            ),
            (
                "connection_process_reductions_total",
                "counter",
                "Total number of connection process reductions",
                None,
            ),
        ],
        _connections,
        ["channel"],  # sic: RabbitMQ names the connection's label "channel"
        _pid,
    ),
    "connection_metrics": Group(
        [
            (
                "connection_incoming_packets_total",
                "counter",
                "Total number of packets received on a connection",
                lambda c: c.recv_cnt,
            ),
            (
                "connection_outgoing_packets_total",
                "counter",
                "Total number of packets sent on a connection",
                lambda c: c.send_cnt,
            ),
            (
                "connection_pending_packets",
                "gauge",
                "Number of packets waiting to be sent on a connection",
                lambda c: c.pending,  # bytes not yet sent, as list_connections' send_pend
            ),
            ("connection_channels", "gauge", "Channels on a connection", lambda c: c.channels),
        ],
        _connections,
        ["channel"],
        _pid,
    ),
    "channel_queue_exchange_metrics": _empty(
        [
            (
                "queue_messages_published_total",
                "counter",
                "Total number of messages published to queues",
            )
        ],
        ["channel", "queue_vhost", "queue", "exchange_vhost", "exchange"],
    ),
    "vhost_status": Group(
        [("vhost_status", "gauge", "Whether a given vhost is running", lambda v: 1)],
        lambda rows: rows.vhosts,
        ["vhost"],
        lambda v: [v],
        prefix="rabbitmq_cluster_",
    ),
    "exchange_bindings": Group(
        [
            (
                "exchange_bindings",
                "gauge",
                "Number of bindings for an exchange. This value is cluster-wide.",
                lambda x: x.bindings,
            )
        ],
        lambda rows: rows.exchanges,
        ["vhost", "exchange", "type"],
        lambda x: [x.vhost, x.name, x.type],
        prefix="rabbitmq_cluster_",
    ),
    "exchange_names": Group(
        [
            (
                "exchange_name",
                "gauge",
                "Enumerates exchanges without any additional info. This value is cluster-wide. "
                "A cheaper alternative to `exchange_bindings`",
                lambda x: 1,
            )
        ],
        lambda rows: rows.exchanges,
        ["vhost", "exchange", "type"],
        lambda x: [x.vhost, x.name, x.type],
        prefix="rabbitmq_cluster_",
    ),
}


class Request(NamedTuple):
    """What a /metrics/detailed request asks for."""

    groups: list[str]  # in RabbitMQ's order
    vhosts: set[str] | None  # None: every vhost

    @property
    def exchanges(self) -> bool:
        return "exchange_bindings" in self.groups or "exchange_names" in self.groups

    @property
    def queues(self) -> bool:
        return any(GROUPS[g].rows is _queues for g in self.groups)

    @property
    def channels(self) -> bool:
        return any(GROUPS[g].rows in (_channels, _connections) for g in self.groups)


def parse(families: Sequence[str], vhosts: Sequence[str], known_vhosts: Sequence[str]) -> Request:
    """The groups asked for (unknown names ignored; queue_consumer_count left out when
    queue_metrics, which has it, is asked for too) and the vhost filter (names of no vhost
    ignored)."""
    asked = set(families)
    groups = [name for name in GROUPS if name in asked]
    if "queue_metrics" in asked and "queue_consumer_count" in asked:
        groups.remove("queue_consumer_count")
    wanted = {v for v in vhosts if v in known_vhosts} if vhosts else None
    return Request(groups, wanted)


def families(request: Request, rows: Rows) -> Iterator[Metric]:
    """The families of the groups asked for, then the node's identity (worker thread)."""
    for name in request.groups:
        group = GROUPS[name]
        objects: Sequence[Any] = group.rows(rows)
        if group.by_vhost and request.vhosts is not None:
            objects = [q for q in objects if q.vhost in request.vhosts]
        for entry_name, kind, doc, value in group.entries:
            family = _family(group.prefix + entry_name, kind, doc, list(group.labels))
            if value is not None:
                for row in objects:
                    figure = value(row)
                    if figure is not None:
                        family.add_metric(list(group.label_values(row)), figure)
            yield family
    yield from identity()
