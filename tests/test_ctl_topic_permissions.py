"""set_topic_permissions, clear_topic_permissions, list_topic_permissions and
list_user_topic_permissions: rabbitmqctl 3.10's banners, columns, errors and exit codes, and the
store they share with the management API (/api/topic-permissions).

RabbitMQ reference: against another broker (TRIMQ_TEST_URL) the commands are run with
TRIMQ_TEST_RABBITMQCTL, the command that administers it (tools/rabbitmq_reference.sh sets it);
without it the tests are skipped. Against trimq they run trimqctl on the session's server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from admin_helpers import Admin, admin_tool
from conftest import Broker
from http_helpers import Api


@dataclass
class TopicAdmin(Admin):
    """The tool, and a user and a vhost of the test's own."""

    user: str = ""
    vhost: str = ""


@pytest.fixture
def admin(broker: Broker) -> Iterator[TopicAdmin]:
    tool = admin_tool(broker)
    suffix = uuid.uuid4().hex[:8]
    result = TopicAdmin(tool.tool, f"topic-user-{suffix}", f"topic-vhost-{suffix}")
    result.ok("add_user", result.user, "pw")
    result.ok("add_vhost", result.vhost)
    yield result
    result("delete_user", result.user)
    result("delete_vhost", result.vhost)


def test_set_list_and_clear(admin: TopicAdmin) -> None:
    user, vhost = admin.user, admin.vhost
    assert admin("set_topic_permissions", user, "amq.topic", "^a", "^b") == (
        0,
        [f'Setting topic permissions on "amq.topic" for user "{user}" in vhost "/" ...'],
        [],
    )
    admin.ok("set_topic_permissions", "-p", vhost, user, "amq.topic", "^c", "^d")
    admin.ok("set_topic_permissions", "-p", vhost, user, "logs", "", ".*")
    code, out, err = admin("list_topic_permissions", "-p", vhost)
    assert (code, err) == (0, [])
    assert out[:2] == [
        f'Listing topic permissions for vhost "{vhost}" ...',
        "user\texchange\twrite\tread",
    ]
    assert sorted(out[2:]) == [f"{user}\tamq.topic\t^c\t^d", f"{user}\tlogs\t\t.*"]
    code, out, _ = admin("list_user_topic_permissions", user)  # no header line (as RabbitMQ)
    assert out[0] == f'Listing topic permissions for user "{user}" ...'
    assert sorted(out[1:]) == [
        "/\tamq.topic\t^a\t^b",
        f"{vhost}\tamq.topic\t^c\t^d",
        f"{vhost}\tlogs\t\t.*",
    ]
    code, out, _ = admin("list_user_topic_permissions", "-s", user)
    assert code == 0 and len(out) == 3 and not out[0].startswith("Listing")
    code, out, _ = admin("list_user_topic_permissions", user, "--formatter", "json")
    assert code == 0 and {"vhost": "/", "exchange": "amq.topic", "write": "^a", "read": "^b"} in (
        json.loads("".join(out))
    )
    code, out, _ = admin("list_topic_permissions", "-q", "-p", vhost)
    assert code == 0 and out[0] == "user\texchange\twrite\tread"
    code, out, _ = admin("list_topic_permissions", "-p", vhost, "--formatter", "json")
    assert code == 0 and out[0] == "[" and out[-1] == "]" and out[2].startswith(",{")
    assert sorted(json.loads("".join(out)), key=lambda r: r["exchange"]) == [
        {"user": user, "exchange": "amq.topic", "write": "^c", "read": "^d"},
        {"user": user, "exchange": "logs", "write": "", "read": ".*"},
    ]
    assert admin("clear_topic_permissions", "-p", vhost, user, "logs") == (
        0,
        [f'Clearing topic permissions on "logs" for user "{user}" in vhost "{vhost}" ...'],
        [],
    )
    admin.ok("clear_topic_permissions", "-p", vhost, user, "logs")  # none left: no error
    assert admin.ok("list_topic_permissions", "-p", vhost)[2:] == [f"{user}\tamq.topic\t^c\t^d"]
    assert admin("clear_topic_permissions", user) == (
        0,
        [f'Clearing topic permissions for user "{user}" in vhost "/" ...'],
        [],
    )
    admin.ok("clear_topic_permissions", "-p", vhost, user)
    # an empty listing: the banner, then an empty line
    assert admin("list_user_topic_permissions", user) == (
        0,
        [f'Listing topic permissions for user "{user}" ...', ""],
        [],
    )
    assert admin("list_topic_permissions", "-p", vhost) == (
        0,
        [f'Listing topic permissions for vhost "{vhost}" ...', ""],
        [],
    )
    assert admin("list_topic_permissions", "-p", vhost, "--formatter", "json") == (0, ["[]"], [])
    assert admin("list_user_topic_permissions", "-s", user) == (0, [""], [])


def test_errors_and_exit_codes(admin: TopicAdmin) -> None:
    user = admin.user
    assert admin("set_topic_permissions", "nosuch-user", "amq.topic", "a", "b") == (
        67,
        ['Setting topic permissions on "amq.topic" for user "nosuch-user" in vhost "/" ...'],
        ["Error:", "User nosuch-user does not exist"],
    )
    assert admin("set_topic_permissions", "-p", "nosuch-vhost", user, "amq.topic", "a", "b") == (
        69,
        [f'Setting topic permissions on "amq.topic" for user "{user}" in vhost "nosuch-vhost" ...'],
        ["Error:", "Virtual host nosuch-vhost does not exist"],
    )
    code, _, err = admin("set_topic_permissions", user, "amq.topic", "(", "b")
    assert code == 69 and err[0] == "Error:" and "(" in err[1]  # the texts differ (README)
    assert admin("clear_topic_permissions", "nosuch-user") == (
        67,
        ['Clearing topic permissions for user "nosuch-user" in vhost "/" ...'],
        ["Error:", "User nosuch-user does not exist"],
    )
    assert admin("clear_topic_permissions", "-p", "nosuch-vhost", user, "amq.topic") == (
        69,
        [
            f'Clearing topic permissions on "amq.topic" for user "{user}" in vhost '
            '"nosuch-vhost" ...'
        ],
        ["Error:", "Virtual host nosuch-vhost does not exist"],
    )
    assert admin("list_topic_permissions", "-p", "nosuch-vhost") == (
        65,
        ['Listing topic permissions for vhost "nosuch-vhost" ...'],
        ["Virtual host 'nosuch-vhost' does not exist"],
    )
    assert admin("list_user_topic_permissions", "nosuch-user") == (
        69,
        ['Listing topic permissions for user "nosuch-user" ...'],
        ["Error:", '{:no_such_user, "nosuch-user"}'],
    )
    for args in (
        ("set_topic_permissions", user, "amq.topic", "a"),
        ("clear_topic_permissions",),
        ("clear_topic_permissions", user, "a", "b"),
        ("list_topic_permissions", "extra"),
        ("list_user_topic_permissions",),
    ):
        code, out, err = admin(*args)
        assert (code, out) == (64, []), args
        assert err[0].startswith("Error (argument validation): "), args


def test_shared_with_the_management_api(admin: TopicAdmin, management_url: str) -> None:
    api = Api(management_url)
    user = admin.user
    admin.ok("set_topic_permissions", user, "amq.topic", "^w", "^r")
    answer = api.get("topic-permissions", "/", user)
    assert answer.status_code == 200
    assert answer.json() == [
        {"user": user, "vhost": "/", "exchange": "amq.topic", "write": "^w", "read": "^r"}
    ]
    topic = {"exchange": "amq.direct", "write": "x", "read": "y"}
    assert api.put("topic-permissions", "/", user, json=topic).status_code == 204
    assert sorted(admin.ok("list_user_topic_permissions", "-s", user)) == [
        "/\tamq.direct\tx\ty",
        "/\tamq.topic\t^w\t^r",
    ]
    admin.ok("clear_topic_permissions", user)
    assert api.get("topic-permissions", "/", user).status_code == 404


def test_empty_permission_and_policy_listings(admin: TopicAdmin) -> None:
    """The listings that answer a whole list print none as an empty line (`[]` in JSON),
    as rabbitmqctl does; the user and vhost of the fixture have no permissions or policies."""
    user, vhost = admin.user, admin.vhost
    assert admin("list_permissions", "-p", vhost) == (
        0,
        [f'Listing permissions for vhost "{vhost}" ...', ""],
        [],
    )
    assert admin("list_permissions", "-p", vhost, "--formatter", "json") == (0, ["[]"], [])
    assert admin("list_user_permissions", user) == (
        0,
        [f'Listing permissions for user "{user}" ...', ""],
        [],
    )
    assert admin("list_user_permissions", user, "--formatter", "json") == (0, ["[]"], [])
    assert admin("list_policies", "-p", vhost) == (
        0,
        [f'Listing policies for vhost "{vhost}" ...', ""],
        [],
    )
    assert admin("list_policies", "-p", vhost, "--formatter", "json") == (0, ["[]"], [])
