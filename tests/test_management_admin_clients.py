"""The admin side of the management API driven by the real clients operators use: pyrabbit2,
the requests Ansible's community.rabbitmq modules send (rabbitmq_vhost, rabbitmq_user with its
permissions and topic permissions, rabbitmq_policy: the same calls in the same order, with
the status checks those modules make), and rabbitmqadmin (the script RabbitMQ ships; its
requests carry booleans and numbers as strings).

Every expectation was taken from a RabbitMQ 3.10.8 with rabbitmq_management; run against one
with TRIMQ_TEST_MANAGEMENT_URL (tools/rabbitmq_reference.sh does it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest
import requests
from http_helpers import Api, temp_user, temp_vhost
from packaging.version import Version
from pyrabbit2.api import Client

ADMIN = ("guest", "guest")


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


# -- pyrabbit2 ------------------------------------------------------------------------------


@pytest.fixture
def client(management_url: str) -> Client:
    return Client(urlparse(management_url).netloc, *ADMIN)


def test_pyrabbit2_overview_and_node(client: Client) -> None:
    overview = client.get_overview()
    assert Version(overview["rabbitmq_version"]) >= Version("3.10")
    assert client.get_whoami() == {"name": "guest", "tags": ["administrator"]}
    assert client.is_alive() is True
    assert [node["name"] for node in client.get_nodes()] == [overview["node"]]
    assert client.get_cluster_name()["name"] == overview["cluster_name"]
    assert isinstance(client.get_extensions(), list)


def test_pyrabbit2_vhosts_users_permissions(client: Client, unique: str) -> None:
    vhost = unique + "/py"
    assert client.create_vhost(vhost) == 201  # pyrabbit2 returns the status of empty answers
    try:
        assert vhost in client.get_vhost_names()
        assert client.get_vhost(vhost)["name"] == vhost
        assert client.create_user(unique, "pw", tags="management,monitoring") == 201
        try:
            users = {u["name"]: u for u in client.get_users()}
            assert users[unique]["tags"] == ["management", "monitoring"]
            assert client.set_vhost_permissions(vhost, unique, ".*", "^r", "^w") == 201
            expected = {
                "user": unique,
                "vhost": vhost,
                "configure": ".*",
                "write": "^w",
                "read": "^r",
            }
            assert client.get_permission(vhost, unique) == expected
            assert client.get_user_permissions(unique) == [expected]
            assert expected in client.get_vhost_permissions(vhost)
            assert expected in client.get_permissions()
            assert client.delete_permission(vhost, unique) == 204
            assert client.get_user_permissions(unique) == []
        finally:
            assert client.delete_user(unique) == 204
    finally:
        assert client.delete_vhost(vhost) == 204
    assert vhost not in client.get_vhost_names()


def test_pyrabbit2_policies(client: Client, api: Api, unique: str) -> None:
    with temp_vhost(api, unique) as vhost:
        definition = {"max-length": 5}
        created = client.create_policy(
            vhost,
            "limit",
            pattern="^q",
            definition=definition,
            priority=1,
            **{"apply-to": "queues"},
        )
        assert created == 201
        policy = client.get_policy(vhost, "limit")
        assert policy == {
            "vhost": vhost,
            "name": "limit",
            "pattern": "^q",
            "apply-to": "queues",
            "definition": definition,
            "priority": 1,
        }
        assert policy in client.get_all_policies()
        assert client.delete_policy(vhost, "limit") == 204
        assert policy not in client.get_all_policies()


def test_pyrabbit2_definitions(client: Client) -> None:
    doc = client.get_definitions()
    assert "guest" in {u["name"] for u in doc["users"]}
    assert "/" in {v["name"] for v in doc["vhosts"]}


# -- Ansible's community.rabbitmq modules ---------------------------------------------------


class AnsibleFailed(Exception):
    """What a module's fail_json would report."""


def _ansible(method: str, url: str, data: Any = None, auth: tuple[str, str] = ADMIN) -> Any:
    return requests.request(method, url, auth=auth, json=data, timeout=10)


def ansible_vhost(base: str, name: str, state: str = "present", tracing: bool = False) -> bool:
    """community.rabbitmq.rabbitmq_vhost with login_host: returns `changed`."""
    url = f"{base}/api/vhosts/{quote(name, safe='')}"
    response = _ansible("get", url)
    if response.ok:
        exists, current_tracing = True, response.json()["tracing"]
    elif response.status_code == 404:
        exists, current_tracing = False, None
    else:
        raise AnsibleFailed("Error getting the vhost", response.status_code)
    if exists:
        if state == "absent":
            if not _ansible("delete", url).ok:
                raise AnsibleFailed("Error trying to remove vhost")
            return True
        if tracing != current_tracing:
            if not _ansible("put", url, {"tracing": tracing}).ok:
                raise AnsibleFailed("Error trying to set tracing")
            return True
        return False
    if state == "present":
        if not _ansible("put", url).ok:
            raise AnsibleFailed("Error trying to create vhost")
        if tracing != current_tracing and not _ansible("put", url, {"tracing": tracing}).ok:
            raise AnsibleFailed("Error trying to set tracing")
        return True
    return False


def ansible_user(
    base: str,
    user: str,
    password: str,
    tags: str,
    permissions: list[dict[str, str]],
    topic_permissions: list[dict[str, str]],
    state: str = "present",
    update_password: str = "on_create",
) -> bool:
    """community.rabbitmq.rabbitmq_user with login_host and bulk `permissions`: `changed`."""
    quoted = quote(user, safe="")
    users_url = f"{base}/api/users/{quoted}"
    tag_list = tags.replace(" ", "").split(",") if tags else []
    wanted = {p["vhost"]: p for p in permissions}
    wanted_topic = {(p["vhost"], p["exchange"]): p for p in topic_permissions}

    def permissions_now() -> dict[str, dict[str, str]] | None:
        response = _ansible("get", f"{base}/api/users/{quoted}/permissions")
        if response.ok or response.status_code == 204:
            return {
                p["vhost"]: {k: p[k] for k in ("vhost", "configure", "write", "read")}
                for p in response.json()
            }
        if response.status_code == 404:
            return None
        raise AnsibleFailed("Error getting the user", response.status_code)

    def topic_permissions_now() -> dict[tuple[str, str], dict[str, str]] | None:
        response = _ansible("get", f"{base}/api/users/{quoted}/topic-permissions")
        if response.ok or response.status_code == 204:
            return {
                (p["vhost"], p["exchange"]): {
                    k: p[k] for k in ("vhost", "exchange", "write", "read")
                }
                for p in response.json()
            }
        if response.status_code == 404:
            return None
        raise AnsibleFailed("Error getting the user", response.status_code)

    response = _ansible("GET", users_url)
    if response.status_code == 200:
        existing_tags = response.json()["tags"]
        exists = True
    elif response.status_code == 404:
        existing_tags, exists = [], False
    else:
        raise AnsibleFailed("Error getting the user", response.status_code)
    existing = (permissions_now() or {}) if exists else {}
    existing_topic = (topic_permissions_now() or {}) if exists else {}
    data = {"password": password, "tags": ",".join(tag_list)}

    def add() -> None:
        response = _ansible("PUT", users_url, data)
        if not response.ok or response.status_code == 204:
            raise AnsibleFailed("Error trying to create user", response.status_code)

    def set_tags() -> None:
        response = _ansible("PUT", users_url, data)
        if response.status_code != 204:
            raise AnsibleFailed("Error trying to set tags", response.status_code)

    def set_permissions() -> None:
        for vhost in [v for v in existing if v not in wanted]:
            url = f"{base}/api/permissions/{quote(vhost, safe='')}/{quoted}"
            if _ansible("DELETE", url).status_code != 204:
                raise AnsibleFailed("Error trying to remove permission")
        for vhost, permission in wanted.items():
            if permission != existing.get(vhost, {}):
                url = f"{base}/api/permissions/{quote(vhost, safe='')}/{quoted}"
                body = {k: permission.get(k) or "^$" for k in ("configure", "write", "read")}
                response = _ansible("PUT", url, body)
                if response.status_code not in (201, 204):
                    raise AnsibleFailed("Error trying to add permission", response.status_code)
        permissions_now()

    def set_topic_permissions() -> None:
        for vhost, _exchange in [k for k in existing_topic if k not in wanted_topic]:
            url = f"{base}/api/topic-permissions/{quote(vhost, safe='')}/{quoted}"
            if _ansible("DELETE", url).status_code != 204:
                raise AnsibleFailed("Error trying to remove topic permission")
        for key, permission in wanted_topic.items():
            if permission != existing_topic.get(key, {}):
                url = f"{base}/api/topic-permissions/{quote(key[0], safe='')}/{quoted}"
                body = {k: permission.get(k) for k in ("exchange", "write", "read")}
                response = _ansible("PUT", url, body)
                if response.status_code not in (201, 204):
                    raise AnsibleFailed(
                        "Error trying to add topic permission", response.status_code
                    )
        topic_permissions_now()

    if exists:
        if state == "absent":
            if _ansible("DELETE", users_url).status_code != 204:
                raise AnsibleFailed("Error trying to remove user")
            return True
        changed = False
        if update_password == "always":
            check = requests.get(f"{base}/api/whoami", auth=(user, password), timeout=10)
            if not (check.ok or check.json().get("reason") == "Not management user"):
                response = _ansible("PUT", users_url, {"password": password, "tags": tag_list})
                raise AnsibleFailed("Error setting tags for the user", response.status_code)
        if set(tag_list) != set(existing_tags):
            set_tags()
            changed = True
        if existing != wanted:
            set_permissions()
            changed = True
        if existing_topic != wanted_topic:
            set_topic_permissions()
            changed = True
        return changed
    if state == "present":
        add()
        set_tags()
        set_permissions()
        set_topic_permissions()
        return True
    return False


def ansible_policy(
    base: str,
    name: str,
    vhost: str,
    pattern: str,
    tags: dict[str, Any],
    apply_to: str = "all",
    priority: str = "0",
    state: str = "present",
) -> bool:
    """community.rabbitmq.rabbitmq_policy with login_host: `changed`."""
    response = _ansible("get", f"{base}/api/overview")
    if not response.ok:
        raise AnsibleFailed("Error trying to retrieve rabbitmq version", response.status_code)
    version = Version(response.json()["rabbitmq_version"])
    assert version >= Version("3.7.0")
    url = f"{base}/api/policies/{quote(vhost, safe='')}"
    response = _ansible("get", url)
    if not response.ok:
        raise AnsibleFailed("Error trying to retrieve policies", response.status_code)
    # the module turns each policy into rabbitmqctl's tab-separated row, then compares fields
    rows = [
        "\t".join(
            str(field)
            for field in (
                p["vhost"],
                p["name"],
                p["pattern"],
                p["apply-to"],
                json.dumps(p["definition"]),
                p["priority"],
            )
        )
        for p in response.json()
    ]

    def same(row: str) -> bool:
        fields = row.split("\t")
        return (
            fields[1] == name
            and fields[3] == apply_to
            and json.loads(fields[4]) == tags
            and fields[5] == priority
            and fields[2].replace("\\\\", "\\") == pattern
        )

    if state == "present" and not any(same(row) for row in rows):
        policy = {
            "vhost": vhost,
            "name": name,
            "pattern": pattern,
            "apply-to": apply_to,
            "definition": tags,
            "priority": int(priority),
        }
        response = _ansible("put", f"{url}/{name}", policy)
        if not response.ok:
            raise AnsibleFailed("Error trying to set policy", response.text)
        return True
    if state == "absent" and any(row.split("\t")[1] == name for row in rows):
        response = _ansible("delete", f"{url}/{name}")
        if not response.ok:
            raise AnsibleFailed("Error trying to remove policy", response.status_code)
        return True
    return False


def test_ansible_vhost(management_url: str, api: Api, unique: str) -> None:
    name = unique + "/ansible"
    try:
        assert ansible_vhost(management_url, name) is True
        assert ansible_vhost(management_url, name) is False  # idempotent
        assert api.get("vhosts", name).json()["tracing"] is False
    finally:
        assert ansible_vhost(management_url, name, state="absent") is True
    assert ansible_vhost(management_url, name, state="absent") is False
    assert api.get("vhosts", name).status_code == 404


def test_ansible_user_with_permissions(management_url: str, api: Api, unique: str) -> None:
    with temp_vhost(api, unique + "-a") as first, temp_vhost(api, unique + "-b") as second:
        permissions = [
            {"vhost": first, "configure": ".*", "write": ".*", "read": ".*"},
            {"vhost": second, "configure": "^$", "write": "^x", "read": "^y"},
        ]
        topic = [{"vhost": first, "exchange": "amq.topic", "write": "^a", "read": ".*"}]
        args = (management_url, unique, "s3cret", "monitoring, management")
        try:
            assert ansible_user(*args, permissions, topic) is True
            assert ansible_user(*args, permissions, topic) is False  # idempotent
            assert ansible_user(*args, permissions, topic, update_password="always") is False
            assert api.as_user(unique, "s3cret").get("whoami").json() == {
                "name": unique,
                "tags": ["monitoring", "management"],
            }
            shown = sorted(api.get("users", unique, "permissions").json(), key=lambda p: p["vhost"])
            assert shown == [{"user": unique, **p} for p in permissions]
            # tags and permissions change: a second vhost's permissions are cleared
            assert ansible_user(*args[:3], "management", permissions[:1], []) is True
            assert api.get("users", unique).json()["tags"] == ["management"]
            assert [p["vhost"] for p in api.get("users", unique, "permissions").json()] == [first]
            assert api.get("users", unique, "topic-permissions").json() == []
            assert api.as_user(unique, "s3cret").get("whoami").status_code == 200
        finally:
            assert ansible_user(*args, [], [], state="absent") is True
        assert api.get("users", unique).status_code == 404


def test_ansible_policy(management_url: str, api: Api, unique: str) -> None:
    with temp_vhost(api, unique) as vhost:
        args = (management_url, "ha", vhost, "^ha\\.", {"max-length": 7})
        assert ansible_policy(*args, apply_to="queues", priority="2") is True
        assert ansible_policy(*args, apply_to="queues", priority="2") is False
        assert api.get("policies", vhost, "ha").json()["priority"] == 2
        assert ansible_policy(*args, apply_to="queues", priority="3") is True
        assert ansible_policy(*args, state="absent") is True
        assert ansible_policy(*args, state="absent") is False
        assert api.get("policies", vhost).json() == []


# -- rabbitmqadmin --------------------------------------------------------------------------

RABBITMQADMIN = shutil.which("rabbitmqadmin") or "/usr/bin/rabbitmqadmin"


@pytest.fixture
def rabbitmqadmin(management_url: str, tmp_path: Path) -> Any:
    if not Path(RABBITMQADMIN).is_file():
        pytest.skip("rabbitmqadmin is not installed (Debian's rabbitmq-server ships it)")
    parts = urlparse(management_url)

    def run(*args: str) -> str:
        result = subprocess.run(
            [
                sys.executable,
                RABBITMQADMIN,
                "-H",
                parts.hostname or "127.0.0.1",
                "-P",
                str(parts.port),
                "-u",
                ADMIN[0],
                "-p",
                ADMIN[1],
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    return run


def test_rabbitmqadmin_admin_objects(
    rabbitmqadmin: Any, api: Api, unique: str, tmp_path: Path
) -> None:
    vhost = unique + "-adm"
    assert "vhost declared" in rabbitmqadmin("declare", "vhost", f"name={vhost}", "tracing=false")
    try:
        assert api.get("vhosts", vhost).json()["tracing"] is False
        rabbitmqadmin("declare", "user", f"name={unique}", "password=pw", "tags=management")
        rabbitmqadmin(
            "declare",
            "permission",
            f"vhost={vhost}",
            f"user={unique}",
            "configure=.*",
            "write=.*",
            "read=.*",
        )
        rabbitmqadmin(
            "-V",
            vhost,
            "declare",
            "policy",
            "name=p",
            "pattern=^q",
            'definition={"max-length":3}',
            "priority=4",
            "apply-to=queues",
        )
        rabbitmqadmin("declare", "vhost_limit", f"vhost={vhost}", "name=max-queues", "value=9")
        assert api.get("policies", vhost, "p").json()["priority"] == 4
        assert api.get("vhost-limits", vhost).json() == [
            {"vhost": vhost, "value": {"max-queues": 9}}
        ]
        assert api.get("permissions", vhost, unique).json()["read"] == ".*"
        listed = json.loads(rabbitmqadmin("-f", "raw_json", "list", "users"))
        assert {"name": unique, "tags": ["management"]}.items() <= next(
            u for u in listed if u["name"] == unique
        ).items()
        export = tmp_path / "defs.json"
        assert "Exported definitions" in rabbitmqadmin("export", str(export))
        doc = json.loads(export.read_text())
        assert {
            "vhost": vhost,
            "name": "p",
            "pattern": "^q",
            "apply-to": "queues",
            "definition": {"max-length": 3},
            "priority": 4,
        } in doc["policies"]
        rabbitmqadmin("delete", "permission", f"vhost={vhost}", f"user={unique}")
        rabbitmqadmin("-V", vhost, "delete", "policy", "name=p")
        rabbitmqadmin("delete", "vhost_limit", f"vhost={vhost}", "name=max-queues")
        rabbitmqadmin("delete", "user", f"name={unique}")
        assert api.get("users", unique).status_code == 404
        assert api.get("policies", vhost).json() == []
        # importing the export puts it all back
        assert "Uploaded definitions" in rabbitmqadmin("import", str(export))
        assert api.get("policies", vhost, "p").json()["priority"] == 4
        assert api.get("permissions", vhost, unique).status_code == 200
    finally:
        rabbitmqadmin("delete", "vhost", f"name={vhost}")
        api.delete("users", unique)
    assert api.get("vhosts", vhost).status_code == 404


def test_rabbitmqadmin_string_values(api: Api, unique: str) -> None:
    """rabbitmqadmin's request bodies as they go out: every optional value is a string
    unless the tool parses it as JSON ("tracing": "true", "durable": "true")."""
    name = unique + "-str"
    assert api.put("vhosts", name, json={"name": name, "tracing": "false"}).status_code == 201
    try:
        with temp_user(api, unique, tags="") as _user:
            body = {"vhost": name, "user": unique, "configure": ".*", "write": ".*", "read": ".*"}
            assert api.put("permissions", name, unique, json=body).status_code == 201
            assert (
                api.put("vhosts", name, json={"name": name, "tracing": "false"}).status_code == 204
            )
    finally:
        api.delete("vhosts", name)
