"""Who may do what on the messaging endpoints: a user with only the `management` tag works in
the vhosts it has permissions in, within its configure/write/read expressions, sees only its
own connections, and gets RabbitMQ's 401 answers elsewhere.

RabbitMQ reference: every expected answer was taken from RabbitMQ 3.10.8 and the file runs
against it (TRIMQ_TEST_URL and TRIMQ_TEST_MANAGEMENT_URL).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from http_helpers import Api, temp_user, temp_vhost

ACCESS_REFUSED = {"error": "not_authorised", "reason": "Access refused."}
NO_VHOST = {"error": "not_authorised", "reason": "User not authorised to access virtual host"}


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


@pytest.fixture
def user(api: Api, unique: str) -> Iterator[tuple[Api, str]]:
    name = "u." + unique
    with temp_user(api, name, tags="management") as as_user:
        answer = api.put(
            "permissions",
            "/",
            name,
            json={"configure": "^allowed", "write": ".*", "read": "^allowed"},
        )
        assert answer.status_code in (201, 204), answer.text
        yield as_user, name


def test_management_user_within_its_permissions(
    api: Api, user: tuple[Api, str], unique: str
) -> None:
    as_user, name = user
    allowed, denied = "allowed." + unique, "other." + unique
    try:
        answer = as_user.put("queues", "/", denied, json={})
        assert answer.status_code == 401 and answer.json() == ACCESS_REFUSED
        assert as_user.put("queues", "/", allowed, json={}).status_code == 201
        assert as_user.get("queues", "/", allowed).json()["name"] == allowed
        get = {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}
        assert as_user.post("queues", "/", allowed, "get", json=get).json() == []
        assert api.put("queues", "/", denied, json={}).status_code == 201
        answer = as_user.post("queues", "/", denied, "get", json=get)
        assert answer.status_code == 401
        assert answer.json() == {
            "error": "not_authorised",
            "reason": f"ACCESS_REFUSED - access to queue '{denied}' in vhost '/' "
            f"refused for user '{name}'",
        }
        for path in (("queues", "/", denied, "contents"), ("queues", "/", denied)):
            answer = as_user.delete(*path)
            assert answer.status_code == 401 and answer.json() == ACCESS_REFUSED
        listed = [row["name"] for row in as_user.get("queues", params={"columns": "name"}).json()]
        assert allowed in listed and denied in listed  # a vhost's queues are all listed
    finally:
        api.delete("queues", "/", allowed)
        api.delete("queues", "/", denied)


def test_vhost_without_permissions(api: Api, user: tuple[Api, str], unique: str) -> None:
    as_user, _name = user
    with temp_vhost(api, "v." + unique) as vhost:
        for path in (("queues", vhost), ("queues", vhost, "q"), ("exchanges", vhost)):
            answer = as_user.get(*path)
            assert answer.status_code == 401 and answer.json() == NO_VHOST, path
        answer = as_user.put("queues", vhost, "allowed.q", json={})
        assert answer.status_code == 401 and answer.json() == NO_VHOST
        names = {
            row["vhost"] for row in as_user.get("exchanges", params={"columns": "vhost"}).json()
        }
        assert vhost not in names


def test_only_own_connections(api: Api, user: tuple[Api, str], connection: object) -> None:
    as_user, _name = user
    assert as_user.get("connections").json() == []
    assert as_user.get("channels").json() == []
