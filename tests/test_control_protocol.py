"""No control request stops the broker: malformed requests (wrong types, missing arguments,
huge values, bad JSON, unknown commands) each get an error reply and the broker stays up; and
permission expressions RabbitMQ accepts are either translated or refused by name.

trimq-only: drives its own trimq-server's control socket.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import trio
from conftest import Broker, start_server, stop_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimq.server import control as control_module

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: administers its own trimq-server"
)

KINDS = {
    "usage",
    "auth_failed",
    "user_not_found",
    "vhost_not_found",
    "not_found",
    "exists",
    "in_use",
    "not_empty",
    "error",
}  # not "internal": that is a bug in a handler
# Every command of docs/control-protocol.md but `stop`, with the arguments it reads.
COMMANDS: dict[str, tuple[str, ...]] = {
    "status": (),
    "set_memory_high_watermark": ("fraction", "absolute"),
    "set_disk_free_limit": ("bytes", "mem_relative"),
    "add_user": ("user", "password"),
    "delete_user": ("user",),
    "change_password": ("user", "password"),
    "clear_password": ("user",),
    "authenticate_user": ("user", "password"),
    "set_user_tags": ("user", "tags"),
    "list_users": (),
    "add_vhost": ("vhost", "description", "tags"),
    "delete_vhost": ("vhost",),
    "list_vhosts": ("items",),
    "set_vhost_limits": ("vhost", "definition"),
    "clear_vhost_limits": ("vhost",),
    "list_vhost_limits": ("vhost", "global"),
    "set_permissions": ("vhost", "user", "configure", "write", "read"),
    "clear_permissions": ("vhost", "user"),
    "list_permissions": ("vhost",),
    "list_user_permissions": ("user",),
    "set_topic_permissions": ("vhost", "user", "exchange", "write", "read"),
    "clear_topic_permissions": ("vhost", "user", "exchange"),
    "list_topic_permissions": ("vhost",),
    "list_user_topic_permissions": ("user",),
    "list_queues": ("vhost", "items"),
    "list_exchanges": ("vhost", "items"),
    "list_bindings": ("vhost", "items"),
    "list_connections": ("items",),
    "list_channels": ("items",),
    "list_consumers": ("vhost", "items"),
    "delete_queue": ("vhost", "queue", "if_unused", "if_empty"),
    "purge_queue": ("vhost", "queue"),
    "peek_queue": ("vhost", "queue", "offset", "count", "unacked"),
    "find_message": ("vhost", "message_id", "correlation_id"),
    "reload_tls": (),
    "close_connection": ("name", "reason"),
    "close_all_connections": ("vhost", "limit", "reason"),
    "set_policy": ("vhost", "name", "pattern", "definition", "priority", "apply_to"),
    "clear_policy": ("vhost", "name"),
    "list_policies": ("vhost",),
    "export_definitions": (),
    "import_definitions": ("definitions",),
}


def request(path: Path, raw: bytes) -> bytes:
    """Send `raw` as one request; the reply line."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered (and closed) before reading everything
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply


def check_reply(reply: bytes) -> dict[str, Any]:
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1, reply[:200]
    answer = json.loads(reply)
    assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), answer
    if not answer["ok"]:
        assert answer["kind"] in KINDS and isinstance(answer["error"], str), answer
    return answer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    node = start_server(tmp_path_factory.mktemp("control-fuzz"))
    yield node
    if node.process is not None and node.process.poll() is None:
        stop_server(node)


def alive(node: Broker) -> None:
    """The process runs and answers on both the control socket and AMQP."""
    assert node.process is not None and node.process.poll() is None
    assert node.data_dir is not None
    status = check_reply(request(node.data_dir / "trimq.sock", b'{"command": "status"}\n'))
    assert status["ok"]


# -- the property ---------------------------------------------------------------------------

SURROGATE = st.sampled_from(["\ud800", "a\udfffb"])
TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["/", "guest", ".*", "(", "(?|a)", r"\Qx\E", "[[:^digit:]a]"]),
    SURROGATE,
)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
DEFINITION_SECTIONS = [
    "vhosts",
    "users",
    "permissions",
    "parameters",
    "exchanges",
    "queues",
    "bindings",
    "policies",
]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["command", "command", "command", "args", "raw", "json"]))
    if shape == "raw":  # not JSON, not UTF-8, or no newline at all
        return draw(st.binary(max_size=64))
    if shape == "json":  # JSON that is no request
        return json.dumps(draw(JSON)).encode() + b"\n"
    name = draw(st.one_of(st.sampled_from(sorted(COMMANDS)), TEXT))
    if shape == "args":  # args of the wrong type
        return json.dumps({"command": name, "args": draw(JSON)}).encode() + b"\n"
    keys = (*COMMANDS.get(name, ()), "items", "vhost")
    args = draw(st.dictionaries(st.sampled_from(keys), JSON, max_size=len(keys)))
    if name == "import_definitions" and draw(st.booleans()):
        args["definitions"] = draw(
            st.dictionaries(
                st.sampled_from(DEFINITION_SECTIONS), st.lists(JSON, max_size=3), max_size=3
            )
        )
    return json.dumps({"command": name, "args": args}).encode() + b"\n"


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=requests())
def test_every_request_gets_a_reply_and_the_broker_stays_up(server: Broker, raw: bytes) -> None:
    assert server.data_dir is not None
    check_reply(request(server.data_dir / "trimq.sock", raw))
    assert server.process is not None and server.process.poll() is None


def test_malformed_requests_by_hand(server: Broker) -> None:
    assert server.data_dir is not None
    path = server.data_dir / "trimq.sock"
    cases = [
        (b"not json\n", "malformed request"),
        (b"\xff\xfe\n", "malformed request"),
        (b"[" * 100_000 + b"\n", "malformed request"),
        (b'{"command": 5}\n', "malformed request"),
        (b'{"command": "no_such"}\n', "unknown command 'no_such'"),
        (  # a lone surrogate could be stored nowhere (the journal writes UTF-8)
            b'{"command": "set_topic_permissions", "args": {"user": "guest", '
            b'"exchange": "\\ud800", "write": "", "read": ""}}\n',
            "request text is not valid Unicode",
        ),
        (
            b'{"command": "set_vhost_limits", "args": {"definition": {"\\ud800": null}}}\n',
            "request text is not valid Unicode",
        ),
        (
            b'{"command": "add_user", "args": "bob"}\n',
            "bad arguments for add_user: args must be an object",
        ),
        (b'{"command": "add_user", "args": {"user": "bob"}}\n', "missing argument 'password'"),
        (
            b'{"command": "add_user", "args": {"user": "bob", "password": 5}}\n',
            "argument 'password' must be a string",
        ),
        (
            b'{"command": "set_disk_free_limit", "args": {"bytes": 1e400}}\n',
            "argument 'bytes' must be an integer from 0 to 9223372036854775807",
        ),
        (
            b'{"command": "set_disk_free_limit", "args": {"mem_relative": NaN}}\n',
            "argument 'mem_relative' must be a number",
        ),
        (
            b'{"command": "set_user_tags", "args": {"user": "guest", "tags": [1]}}\n',
            "argument 'tags' must be a list of strings",
        ),
        (
            b'{"command": "list_queues", "args": {"items": "name"}}\n',
            "argument 'items' must be a list of strings",
        ),
        (
            b'{"command": "import_definitions", "args": {"definitions": {"queues": 5}}}\n',
            "invalid definitions: 'queues' must be a list",
        ),
        (
            b'{"command": "import_definitions", "args": {"definitions": '
            b'{"users": [{"name": 5}]}}}\n',
            "invalid definitions: each of 'users' needs a string 'name'",
        ),
    ]
    for raw, error in cases:
        answer = check_reply(request(path, raw))
        assert not answer["ok"] and answer["error"] == error, (raw[:80], answer)
    huge = "x" * 10_000_000  # a huge value is refused for what it is, not for its size
    answer = check_reply(
        request(
            path,
            json.dumps(
                {
                    "command": "set_permissions",
                    "args": {"user": "guest", "configure": huge, "write": ".*", "read": 5},
                }
            ).encode()
            + b"\n",
        )
    )
    assert answer["error"] == "argument 'read' must be a string"
    answer = check_reply(request(path, b"x" * (64 * 2**20 + 65536)))  # no newline, too long
    assert answer == {"ok": False, "kind": "usage", "error": "request too large"}
    alive(server)


# -- permission expressions -------------------------------------------------------------------


def control(node: Broker, command: str, **args: Any) -> dict[str, Any]:
    assert node.data_dir is not None
    return check_reply(
        request(
            node.data_dir / "trimq.sock",
            json.dumps({"command": command, "args": args}).encode() + b"\n",
        )
    )


def declared(node: Broker, user: str, names: list[str]) -> dict[str, bool]:
    """Which queues `user` may declare (configure permission) in vhost "/"."""
    conn = pika.BlockingConnection(
        pika.ConnectionParameters(
            node.host, node.port, "/", pika.PlainCredentials(user, "pw"), connection_attempts=1
        )
    )
    result = {}
    for name in names:
        channel = conn.channel()
        try:
            channel.queue_declare(name, auto_delete=True)
            result[name] = True
            channel.close()
        except pika.exceptions.ChannelClosedByBroker as exc:
            assert exc.reply_code == 403
            result[name] = False
    conn.close()
    return result


def test_import_translates_rabbitmq_expressions(server: Broker) -> None:
    """Before, `\\Q..\\E` raised re.error out of the handler and ended the broker."""
    document = {
        "users": [{"name": "pcre", "password_hash": "", "tags": []}],
        "permissions": [
            {
                "user": "pcre",
                "vhost": "/",
                "configure": r"^\Qa.b\E$|^(?<n>x)\k<n>$"
                r"|^c++$|^(?>d+)$",
                "write": ".*",
                "read": ".*",
            }
        ],
    }
    assert control(server, "import_definitions", definitions=document)["ok"]
    assert control(server, "change_password", user="pcre", password="pw")["ok"]
    assert declared(server, "pcre", ["a.b", "axb", "xx", "xy", "ccc", "ddd"]) == {
        "a.b": True,
        "axb": False,
        "xx": True,
        "xy": False,
        "ccc": True,
        "ddd": True,
    }
    alive(server)


def test_expressions_without_equivalent_are_refused_by_name(server: Broker) -> None:
    document = {
        "queues": [
            {
                "name": "not-created",
                "vhost": "/",
                "durable": True,
                "auto_delete": False,
                "arguments": {},
            }
        ],
        "permissions": [
            {
                "user": "guest",
                "vhost": "/",
                "configure": ".*",
                "write": "^(?|(a)|(b))$",
                "read": ".*",
            }
        ],
    }
    answer = control(server, "import_definitions", definitions=document)
    assert answer == {
        "ok": False,
        "kind": "error",
        "error": (
            "Failed to set permissions for 'guest' in virtual host '/': regular expression "
            "'^(?|(a)|(b))$' cannot be used: a branch reset group (?|...) has no equivalent in "
            "Python's re at position 1"
        ),
    }
    queues = control(server, "list_queues", vhost="/", items=["name"])["result"]
    assert {"name": "not-created"} not in queues  # refused before anything changed
    answer = control(
        server,
        "set_permissions",
        vhost="/",
        user="guest",
        configure=r"\p{L}",
        write=".*",
        read=".*",
    )
    assert answer["error"].startswith(
        "Failed to set permissions for 'guest' in virtual host '/': regular expression "
        r"'\p{L}' cannot be used: \p (Unicode properties) has no equivalent"
    )
    assert control(server, "list_permissions", vhost="/")["result"][0]["configure"] == ".*"
    alive(server)


def test_trimqctl_set_permissions_with_an_unusable_expression(server: Broker) -> None:
    """rabbitmqctl 3.10.8 answers an invalid expression with exit code 69 and `Error:`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMQ_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trimq.cli.ctl",
            "--data-dir",
            str(server.data_dir),
            "set_permissions",
            "guest",
            "(",
            ".*",
            ".*",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 69
    assert result.stdout.splitlines() == ['Setting permissions for user "guest" in vhost "/" ...']
    assert result.stderr.splitlines() == [
        "Error:",
        "Failed to set permissions for 'guest' in virtual host '/': regular "
        "expression '(' cannot be used: missing ), unterminated subpattern at position 0",
    ]


def test_policy_patterns_are_rabbitmq_patterns(server: Broker) -> None:
    assert control(
        server,
        "set_policy",
        vhost="/",
        name="quoted",
        pattern=r"^\Qttl.q\E$",
        definition={"message-ttl": 1000},
        apply_to="queues",
    )["ok"]
    conn = server.connect()
    channel = conn.channel()
    channel.queue_declare("ttl.q", auto_delete=True)
    channel.queue_declare("ttlxq", auto_delete=True)
    rows = {
        row["name"]: row["policy"]
        for row in control(server, "list_queues", vhost="/", items=["name", "policy"])["result"]
    }
    assert rows["ttl.q"] == "quoted" and rows["ttlxq"] == ""
    conn.close()
    answer = control(
        server, "set_policy", vhost="/", name="bad", pattern=r"(?|a)", definition={"message-ttl": 1}
    )
    assert answer["kind"] == "usage" and "has no equivalent in Python's re" in answer["error"]


def test_permissions_journaled_before_survive_a_restart(tmp_path: Path) -> None:
    node = start_server(tmp_path / "data")
    try:
        assert control(node, "add_user", user="kept", password="pw")["ok"]
        assert control(
            node,
            "set_permissions",
            vhost="/",
            user="kept",
            configure=r"^\Qk.\E",
            write=".*",
            read=".*",
        )["ok"]
    finally:
        stop_server(node)
    node = start_server(tmp_path / "data")
    try:
        assert declared(node, "kept", ["k.1", "kx1"]) == {"k.1": True, "kx1": False}
    finally:
        stop_server(node)


@pytest.mark.parametrize("bug", [RuntimeError, KeyError, TypeError, ValueError])
def test_an_unexpected_failure_is_an_internal_error_reply(bug: type[Exception]) -> None:
    """A bug in a command's handler is answered (and logged) as `internal`, not raised into
    the server nor blamed on the request (arguments are checked before a handler uses them,
    so even a KeyError or ValueError there is the broker's fault, not a usage error)."""

    async def broken(state: Any, args: dict[str, Any]) -> Any:
        raise bug("a bug")

    control_module.COMMANDS["broken_for_test"] = broken
    try:
        answer = trio.run(control_module._dispatch, None, {"command": "broken_for_test"})
    finally:
        del control_module.COMMANDS["broken_for_test"]
    assert answer == {
        "ok": False,
        "kind": "internal",
        "error": f"broken_for_test failed unexpectedly ({bug.__name__}); see the broker log",
    }


def test_conditional_queue_deletion_is_one_rule_worded_per_side(tmp_path: Path) -> None:
    """trimqctl delete_queue --if-unused/--if-empty and AMQP's Queue.Delete share the rule
    (trimq/broker/deletion.py); each side words a refusal its own way. A server of its own:
    the fuzzed one may be left with a resource alarm that blocks publishers."""
    server = start_server(tmp_path / "data")
    connection = pika.BlockingConnection(server.params())
    try:
        channel = connection.channel()
        channel.queue_declare("deletion-rule")
        channel.basic_publish("", "deletion-rule", b"x")
        channel.basic_consume("deletion-rule", lambda *_: None)

        def delete(**flags: bool) -> dict[str, Any]:
            return control(server, "delete_queue", vhost="/", queue="deletion-rule", **flags)

        prefix = "queue 'deletion-rule' in vhost '/'"
        refused = delete(if_unused=True)
        assert (refused["ok"], refused["error"]) == (False, f"{prefix} in use")
        other = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            other.queue_delete("deletion-rule", if_unused=True)
        assert (closed.value.reply_code, closed.value.reply_text) == (
            406,
            f"PRECONDITION_FAILED - {prefix} in use",
        )
        channel.close()  # the consumer goes, the message is requeued
        refused = delete(if_empty=True)
        assert (refused["ok"], refused["error"]) == (False, f"{prefix} is not empty")
        assert delete(if_unused=True) == {"ok": True, "result": {"messages": 1}}
    finally:
        connection.close()
        stop_server(server)


def test_every_handler_module_registers_its_requests() -> None:
    """The control package imports each of its family modules by itself: every request this
    file exercises (and stop and object_counts, which it leaves alone) has its handler."""
    assert set(control_module.COMMANDS) == {*COMMANDS, "stop", "object_counts"}
    modules = {handler.__module__ for handler in control_module.COMMANDS.values()}
    assert "trimq.server.control.queues" in modules and "trimq.server.control.users" in modules
