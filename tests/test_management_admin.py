"""The management API's admin endpoints, as RabbitMQ 3.10.8 answers them: nodes, health
checks, users, permissions, topic permissions, policies, vhost limits and definitions, with
their tag rules (administrator, policymaker, monitoring, management).

Every expectation was taken from a RabbitMQ 3.10.8 with rabbitmq_management; run against one
with TRIMQ_TEST_MANAGEMENT_URL (tools/rabbitmq_reference.sh does it).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pika
import pytest
import requests
from http_helpers import Api, temp_user, temp_vhost

NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


@pytest.fixture
def vhost(api: Api, unique: str) -> Iterator[str]:
    with temp_vhost(api, unique + "-vh") as name:
        yield name


def _refusal(answer: requests.Response) -> str:
    assert answer.status_code == 401, answer.text
    body = answer.json()
    assert body["error"] == "not_authorised"
    return str(body["reason"])


# -- nodes and health checks ----------------------------------------------------------------


def test_nodes(api: Api) -> None:
    nodes = api.get("nodes").json()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["name"] == api.get("overview").json()["node"]
    assert node["running"] is True
    assert node["type"] == "disc"
    for key in ("mem_used", "mem_limit", "fd_used", "fd_total", "disk_free", "disk_free_limit"):
        assert isinstance(node[key], int) and node[key] > 0, key
    assert node["mem_alarm"] is False and node["disk_free_alarm"] is False
    assert isinstance(node["uptime"], int)
    assert api.get("nodes", node["name"]).json()["name"] == node["name"]


def test_nodes_need_monitoring(api: Api, unique: str) -> None:
    with temp_user(api, unique, tags="management") as user:
        assert _refusal(user.get("nodes")) == "Not monitor user"
    with temp_user(api, unique, tags="monitoring") as user:
        assert user.get("nodes").status_code == 200


def test_aliveness_and_health_checks(api: Api, unique: str, vhost: str) -> None:
    assert api.get("aliveness-test", "/").json() == {"status": "ok"}
    assert api.get("aliveness-test", "no such vhost").json() == NOT_FOUND
    assert api.get("healthchecks", "node").json() == {"status": "ok"}
    assert api.get("health", "checks", "alarms").json() == {"status": "ok"}
    assert api.get("health", "checks", "virtual-hosts").json() == {"status": "ok"}
    with temp_user(api, unique, tags="management") as user:
        assert user.get("healthchecks", "node").json() == {"status": "ok"}
        refused = user.get("aliveness-test", vhost)
        assert _refusal(refused) == "User not authorised to access virtual host"
        api.put("permissions", vhost, unique, json={"configure": ".*", "write": ".*", "read": ".*"})
        assert user.get("aliveness-test", vhost).json() == {"status": "ok"}


def test_port_listener_check(api: Api, broker: object) -> None:
    port = str(broker.port)  # type: ignore[attr-defined]
    assert api.get("health", "checks", "port-listener", port).json() == {
        "status": "ok",
        "port": int(port),
    }
    missing = api.get("health", "checks", "port-listener", "1")
    assert missing.status_code == 503
    assert missing.json()["status"] == "failed"
    assert missing.json()["reason"] == "No active listener"


# -- users ----------------------------------------------------------------------------------


def test_user_create_update_delete(api: Api, unique: str) -> None:
    answer = api.put("users", unique, json={"password": "pw1", "tags": "monitoring,management"})
    assert answer.status_code == 201
    try:
        shown = api.get("users", unique).json()
        assert shown["tags"] == ["monitoring", "management"]
        assert shown["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert shown["limits"] == {}
        assert api.as_user(unique, "pw1").get("whoami").status_code == 200
        # an update without a password clears it
        answer = api.put("users", unique, json={"tags": ["administrator"]})
        assert answer.status_code == 204
        assert api.get("users", unique).json()["tags"] == ["administrator"]
        assert api.get("users", unique).json()["password_hash"] == ""
        assert api.as_user(unique, "pw1").get("whoami").json()["reason"] == "Login failed"
        assert api.put("users", unique, json={"password": "pw2", "tags": ""}).status_code == 204
        assert api.as_user(unique, "pw1").get("whoami").status_code == 401
        assert api.as_user(unique, "pw2").get("whoami").json()["reason"] == "Not management user"
        assert unique in {u["name"] for u in api.get("users").json()}
    finally:
        assert api.delete("users", unique).status_code == 204
    assert api.get("users", unique).json() == NOT_FOUND
    assert api.delete("users", unique).status_code == 404


def test_user_with_password_hash(api: Api, unique: str) -> None:
    salt = b"\x01\x02\x03\x04"
    digest = base64.b64encode(salt + hashlib.sha256(salt + b"hashed").digest()).decode()
    answer = api.put("users", unique, json={"password_hash": digest, "tags": "management"})
    assert answer.status_code == 201
    try:
        assert api.get("users", unique).json()["password_hash"] == digest
        assert api.as_user(unique, "hashed").get("whoami").json()["name"] == unique
    finally:
        api.delete("users", unique)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"password": "x"}, "tags_not_present"),
        (
            {"password": "x", "password_hash": "", "tags": ""},
            "both_password_and_password_hash_are_provided",
        ),
    ],
)
def test_user_bad_bodies(api: Api, unique: str, body: dict[str, str], reason: str) -> None:
    answer = api.put("users", unique, json=body)
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad_request", "reason": reason}
    assert api.get("users", unique).status_code == 404


def test_users_need_administrator(api: Api, unique: str) -> None:
    with temp_user(api, unique, tags="monitoring") as user:
        assert _refusal(user.get("users")) == "Not administrator user"
        assert _refusal(user.put("users", unique + "x", json={"tags": ""})) == (
            "Not administrator user"
        )


def test_users_without_permissions(api: Api, unique: str) -> None:
    with temp_user(api, unique):
        names = {u["name"] for u in api.get("users", "without-permissions").json()}
        assert unique in names
        assert "guest" not in names


# -- permissions ----------------------------------------------------------------------------


def test_permissions_set_update_clear(api: Api, unique: str, vhost: str) -> None:
    with temp_user(api, unique):
        body = {"configure": "^c", "write": "^w", "read": "^r"}
        assert api.put("permissions", vhost, unique, json=body).status_code == 201
        expected = {"user": unique, "vhost": vhost, **body}
        assert api.get("permissions", vhost, unique).json() == expected
        assert api.get("users", unique, "permissions").json() == [expected]
        assert expected in api.get("vhosts", vhost, "permissions").json()
        assert expected in api.get("permissions").json()
        body["read"] = ".*"
        assert api.put("permissions", vhost, unique, json=body).status_code == 204
        assert api.get("permissions", vhost, unique).json()["read"] == ".*"
        assert api.delete("permissions", vhost, unique).status_code == 204
        assert api.get("permissions", vhost, unique).json() == NOT_FOUND
        assert api.delete("permissions", vhost, unique).status_code == 404
        assert api.get("users", unique, "permissions").json() == []


def test_permissions_bad_requests(api: Api, unique: str, vhost: str) -> None:
    with temp_user(api, unique):
        missing = api.put("permissions", vhost, unique, json={"configure": "", "write": ""})
        assert missing.status_code == 400
        assert missing.json() == {"error": "bad_request", "reason": "[{key_missing,read}]"}
        body = {"configure": "", "write": "", "read": ""}
        for target in (("no such vhost", unique), (vhost, "no such user")):
            answer = api.put("permissions", *target, json=body)
            assert answer.status_code == 400
            assert answer.json() == {"error": "bad_request", "reason": "vhost_or_user_not_found"}
        bad = api.put("permissions", vhost, unique, json={**body, "configure": "("})
        assert bad.status_code == 400
        assert api.get("permissions", vhost, unique).status_code == 404


# -- topic permissions ----------------------------------------------------------------------


def test_topic_permissions(api: Api, unique: str, vhost: str) -> None:
    with temp_user(api, unique):
        assert api.get("users", unique, "topic-permissions").json() == []
        first = {"exchange": "amq.topic", "write": "^a", "read": ".*"}
        assert api.put("topic-permissions", vhost, unique, json=first).status_code == 201
        second = {"exchange": "other", "write": "^b", "read": ""}
        assert api.put("topic-permissions", vhost, unique, json=second).status_code == 204
        expected = [{"user": unique, "vhost": vhost, **p} for p in (first, second)]

        def by_exchange(rows: list[dict[str, str]]) -> list[dict[str, str]]:
            return sorted(rows, key=lambda row: row["exchange"])

        assert by_exchange(api.get("topic-permissions", vhost, unique).json()) == expected
        assert by_exchange(api.get("users", unique, "topic-permissions").json()) == expected
        mine = [p for p in api.get("topic-permissions").json() if p["user"] == unique]
        assert by_exchange(mine) == expected
        missing = api.put("topic-permissions", vhost, unique, json={"write": "", "read": ""})
        assert missing.json() == {"error": "bad_request", "reason": "[{key_missing,exchange}]"}
        assert api.delete("topic-permissions", vhost, unique).status_code == 204
        assert api.get("topic-permissions", vhost, unique).json() == NOT_FOUND
        assert api.delete("topic-permissions", vhost, unique).status_code == 404


# -- policies -------------------------------------------------------------------------------


def test_policy_set_update_clear(api: Api, unique: str, vhost: str) -> None:
    body = {"pattern": "^a", "definition": {"max-length": 10}, "priority": 3, "apply-to": "queues"}
    assert api.put("policies", vhost, "p", json=body).status_code == 201
    expected = {"vhost": vhost, "name": "p", **body}
    assert api.get("policies", vhost, "p").json() == expected
    assert api.get("policies", vhost).json() == [expected]
    assert expected in api.get("policies").json()
    # an update replaces the whole policy: priority and apply-to go back to their defaults
    answer = api.put(
        "policies", vhost, "p", json={"pattern": "^b", "definition": {"max-length": 1}}
    )
    assert answer.status_code == 204
    assert api.get("policies", vhost, "p").json() == {
        "vhost": vhost,
        "name": "p",
        "pattern": "^b",
        "apply-to": "all",
        "definition": {"max-length": 1},
        "priority": 0,
    }
    assert api.delete("policies", vhost, "p").status_code == 204
    assert api.get("policies", vhost, "p").json() == NOT_FOUND
    assert api.delete("policies", vhost, "p").status_code == 404


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"pattern": "^a"}, "[{key_missing,definition}]"),
        ({"definition": {"max-length": 1}}, "[{key_missing,pattern}]"),
        (
            {"pattern": "^a", "definition": {"max-length": 1}, "apply-to": "bogus"},
            "Validation failed\n\napply-to 'bogus' unrecognised; should be 'queues', "
            "'exchanges' or 'all'\n",
        ),
        (
            {"pattern": "^a", "definition": {"max-length": "x"}},
            'Validation failed\n\n&lt;&lt;"x"&gt;&gt; is not a valid maximum length\n',
        ),
    ],
)
def test_policy_bad_bodies(api: Api, vhost: str, body: dict[str, object], reason: str) -> None:
    answer = api.put("policies", vhost, "p", json=body)
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad_request", "reason": reason}
    assert api.get("policies", vhost, "p").status_code == 404


def test_policy_in_missing_vhost(api: Api) -> None:
    body = {"pattern": "^a", "definition": {"max-length": 1}}
    answer = api.put("policies", "no such vhost", "p", json=body)
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "reason": "vhost_not_found"}
    assert api.get("policies", "no such vhost").json() == NOT_FOUND


def test_policies_need_policymaker_in_the_vhost(api: Api, unique: str, vhost: str) -> None:
    body = {"pattern": "^a", "definition": {"max-length": 1}}
    open_all = {"configure": ".*", "write": ".*", "read": ".*"}
    assert api.put("policies", vhost, "p", json=body).status_code == 201
    with temp_user(api, unique, tags="management") as user:
        assert user.get("policies").json() == []
        api.put("permissions", vhost, unique, json=open_all)
        assert [p["name"] for p in user.get("policies").json()] == ["p"]
        assert [p["name"] for p in user.get("policies", vhost).json()] == ["p"]
        refused = user.put("policies", vhost, "q", json=body)
        assert _refusal(refused) == "User not authorised to access object"
    with temp_user(api, unique + "-pm", tags="policymaker") as maker:
        refused = maker.put("policies", vhost, "q", json=body)
        assert _refusal(refused) == "User not authorised to access object"
        assert (
            _refusal(maker.get("policies", vhost)) == "User not authorised to access virtual host"
        )
        api.put("permissions", vhost, unique + "-pm", json=open_all)
        assert maker.put("policies", vhost, "q", json=body).status_code == 201
        assert maker.delete("policies", vhost, "q").status_code == 204


# -- vhost limits ---------------------------------------------------------------------------


def test_vhost_limits(api: Api, unique: str, vhost: str) -> None:
    assert api.get("vhost-limits", vhost).json() == []
    assert api.put("vhost-limits", vhost, "max-connections", json={"value": 10}).status_code == 204
    assert api.put("vhost-limits", vhost, "max-queues", json={"value": 5}).status_code == 204
    assert api.put("vhost-limits", vhost, "max-queues", json={"value": 6}).status_code == 204
    expected = {"vhost": vhost, "value": {"max-connections": 10, "max-queues": 6}}
    assert api.get("vhost-limits", vhost).json() == [expected]
    assert expected in api.get("vhost-limits").json()
    assert api.delete("vhost-limits", vhost, "max-queues").status_code == 204
    assert api.get("vhost-limits", vhost).json() == [
        {"vhost": vhost, "value": {"max-connections": 10}}
    ]
    assert api.delete("vhost-limits", vhost, "max-connections").status_code == 204
    assert api.get("vhost-limits", vhost).json() == []
    with temp_user(api, unique, tags="management") as user:
        refused = user.get("vhost-limits", vhost)
        assert _refusal(refused) == "User not authorised to access virtual host"
        refused = user.put("vhost-limits", vhost, "max-queues", json={"value": 1})
        assert _refusal(refused) == "Not administrator user"


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("max-queues", {}, "[{key_missing,value}]"),
        (
            "max-queues",
            {"value": "x"},
            'Validation failed\n\nmax-queues should be a number, actually was <<"x">>\n',
        ),
        (
            "bogus",
            {"value": 5},
            'Validation failed\n\nUnrecognised terms [{<<"bogus">>,5}] in limits\n',
        ),
    ],
)
def test_vhost_limit_bad_bodies(
    api: Api, vhost: str, name: str, body: dict[str, object], reason: str
) -> None:
    answer = api.put("vhost-limits", vhost, name, json=body)
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad_request", "reason": reason}
    assert api.get("vhost-limits", vhost).json() == []


def test_vhost_limit_in_missing_vhost(api: Api) -> None:
    answer = api.put("vhost-limits", "no such vhost", "max-queues", json={"value": 1})
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "reason": "vhost_not_found"}


# -- definitions ----------------------------------------------------------------------------


def test_definitions_round_trip(api: Api, unique: str, vhost: str) -> None:
    body = {"pattern": "^a", "definition": {"max-length": 4}, "priority": 1, "apply-to": "queues"}
    api.put("policies", vhost, "p", json=body)
    api.put("vhost-limits", vhost, "max-queues", json={"value": 7})
    api.put("permissions", vhost, "guest", json={"configure": ".*", "write": ".*", "read": ".*"})
    doc = api.get("definitions").json()
    assert {"rabbit_version", "users", "vhosts", "permissions", "policies", "queues"} <= set(doc)
    assert {"vhost": vhost, "name": "p", **body} in doc["policies"]
    assert vhost in {v["name"] for v in doc["vhosts"]}
    mine = api.get("definitions", vhost).json()
    assert set(mine) == {
        "rabbit_version",
        "parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    }
    assert mine["policies"] == [{"vhost": vhost, "name": "p", **body}]
    assert mine["parameters"] == [
        {"vhost": vhost, "component": "vhost-limits", "name": "limits", "value": {"max-queues": 7}}
    ]
    # import into a new vhost: the queues and policies of the per-vhost document
    other = unique + "-copy"
    with temp_vhost(api, other):
        imported = {
            "queues": [{"name": "dq", "durable": True, "auto_delete": False, "arguments": {}}],
            "policies": [
                {
                    "name": "pv",
                    "pattern": "y",
                    "apply-to": "all",
                    "definition": {"max-length": 3},
                    "priority": 0,
                }
            ],
        }
        assert api.post("definitions", other, json=imported).status_code == 204
        copy = api.get("definitions", other).json()
        assert copy["queues"] == imported["queues"]
        assert copy["policies"] == [{"vhost": other, **imported["policies"][0]}]


def test_definitions_import_whole(api: Api, unique: str) -> None:
    name = unique + "-imp"
    doc = {
        "vhosts": [{"name": name}],
        "users": [],
        "policies": [
            {
                "vhost": name,
                "name": "pp",
                "pattern": "x",
                "apply-to": "queues",
                "definition": {"max-length": 3},
                "priority": 2,
            }
        ],
    }
    assert api.post("definitions", json=doc).status_code == 204
    try:
        assert api.get("policies", name).json() == doc["policies"]
    finally:
        api.delete("vhosts", name)


def test_definitions_bad_requests(api: Api, unique: str, vhost: str) -> None:
    answer = api.post("definitions", data=b"[1]", headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad_request", "reason": "failed_to_parse_json"}
    bad = {
        "permissions": [
            {"vhost": vhost, "user": "guest", "configure": "(", "write": "", "read": ""}
        ]
    }
    assert api.post("definitions", json=bad).status_code == 400
    missing = api.post("definitions", "no such vhost", json={"queues": []})
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "reason": "vhost_not_found"}
    with temp_user(api, unique, tags="monitoring") as user:
        assert _refusal(user.get("definitions")) == "Not administrator user"


def test_string_booleans_as_rabbitmqadmin_sends_them(api: Api, unique: str) -> None:
    """rabbitmqadmin v1 sends every value it does not parse as JSON as a string."""
    name = unique + "-tr"
    answer = api.put("vhosts", name, json={"description": "d", "tracing": "false"})
    assert answer.status_code == 201
    try:
        assert api.get("vhosts", name).json()["tracing"] is False
    finally:
        api.delete("vhosts", name)


def test_percent_encoded_names_everywhere(api: Api, unique: str) -> None:
    name = unique + "/a b%"
    with temp_vhost(api, name), temp_user(api, name, tags="management") as user:
        body = {"configure": ".*", "write": "", "read": ""}
        assert api.put("permissions", name, name, json=body).status_code == 201
        assert user.get("vhosts").json()[0]["name"] == name
        assert api.get("permissions", name, name).json()["user"] == name


pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")) and not os.environ.get("TRIMQ_TEST_MANAGEMENT_URL"),
    reason="another broker without its management URL",
)


def test_topic_permissions_are_enforced(api: Api, broker: object, unique: str) -> None:
    """Publishes to and bindings from a topic exchange where the user has topic permissions
    must match them ({username} expanded; an empty expression means ^$); other exchanges and
    other topic exchanges are not restricted."""
    with temp_vhost(api, unique + "-t") as vhost, temp_user(api, unique + "-u", "pw") as _user:
        user = unique + "-u"
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        assert api.put("permissions", vhost, user, json=everything).status_code == 201
        rules = {"exchange": "amq.topic", "write": "^a\\.{username}\\.", "read": ""}
        assert api.put("topic-permissions", vhost, user, json=rules).status_code == 201
        params = broker.params(  # type: ignore[attr-defined]
            virtual_host=vhost, credentials=pika.PlainCredentials(user, "pw")
        )
        with pika.BlockingConnection(params) as connection:

            def refused(action: Any) -> str:
                channel = connection.channel()
                with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
                    action(channel)
                    channel.basic_qos(prefetch_count=1)  # a round trip to see the close
                assert closed.value.reply_code == 403
                return str(closed.value.reply_text)

            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish("amq.topic", f"a.{user}.x", b"allowed")
            channel.basic_publish("amq.direct", "b.x", b"not a topic exchange")
            channel.exchange_declare("other", "topic")
            channel.basic_publish("other", "b.x", b"no topic permission there")
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(queue, "amq.topic", "")  # the empty key matches ^$
            assert refused(lambda ch: ch.basic_publish("amq.topic", "b.x", b"refused")) == (
                f"ACCESS_REFUSED - access to topic 'b.x' in exchange 'amq.topic' in vhost "
                f"'{vhost}' refused for user '{user}'"
            )
            assert refused(lambda ch: ch.queue_bind(queue, "amq.topic", "r.1")) == (
                f"ACCESS_REFUSED - access to topic 'r.1' in exchange 'amq.topic' in vhost "
                f"'{vhost}' refused for user '{user}'"
            )
            assert "access to topic 'x.2'" in refused(
                lambda ch: ch.exchange_bind("amq.fanout", "amq.topic", "x.2")
            )
            # cleared: everything is allowed again
            assert api.delete("topic-permissions", vhost, user).status_code == 204
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish("amq.topic", "b.x", b"allowed now")
            channel.queue_bind(queue, "amq.topic", "r.1")
