"""Real clients of the management API on the messaging side: pyrabbit2 (queues, exchanges,
bindings, publish and get, connections) and Celery Flower's broker tab
(`flower.utils.broker.RabbitMQ.queues`), which asks for `/api/queues//` when the broker URL
names the default vhost as Celery's does (`amqp://host//`).

RabbitMQ reference: the pyrabbit2 test runs against RabbitMQ 3.10.8 too (TRIMQ_TEST_URL and
TRIMQ_TEST_MANAGEMENT_URL). RabbitMQ answers `/api/queues//` with 404, so Flower's test is
trimq's own and skipped there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pyrabbit2
import pytest
from conftest import Broker
from flower.utils.broker import RabbitMQ
from msg_helpers import connection_name, eventually


@pytest.fixture
def client(management_url: str) -> pyrabbit2.Client:
    return pyrabbit2.Client(urlparse(management_url).netloc, "guest", "guest")


@pytest.fixture
def names(client: pyrabbit2.Client, unique: str) -> Iterator[tuple[str, str]]:
    queue, exchange = unique + ".q", unique + ".x"
    yield queue, exchange
    for call, name in ((client.delete_queue, queue), (client.delete_exchange, exchange)):
        with contextlib.suppress(pyrabbit2.http.HTTPError):
            call("/", name)


def test_pyrabbit2_queues_exchanges_bindings_publish_get(
    client: pyrabbit2.Client, names: tuple[str, str]
) -> None:
    queue, exchange = names
    assert client.create_queue("/", queue, durable=False) == 201
    assert client.create_exchange("/", exchange, "topic", durable=False) is True
    assert client.get_exchange("/", exchange)["type"] == "topic"
    assert client.create_binding("/", exchange, queue, "orders.*") == 201
    bindings = client.get_queue_bindings("/", queue)
    assert [(b["source"], b["routing_key"]) for b in bindings] == [
        ("", queue),
        (exchange, "orders.*"),
    ]
    assert client.publish("/", exchange, "orders.new", "first") is True
    assert client.publish("/", exchange, "nothing.here", "lost") is False
    assert client.publish("/", exchange, "orders.old", "c2Vjb25k", payload_enc="base64") is True
    depth = eventually(lambda: client.get_queue("/", queue).get("messages"), lambda n: n == 2)
    assert depth == 2 and client.get_queue_depth("/", queue) == 2
    kept = client.get_messages("/", queue, count=5, requeue=True)
    assert [(m["payload"], m["routing_key"], m["redelivered"]) for m in kept] == [
        ("first", "orders.new", False),
        ("second", "orders.old", False),
    ]
    taken = client.get_messages("/", queue, count=1)
    assert [(m["payload"], m["redelivered"]) for m in taken] == [("first", True)]
    assert [q["name"] for q in client.get_queues("/") if q["name"] == queue] == [queue]
    assert client.delete_binding("/", exchange, queue, "orders.*") == 204
    assert [b["source"] for b in client.get_queue_bindings("/", queue)] == [""]
    assert client.purge_queue("/", queue) == 204
    assert client.get_messages("/", queue, count=1) == []
    assert client.delete_exchange("/", exchange) is True
    assert client.delete_queue("/", queue) == 204
    with pytest.raises(pyrabbit2.http.HTTPError) as missing:
        client.get_queue("/", queue)
    assert missing.value.status == 404


def test_pyrabbit2_connections(client: pyrabbit2.Client, broker: Broker) -> None:
    connection = broker.connect()
    try:
        name = connection_name(connection)
        listed = eventually(
            lambda: [c["name"] for c in client.get_connections()], lambda n: name in n
        )
        assert name in listed
        assert client.get_connection(name)["user"] == "guest"
        assert client.delete_connection(name) is True
    finally:
        if connection.is_open:
            with contextlib.suppress(Exception):  # closed by the broker meanwhile
                connection.close()


@pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: RabbitMQ 3.10.8 answers /api/queues// with 404",
)
def test_flower_broker_tab_on_the_celery_url(
    management_url: str, broker: Broker, channel: Any, unique: str
) -> None:
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"task")
    celery_url = f"amqp://guest:guest@{broker.host}:{broker.port}//"
    flower = RabbitMQ(celery_url, f"{management_url}/api/")
    assert flower.vhost == "/"
    queues = asyncio.run(flower.queues([unique, "not-there"]))
    assert len(queues) == 1
    row = queues[0]
    assert {
        k: row[k]
        for k in ("name", "messages", "messages_ready", "messages_unacknowledged", "consumers")
    } == {
        "name": unique,
        "messages": 1,
        "messages_ready": 1,
        "messages_unacknowledged": 0,
        "consumers": 0,
    }
    assert row["idle_since"].endswith("+00:00")
    channel.queue_delete(unique)
