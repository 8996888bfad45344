"""The management API's exchanges and bindings: declare (201/204 and RabbitMQ's refusals),
the default exchange as amq.default, delete with if-unused, publish ({"routed": bool} and the
refusals), and bindings with their properties_key and Location (queue and exchange
destinations).

RabbitMQ reference: every expected answer was taken from RabbitMQ 3.10.8 and the file runs
against it (TRIMQ_TEST_URL and TRIMQ_TEST_MANAGEMENT_URL).
"""

from __future__ import annotations

from typing import Any

import pika
import pytest
from http_helpers import Api, temp_user
from msg_helpers import eventually

NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
ACCESS_REFUSED = {"error": "not_authorised", "reason": "Access refused."}


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


@pytest.fixture
def exchange(api: Api, unique: str) -> Any:
    name = unique + ".x"
    yield name
    api.delete("exchanges", "/", name)


@pytest.fixture
def queue(api: Api, unique: str) -> Any:
    name = unique + ".q"
    assert api.put("queues", "/", name, json={}).status_code == 201
    yield name
    api.delete("queues", "/", name)


def _bad(reason: Any) -> dict[str, Any]:
    return {"error": "bad_request", "reason": reason}


def test_put_creates_then_updates_and_refuses(api: Api, exchange: str) -> None:
    answer = api.put("exchanges", "/", exchange, json={"type": "topic", "durable": True})
    assert answer.status_code == 201 and answer.text == ""
    assert (
        api.put("exchanges", "/", exchange, json={"type": "topic", "durable": True}).status_code
        == 204
    )
    answer = api.put("exchanges", "/", exchange, json={"type": "direct", "durable": True})
    assert answer.status_code == 400
    assert answer.json() == _bad(
        f"inequivalent arg 'type' for exchange '{exchange}' in vhost '/': "
        "received 'direct' but current is 'topic'"
    )
    shown = api.get("exchanges", "/", exchange).json()
    assert {
        k: shown[k] for k in ("name", "vhost", "type", "durable", "auto_delete", "internal")
    } == {
        "name": exchange,
        "vhost": "/",
        "type": "topic",
        "durable": True,
        "auto_delete": False,
        "internal": False,
    }
    assert shown["arguments"] == {}
    answer = api.put("exchanges", "/", exchange + ".t", json={"type": "nosuch"})
    assert answer.status_code == 400 and answer.json() == _bad("unknown exchange type 'nosuch'")
    for name in ("amq.default", "amq." + exchange):
        answer = api.put("exchanges", "/", name, json={"type": "direct"})
        assert answer.status_code == 401 and answer.json() == ACCESS_REFUSED
    answer = api.put("exchanges", "no-such-vhost", exchange, json={"type": "direct"})
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "reason": "vhost_not_found"}


def test_put_without_type_is_direct_and_takes_strings(api: Api, exchange: str) -> None:
    answer = api.put("exchanges", "/", exchange, json={"durable": "true", "internal": "true"})
    assert answer.status_code == 201
    shown = api.get("exchanges", "/", exchange).json()
    assert (shown["type"], shown["durable"], shown["internal"]) == ("direct", True, True)


def test_default_exchange_is_amq_default(api: Api) -> None:
    shown = api.get("exchanges", "/", "amq.default").json()
    assert {k: shown[k] for k in ("name", "type", "durable", "internal", "vhost")} == {
        "name": "",
        "type": "direct",
        "durable": True,
        "internal": False,
        "vhost": "/",
    }
    rows = api.get("exchanges", "/", params={"columns": "name,type"}).json()
    assert rows[0] == {"name": "", "type": "direct"}
    for row in [
        {"name": "amq.direct", "type": "direct"},
        {"name": "amq.fanout", "type": "fanout"},
        {"name": "amq.headers", "type": "headers"},
        {"name": "amq.match", "type": "headers"},
        {"name": "amq.topic", "type": "topic"},
    ]:
        assert row in rows
    assert api.get("exchanges", "/", "no-such-exchange").json() == NOT_FOUND


def test_delete(api: Api, exchange: str, queue: str) -> None:
    api.put("exchanges", "/", exchange, json={"type": "fanout"})
    assert api.post("bindings", "/", "e", exchange, "q", queue, json={}).status_code == 201
    answer = api.delete("exchanges", "/", exchange, params={"if-unused": "true"})
    assert answer.status_code == 400
    assert answer.json() == _bad(f"exchange '{exchange}' in vhost '/' in use")
    assert api.delete("exchanges", "/", exchange).status_code == 204
    answer = api.delete("exchanges", "/", exchange)
    assert answer.status_code == 404 and answer.json() == NOT_FOUND
    for name in ("amq.direct", "amq.default"):
        answer = api.delete("exchanges", "/", name)
        assert answer.status_code == 401 and answer.json() == ACCESS_REFUSED


def _publish(api: Api, exchange: str, **body: Any) -> Any:
    return api.post("exchanges", "/", exchange, "publish", json=body)


def test_publish(api: Api, channel: Any, queue: str) -> None:
    routed = _publish(
        api,
        "amq.default",
        properties={"message_id": "z", "delivery_mode": 2, "headers": {"h": 1}},
        routing_key=queue,
        payload="hi",
        payload_encoding="string",
    )
    assert routed.status_code == 200 and routed.json() == {"routed": True}
    lost = _publish(
        api,
        "amq.default",
        properties={},
        routing_key=queue + ".none",
        payload="x",
        payload_encoding="string",
    )
    assert lost.json() == {"routed": False}
    encoded = _publish(
        api,
        "amq.default",
        properties={},
        routing_key=queue,
        payload="/wA=",
        payload_encoding="base64",
    )
    assert encoded.json() == {"routed": True}
    _method, properties, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"hi"
    assert (properties.message_id, properties.delivery_mode, properties.headers) == (
        "z",
        2,
        {"h": 1},
    )
    assert channel.basic_get(queue, auto_ack=True)[2] == b"\xff\x00"


def test_publish_refusals(api: Api, queue: str) -> None:
    base = {"properties": {}, "routing_key": queue, "payload": "hi", "payload_encoding": "string"}
    assert _publish(
        api, "amq.default", **{**base, "payload": "!!", "payload_encoding": "base64"}
    ).json() == _bad(["not_base64", "!!"])
    assert _publish(api, "amq.default", **{**base, "payload_encoding": "bad"}).json() == _bad(
        ["unsupported_encoding", "bad"]
    )
    without = {k: v for k, v in base.items() if k != "properties"}
    assert _publish(api, "amq.default", **without).json() == _bad("[{key_missing,properties}]")
    answer = _publish(api, "amq.default", **{**base, "properties": {"priority": "x"}})
    assert answer.status_code == 400 and answer.json() == _bad(["not_int", "priority"])
    answer = _publish(api, "no-such-exchange", **base)
    assert answer.status_code == 400
    assert answer.json() == _bad("404 NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'")


def test_bindings_with_properties_key_and_location(api: Api, exchange: str, queue: str) -> None:
    api.put("exchanges", "/", exchange, json={"type": "topic"})
    locations = []
    for body in (
        {"routing_key": "a.b", "arguments": {}},
        {"routing_key": "a.b", "arguments": {"x": "y"}},
        {},
        {"routing_key": "a/b c%"},
        {"routing_key": "o.*~"},
    ):
        answer = api.post("bindings", "/", "e", exchange, "q", queue, json=body)
        assert answer.status_code == 201 and answer.text == ""
        locations.append(answer.headers["location"])
    assert locations[0] == f"{queue}/a.b"
    assert locations[1].startswith(f"{queue}/a.b~") and len(locations[1]) > len(queue) + 5
    assert locations[2:] == [f"{queue}/~", f"{queue}/a%252Fb%2Bc%2525", f"{queue}/o.%252A%257E"]

    listed = api.get("bindings", "/", "e", exchange, "q", queue).json()
    with_args = listed[2]["properties_key"]
    assert with_args.startswith("a.b~")
    assert listed == [
        {
            "source": exchange,
            "vhost": "/",
            "destination": queue,
            "destination_type": "queue",
            "routing_key": key,
            "arguments": arguments,
            "properties_key": props,
        }
        for key, arguments, props in (
            ("", {}, "~"),
            ("a.b", {}, "a.b"),
            ("a.b", {"x": "y"}, with_args),
            ("a/b c%", {}, "a%2Fb+c%25"),
            ("o.*~", {}, "o.%2A%7E"),
        )
    ]
    assert api.get("bindings", "/", "e", exchange, "q", queue, "a.b").json() == listed[1]
    assert api.get("bindings", "/", "e", exchange, "q", queue, "~").json() == listed[0]
    # the key as written in a path is unquoted first: `o.*%7E` names the key `o.%2A%7E`
    assert api.get("bindings", "/", "e", exchange, "q", queue, "o.*%7E").json() == listed[4]
    assert api.get("bindings", "/", "e", exchange, "q", queue, "a.b~nope").json() == NOT_FOUND
    on_queue = api.get("queues", "/", queue, "bindings").json()
    assert on_queue[0] == {
        "source": "",
        "vhost": "/",
        "destination": queue,
        "destination_type": "queue",
        "routing_key": queue,
        "arguments": {},
        "properties_key": queue,
    }
    assert on_queue[1:] == listed
    assert api.get("exchanges", "/", exchange, "bindings", "source").json() == listed
    in_vhost = api.get("bindings", "/").json()
    assert [b for b in in_vhost if b["source"] == exchange] == listed

    for binding in listed:
        key = binding["properties_key"]
        assert api.delete("bindings", "/", "e", exchange, "q", queue, key).status_code == 204
        answer = api.delete("bindings", "/", "e", exchange, "q", queue, key)
        assert answer.status_code == 404 and answer.json() == NOT_FOUND
    assert api.get("bindings", "/", "e", exchange, "q", queue).json() == []


def test_exchange_to_exchange_binding(api: Api, exchange: str) -> None:
    api.put("exchanges", "/", exchange, json={"type": "direct"})
    answer = api.post("bindings", "/", "e", exchange, "e", "amq.fanout", json={"routing_key": "k"})
    assert answer.status_code == 201 and answer.headers["location"] == "amq.fanout/k"
    row = {
        "source": exchange,
        "vhost": "/",
        "destination": "amq.fanout",
        "destination_type": "exchange",
        "routing_key": "k",
        "arguments": {},
        "properties_key": "k",
    }
    assert api.get("bindings", "/", "e", exchange, "e", "amq.fanout").json() == [row]
    destination = api.get("exchanges", "/", "amq.fanout", "bindings", "destination").json()
    assert row in destination
    assert api.delete("bindings", "/", "e", exchange, "e", "amq.fanout", "k").status_code == 204
    assert api.get("bindings", "/", "e", exchange, "e", "amq.fanout").json() == []


def test_binding_refusals(api: Api, exchange: str, queue: str) -> None:
    api.put("exchanges", "/", exchange, json={"type": "direct"})
    answer = api.post("bindings", "/", "e", exchange + ".none", "q", queue, json={})
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "not_found",
        "reason": f"no exchange '{exchange}.none' in vhost '/'",
    }
    answer = api.post("bindings", "/", "e", exchange, "q", queue + ".none", json={})
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "not_found",
        "reason": f"no queue '{queue}.none' in vhost '/'",
    }
    answer = api.post("bindings", "/", "e", "amq.default", "q", queue, json={})
    assert answer.status_code == 401 and answer.json() == ACCESS_REFUSED
    assert api.get("bindings", "/", "e", exchange + ".none", "q", queue).json() == []


def test_publish_with_cc_and_bcc(api: Api, channel: Any, queue: str) -> None:
    other = queue + ".bcc"
    channel.queue_declare(other, auto_delete=False)
    try:
        answer = _publish(
            api,
            "amq.default",
            properties={"headers": {"BCC": [other]}},
            routing_key=queue,
            payload="both",
            payload_encoding="string",
        )
        assert answer.json() == {"routed": True}
        for name in (queue, other):
            _method, properties, body = channel.basic_get(name, auto_ack=True)
            assert body == b"both" and "BCC" not in (properties.headers or {})
    finally:
        channel.queue_delete(other)


def test_publish_a_direct_reply(api: Api, channel: Any, queue: str) -> None:
    replies: list[bytes] = []
    channel.basic_consume(
        "amq.rabbitmq.reply-to", lambda _ch, _m, _p, body: replies.append(body), auto_ack=True
    )
    channel.basic_publish(
        "", queue, b"request", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to")
    )
    got = api.post(
        "queues",
        "/",
        queue,
        "get",
        json={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"},
    ).json()
    address = got[0]["properties"]["reply_to"]
    assert address.startswith("amq.rabbitmq.reply-to.")
    answer = _publish(
        api,
        "amq.default",
        properties={},
        routing_key=address,
        payload="reply",
        payload_encoding="string",
    )
    assert answer.json() == {"routed": False}  # as RabbitMQ says, though it is delivered
    connection = channel.connection
    eventually(lambda: connection.process_data_events(0.1) or replies, bool, timeout=10)
    assert replies == [b"reply"]


def test_publish_checks_topic_permissions(api: Api, exchange: str, queue: str, unique: str) -> None:
    """A user with write permission whose topic permission's write pattern does not match the
    routing key is refused on a topic exchange, as a channel's publish is; other exchange types
    are not checked."""
    user = unique + ".u"
    other = exchange + ".direct"
    api.put("exchanges", "/", exchange, json={"type": "topic"})
    api.put("exchanges", "/", other, json={"type": "direct"})
    api.post("bindings", "/", "e", exchange, "q", queue, json={"routing_key": "#"})
    api.post("bindings", "/", "e", other, "q", queue, json={"routing_key": "denied.key"})
    try:
        with temp_user(api, user, "pw", "management") as as_user:
            everything = {"configure": ".*", "write": ".*", "read": ".*"}
            assert api.put("permissions", "/", user, json=everything).status_code == 201
            for name in (exchange, other):
                topic = {"exchange": name, "write": "^(allowed|{username})\\.", "read": ".*"}
                assert api.put("topic-permissions", "/", user, json=topic).status_code in (201, 204)
            base = {"properties": {}, "payload": "hi", "payload_encoding": "string"}
            refused = _publish(as_user, exchange, **base, routing_key="denied.key")
            assert refused.status_code == 400
            assert refused.json() == _bad(
                f"403 ACCESS_REFUSED - access to topic 'denied.key' in exchange '{exchange}' "
                f"in vhost '/' refused for user '{user}'"
            )
            # checked before the user_id property
            mismatch = {**base, "properties": {"user_id": "someone"}, "routing_key": "denied.key"}
            assert _publish(as_user, exchange, **mismatch).json() == refused.json()
            for key in ("allowed.key", f"{user}.key"):
                answer = _publish(as_user, exchange, **base, routing_key=key)
                assert (answer.status_code, answer.json()) == (200, {"routed": True})
            answer = _publish(as_user, other, **base, routing_key="denied.key")
            assert (answer.status_code, answer.json()) == (200, {"routed": True})
    finally:
        api.delete("exchanges", "/", other)
