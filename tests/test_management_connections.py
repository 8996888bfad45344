"""The management API's live side: connections (listed, one by name, closed by DELETE with
320 CONNECTION_FORCED and the X-Reason header's text), channels and consumers, all and per
vhost.

RabbitMQ reference: every expected answer was taken from RabbitMQ 3.10.8 and the file runs
against it (TRIMQ_TEST_URL and TRIMQ_TEST_MANAGEMENT_URL); RabbitMQ shows new connections
and channels within a few seconds, so the tests wait for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from conftest import Broker
from http_helpers import Api
from msg_helpers import connection_name, eventually

NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


@pytest.fixture
def client(broker: Broker) -> Iterator[pika.BlockingConnection]:
    connection = broker.connect()
    yield connection
    if connection.is_open:
        connection.close()


def _listed(api: Api, *path: str, name: str, key: str = "name") -> Any:
    rows = eventually(
        lambda: api.get(*path).json(), lambda rows: any(r.get(key) == name for r in rows)
    )
    return next(r for r in rows if r.get(key) == name)


def test_connection_is_listed_by_rabbitmq_name(
    api: Api, client: pika.BlockingConnection, broker: Broker
) -> None:
    name = connection_name(client)
    local, _, server = name.partition(" -> ")
    row = eventually(  # RabbitMQ adds state and the counters with its next statistics
        lambda: _listed(api, "connections", name=name), lambda r: "state" in r and "recv_oct" in r
    )
    assert {
        k: row[k]
        for k in (
            "name",
            "user",
            "vhost",
            "peer_host",
            "peer_port",
            "port",
            "protocol",
            "state",
            "type",
            "auth_mechanism",
            "ssl",
        )
    } == {
        "name": name,
        "user": "guest",
        "vhost": "/",
        "peer_host": "127.0.0.1",
        "peer_port": int(local.rpartition(":")[2]),
        "port": int(server.rpartition(":")[2]),
        "protocol": "AMQP 0-9-1",
        "state": "running",
        "type": "network",
        "auth_mechanism": "PLAIN",
        "ssl": False,
    }
    assert row["client_properties"]["product"] == "Pika Python Client Library"
    assert row["client_properties"]["capabilities"]["publisher_confirms"] is True
    assert isinstance(row["connected_at"], int) and isinstance(row["recv_oct"], int)
    assert api.get("connections", name).json()["name"] == name
    assert _listed(api, "vhosts", "/", "connections", name=name)["user"] == "guest"
    answer = api.get("connections", name + "x")
    assert answer.status_code == 404 and answer.json() == NOT_FOUND


def test_channels_and_consumers(api: Api, client: pika.BlockingConnection, unique: str) -> None:
    channel = client.channel()
    channel.basic_qos(prefetch_count=7)
    channel.queue_declare(unique, auto_delete=True)
    channel.basic_consume(unique, lambda *a: None, consumer_tag="ctag-" + unique)
    name = f"{connection_name(client)} (1)"
    row = eventually(
        lambda: _listed(api, "channels", name=name),
        lambda r: r.get("consumer_count") == 1,
    )
    assert {
        k: row[k]
        for k in (
            "name",
            "number",
            "user",
            "vhost",
            "consumer_count",
            "prefetch_count",
            "global_prefetch_count",
            "confirm",
            "transactional",
            "messages_unacknowledged",
            "state",
        )
    } == {
        "name": name,
        "number": 1,
        "user": "guest",
        "vhost": "/",
        "consumer_count": 1,
        "prefetch_count": 7,
        "global_prefetch_count": 0,
        "confirm": False,
        "transactional": False,
        "messages_unacknowledged": 0,
        "state": "running",
    }
    assert row["connection_details"]["name"] == connection_name(client)
    one = api.get("channels", name).json()
    assert [c["consumer_tag"] for c in one["consumer_details"]] == ["ctag-" + unique]
    assert [
        c["name"] for c in api.get("connections", connection_name(client), "channels").json()
    ] == [name]
    assert _listed(api, "vhosts", "/", "channels", name=name)["number"] == 1

    consumer = _listed(api, "consumers", "/", name="ctag-" + unique, key="consumer_tag")
    assert {
        k: consumer[k]
        for k in (
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "exclusive",
            "active",
            "activity_status",
            "arguments",
            "queue",
        )
    } == {
        "consumer_tag": "ctag-" + unique,
        "ack_required": True,
        "prefetch_count": 7,
        "exclusive": False,
        "active": True,
        "activity_status": "up",
        "arguments": {},
        "queue": {"name": unique, "vhost": "/"},
    }
    assert consumer["channel_details"]["name"] == name
    assert consumer["channel_details"]["connection_name"] == connection_name(client)
    assert _listed(api, "consumers", name="ctag-" + unique, key="consumer_tag") == consumer
    assert api.get("channels", name + "x").json() == NOT_FOUND
    assert api.get("consumers", "no-such-vhost").status_code == 404


def _closed_by_delete(api: Api, client: pika.BlockingConnection, **headers: str) -> Any:
    name = connection_name(client)
    _listed(api, "connections", name=name)
    answer = api.delete("connections", name, headers=headers)
    assert answer.status_code == 204 and answer.text == ""
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(50):
            client.process_data_events(0.2)
    return closed.value


def test_delete_closes_with_the_reason(api: Api, client: pika.BlockingConnection) -> None:
    closed = _closed_by_delete(api, client, **{"X-Reason": "go away now"})
    assert (closed.reply_code, closed.reply_text) == (320, "CONNECTION_FORCED - go away now")


def test_delete_without_reason(api: Api, broker: Broker) -> None:
    client = broker.connect()
    closed = _closed_by_delete(api, client)
    assert (closed.reply_code, closed.reply_text) == (
        320,
        "CONNECTION_FORCED - Closed via management plugin",
    )
    answer = api.delete("connections", "127.0.0.1:1 -> 127.0.0.1:2")
    assert answer.status_code == 404 and answer.json() == NOT_FOUND


IDLE_SINCE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def test_idle_since_on_channels_only(api: Api, client: pika.BlockingConnection) -> None:
    """RabbitMQ 3.10 adds idle_since (2026-12-03T19:12:08.555+00:00) to a channel that was
    idle for a moment (its process hibernated; the reference node's 0.5 s channel tick keeps
    its channels from it) and never to a connection."""
    client.channel()
    name = connection_name(client)
    row = eventually(
        lambda: _listed(api, "channels", name=f"{name} (1)"), lambda r: "idle_since" in r, 3
    )
    if "idle_since" in row:
        assert IDLE_SINCE.fullmatch(row["idle_since"]), row["idle_since"]
    connection = eventually(
        lambda: _listed(api, "connections", name=name), lambda r: "recv_oct" in r
    )
    assert "recv_oct" in connection and "idle_since" not in connection
