"""trimq's own endpoints beyond RabbitMQ's API: peek (GET /api/queues/{vhost}/{name}/messages,
ready or unacked) and find (GET /api/vhosts/{vhost}/find), and a queue list that stays a
page's work with 10,000 queues.

trimq-only: RabbitMQ has neither endpoint; the tests drive their own trimq-server.
"""

from __future__ import annotations

import os
from typing import Any

import pika
import pytest
from conftest import Broker
from ctl_helpers import control
from http_helpers import Api

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: peek and find are trimq's own"
)


@pytest.fixture
def api(node: Broker) -> Api:
    assert node.management_port is not None
    return Api(f"http://{node.host}:{node.management_port}")


def test_peek_ready_and_unacked(api: Api, node: Broker) -> None:
    connection = node.connect()
    channel = connection.channel()
    channel.queue_declare("jobs")
    for i in range(5):
        channel.basic_publish(
            "", "jobs", f"job {i}".encode(), pika.BasicProperties(message_id=f"j{i}")
        )
    answer = api.get("queues", "/", "jobs", "messages", params={"offset": "1", "count": "2"})
    assert answer.status_code == 200
    assert answer.json() == [
        {
            "position": position,
            "state": "ready",
            "payload_bytes": 5,
            "redelivered": False,
            "exchange": "",
            "routing_key": "jobs",
            "properties": {"message_id": f"j{position}"},
            "payload": f"job {position}",
            "payload_encoding": "string",
        }
        for position in (1, 2)
    ]
    cut = api.get(
        "queues",
        "/",
        "jobs",
        "messages",
        params={"count": "1", "truncate": "3", "encoding": "base64"},
    )
    assert [(m["payload"], m["payload_encoding"]) for m in cut.json()] == [("am9i", "base64")]
    assert len(api.get("queues", "/", "jobs", "messages").json()) == 5  # 100 by default

    channel.basic_qos(prefetch_count=2)
    channel.basic_consume("jobs", lambda *a: None, consumer_tag="worker")
    connection.process_data_events(0.2)
    held = api.get("queues", "/", "jobs", "messages", params={"state": "unacked"}).json()
    assert [(m["payload"], m["state"], m["consumer_tag"], m["delivery_tag"]) for m in held] == [
        ("job 0", "unacked", "worker", 1),
        ("job 1", "unacked", "worker", 2),
    ]
    shown = api.get("queues", "/", "jobs").json()
    assert held[0]["channel"] == api.get("channels").json()[0]["name"]
    assert (shown["messages_ready"], shown["messages_unacknowledged"]) == (3, 2)
    ready = api.get("queues", "/", "jobs", "messages").json()
    assert [m["payload"] for m in ready] == ["job 2", "job 3", "job 4"]
    assert not any(m["redelivered"] for m in ready)
    connection.close()


def test_peek_refusals(api: Api, node: Broker) -> None:
    connection = node.connect()
    connection.channel().queue_declare("q")
    for params in ({"count": "0"}, {"offset": "-1"}, {"count": "x"}, {"state": "gone"}):
        answer = api.get("queues", "/", "q", "messages", params=params)
        assert answer.status_code == 400, params
        assert answer.json()["error"] == "bad_request"
    assert api.get("queues", "/", "nosuch", "messages").status_code == 404
    assert api.get("vhosts", "/", "find").status_code == 400
    assert api.get("vhosts", "nosuch", "find", params={"message_id": "x"}).status_code == 404
    connection.close()


def test_find_by_message_id_and_correlation_id(api: Api, node: Broker) -> None:
    connection = node.connect()
    channel = connection.channel()
    channel.queue_declare("dead")
    channel.queue_declare(
        "a", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
    )
    channel.queue_declare("b")
    channel.basic_publish("", "b", b"before")
    channel.basic_publish("", "b", b"order", pika.BasicProperties(message_id="order-1"))
    channel.basic_publish("", "a", b"order", pika.BasicProperties(message_id="order-1"))
    method, _, _ = channel.basic_get("a")
    channel.basic_reject(method.delivery_tag, requeue=False)
    channel.basic_publish("", "a", b"rpc", pika.BasicProperties(correlation_id="c-9"))
    holder = connection.channel()
    assert holder.basic_get("a")[2] == b"rpc"

    found = api.get("vhosts", "/", "find", params={"message_id": "order-1"}).json()
    assert [(f["queue"], f["state"], f["position"]) for f in found] == [
        ("b", "ready", 1),
        ("dead", "ready", 0),
    ]
    deaths = found[1]["x_death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [("a", "rejected", 1)]
    found = api.get("vhosts", "/", "find", params={"correlation_id": "c-9"}).json()
    assert [(f["queue"], f["state"], f["consumer_tag"], f["delivery_tag"]) for f in found] == [
        ("a", "unacked", None, 1)
    ]
    assert found[0]["channel"].endswith(" (2)")
    assert api.get("vhosts", "/", "find", params={"message_id": "none"}).json() == []
    connection.close()


def test_queue_list_pages_over_ten_thousand_queues(api: Api, node: Broker) -> None:
    queues: list[dict[str, Any]] = [
        {"name": f"q{i:05d}", "vhost": "/", "durable": False, "auto_delete": False, "arguments": {}}
        for i in range(10_000)
    ]
    control(node, "import_definitions", definitions={"queues": queues})
    page = api.get("queues", params={"page": "1", "page_size": "100"}).json()
    assert (
        page["total_count"],
        page["filtered_count"],
        page["item_count"],
        page["page_count"],
    ) == (
        10_000,
        10_000,
        100,
        100,
    )
    assert [row["name"] for row in page["items"]] == [f"q{i:05d}" for i in range(100)]
    last = api.get(
        "queues", "/", params={"page": "100", "page_size": "100", "columns": "name"}
    ).json()
    assert last["items"][-1] == {"name": "q09999"}
    by_name = api.get(
        "queues", "/", params={"page": "1", "page_size": "10", "name": "q0999"}
    ).json()
    assert [row["name"] for row in by_name["items"]] == [f"q0999{i}" for i in range(10)]
    reverse = api.get(
        "queues",
        "/",
        params={"page": "1", "page_size": "3", "sort": "name", "sort_reverse": "true"},
    ).json()
    assert [row["name"] for row in reverse["items"]] == ["q09999", "q09998", "q09997"]
