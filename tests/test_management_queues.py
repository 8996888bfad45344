"""The management API's queues: declare (201/204 and RabbitMQ's refusals), read, list with
columns and pagination, delete with if-empty/if-unused, purge, and get with each ackmode.

RabbitMQ reference: every expected answer was taken from RabbitMQ 3.10.8 and the file runs
against it (TRIMQ_TEST_URL and TRIMQ_TEST_MANAGEMENT_URL).
"""

from __future__ import annotations

from typing import Any

import pika
import pytest
from http_helpers import Api
from msg_helpers import eventually

NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
ACCESS_REFUSED = {"error": "not_authorised", "reason": "Access refused."}


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


@pytest.fixture
def queue(api: Api, unique: str) -> Any:
    yield unique
    api.delete("queues", "/", unique)


def test_put_creates_then_updates(api: Api, queue: str) -> None:
    answer = api.put(
        "queues", "/", queue, json={"durable": True, "arguments": {"x-max-length": 10}}
    )
    assert answer.status_code == 201 and answer.text == ""
    again = api.put("queues", "/", queue, json={"durable": True, "arguments": {"x-max-length": 10}})
    assert again.status_code == 204
    shown = api.get("queues", "/", queue).json()
    assert {k: shown[k] for k in ("name", "vhost", "durable", "auto_delete", "exclusive")} == {
        "name": queue,
        "vhost": "/",
        "durable": True,
        "auto_delete": False,
        "exclusive": False,
    }
    assert shown["arguments"] == {"x-max-length": 10} and shown["type"] == "classic"


def test_put_defaults_and_string_booleans(api: Api, queue: str) -> None:
    assert api.put("queues", "/", queue, json={}).status_code == 201
    assert api.get("queues", "/", queue).json()["durable"] is False
    other = queue + ".s"
    try:
        answer = api.put("queues", "/", other, json={"durable": "true", "auto_delete": "false"})
        assert answer.status_code == 201
        assert api.get("queues", "/", other).json()["durable"] is True
    finally:
        api.delete("queues", "/", other)


def test_put_refusals(api: Api, queue: str) -> None:
    api.put("queues", "/", queue, json={"durable": True})
    answer = api.put("queues", "/", queue, json={"durable": False})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "bad_request",
        "reason": f"inequivalent arg 'durable' for queue '{queue}' in vhost '/': "
        "received 'false' but current is 'true'",
    }
    answer = api.put("queues", "/", queue + ".bad", json={"arguments": {"x-max-length": "abc"}})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "bad_request",
        "reason": f"invalid arg 'x-max-length' for queue '{queue}.bad' in vhost '/': "
        '"expected integer, got longstr"',
    }
    answer = api.put("queues", "/", "amq." + queue, json={})
    assert answer.status_code == 401 and answer.json() == ACCESS_REFUSED
    answer = api.put("queues", "no-such-vhost", queue, json={})
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "reason": "vhost_not_found"}
    answer = api.put(
        "queues", "/", queue, data="notjson", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400 and answer.json() == {
        "error": "bad_request",
        "reason": "not_json",
    }


def test_missing_queue_is_404(api: Api, unique: str) -> None:
    for method in ("GET", "DELETE"):
        answer = api.request(method, "queues", "/", unique)
        assert answer.status_code == 404 and answer.json() == NOT_FOUND
    answer = api.delete("queues", "/", unique, "contents")
    assert answer.status_code == 404 and answer.json() == NOT_FOUND
    assert api.get("queues", "no-such-vhost").status_code == 404


def test_counts_follow_the_queue(api: Api, channel: Any, queue: str) -> None:
    channel.queue_declare(queue)
    for i in range(3):
        channel.basic_publish("", queue, f"m{i}".encode())
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue, lambda *a: None, consumer_tag="counted")
    wanted = {"messages": 3, "messages_ready": 2, "messages_unacknowledged": 1, "consumers": 1}

    def read() -> dict[str, Any]:
        shown = api.get("queues", "/", queue).json()
        return {k: shown.get(k) for k in (*wanted, "state", "message_bytes_unacknowledged")}

    shown = eventually(read, lambda s: all(s[k] == v for k, v in wanted.items()))
    assert shown == {**wanted, "state": "running", "message_bytes_unacknowledged": 2}
    details = eventually(  # RabbitMQ may show the consumer a moment after the counts
        lambda: api.get("queues", "/", queue).json()["consumer_details"], lambda d: len(d) == 1
    )
    assert [(d["consumer_tag"], d["ack_required"], d["prefetch_count"]) for d in details] == [
        ("counted", True, 1)
    ]
    assert details[0]["queue"] == {"name": queue, "vhost": "/"}


def test_delete_if_unused(api: Api, channel: Any, queue: str) -> None:
    channel.queue_declare(queue)
    channel.basic_consume(queue, lambda *a: None)
    answer = api.delete("queues", "/", queue, params={"if-unused": "true"})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "bad_request",
        "reason": f"queue '{queue}' in vhost '/' in use",
    }
    answer = api.delete("queues", "/", queue)
    assert answer.status_code == 204 and answer.text == ""
    assert api.get("queues", "/", queue).status_code == 404


def test_delete_if_empty_refuses_ready_messages(api: Api, channel: Any, queue: str) -> None:
    channel.queue_declare(queue)
    channel.basic_publish("", queue, b"x")
    answer = api.delete("queues", "/", queue, params={"if-empty": "true"})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "bad_request",
        "reason": f"queue '{queue}' in vhost '/' not empty",
    }
    assert api.delete("queues", "/", queue, "contents").status_code == 204
    assert channel.basic_get(queue) == (None, None, None)
    assert api.delete("queues", "/", queue, params={"if-empty": "true"}).status_code == 204


def _publish_two(channel: Any, queue: str) -> None:
    channel.queue_declare(queue)
    properties = pika.BasicProperties(
        message_id="m1",
        correlation_id="c1",
        headers={"a": 1, "b": "x", "c": [1, "y"]},
        content_type="text/plain",
        delivery_mode=2,
        priority=3,
        timestamp=1700000000,
        expiration="600000",
    )
    channel.basic_publish("", queue, "héllo".encode(), properties)
    channel.basic_publish("", queue, b"\xff\x00bin")


def _get(api: Api, queue: str, **body: Any) -> Any:
    return api.post("queues", "/", queue, "get", json=body)


def test_get_and_requeue(api: Api, channel: Any, queue: str) -> None:
    _publish_two(channel, queue)
    answer = _get(api, queue, count=5, ackmode="ack_requeue_true", encoding="auto", truncate=50000)
    assert answer.status_code == 200
    assert answer.json() == [
        {
            "payload_bytes": 6,
            "redelivered": False,
            "exchange": "",
            "routing_key": queue,
            "message_count": 1,
            "properties": {
                "timestamp": 1700000000,
                "message_id": "m1",
                "expiration": "600000",
                "correlation_id": "c1",
                "priority": 3,
                "delivery_mode": 2,
                "headers": {"a": 1, "b": "x", "c": [1, "y"]},
                "content_type": "text/plain",
            },
            "payload": "héllo",
            "payload_encoding": "string",
        },
        {
            "payload_bytes": 5,
            "redelivered": False,
            "exchange": "",
            "routing_key": queue,
            "message_count": 0,
            "properties": [],
            "payload": "/wBiaW4=",
            "payload_encoding": "base64",
        },
    ]
    again = _get(api, queue, count="1", ackmode="reject_requeue_true", encoding="base64").json()
    assert [(m["redelivered"], m["payload"], m["message_count"]) for m in again] == [
        (True, "aMOpbGxv", 1)
    ]
    cut = _get(api, queue, count=1, ackmode="ack_requeue_true", encoding="auto", truncate=3)
    assert cut.json()[0]["payload"] == "hé" and cut.json()[0]["payload_bytes"] == 6
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert body == "héllo".encode() and method.redelivered


def test_get_without_requeue_takes_messages(api: Api, channel: Any, queue: str) -> None:
    dead = queue + ".dead"
    channel.queue_declare(dead)
    try:
        channel.queue_declare(
            queue, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
        )
        channel.basic_publish("", queue, b"one")
        channel.basic_publish("", queue, b"two")
        taken = _get(api, queue, count=1, ackmode="ack_requeue_false", encoding="auto").json()
        assert [m["payload"] for m in taken] == ["one"]
        rejected = _get(api, queue, count=1, ackmode="reject_requeue_false", encoding="auto")
        assert [m["payload"] for m in rejected.json()] == ["two"]
        assert channel.basic_get(queue) == (None, None, None)
        _method, properties, body = channel.basic_get(dead, auto_ack=True)
        assert body == b"two"
        assert properties.headers["x-death"][0]["reason"] == "rejected"
        assert _get(api, queue, count=3, ackmode="ack_requeue_false", encoding="auto").json() == []
    finally:
        api.delete("queues", "/", dead)


def test_get_refusals(api: Api, channel: Any, queue: str) -> None:
    channel.queue_declare(queue)
    answer = _get(api, queue, count="x", ackmode="ack_requeue_true", encoding="auto")
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad_request", "reason": ["not_integer", "x"]}
    answer = _get(api, queue, count=1, ackmode="ack_requeue_true", encoding="auto", truncate="x")
    assert answer.json() == {"error": "bad_request", "reason": ["not_integer", "x"]}
    for missing in ("count", "ackmode", "encoding"):
        body = {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}
        del body[missing]
        answer = _get(api, queue, **body)
        assert answer.status_code == 400
        assert answer.json() == {"error": "bad_request", "reason": f"[{{key_missing,{missing}}}]"}
    answer = _get(api, queue, count=1, ackmode="ack_requeue_true", encoding="bad")
    assert answer.json() == {
        "error": "bad_request",
        "reason": "Unsupported encoding. Please use auto or base64.",
    }
    answer = _get(api, queue + ".none", count=1, ackmode="ack_requeue_true", encoding="auto")
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "not_found",
        "reason": f"NOT_FOUND - no queue '{queue}.none' in vhost '/'",
    }


@pytest.fixture
def three_queues(api: Api, unique: str) -> Any:
    names = [f"{unique}.{i}" for i in (2, 0, 1)]
    for name in names:
        assert api.put("queues", "/", name, json={}).status_code == 201
    yield sorted(names)
    for name in names:
        api.delete("queues", "/", name)


def test_lists_columns_and_pagination(api: Api, three_queues: list[str], unique: str) -> None:
    def mine() -> list[dict[str, Any]]:
        rows = api.get("queues", "/", params={"columns": "name,messages"}).json()
        return [row for row in rows if row["name"] in three_queues]

    wanted = [{"messages": 0, "name": name} for name in three_queues]
    assert eventually(mine, lambda rows: rows == wanted) == wanted
    everywhere = [row["name"] for row in api.get("queues").json()]
    assert [name for name in everywhere if name in three_queues] == three_queues
    page = api.get("queues", "/", params={"page": "1", "page_size": "2", "name": unique}).json()
    assert {k: v for k, v in page.items() if k not in {"items", "total_count"}} == {
        "filtered_count": 3,
        "item_count": 2,
        "page": 1,
        "page_count": 2,
        "page_size": 2,
    }
    assert [row["name"] for row in page["items"]] == three_queues[:2]
    second = api.get("queues", params={"page": "2", "page_size": "2", "name": unique}).json()
    assert [row["name"] for row in second["items"]] == three_queues[2:]
    reverse = api.get(
        "queues", "/", params={"sort": "name", "sort_reverse": "true", "columns": "name"}
    ).json()
    names = [row["name"] for row in reverse if row["name"] in three_queues]
    assert names == three_queues[::-1]
