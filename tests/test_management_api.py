"""The management API's common behaviour, as RabbitMQ 3.10.8 answers: basic auth and the tag
rules with their 401 bodies, the 400/404/405 answers, the list parameters (columns, sort,
sort_reverse, pagination), /api/overview, /api/whoami and /api/vhosts.

Every expectation was taken from a RabbitMQ 3.10.8 with rabbitmq_management; run against one
with TRIMQ_TEST_MANAGEMENT_URL (tools/rabbitmq_reference.sh does it).
"""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pika
import pytest
import requests
from http_helpers import Api, temp_user, temp_vhost

import trimq

REFERENCE = bool(os.environ.get("TRIMQ_TEST_MANAGEMENT_URL"))
trimq_only = pytest.mark.skipif(REFERENCE, reason="trimq-only: trimq's own identity")


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


# -- authentication -------------------------------------------------------------------------


def test_no_credentials_asks_for_basic_auth(api: Api) -> None:
    answer = requests.get(api.url("overview"), timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="RabbitMQ Management"'
    assert answer.content == b""


def test_wrong_password_is_refused(api: Api) -> None:
    answer = api.as_user("guest", "not-the-password").get("whoami")
    assert answer.status_code == 401
    assert answer.json() == {"error": "not_authorized", "reason": "Login failed"}
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="RabbitMQ Management"'


def test_unknown_user_is_refused(api: Api, unique: str) -> None:
    answer = api.as_user(unique, "x").get("whoami")
    assert answer.status_code == 401
    assert answer.json() == {"error": "not_authorized", "reason": "Login failed"}


def test_user_without_management_tag_is_refused(api: Api, unique: str) -> None:
    with temp_user(api, unique, tags="") as user:
        answer = user.get("whoami")
    assert answer.status_code == 401
    assert answer.json() == {"error": "not_authorised", "reason": "Not management user"}


def test_management_user_is_not_an_administrator(api: Api, unique: str) -> None:
    with temp_user(api, unique, tags="management") as user:
        assert user.get("whoami").json() == {"name": unique, "tags": ["management"]}
        answer = user.get("users")
        assert answer.status_code == 401
        assert answer.json() == {"error": "not_authorised", "reason": "Not administrator user"}
        answer = user.put("vhosts", unique)
        assert answer.status_code == 401
        assert answer.json() == {"error": "not_authorised", "reason": "Not administrator user"}


def test_management_user_sees_only_its_vhosts(api: Api, unique: str) -> None:
    with (
        temp_vhost(api, unique + "-a"),
        temp_vhost(api, unique + "-b"),
        temp_user(api, unique, tags="management") as user,
    ):
        assert user.get("vhosts").json() == []
        permissions = {"configure": ".*", "write": ".*", "read": ""}
        assert api.put("permissions", unique + "-b", unique, json=permissions).status_code == 201
        assert [v["name"] for v in user.get("vhosts").json()] == [unique + "-b"]
        overview = user.get("overview").json()
        assert "node" not in overview
        assert "listeners" not in overview
        assert "consumers" not in overview["object_totals"]


def test_whoami(api: Api) -> None:
    answer = api.get("whoami")
    assert answer.status_code == 200
    assert answer.json() == {"name": "guest", "tags": ["administrator"]}


# -- error answers --------------------------------------------------------------------------


def test_unknown_path_is_404_before_auth(api: Api) -> None:
    answer = requests.get(api.url("no-such-thing"), timeout=10)
    assert answer.status_code == 404
    assert answer.json() == {"error": "Object Not Found", "reason": "Not Found"}
    assert api.get("vhosts", "no such vhost").json() == {
        "error": "Object Not Found",
        "reason": "Not Found",
    }


def test_method_not_allowed_is_405(api: Api) -> None:
    answer = api.request("PATCH", "overview")
    assert answer.status_code == 405
    assert answer.content == b""
    assert "GET" in {m.strip() for m in answer.headers["Allow"].split(",")}


def test_body_that_is_not_json_is_400(api: Api, unique: str) -> None:
    answer = api.put("vhosts", unique, data=b"{not json")
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad_request", "reason": "not_json"}
    assert api.get("vhosts", unique).status_code == 404


# -- lists ----------------------------------------------------------------------------------


@pytest.fixture
def three_vhosts(api: Api, unique: str) -> Iterator[list[str]]:
    names = [f"{unique}-{suffix}" for suffix in ("b", "a", "c")]
    for name in names:
        assert api.put("vhosts", name, json={"description": f"d-{name[-1]}"}).status_code == 201
    yield sorted(names)
    for name in names:
        api.delete("vhosts", name)


def test_list_columns(api: Api, three_vhosts: list[str]) -> None:
    rows = api.get("vhosts", params={"columns": "name,description,nosuch"}).json()
    mine = [row for row in rows if row["name"] in three_vhosts]
    assert mine == [{"name": n, "description": f"d-{n[-1]}"} for n in three_vhosts]


def test_list_sort_and_reverse(api: Api, three_vhosts: list[str]) -> None:
    def names(**params: str) -> list[str]:
        rows = api.get("vhosts", params={"columns": "name", **params}).json()
        return [row["name"] for row in rows if row["name"] in three_vhosts]

    assert names() == three_vhosts
    assert names(sort="name", sort_reverse="true") == three_vhosts[::-1]
    assert names(sort="description", sort_reverse="true") == three_vhosts[::-1]


def test_list_pagination(api: Api, unique: str, three_vhosts: list[str]) -> None:
    params = {"page": "2", "page_size": "2", "name": unique, "columns": "name"}
    page = api.get("vhosts", params=params).json()
    total = page.pop("total_count")
    assert total >= 4
    assert page == {
        "filtered_count": 3,
        "item_count": 1,
        "items": [{"name": three_vhosts[2]}],
        "page": 2,
        "page_count": 2,
        "page_size": 2,
    }
    # the name filter ignores case; with use_regex it is a (caseless) regular expression
    upper = api.get("vhosts", params={**params, "page": "1", "name": unique.upper()}).json()
    assert upper["filtered_count"] == 3
    regex = {"page": "1", "name": f"^{unique}-[ab]$", "use_regex": "true", "columns": "name"}
    assert api.get("vhosts", params=regex).json()["items"] == [
        {"name": n} for n in three_vhosts[:2]
    ]
    # without `page` there is no pagination, and no name filter
    assert isinstance(api.get("vhosts", params={"page_size": "1"}).json(), list)


@pytest.mark.parametrize(
    ("params", "error", "reason"),
    [
        (
            {"page": "0"},
            "invalid_pagination_parameters",
            "Invalid pagination parameters: page number 0, page size undefined",
        ),
        (
            {"page": "1", "page_size": "600"},
            "invalid_pagination_parameters",
            "Invalid pagination parameters: page number 1, page size 600",
        ),
        (
            {"page": "1", "page_size": "0"},
            "invalid_pagination_parameters",
            "Invalid pagination parameters: page number 1, page size 0",
        ),
        ({"page": "x"}, "bad_request", "Pagination parameters are invalid"),
        ({"page": "1", "page_size": "abc"}, "bad_request", "Pagination parameters are invalid"),
        (
            {"page": "1", "name": "[", "use_regex": "true"},
            "bad_request",
            "Pagination parameters are invalid",
        ),
        (
            {"page": "2", "name": "no vhost is named like this"},
            "page_out_of_range",
            "Page out of range, page: 2 page size: 100, len: 0",
        ),
    ],
)
def test_list_bad_pagination_is_400(
    api: Api, params: dict[str, str], error: str, reason: str
) -> None:
    answer = api.get("vhosts", params=params)
    assert answer.status_code == 400
    assert answer.json() == {"error": error, "reason": reason}


# -- overview -------------------------------------------------------------------------------


def test_overview(api: Api, broker: object) -> None:
    overview = api.get("overview").json()
    assert [int(part) for part in overview["rabbitmq_version"].split(".")] >= [3, 10]
    assert overview["management_version"] == overview["rabbitmq_version"]
    assert set(overview["object_totals"]) == {
        "channels",
        "connections",
        "consumers",
        "exchanges",
        "queues",
    }
    assert overview["object_totals"]["exchanges"] >= 7
    assert {t["name"] for t in overview["exchange_types"]} >= {
        "direct",
        "fanout",
        "headers",
        "topic",
    }
    amqp = [lst for lst in overview["listeners"] if lst["protocol"] == "amqp"]
    assert broker.port in {lst["port"] for lst in amqp}  # type: ignore[attr-defined]
    assert all(lst["node"] == overview["node"] for lst in overview["listeners"])
    assert isinstance(overview["cluster_name"], str)


def test_overview_counts_queues_and_messages(api: Api, channel: object, unique: str) -> None:
    before = api.get("overview").json()["object_totals"]["queues"]
    channel.queue_declare(unique, auto_delete=False)  # type: ignore[attr-defined]
    try:
        channel.basic_publish("", unique, b"x")  # type: ignore[attr-defined]
        channel.basic_publish("", unique, b"y")  # type: ignore[attr-defined]
        counted = api.get("overview").json()
        assert counted["object_totals"]["queues"] == before + 1
        # RabbitMQ counts connections from statistics it collects every 5 s
        deadline = time.monotonic() + 15
        while api.get("overview").json()["object_totals"]["connections"] < 1:
            assert time.monotonic() < deadline, "the open connection is never counted"
            time.sleep(0.2)
    finally:
        channel.queue_delete(unique)  # type: ignore[attr-defined]


@trimq_only
def test_overview_names_trimq(api: Api, broker: object) -> None:
    overview = api.get("overview").json()
    assert overview["product_name"] == "trimq"
    assert overview["product_version"] == trimq.__version__
    assert overview["rabbitmq_version"] == "3.10.8"
    assert overview["queue_totals"] == {
        "messages": overview["queue_totals"]["messages_ready"]
        + overview["queue_totals"]["messages_unacknowledged"],
        "messages_ready": overview["queue_totals"]["messages_ready"],
        "messages_unacknowledged": overview["queue_totals"]["messages_unacknowledged"],
    }
    http = [lst for lst in overview["listeners"] if lst["protocol"] == "http"]
    assert http and http[0]["port"] == broker.management_port  # type: ignore[attr-defined]


# -- vhosts ---------------------------------------------------------------------------------


def test_vhost_create_update_delete(api: Api, unique: str) -> None:
    name = f"{unique}/with slash"
    answer = api.put("vhosts", name, json={"description": "first", "tags": "a,b"})
    assert answer.status_code == 201
    try:
        shown = api.get("vhosts", name).json()
        assert shown["name"] == name
        assert shown["description"] == "first"
        assert shown["tags"] == ["a", "b"]
        assert shown["metadata"] == {"description": "first", "tags": ["a", "b"]}
        answer = api.put("vhosts", name, json={"description": "second", "tags": ["c"]})
        assert answer.status_code == 204
        assert api.get("vhosts", name).json()["tags"] == ["c"]
        # the user who made it may use it
        permission = api.get("permissions", name, "guest").json()
        assert permission == {
            "user": "guest",
            "vhost": name,
            "configure": ".*",
            "write": ".*",
            "read": ".*",
        }
    finally:
        assert api.delete("vhosts", name).status_code == 204
    assert api.get("vhosts", name).status_code == 404
    assert api.get("permissions", name, "guest").status_code == 404
    assert api.delete("vhosts", name).status_code == 404


def test_default_vhost_by_percent_encoded_name(api: Api) -> None:
    answer = requests.get(api.base + "/api/vhosts/%2F", auth=("guest", "guest"), timeout=10)
    assert answer.status_code == 200
    assert answer.json()["name"] == "/"


def test_deleting_a_vhost_closes_its_connections(api: Api, broker: object, unique: str) -> None:
    assert api.put("vhosts", unique).status_code == 201
    params = broker.params(virtual_host=unique)  # type: ignore[attr-defined]
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.queue_declare(unique)
        assert api.delete("vhosts", unique).status_code == 204
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.2)
        assert closed.value.reply_code == 320
    finally:
        if connection.is_open:
            connection.close()
    assert api.get("vhosts", unique).status_code == 404


def test_head_answers_like_get_without_a_body(api: Api) -> None:
    answer = api.request("HEAD", "whoami")
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    "path", [("definitions",), ("exchanges", "/", "amq.default", "publish")], ids=lambda p: p[0]
)
def test_a_body_over_20_mb_is_refused(api: Api, path: tuple[str, ...]) -> None:
    body = b'{"pad": "' + b"x" * 20_000_000 + b'"}'
    answer = api.post(*path, data=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "bad_request",
        "reason": "Exceeded HTTP request body size limit",
    }


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        ("/api/exchanges/%2F/amq.default/publish", 21_000_000, 400),  # over the limit
        ("/api/exchanges/no-such-vhost/amq.default/publish", 21_000_000, 400),  # even so
        ("/api/exchanges/no-such-vhost/amq.default/publish", 8_000_000, 401),
    ],
)
def test_an_early_answer_still_reads_the_whole_body(
    management_url: str, path: str, size: int, status: int
) -> None:
    """A client that sends its whole body before reading the answer (as requests does)
    gets the answer, not a reset connection; the size limit is checked first."""
    parts = urlsplit(management_url)
    token = base64.b64encode(b"guest:guest").decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Basic {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(head.encode())
        # a whole publish request (RabbitMQ checks it before it looks for the vhost)
        start = b'{"routing_key": "k", "properties": {}, "payload_encoding": "string", "payload": "'
        sock.sendall(start + b"x" * (size - len(start) - 2) + b'"}')  # BrokenPipeError if unread
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.split(b" ", 2)[1] == str(status).encode()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            ("exchanges", "no-such-vhost", "amq.default", "publish"),
            {"routing_key": "k", "properties": {}, "payload": "x", "payload_encoding": "string"},
        ),
        (
            ("queues", "no-such-vhost", "q", "get"),
            {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
        ),
    ],
    ids=["publish", "get"],
)
def test_publish_and_get_in_a_missing_vhost_are_refused(
    api: Api, path: tuple[str, ...], body: dict[str, object]
) -> None:
    answer = api.post(*path, json=body)
    assert (answer.status_code, answer.json()) == (
        401,
        {"error": "not_authorised", "reason": "Access refused."},
    )


@trimq_only
def test_a_change_from_another_sites_page_is_refused(api: Api, unique: str) -> None:
    """A browser sends the credentials it keeps for this server with a form posted from
    any site; a change whose Origin names another host is refused (RabbitMQ accepts it).
    Reads, same-origin pages and clients that send no Origin (curl, tools) are served."""
    foreign = {"Origin": "http://attacker.example"}
    answer = api.put("vhosts", unique, json={}, headers=foreign)
    assert (answer.status_code, answer.json()) == (
        403,
        {"error": "forbidden", "reason": "cross-origin request refused"},
    )
    assert api.get("vhosts", unique).status_code == 404
    assert api.get("overview", headers=foreign).status_code == 200
    own = {"Origin": api.base}
    assert api.put("vhosts", unique, json={}, headers=own).status_code == 201
    assert api.delete("vhosts", unique).status_code == 204
