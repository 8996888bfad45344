"""trimqctl list_queues' message figures (messages_persistent, message_bytes and its ready,
unacknowledged, ram and persistent parts, the ram counts, head_message_timestamp,
consumer_utilisation) as rabbitmqctl 3.10 prints them for a queue with persistent and
transient, ready and unacked messages.

RabbitMQ reference: with TRIMQ_TEST_URL the same commands go to rabbitmqctl
(TRIMQ_TEST_RABBITMQCTL); against trimq to trimqctl on the session's server.
"""

from __future__ import annotations

from typing import Any

import pika
from admin_helpers import admin_tool
from conftest import Broker

ITEMS = [
    "name",
    "messages_persistent",
    "message_bytes",
    "message_bytes_ready",
    "message_bytes_unacknowledged",
    "messages_ram",
    "message_bytes_ram",
    "message_bytes_persistent",
    "head_message_timestamp",
    "messages_ready_ram",
    "messages_unacknowledged_ram",
    "consumer_utilisation",
]
# (body size, delivery mode, timestamp)
MESSAGES = [(10, 2, 1700000001), (20, 2, None), (40, 1, 1700000003), (80, 2, 1700000004)]


def _row(admin: Any, queue: str) -> list[str]:
    out = admin.ok("list_queues", "-s", *ITEMS)
    rows = [line.split("\t") for line in out if line.split("\t")[0] == queue]
    assert len(rows) == 1, out
    return rows[0]


def test_list_queues_figures(broker: Broker, unique: str) -> None:
    admin = admin_tool(broker)
    connection = broker.connect()
    empty = unique + ".empty"
    try:
        channel = connection.channel()
        channel.queue_declare(unique, durable=True)
        channel.queue_declare(empty)
        for size, mode, stamp in MESSAGES:
            properties = pika.BasicProperties(delivery_mode=mode, timestamp=stamp)
            channel.basic_publish("", unique, b"x" * size, properties)
        assert _row(admin, empty) == [empty, "0", "0", "0", "0", "0", "0", "0", "", "0", "0", "0"]
        ready = [unique, "3", "150", "150", "0", "4", "150", "110", "1700000001", "4", "0", "0"]
        assert _row(admin, unique) == ready
        channel.basic_qos(prefetch_count=2)
        channel.basic_consume(unique, lambda *a: None)
        connection.process_data_events(time_limit=0.5)
        row = _row(admin, unique)
        # the head timestamp: the oldest unacked message's (lower than the first ready one's)
        assert row[:11] == [
            unique,
            "3",
            "150",
            "120",
            "30",
            "4",
            "150",
            "110",
            "1700000001",
            "2",
            "2",
        ]
        assert 0 < float(row[11]) <= 1  # utilisation: a share of time
    finally:
        connection.channel().queue_delete(unique)
        connection.channel().queue_delete(empty)
        connection.close()
