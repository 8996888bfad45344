"""trimq's management listener: configuration (on, off, port 0, host), its printed and logged
address, guest refused from a non-loopback address, the body size limit, and a clean stop."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import start_server, stop_server
from http_helpers import Api

from trimq.broker.broker import Broker as Model
from trimq.cli import config
from trimq.management.auth import MANAGEMENT, authenticate
from trimq.management.context import MAX_BODY_SIZE
from trimq.management.errors import ApiError

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL") or os.environ.get("TRIMQ_TEST_MANAGEMENT_URL")),
    reason="trimq-only: starts its own trimq-server",
)


def _overview(port: int) -> requests.Response:
    return requests.get(
        f"http://127.0.0.1:{port}/api/overview", auth=("guest", "guest"), timeout=10
    )


def test_listener_listed_logged_and_stopped(tmp_path: Path) -> None:
    log = tmp_path / "log"
    server = start_server(tmp_path / "data", log_path=log)
    try:
        assert server.management_port
        overview = _overview(server.management_port).json()
        http = [lst for lst in overview["listeners"] if lst["protocol"] == "http"]
        assert [(lst["ip_address"], lst["port"]) for lst in http] == [
            ("127.0.0.1", server.management_port)
        ]
    finally:
        assert stop_server(server) == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    listening = [e for e in events if e["event"] == "management.listening"]
    assert listening[0]["addresses"] == [f"127.0.0.1:{server.management_port}"]
    # stopped with the broker: nothing listens there any more
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.management_port), timeout=2).close()


def test_two_servers_serve_their_own_ports(tmp_path: Path) -> None:
    first = start_server(tmp_path / "one")
    second = start_server(tmp_path / "two")
    try:
        assert first.management_port != second.management_port
        assert _overview(first.management_port).status_code == 200  # type: ignore[arg-type]
        assert _overview(second.management_port).status_code == 200  # type: ignore[arg-type]
    finally:
        stop_server(first)
        stop_server(second)


def test_listener_off(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--no-management")
    try:
        assert server.management_port is None
        with server.connect() as connection:
            assert connection.is_open
    finally:
        assert stop_server(server) == 0


def test_port_0_turns_the_listener_off(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--management-port", "0")
    try:
        assert server.management_port is None
        assert server.prometheus_port  # the Prometheus listener is independent
        with server.connect() as connection:
            assert connection.is_open
    finally:
        assert stop_server(server) == 0
    settings = config.load(None, {"TRIMQ_MANAGEMENT_PORT": "0"}, {})
    assert not settings.serves_management and settings.serves_prometheus


def test_listener_off_from_the_environment(tmp_path: Path) -> None:
    os.environ["TRIMQ_MANAGEMENT_ENABLED"] = "false"
    try:
        server = start_server(tmp_path / "data")
    finally:
        del os.environ["TRIMQ_MANAGEMENT_ENABLED"]
    try:
        assert server.management_port is None
    finally:
        stop_server(server)


def test_listener_port_in_use_is_a_clean_start_failure(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "trimq.cli.server",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--management-port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "Address already in use" in result.stderr


def test_configuration_keys() -> None:
    settings = config.load(None, {"TRIMQ_MANAGEMENT_PORT": "15999"}, {"management.host": "::1"})
    assert (settings.management_enabled, settings.management_port) == (True, 15999)
    assert settings.management_host == "::1"
    assert config.Settings().management_port == 15672
    with pytest.raises(config.ConfigError, match="--management-port"):
        config.load(None, {}, {"management.port": 70000})


def test_stop_while_a_request_is_open(tmp_path: Path) -> None:
    """A half-sent request does not hold the broker up on SIGTERM."""
    server = start_server(tmp_path / "data")
    assert server.management_port
    with socket.create_connection(("127.0.0.1", server.management_port)) as client:
        client.sendall(b"PUT /api/vhosts/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0


def test_body_over_the_limit_is_refused(node: object) -> None:
    port = node.management_port  # type: ignore[attr-defined]
    answer = requests.put(
        f"http://127.0.0.1:{port}/api/vhosts/big",
        data=b"x" * (MAX_BODY_SIZE + 1),
        auth=("guest", "guest"),
        timeout=30,
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "bad_request",
        "reason": "Exceeded HTTP request body size limit",
    }
    listed = requests.get(f"http://127.0.0.1:{port}/api/vhosts/big", auth=("guest", "guest"))
    assert listed.status_code == 404


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_guest_only_from_loopback(tmp_path: Path) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback address on this machine")
    server = start_server(tmp_path / "data", "--management-host", "0.0.0.0")
    try:
        base = f"http://{{}}:{server.management_port}/api/whoami"
        remote = requests.get(base.format(address), auth=("guest", "guest"), timeout=10)
        assert remote.status_code == 401
        assert remote.json() == {
            "error": "not_authorised",
            "reason": "User can only log in via localhost",
        }
        local = requests.get(base.format("127.0.0.1"), auth=("guest", "guest"), timeout=10)
        assert local.status_code == 200
    finally:
        stop_server(server)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_authenticate_rules() -> None:
    model = Model()
    model.add_user("plain", "pw", [])

    def refusal(user: str, password: str, peer: str) -> str:
        with pytest.raises(ApiError) as caught:
            authenticate(model, _basic(user, password), peer, MANAGEMENT)
        return caught.value.reason

    assert refusal("plain", "pw", "127.0.0.1") == "Not management user"
    assert refusal("guest", "wrong", "10.1.2.3") == "Login failed"  # the password first
    assert refusal("guest", "guest", "10.1.2.3") == "User can only log in via localhost"
    for peer in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
        assert authenticate(model, _basic("guest", "guest"), peer, MANAGEMENT).name == "guest"


def test_admin_changes_survive_a_restart(tmp_path: Path) -> None:
    """What the API changes is journaled like trimqctl's changes: it is there after a restart,
    and the export has it all."""
    data = tmp_path / "data"
    server = start_server(data)
    api = Api(f"http://127.0.0.1:{server.management_port}")
    try:
        assert api.put("vhosts", "v/1", json={"description": "d", "tags": "t"}).status_code == 201
        assert (
            api.put("users", "u", json={"password": "pw", "tags": "management"}).status_code == 201
        )
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        assert api.put("permissions", "v/1", "u", json=everything).status_code == 201
        topic = {"exchange": "amq.topic", "write": "^a", "read": ""}
        assert api.put("topic-permissions", "v/1", "u", json=topic).status_code == 201
        policy = {
            "pattern": "^q",
            "definition": {"max-length": 2},
            "priority": 1,
            "apply-to": "queues",
        }
        assert api.put("policies", "v/1", "p", json=policy).status_code == 201
        assert api.put("vhost-limits", "v/1", "max-queues", json={"value": 3}).status_code == 204
        before = api.get("definitions").json()
    finally:
        assert stop_server(server) == 0
    server = start_server(data)
    api = Api(f"http://127.0.0.1:{server.management_port}")
    try:
        after = api.get("definitions").json()
        assert after == before
        assert after["topic_permissions"] == [{"user": "u", "vhost": "v/1", **topic}]
        assert after["policies"] == [{"vhost": "v/1", "name": "p", **policy}]
        assert api.as_user("u", "pw").get("whoami").json() == {"name": "u", "tags": ["management"]}
        assert api.get("vhost-limits", "v/1").json() == [
            {"vhost": "v/1", "value": {"max-queues": 3}}
        ]
        # deleting the user and the vhost removes what hangs on them, for good
        assert api.delete("users", "u").status_code == 204
        assert api.delete("vhosts", "v/1").status_code == 204
    finally:
        assert stop_server(server) == 0
    server = start_server(data)
    api = Api(f"http://127.0.0.1:{server.management_port}")
    try:
        doc = api.get("definitions").json()
        assert doc["topic_permissions"] == [] and doc["policies"] == []
        assert [u["name"] for u in doc["users"]] == ["guest"]
    finally:
        stop_server(server)
