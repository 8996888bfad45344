"""Per-vhost limits (max-connections, max-queues): RabbitMQ's refusals on the wire, and
set_vhost_limits / clear_vhost_limits / list_vhost_limits with rabbitmqctl's output and exit
codes.

Against another broker (TRIMQ_TEST_URL) the tests need TRIMQ_TEST_RABBITMQCTL, the command that
administers it (for example `rabbitmqctl -n rabbit@localhost`); without it they are skipped.
Against trimq each test starts its own server and uses trimqctl.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions
import pytest
from amqp_raw import RawClient
from conftest import Broker, start_server, stop_server
from pika import spec

REFERENCE = os.environ.get("TRIMQ_TEST_URL")
ADMIN = os.environ.get("TRIMQ_TEST_RABBITMQCTL")
trimq_only = pytest.mark.skipif(bool(REFERENCE), reason="trimq-only: restarts its own server")


@dataclass
class Admin:
    """A broker, the command-line tool that administers it, and a vhost of the test's own."""

    broker: Broker
    tool: list[str]
    vhost: str

    def __call__(self, *args: str) -> tuple[int, list[str], list[str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMQ_")}
        if REFERENCE:
            env["HOME"] = os.environ.get("HOME", "")
        result = subprocess.run(
            [*self.tool, *args], check=False, capture_output=True, text=True, timeout=120, env=env
        )
        # rabbitmqctl can print a log line (with its time) before "Error:"; it is no answer
        err = [
            line
            for line in result.stderr.splitlines()
            if line and not re.match(r"\d\d:\d\d:\d\d\.\d+ \[", line)
        ]
        return result.returncode, result.stdout.splitlines(), err

    def ok(self, *args: str) -> None:
        code, out, err = self(*args)
        assert code == 0, (args, out, err)


@pytest.fixture
def admin(broker: Broker, tmp_path: Path) -> Iterator[Admin]:
    if REFERENCE:
        if not ADMIN:
            pytest.skip("TRIMQ_TEST_RABBITMQCTL (the reference broker's rabbitmqctl) unset")
        server, tool = broker, shlex.split(ADMIN)
    else:
        server = start_server(tmp_path / "data")
        tool = [sys.executable, "-m", "trimq.cli.ctl", "--data-dir", str(server.data_dir)]
    vhost = f"limits-{uuid.uuid4().hex[:8]}"
    result = Admin(server, tool, vhost)
    result.ok("add_vhost", vhost)
    result.ok("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield result
    result("delete_vhost", vhost)
    if not REFERENCE:
        stop_server(server)


def connect(admin: Admin) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            admin.broker.host, admin.broker.port, admin.vhost, connection_attempts=1
        )
    )


def refused_connection(admin: Admin) -> str:
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(admin)
    return str(info.value)


def eventually(attempt: Callable[[], object], seconds: float = 15.0) -> object:
    """RabbitMQ counts connections asynchronously: a closed one may count for a moment."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_max_connections(admin: Admin) -> None:
    admin.ok("set_vhost_limits", "-p", admin.vhost, '{"max-connections": 1}')
    first = connect(admin)
    text = (
        f"NOT_ALLOWED - access to vhost '{admin.vhost}' refused for user 'guest': "
        "connection limit (1) is reached"
    )
    assert f'(530) "{text}"' in refused_connection(admin)
    refusal = Refused(admin.broker.host, admin.broker.port, vhost=admin.vhost)
    assert (refusal.reply_code, refusal.reply_text, refusal.class_id, refusal.method_id) == (
        530,
        text,
        10,
        40,
    )
    first.close()
    second = eventually(lambda: connect(admin))
    assert isinstance(second, pika.BlockingConnection)
    second.close()
    admin.ok("set_vhost_limits", "-p", admin.vhost, '{"max-connections": 0}')
    assert "connection limit (0) is reached" in refused_connection(admin)
    admin.ok("set_vhost_limits", "-p", admin.vhost, '{"max-connections": -1}')
    connect(admin).close()


@dataclass
class Refused(RawClient):
    """A raw handshake as guest whose Connection.Open of `vhost` is refused: the Close frame's
    code, text, class and method."""

    vhost: str = "/"
    reply_code: int = 0
    reply_text: str = ""
    class_id: int = 0
    method_id: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        with self.sock:
            self.sock.sendall(b"AMQP\x00\x00\x09\x01")
            self.expect(0, spec.Connection.Start)
            self.send_method(
                0,
                spec.Connection.StartOk(
                    client_properties={},
                    mechanism="PLAIN",
                    response=b"\0guest\0guest",
                    locale="en_US",
                ),
            )
            tune = self.expect(0, spec.Connection.Tune)
            self.send_method(
                0,
                spec.Connection.TuneOk(channel_max=tune.channel_max, frame_max=131072, heartbeat=0),
            )
            self.send_method(0, spec.Connection.Open(virtual_host=self.vhost))
            close = self.expect(0, spec.Connection.Close)
            self.send_method(0, spec.Connection.CloseOk())
        self.reply_code, self.reply_text = close.reply_code, close.reply_text
        self.class_id, self.method_id = close.class_id, close.method_id


def test_max_connections_is_checked_before_permissions(admin: Admin) -> None:
    admin.ok("clear_permissions", "-p", admin.vhost, "guest")
    admin.ok("set_vhost_limits", "-p", admin.vhost, '{"max-connections": 0}')
    assert "connection limit (0) is reached" in refused_connection(admin)


def test_max_queues(admin: Admin) -> None:
    admin.ok("set_vhost_limits", "-p", admin.vhost, '{"max-queues": 2}')
    conn = connect(admin)
    channel = conn.channel()
    channel.queue_declare("q1")
    channel.queue_declare("q2", exclusive=True)  # every kind of queue counts

    def refused(name: str, **kwargs: object) -> tuple[int, str]:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            conn.channel().queue_declare(name, **kwargs)  # type: ignore[arg-type]
        return info.value.reply_code, info.value.reply_text

    text = (
        f"PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost "
        f"'{admin.vhost}' (2) is reached"
    )
    assert refused("q3") == (406, text)
    # the limit is checked before the arguments are
    assert refused("q3", arguments={"x-max-length": "bad"}) == (406, text)
    code, generated = refused("")
    assert code == 406 and re.fullmatch(
        r"PRECONDITION_FAILED - cannot declare queue 'amq\.gen-[\w-]{22}': queue limit in "
        rf"vhost '{re.escape(admin.vhost)}' \(2\) is reached",
        generated,
    )
    assert refused("q4", passive=True)[0] == 404
    channel.queue_declare("q1")  # redeclaring an existing queue is fine
    channel.queue_delete("q1")
    channel.queue_declare("q3")
    admin.ok("set_vhost_limits", "-p", admin.vhost, '{"max-queues": -1}')
    channel.queue_declare("q4")
    conn.close()


def test_set_list_clear_as_rabbitmqctl(admin: Admin) -> None:
    """Output and exit codes observed with rabbitmqctl 3.10.8."""
    vhost = admin.vhost
    assert admin("list_vhost_limits", "-p", vhost) == (
        0,
        [f'Listing limits for vhost "{vhost}" ...', ""],
        [],
    )
    assert admin("set_vhost_limits", "-p", vhost, '{ "max-queues" : 1, "max-connections":2 }') == (
        0,
        [
            f'Setting vhost limits to "{{ "max-queues" : 1, "max-connections":2 }}"'
            f' for vhost "{vhost}" ...'
        ],
        [],
    )
    assert admin("list_vhost_limits", "-p", vhost) == (
        0,
        [f'Listing limits for vhost "{vhost}" ...', '{"max-connections":2,"max-queues":1}'],
        [],
    )
    assert admin("list_vhost_limits", "-p", vhost, "-q") == (
        0,
        ['{"max-connections":2,"max-queues":1}'],
        [],
    )
    code, out, _ = admin("list_vhost_limits", "-p", vhost, "--formatter", "json")
    assert code == 0 and json.loads(out[0])["value"] == '{"max-connections":2,"max-queues":1}'
    code, out, _ = admin("list_vhost_limits", "--global")
    assert code == 0 and out[:2] == ["Listing limits for all vhosts ...", "vhost\tlimits"]
    assert f'{vhost}\t{{"max-connections":2,"max-queues":1}}' in out
    code, out, _ = admin("list_vhost_limits", "--global", "--formatter", "json")
    assert {"vhost": vhost, "limits": '{"max-connections":2,"max-queues":1}'} in json.loads(
        "".join(out)
    )
    admin.ok("set_vhost_limits", "-p", vhost, '{"max-queues": 5}')  # replaces, no merge
    assert admin("list_vhost_limits", "-p", vhost, "-q") == (0, ['{"max-queues":5}'], [])

    def failure(definition: str) -> tuple[int, list[str]]:
        code, _, err = admin("set_vhost_limits", "-p", vhost, definition)
        return code, err

    assert failure("{bad") == (69, ["Error:", "JSON decoding error. Reason: badarg"])
    assert failure('{"foo":1}') == (
        69,
        ["Error:", "Validation failed", 'Unrecognised terms [{<<"foo">>,1}] in limits'],
    )
    assert failure('{"max-connections":"a"}') == (
        69,
        ["Error:", "Validation failed", 'max-connections should be a number, actually was <<"a">>'],
    )
    assert failure('{"max-queues":1.5}') == (
        69,
        ["Error:", "Validation failed", "max-queues should be a number, actually was 1.5"],
    )
    assert failure('{"foo":1,"max-queues":"x"}') == (
        69,
        [
            "Error:",
            "Validation failed",
            'Unrecognised terms [{<<"foo">>,1}] in limits',
            'max-queues should be a number, actually was <<"x">>',
        ],
    )
    assert admin("list_vhost_limits", "-p", vhost, "-q") == (0, ['{"max-queues":5}'], [])
    assert admin("set_vhost_limits", "-p", vhost, '{"max-connections":-5}')[0] == 0
    assert admin("clear_vhost_limits", "-p", vhost) == (
        0,
        [f'Clearing vhost "{vhost}" limits ...'],
        [],
    )
    assert admin("clear_vhost_limits", "-p", vhost) == (
        69,
        [f'Clearing vhost "{vhost}" limits ...'],
        ["Error:", "Parameter does not exist"],
    )
    assert admin("set_vhost_limits", "-p", vhost, "--formatter", "json", "{}")[0] == 0
    assert admin("list_vhost_limits", "-p", vhost, "-q") == (0, [""], [])
    code, out, _ = admin("list_vhost_limits", "--global", "-s")
    assert code == 0 and f"{vhost}\t{{}}" in out
    admin.ok("clear_vhost_limits", "-p", vhost)
    nosuch = f"{vhost}-nosuch"
    assert admin("set_vhost_limits", "-p", nosuch, '{"max-queues":1}') == (
        65,
        [f'Setting vhost limits to "{{"max-queues":1}}" for vhost "{nosuch}" ...'],
        [f"Virtual host '{nosuch}' does not exist"],
    )
    assert admin("list_vhost_limits", "-p", nosuch)[0::2] == (
        65,
        [f"Virtual host '{nosuch}' does not exist"],
    )
    assert admin("clear_vhost_limits", "-p", nosuch)[0::2] == (
        69,
        ["Error:", "Parameter does not exist"],
    )
    code, _, err = admin("set_vhost_limits")
    assert code == 64 and err[0] == "Error (argument validation): not enough arguments."


def test_definitions_carry_limits(admin: Admin, tmp_path: Path) -> None:
    """RabbitMQ exports vhost limits twice: as pairs in the vhost, and as a vhost-limits
    parameter, which import reads. An import whose new queues exceed a vhost's max-queues is
    refused as a whole."""
    vhost = admin.vhost
    admin.ok("set_vhost_limits", "-p", vhost, '{"max-queues": 1, "max-connections": 5}')
    exported = tmp_path / "defs.json"
    admin.ok("export_definitions", str(exported))
    document = json.loads(exported.read_text())
    assert {
        "vhost": vhost,
        "component": "vhost-limits",
        "name": "limits",
        "value": {"max-connections": 5, "max-queues": 1},
    } in document["parameters"]
    entry = next(v for v in document["vhosts"] if v["name"] == vhost)
    assert entry["limits"] == [["max-connections", 5], ["max-queues", 1]]

    queue = {"vhost": vhost, "durable": True, "auto_delete": False, "arguments": {}}
    limits = {
        "vhost": vhost,
        "component": "vhost-limits",
        "name": "limits",
        "value": {"max-queues": 3},
    }
    source = tmp_path / "import.json"
    source.write_text(json.dumps({"queues": [{**queue, "name": "a"}]}))
    admin.ok("import_definitions", str(source))
    admin.ok("import_definitions", str(source))  # a queue that exists is not counted again
    source.write_text(
        json.dumps(
            {"parameters": [limits], "queues": [{**queue, "name": "b"}, {**queue, "name": "c"}]}
        )
    )
    code, _, err = admin("import_definitions", str(source))
    assert code == 69
    assert err[0] == "Error:"
    assert (
        f'Adding 2 queue(s) to virtual host "{vhost}" would exceed the limit of 1 queue(s).'
    ) in err[1]
    assert admin("list_vhost_limits", "-p", vhost, "-q") == (
        0,
        ['{"max-connections":5,"max-queues":1}'],
        [],
    )  # nothing was imported
    admin.ok("set_vhost_limits", "-p", vhost, '{"max-queues": 3}')
    admin.ok("import_definitions", str(source))
    code, out, _ = admin("list_queues", "-p", vhost, "-q", "name")
    assert sorted(out[1:]) == ["a", "b", "c"]


@trimq_only
def test_limits_survive_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    tool = [sys.executable, "-m", "trimq.cli.ctl", "--data-dir", str(server.data_dir)]
    admin = Admin(server, tool, "kept")
    try:
        admin.ok("add_vhost", "kept")
        admin.ok("add_vhost", "gone")
        admin.ok("set_vhost_limits", "-p", "kept", '{"max-queues": 0}')
        admin.ok("set_vhost_limits", "-p", "gone", '{"max-queues": 0}')
        admin.ok("delete_vhost", "gone")
        admin.ok("add_vhost", "gone")
    finally:
        stop_server(server)
    server = start_server(tmp_path / "data")
    admin.broker = server
    try:
        assert admin("list_vhost_limits", "--global", "-s") == (0, ['kept\t{"max-queues":0}'], [])
        admin.ok("set_permissions", "-p", "kept", "guest", ".*", ".*", ".*")
        conn = connect(admin)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            conn.channel().queue_declare("q")
        assert info.value.reply_text.endswith("queue limit in vhost 'kept' (0) is reached")
        conn.close()
    finally:
        stop_server(server)
