"""rabbitmqctl's info items: one row per queue, exchange, binding, connection, channel, consumer
or vhost, with JSON-friendly values (tables as lists of [key, value] pairs).

Counts that involve unacked messages are computed from the channels' unacked maps when asked,
so the delivery path carries no bookkeeping for them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from trimq.amqp.codec import TypedTable, typed_to_plain
from trimq.amqp.state import ChannelMode
from trimq.broker.exchange import Exchange
from trimq.broker.queue import Queue
from trimq.broker.vhost import VHost
from trimq.server.connection import Pause
from trimq.server.tls_peer import info_fields

if TYPE_CHECKING:
    from trimq.server.channel import Channel
    from trimq.server.connection import ServerConnection
    from trimq.server.state import ServerState

NODE = f"trimq@{socket.gethostname().split('.')[0]}"


def jsonable(value: Any) -> Any:
    """A plain decoded field value as JSON can carry it."""
    if isinstance(value, dict):
        return [[k, jsonable(v)] for k, v in value.items()]
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (datetime, Decimal)):
        return str(value)
    return value


def table(typed: TypedTable) -> list[list[Any]]:
    """A typed-decoded arguments table as [[key, value], ...]."""
    return [[k, jsonable(typed_to_plain(v))] for k, v in typed.items()]


def connection_pid(connection: ServerConnection) -> str:
    return f"<{NODE}.1.{connection.number}.0>"


def channel_pid(channel: Channel) -> str:
    return f"<{NODE}.1.{channel.connection.number}.{channel.number}>"


def queue_pid(queue: Queue) -> str:
    return f"<{NODE}.2.{id(queue) % 100000}.0>"


def _open_channels(state: ServerState) -> Iterable[Channel]:
    for connection in state.connections:
        yield from connection.channels.values()


def _unacked_by_queue(state: ServerState) -> dict[int, list[Any]]:
    held: dict[int, list[Any]] = {}
    for channel in _open_channels(state):
        for entry, queue, _consumer in channel.unacked.values():
            held.setdefault(id(queue), []).append(entry)
        for taken, _requeue in channel.tx_acks:
            for entry, queue, _consumer in taken.values():
                held.setdefault(id(queue), []).append(entry)
    return held


def queue_memory(queue: Queue, unacked_bytes: int, unacked: int) -> int:
    """An estimate of the memory a queue holds: bodies in memory, about 200 bytes of
    bookkeeping per message in memory, 16 per message paged out."""
    ready = queue.ready
    in_ram = len(ready) - ready.paged_count + unacked
    return 1024 + ready.ram_bytes + unacked_bytes + 200 * in_ram + 16 * ready.paged_count


def queue_rows(state: ServerState, vhost: VHost) -> list[dict[str, Any]]:
    unacked_by_queue = _unacked_by_queue(state)
    rows = []
    for queue in vhost.queues.values():
        ready = queue.ready
        ready_count = len(ready)
        unacked = unacked_by_queue.get(id(queue), [])
        ready_bytes = ready.bytes
        unacked_bytes = sum(e.message.size for e in unacked)
        persistent, persistent_bytes = ready.persistent()
        persistent_unacked = [e for e in unacked if e.message.persistent]
        persistent += len(persistent_unacked)
        persistent_bytes += sum(e.message.size for e in persistent_unacked)
        exclusive_consumer = next((c for c in queue.consumers if c.exclusive), None)
        owner = queue.exclusive_owner
        first = ready.peek()
        head = first.message.properties.timestamp if first is not None else None
        ram_count = ready_count - ready.paged_count
        rows.append(
            {
                "name": queue.name,
                "durable": queue.durable,
                "auto_delete": queue.auto_delete,
                "arguments": table(queue.arguments),
                "policy": queue.policy.name if queue.policy else "",
                "pid": queue_pid(queue),
                "owner_pid": connection_pid(owner) if owner is not None else "",  # type: ignore[arg-type]
                "exclusive": queue.exclusive,
                "exclusive_consumer_pid": (
                    channel_pid(exclusive_consumer.sink)  # type: ignore[arg-type]
                    if exclusive_consumer
                    else ""
                ),
                "exclusive_consumer_tag": exclusive_consumer.tag if exclusive_consumer else "",
                "messages_ready": ready_count,
                "messages_unacknowledged": len(unacked),
                "messages": ready_count + len(unacked),
                "messages_ready_ram": ram_count,
                "messages_unacknowledged_ram": len(unacked),
                "messages_ram": ram_count + len(unacked),
                "messages_persistent": persistent,
                "message_bytes": ready_bytes + unacked_bytes,
                "message_bytes_ready": ready_bytes,
                "message_bytes_unacknowledged": unacked_bytes,
                "message_bytes_ram": ready.ram_bytes + unacked_bytes,
                "message_bytes_persistent": persistent_bytes,
                "messages_paged_out": ready.paged_count,
                "message_bytes_paged_out": ready.paged_bytes,
                "head_message_timestamp": head if head is not None else "",
                "disk_reads": 0,
                "disk_writes": persistent if queue.journal is not None else 0,
                "consumers": len(queue.consumers),
                "consumer_utilisation": "",
                "consumer_capacity": 1.0 if queue.consumers else 0,
                "memory": queue_memory(queue, unacked_bytes, len(unacked)),
                "state": "running",
                "type": "classic",
            }
        )
    return rows


def exchange_rows(vhost: VHost) -> list[dict[str, Any]]:
    return [
        {
            "name": exchange.name,
            "type": exchange.TYPE,
            "durable": exchange.durable,
            "auto_delete": exchange.auto_delete,
            "internal": exchange.internal,
            "arguments": table(exchange.arguments),
            "policy": exchange.policy.name if exchange.policy else "",
        }
        for exchange in vhost.exchanges.values()
    ]


def binding_rows(vhost: VHost) -> list[dict[str, Any]]:
    """The default exchange's implicit bindings first (as RabbitMQ lists them), then the rest."""
    rows = [
        {
            "source_name": "",
            "source_kind": "exchange",
            "destination_name": queue.name,
            "destination_kind": "queue",
            "routing_key": queue.name,
            "arguments": [],
        }
        for queue in vhost.queues.values()
    ]
    explicit = []
    for exchange in vhost.exchanges.values():
        for binding in exchange.bindings.values():
            dest = binding.destination
            explicit.append(
                {
                    "source_name": exchange.name,
                    "source_kind": "exchange",
                    "destination_name": dest.name,
                    "destination_kind": "exchange" if isinstance(dest, Exchange) else "queue",
                    "routing_key": binding.routing_key,
                    "arguments": table(binding.arguments),
                }
            )
    explicit.sort(
        key=lambda r: (
            r["source_name"],
            r["destination_kind"],
            r["destination_name"],
            r["routing_key"],
        )
    )
    return rows + explicit


def connection_state(connection: ServerConnection, state: ServerState) -> str:
    """RabbitMQ's words: under an alarm a publisher is "blocked", any other "blocking"; one
    not read until its output is sent is in "flow"."""
    if connection.closing:
        return "closing"
    if connection.pause is Pause.BLOCKED:
        return "blocked"
    if connection.pause is Pause.FLOW:
        return "flow"
    return "blocking" if state.resources.alarms else "running"


def connection_rows(state: ServerState) -> list[dict[str, Any]]:
    rows = []
    for connection in sorted(state.connections, key=lambda c: c.number):
        if not connection.opened:
            continue
        rows.append(
            {
                "pid": connection_pid(connection),
                "name": connection.name,
                "port": connection.local[1],
                "host": connection.local[0],
                "peer_port": connection.peer[1],
                "peer_host": connection.peer[0],
                **info_fields(connection.tls, ""),
                "state": connection_state(connection, state),
                "channels": len(connection.channels),
                "protocol": [0, 9, 1],
                "auth_mechanism": connection.auth_mechanism,
                "user": connection.username,
                "vhost": connection.vhost.name,
                "timeout": connection.heartbeat,
                "frame_max": connection.frame_max,
                "channel_max": connection.channel_max,
                "client_properties": jsonable(connection.client_properties),
                "recv_oct": connection.stats.recv_oct,
                "recv_cnt": connection.stats.recv_cnt,
                "send_oct": connection.stats.send_oct,
                "send_cnt": connection.stats.send_cnt,
                "send_pend": len(connection.out),
                "connected_at": int(connection.connected_at * 1000),
            }
        )
    return rows


def channel_rows(state: ServerState) -> list[dict[str, Any]]:
    rows = []
    for connection in sorted(state.connections, key=lambda c: c.number):
        if not connection.opened:
            continue
        for number, channel in sorted(connection.channels.items()):
            rows.append(
                {
                    "pid": channel_pid(channel),
                    "connection": connection_pid(connection),
                    "name": f"{connection.name} ({number})",
                    "number": number,
                    "user": connection.username,
                    "vhost": connection.vhost.name,
                    "transactional": channel.proto.mode is ChannelMode.TX,
                    "confirm": channel.proto.mode is ChannelMode.CONFIRM,
                    "consumer_count": len(channel.consumers),
                    "messages_unacknowledged": len(channel.unacked),
                    "messages_uncommitted": len(channel.tx_ops),
                    "acks_uncommitted": sum(len(t) for t, _ in channel.tx_acks),
                    "messages_unconfirmed": channel.confirm_seq - channel.confirmed_upto,
                    "prefetch_count": channel.prefetch_consumer,
                    "global_prefetch_count": channel.prefetch_channel,
                }
            )
    return rows


def consumer_rows(state: ServerState, vhost: VHost) -> list[dict[str, Any]]:
    rows = []
    for channel in _open_channels(state):
        if channel.vhost is not vhost:
            continue
        for consumer in channel.consumers.values():
            rows.append(
                {
                    "queue_name": consumer.queue.name,
                    "channel_pid": channel_pid(channel),
                    "consumer_tag": consumer.tag,
                    "ack_required": not consumer.no_ack,
                    "prefetch_count": consumer.prefetch,
                    "active": True,
                    "activity_status": "up",
                    "arguments": table(consumer.arguments),
                }
            )
    return rows


def vhost_rows(state: ServerState) -> list[dict[str, Any]]:
    return [
        {
            "name": vhost.name,
            "description": vhost.description,
            "tags": vhost.tags,
            "default_queue_type": "classic",
            "tracing": False,
            "cluster_state": [[NODE, "running"]],
        }
        for vhost in sorted(state.broker.vhosts.values(), key=lambda v: v.name)
    ]


def select(rows: list[dict[str, Any]], items: list[str]) -> list[dict[str, Any]]:
    return [{item: row[item] for item in items} for row in rows]
