"""trimqctl against a fake control server: output line by line as rabbitmqctl prints it
(../shared/reference/rabbitmq.md's transcript where it covers a case, RabbitMQ 3.10.8 observed
otherwise), exit codes per error kind, argument handling, and the rendering helpers."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from trimq.cli import ctl, output
from trimq.cli.commands.base import prepare_info_keys
from trimq.cli.commands.help import jaro_distance
from trimq.cli.commands.users import ADD_USER_DONE
from trimq.cli.control_client import TOOL
from trimq.cli.output import (
    amqp_table_json,
    amqp_table_term,
    erl_atom,
    erl_term,
    erlang_float,
    format_value,
)
from trimq.info_items import BINDING_ITEMS, QUEUE_ITEMS

HOST = socket.gethostname().split(".")[0]
NODE = f"trimq@{HOST}"

Reply = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def fail(kind: str, error: str) -> dict[str, Any]:
    return {"ok": False, "kind": kind, "error": error}


class FakeBroker:
    """The broker side of the control protocol: one JSON line in, one out, per connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replies: dict[str, Reply] = {}
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                buf = b""
                try:
                    while b"\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                except OSError:
                    continue
                if not buf.strip():
                    continue
                request = json.loads(buf.split(b"\n", 1)[0])
                self.requests.append(request)
                reply = self.replies.get(request["command"], ok({}))
                if callable(reply):
                    reply = reply(request["args"])
                if self.delay:
                    time.sleep(self.delay)
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                if request["command"] == "stop":
                    self.stop()
                    return

    def stop(self) -> None:
        """As the broker: the socket's name goes before the socket, so a client that finds
        the socket dead finds the name gone."""
        self.running = False
        if self.path.exists():
            self.path.unlink()
        self.sock.close()

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The default data directory for trimqctl (a short path: sockets have a length limit)."""
    directory = tmp_path
    short = None
    if len(str(tmp_path / "trimq.sock")) > 100:
        short = tempfile.mkdtemp(prefix="tqctl")
        directory = Path(short)
    monkeypatch.setattr(ctl, "default_data_dir", lambda: directory)
    yield directory
    if short is not None:
        for child in Path(short).iterdir():
            child.unlink()
        Path(short).rmdir()


@pytest.fixture
def broker(data_dir: Path) -> Iterator[FakeBroker]:
    fake = FakeBroker(data_dir / "trimq.sock")
    yield fake
    fake.stop()


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    @property
    def errlines(self) -> list[str]:
        return self.err.splitlines()


def run(*argv: str, stdin: str = "") -> Run:
    out, err = io.StringIO(), io.StringIO()
    try:
        code = ctl.execute(list(argv), out, err, io.StringIO(stdin))
    except ctl.CtlExit as exc:
        code = exc.code
        if exc.message is not None:
            (out if code == 0 else err).write(exc.message + "\n")
    return Run(code, out.getvalue(), err.getvalue())


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = ctl.main(list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


USAGE_HEAD = f"{TOOL} [--node <node>] [--longnames] [--quiet] "


# -- the reference transcript -------------------------------------------------------------------


def test_add_user(broker: FakeBroker, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_main(capsys, "add_user", "alice", "secret")
    assert r.code == 0
    assert r.lines == [
        'Adding user "alice" ...',
        "Done. Don't forget to grant the user permissions to some virtual hosts! "
        "See 'trimqctl help set_permissions' to learn more.",
    ]
    assert broker.last == {"command": "add_user", "args": {"user": "alice", "password": "secret"}}

    broker.replies["add_user"] = fail("exists", 'User "alice" already exists')
    r = run_main(capsys, "add_user", "alice", "secret")
    assert (r.code, r.lines, r.errlines) == (
        70,
        ['Adding user "alice" ...'],
        ["Error:", 'User "alice" already exists'],
    )


@pytest.mark.parametrize("kind", ["internal", "a_kind_from_a_newer_broker"])
def test_an_internal_or_unknown_error_kind_exits_70(
    broker: FakeBroker, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A bug in the broker (`internal`) is not a usage error; a kind this trimqctl does not
    know is a plain error. Both print the broker's text."""
    text = "add_user failed unexpectedly (KeyError); see the broker log"
    broker.replies["add_user"] = fail(kind, text)
    r = run_main(capsys, "add_user", "alice", "secret")
    assert (r.code, r.errlines) == (70, ["Error:", text])


def test_delete_user_missing(broker: FakeBroker, capsys: pytest.CaptureFixture[str]) -> None:
    broker.replies["delete_user"] = fail("user_not_found", 'User "nosuch" does not exist')
    r = run_main(capsys, "delete_user", "nosuch")
    assert (r.code, r.lines, r.errlines) == (
        67,
        ['Deleting user "nosuch" ...'],
        ["Error:", 'User "nosuch" does not exist'],
    )


def test_list_vhosts(broker: FakeBroker) -> None:
    broker.replies["list_vhosts"] = ok([{"name": "/"}, {"name": "dev"}])
    r = run("list_vhosts")
    assert (r.code, r.lines) == (0, ["Listing vhosts ...", "name", "/", "dev"])
    assert broker.last["args"] == {"items": ["name"]}


def test_set_user_tags(broker: FakeBroker) -> None:
    r = run("set_user_tags", "alice", "monitoring")
    assert (r.code, r.lines) == (0, ['Setting tags for user "alice" to [monitoring] ...'])
    assert broker.last["args"] == {"user": "alice", "tags": ["monitoring"]}
    r = run("set_user_tags", "alice", "monitoring", "management")
    assert r.lines == ['Setting tags for user "alice" to [monitoring, management] ...']
    r = run("set_user_tags", "alice")
    assert r.lines == ['Setting tags for user "alice" to [] ...']
    assert broker.last["args"]["tags"] == []


USERS = [{"user": "alice", "tags": ["monitoring"]}, {"user": "guest", "tags": ["administrator"]}]


def test_list_users_silent_and_json(broker: FakeBroker) -> None:
    broker.replies["list_users"] = ok(USERS)
    r = run("list_users", "-s")
    assert (r.code, r.lines) == (0, ["alice\t[monitoring]", "guest\t[administrator]"])
    r = run("list_users")
    assert r.lines == [
        "Listing users ...",
        "user\ttags",
        "alice\t[monitoring]",
        "guest\t[administrator]",
    ]
    r = run("list_users", "--formatter", "json")
    assert r.lines == [
        "[",
        '{"user":"alice","tags":["monitoring"]}',
        ',{"user":"guest","tags":["administrator"]}',
        "]",
    ]
    assert json.loads("".join(r.lines)) == USERS
    # as rabbitmqctl 3.10.8 prints CSV: no banner, a header even with -s, every cell quoted
    assert run("list_users", "--formatter", "csv", "-s").lines == [
        '"user","tags"',
        '"alice","[monitoring]"',
        '"guest","[administrator]"',
    ]
    r = run("list_users", "--no-table-headers")
    assert r.lines == ["Listing users ...", "alice\t[monitoring]", "guest\t[administrator]"]
    r = run("-q", "list_users")
    assert r.lines == ["user\ttags", "alice\t[monitoring]", "guest\t[administrator]"]
    broker.replies["list_users"] = ok(
        [{"user": "bob", "tags": ["a", "b"]}, {"user": "carol", "tags": []}]
    )
    assert run("list_users", "-s").lines == ["bob\t[a, b]", "carol\t[]"]


def test_authenticate_user(broker: FakeBroker) -> None:
    r = run("authenticate_user", "alice", "s3cret")
    assert (r.code, r.lines) == (0, ['Authenticating user "alice" ...', "Success"])
    broker.replies["authenticate_user"] = fail("auth_failed", "user 'alice' - invalid credentials")
    r = run("authenticate_user", "alice", "wrong")
    assert (r.code, r.lines, r.errlines) == (
        65,
        ['Authenticating user "alice" ...'],
        [
            "Error:",
            'Error: failed to authenticate user "alice"',
            "user 'alice' - invalid credentials",
        ],
    )
    r = run("authenticate_user", "alice", "s3cret", "--formatter", "json")
    broker.replies.pop("authenticate_user")
    r = run("authenticate_user", "alice", "s3cret", "--formatter", "json")
    assert (r.code, r.lines) == (0, ['{"message":"Success"}'])


EXCHANGES = [
    {"name": n, "type": t}
    for n, t in [
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
        ("amq.topic", "topic"),
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.rabbitmq.trace", "topic"),
        ("", "direct"),
    ]
]


def test_list_exchanges(broker: FakeBroker) -> None:
    broker.replies["list_exchanges"] = ok(EXCHANGES)
    r = run("list_exchanges", "-p", "dev")
    assert (r.code, r.lines) == (
        0,
        [
            "Listing exchanges for vhost dev ...",
            "name\ttype",
            "amq.headers\theaders",
            "amq.match\theaders",
            "amq.topic\ttopic",
            "amq.direct\tdirect",
            "amq.fanout\tfanout",
            "amq.rabbitmq.trace\ttopic",
            "\tdirect",
        ],
    )
    assert broker.last["args"] == {"vhost": "dev", "items": ["name", "type"]}
    r = run("list_exchanges", "--formatter", "json")
    assert r.lines[-2:] == [',{"name":"","type":"direct"}', "]"]


def test_list_bindings_empty(broker: FakeBroker) -> None:
    broker.replies["list_bindings"] = ok([])
    r = run("list_bindings", "-p", "dev")
    assert (r.code, r.lines) == (0, ["Listing bindings for vhost dev..."])
    assert broker.last["args"]["items"] == BINDING_ITEMS
    assert run("list_bindings", "--formatter", "json").lines == ["[", "]"]


def test_unsupported_info_item(broker: FakeBroker) -> None:
    r = run("list_queues", "nosuchitem")
    assert r.code == 64 and r.out == ""
    assert r.errlines == [
        "Error (argument validation): Info key(s) nosuchitem are not supported",
        "Arguments given:",
        "\tlist_queues nosuchitem",
        "",
        "Usage",
        "",
        USAGE_HEAD + "list_queues [--vhost <vhost>] [--online] [--offline] [--local] "
        "[--no-table-headers] [<column>, ...] [--timeout <timeout>]",
    ]
    assert broker.requests == []  # refused before asking the broker
    r = run("list_queues", "name,messages", "zzz,nosuch")
    assert r.errlines[0] == (
        "Error (argument validation): Info key(s) nosuch,zzz are not supported"
    )
    for command in (
        "list_exchanges",
        "list_bindings",
        "list_connections",
        "list_channels",
        "list_consumers",
        "list_vhosts",
    ):
        r = run(command, ctl.COMMANDS[command].info_keys[0], "bogus")
        assert r.code == 64
        assert r.errlines[0] == "Error (argument validation): Info key(s) bogus are not supported"


def test_broker_refuses_info_item(broker: FakeBroker) -> None:
    broker.replies["list_queues"] = fail("usage", "Info key(s) memory are not supported")
    r = run("list_queues", "memory")
    assert r.code == 64
    assert r.errlines[:3] == [
        "Error (argument validation): Info key(s) memory are not supported",
        "Arguments given:",
        "\tlist_queues memory",
    ]


def test_node_not_running(data_dir: Path) -> None:
    r = run("-n", "nosuch@localhost", "list_users")
    assert r.code == 69 and r.out == ""
    assert r.errlines[0] == (
        "Error: unable to perform an operation on node "
        "'nosuch@localhost'. Please see diagnostics information and "
        "suggestions below."
    )
    r = run("list_users")  # no socket in the data directory
    assert r.code == 69
    assert r.errlines[0] == (
        f"Error: unable to perform an operation on node '{NODE}'. Please "
        "see diagnostics information and suggestions below."
    )
    assert f"attempted to contact: [{NODE}]" in r.errlines
    # a stale socket file nobody listens on
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(data_dir / "trimq.sock"))
    stale.close()
    r = run("list_queues")
    assert r.code == 69 and r.out == ""
    assert any("refused" in line for line in r.errlines)
    # every command that talks to the node
    for argv in (
        ["status"],
        ["add_user", "a", "b"],
        ["delete_vhost", "v"],
        ["export_definitions", "-"],
        ["purge_queue", "q"],
    ):
        assert run(*argv).code == 69


def test_node_option_forms(broker: FakeBroker, data_dir: Path) -> None:
    broker.replies["list_vhosts"] = ok([{"name": "/"}])
    assert run("-n", NODE, "list_vhosts").code == 0
    assert run("-n", "trimq", "list_vhosts").code == 0  # trimq@<this host>
    assert run("--node", "trimq@localhost", "list_vhosts").code == 0
    assert run("-n", str(data_dir / "trimq.sock"), "list_vhosts").code == 0
    assert run("-n", str(data_dir), "list_vhosts").code == 0
    assert run("-n", "rabbit@localhost", "list_vhosts").code == 69
    assert run("-n", "trimq@elsewhere.example", "list_vhosts").code == 69
    # --data-dir picks the socket
    assert run("--data-dir", "/nonexistent/dir", "list_vhosts").code == 69
    assert run("--data-dir", str(data_dir), "list_vhosts").code == 0


# -- list_queues and the other listings -----------------------------------------------------------


QUEUES = [
    {
        "name": "hello",
        "messages": 0,
        "durable": True,
        "arguments": [],
        "owner_pid": "",
        "consumer_capacity": 1.0,
    },
    {
        "name": "ttl",
        "messages": 3,
        "durable": False,
        "arguments": [["x-message-ttl", 60000]],
        "owner_pid": f"<{NODE}.1.2.0>",
        "consumer_capacity": 0,
    },
]


def test_list_queues(broker: FakeBroker) -> None:
    broker.replies["list_queues"] = lambda args: ok(
        [{item: q[item] for item in args["items"]} for q in QUEUES]
    )
    r = run("list_queues")
    assert (r.code, r.lines) == (
        0,
        [
            "Timeout: 60.0 seconds ...",
            "Listing queues for vhost / ...",
            "name\tmessages",
            "hello\t0",
            "ttl\t3",
        ],
    )
    assert broker.last == {
        "command": "list_queues",
        "args": {"vhost": "/", "items": ["name", "messages"]},
    }
    r = run("list_queues", "name", "durable", "arguments", "owner_pid", "consumer_capacity")
    assert r.lines[2:] == [
        "name\tdurable\targuments\towner_pid\tconsumer_capacity",
        "hello\ttrue\t[]\t\t1.0",
        f'ttl\tfalse\t[{{"x-message-ttl",60000}}]\t<{NODE}.1.2.0>\t0',
    ]
    r = run("list_queues", "-q", "--formatter", "json", "name", "arguments")
    assert r.lines == [
        "[",
        '{"name":"hello","arguments":[]}',
        ',{"name":"ttl","arguments":[["x-message-ttl","signedint",60000]]}',
        "]",
    ]
    assert json.loads("".join(r.lines))[1]["name"] == "ttl"
    r = run("list_queues", "--formatter", "csv", "name", "arguments")
    assert r.lines == ['"name","arguments"', '"hello","[]"', '"ttl","[{""x-message-ttl"",60000}]"']
    # columns in the order asked, duplicates dropped, comma-separated accepted
    r = run("list_queues", "-s", "messages,name", "name")
    assert r.lines == ["0\thello", "3\tttl"]
    assert broker.last["args"]["items"] == ["messages", "name"]


def test_list_queues_options(broker: FakeBroker) -> None:
    broker.replies["list_queues"] = ok([{"name": "q", "messages": 1}])
    assert run("list_queues", "-t", "5").lines[0] == "Timeout: 5.0 seconds ..."
    assert run("list_queues", "--timeout=30").lines[0] == "Timeout: 30.0 seconds ..."
    # global options before or after the command
    for argv in (
        ["-p", "dev", "list_queues"],
        ["list_queues", "-p", "dev"],
        ["list_queues", "--vhost", "dev"],
        ["--vhost=dev", "list_queues"],
    ):
        r = run(*argv)
        assert r.lines[1] == "Listing queues for vhost dev ..."
        assert broker.last["args"]["vhost"] == "dev"
    assert run("list_queues", "--no-table-headers").lines == [
        "Timeout: 60.0 seconds ...",
        "Listing queues for vhost / ...",
        "q\t1",
    ]
    assert run("list_queues", "--quiet").lines == ["name\tmessages", "q\t1"]
    assert run("list_queues", "--silent").lines == ["q\t1"]
    assert run("list_queues", "--pad-to-header", "-q").lines == ["name\tmessages", "q   \t1       "]
    # --offline: every trimq queue is on the (single, online) node
    requests = len(broker.requests)
    assert run("list_queues", "--offline").lines == [
        "Timeout: 60.0 seconds ...",
        "Listing queues for vhost / ...",
    ]
    assert len(broker.requests) == requests
    assert run("list_queues", "--online", "--local").code == 0
    # a vhost that does not exist lists nothing, as rabbitmqctl does
    broker.replies["list_queues"] = fail("vhost_not_found", "vhost 'nosuch' does not exist")
    r = run("list_queues", "-p", "nosuch")
    assert (r.code, r.lines) == (
        0,
        ["Timeout: 60.0 seconds ...", "Listing queues for vhost nosuch ..."],
    )


def test_list_connections(broker: FakeBroker) -> None:
    props = [
        ["product", "pika"],
        ["version", "1.4.4"],
        [
            "capabilities",
            [["authentication_failure_close", True], ["consumer_cancel_notify", True]],
        ],
        ["information", "See http://pika.rtfd.org"],
    ]
    broker.replies["list_connections"] = ok(
        [
            {
                "user": "guest",
                "peer_host": "127.0.0.1",
                "peer_port": 51234,
                "state": "running",
                "pid": f"<{NODE}.1.1.0>",
                "name": "127.0.0.1:51234 -> 127.0.0.1:5672",
                "ssl": False,
                "protocol": [0, 9, 1],
                "client_properties": props,
                "timeout": 60,
                "connected_at": 1700000000123,
            }
        ]
    )
    r = run("list_connections")
    assert r.lines == [
        "Listing connections ...",
        "user\tpeer_host\tpeer_port\tstate",
        "guest\t127.0.0.1\t51234\trunning",
    ]
    assert broker.last["args"] == {"items": ["user", "peer_host", "peer_port", "state"]}
    r = run(
        "list_connections",
        "-s",
        "pid",
        "name",
        "ssl",
        "protocol",
        "client_properties",
        "timeout",
        "connected_at",
    )
    assert r.lines == [
        f"<{NODE}.1.1.0>\t127.0.0.1:51234 -> 127.0.0.1:5672\tfalse\t{{0,9,1}}\t"
        '[{"product","pika"},{"version","1.4.4"},{"capabilities",'
        '[{"authentication_failure_close",true},{"consumer_cancel_notify",true}]},'
        '{"information","See http://pika.rtfd.org"}]\t60\t1700000000123'
    ]
    r = run("list_connections", "--formatter", "json", "client_properties")
    row = json.loads("".join(r.lines))[0]
    assert row["client_properties"][2] == [
        "capabilities",
        "table",
        [["authentication_failure_close", "bool", True], ["consumer_cancel_notify", "bool", True]],
    ]


def test_list_channels_and_consumers(broker: FakeBroker) -> None:
    broker.replies["list_channels"] = ok(
        [
            {
                "pid": f"<{NODE}.1.1.1>",
                "user": "guest",
                "consumer_count": 1,
                "messages_unacknowledged": 2,
            }
        ]
    )
    r = run("list_channels")
    assert r.lines == [
        "Listing channels ...",
        "pid\tuser\tconsumer_count\tmessages_unacknowledged",
        f"<{NODE}.1.1.1>\tguest\t1\t2",
    ]
    broker.replies["list_consumers"] = ok(
        [
            {
                "queue_name": "hello",
                "channel_pid": f"<{NODE}.1.1.1>",
                "consumer_tag": "amq.ctag-abc",
                "ack_required": True,
                "prefetch_count": 0,
                "active": True,
                "activity_status": "up",
                "arguments": [],
            }
        ]
    )
    r = run("list_consumers")
    assert r.lines == [
        "Listing consumers in vhost / ...",
        "queue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments",
        f"hello\t<{NODE}.1.1.1>\tamq.ctag-abc\ttrue\t0\ttrue\t[]",
    ]
    assert broker.last["args"] == {
        "vhost": "/",
        "items": [
            "queue_name",
            "channel_pid",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "active",
            "arguments",
        ],
    }


def test_list_vhosts_items(broker: FakeBroker) -> None:
    broker.replies["list_vhosts"] = ok(
        [
            {
                "name": "/",
                "description": "Default virtual host",
                "tags": [],
                "default_queue_type": "undefined",
                "tracing": False,
                "cluster_state": [["rabbit-side@localhost", "running"]],
            }
        ]
    )
    # as rabbitmqctl 3.10.8 printed it for its node rabbit-side@localhost
    r = run(
        "list_vhosts",
        "name",
        "tags",
        "tracing",
        "cluster_state",
        "description",
        "default_queue_type",
    )
    assert r.lines == [
        "Listing vhosts ...",
        "name\ttags\ttracing\tcluster_state\tdescription\tdefault_queue_type",
        "/\t[]\tfalse\t[{'rabbit-side@localhost', running}]\tDefault virtual host\tundefined",
    ]
    r = run(
        "list_vhosts",
        "--formatter",
        "json",
        "name",
        "description",
        "tags",
        "default_queue_type",
        "tracing",
        "cluster_state",
    )
    assert r.lines == [
        "[",
        '{"name":"/","description":"Default virtual host","tags":[],'
        '"default_queue_type":"undefined","tracing":false,'
        '"cluster_state":{"rabbit-side@localhost":"running"}}',
        "]",
    ]


def test_permissions_listings(broker: FakeBroker) -> None:
    broker.replies["list_permissions"] = ok(
        [{"user": "guest", "configure": ".*", "write": ".*", "read": ".*"}]
    )
    r = run("list_permissions")
    assert r.lines == [
        'Listing permissions for vhost "/" ...',
        "user\tconfigure\twrite\tread",
        "guest\t.*\t.*\t.*",
    ]
    broker.replies["list_user_permissions"] = ok(
        [{"vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
    )
    r = run("list_user_permissions", "guest")
    assert r.lines == [
        'Listing permissions for user "guest" ...',
        "vhost\tconfigure\twrite\tread",
        "/\t.*\t.*\t.*",
    ]
    assert broker.last["args"] == {"user": "guest"}
    broker.replies["list_permissions"] = fail("vhost_not_found", "no vhost")
    r = run("list_permissions", "-p", "nosuch")
    assert (r.code, r.lines, r.errlines) == (
        65,
        ['Listing permissions for vhost "nosuch" ...'],
        ["Virtual host 'nosuch' does not exist"],
    )
    broker.replies["list_user_permissions"] = fail("user_not_found", "no user")
    r = run("list_user_permissions", "nosuch")
    assert (r.code, r.errlines) == (69, ["Error:", '{:no_such_user, "nosuch"}'])


def test_topic_permission_commands(broker: FakeBroker) -> None:
    """Requests, banners and usage lines as rabbitmqctl 3.10.8's (tests/
    test_ctl_topic_permissions.py compares the live output with rabbitmqctl's)."""
    r = run("set_topic_permissions", "-p", "dev", "bob", "amq.topic", "^a", "")
    assert r.lines == ['Setting topic permissions on "amq.topic" for user "bob" in vhost "dev" ...']
    assert broker.last == {
        "command": "set_topic_permissions",
        "args": {"vhost": "dev", "user": "bob", "exchange": "amq.topic", "write": "^a", "read": ""},
    }
    assert run("clear_topic_permissions", "bob").lines == [
        'Clearing topic permissions for user "bob" in vhost "/" ...'
    ]
    assert broker.last["args"] == {"vhost": "/", "user": "bob"}  # every exchange
    run("clear_topic_permissions", "bob", "logs")
    assert broker.last["args"] == {"vhost": "/", "user": "bob", "exchange": "logs"}
    broker.replies["list_user_topic_permissions"] = ok(
        [{"vhost": "/", "exchange": "logs", "write": "", "read": ".*"}]
    )
    r = run("list_user_topic_permissions", "bob")  # no header line
    assert r.lines == ['Listing topic permissions for user "bob" ...', "/\tlogs\t\t.*"]
    broker.replies["list_topic_permissions"] = ok([])
    assert run("list_topic_permissions", "-s").out == "\n"  # an empty line for none
    assert run("list_topic_permissions", "--formatter", "json").lines == ["[]"]
    r = run("list_user_topic_permissions")
    assert (r.code, r.errlines[-1]) == (
        64,
        USAGE_HEAD + "list_user_topic_permissions [--no-table-headers] <username> "
        "[--timeout <timeout>]",
    )
    r = run("clear_topic_permissions", "a", "b", "c")
    assert (r.code, r.errlines[-1]) == (
        64,
        USAGE_HEAD + "clear_topic_permissions [--vhost <vhost>] <username> [<exchange>]",
    )


# -- users, vhosts, permissions --------------------------------------------------------------------


def test_recovery_recipe(broker: FakeBroker) -> None:
    assert run("delete_vhost", "/").lines == ['Deleting vhost "/" ...']
    assert broker.last == {"command": "delete_vhost", "args": {"vhost": "/"}}
    assert run("add_vhost", "/").lines == ['Adding vhost "/" ...']
    assert broker.last == {"command": "add_vhost", "args": {"vhost": "/"}}
    r = run("set_permissions", "-p", "/", "someone", ".*", ".*", ".*")
    assert (r.code, r.lines) == (0, ['Setting permissions for user "someone" in vhost "/" ...'])
    assert broker.last == {
        "command": "set_permissions",
        "args": {"vhost": "/", "user": "someone", "configure": ".*", "write": ".*", "read": ".*"},
    }


def test_user_commands(broker: FakeBroker) -> None:
    assert run("change_password", "alice", "new").lines == [
        'Changing password for user "alice" ...'
    ]
    assert broker.last["args"] == {"user": "alice", "password": "new"}
    assert run("clear_password", "alice").lines == ['Clearing password for user "alice" ...']
    assert run("-q", "delete_user", "alice").out == ""
    assert run("add_user", "-s", "bob", "pw").out == ""
    r = run("delete_user", "alice", "--formatter", "json")
    assert r.lines == [f'{{"node":"{NODE}","result":"ok"}}']
    r = run("add_user", "bob", "pw", "--formatter", "json")
    assert json.loads(r.out) == {"message": ADD_USER_DONE, "node": NODE, "status": "ok"}
    # passwords from standard input
    r = run("add_user", "carol", stdin="s3cret\n")
    assert r.lines == ['Adding user "carol" ...', "Password: ", ADD_USER_DONE]
    assert broker.last["args"] == {"user": "carol", "password": "s3cret"}
    r = run("add_user", "-q", "dave", stdin="pw\n")
    assert r.out == "" and broker.last["args"]["password"] == "pw"
    r = run("add_user", "erin", stdin="")
    assert (r.code, r.errlines) == (
        65,
        ["Error:", "Password is not provided via argument or stdin"],
    )
    r = run("change_password", "erin", stdin="")
    assert r.code == 70


def test_user_errors(broker: FakeBroker) -> None:
    for command in ("change_password", "set_user_tags"):
        broker.replies[command] = fail("user_not_found", "whatever the broker says")
        r = run(command, "nosuch", "x")
        assert (r.code, r.errlines) == (67, ["Error:", 'User "nosuch" does not exist'])
    broker.replies["delete_user"] = fail("user_not_found", "x")
    r = run("delete_user", "nosuch", "--formatter", "json")
    assert r.code == 69 and r.out == ""
    assert json.loads(r.err) == {
        "message": "User nosuch does not exists",
        "node": NODE,
        "result": "error",
    }
    broker.replies["add_user"] = fail("exists", "x")
    r = run("add_user", "guest", "x", "--formatter", "json")
    assert (r.code, r.errlines) == (
        69,
        [f'{{"message":"User guest already exists","node":"{NODE}","result":"error"}}'],
    )
    broker.replies["clear_password"] = fail("user_not_found", "x")
    r = run("clear_password", "nosuch")
    assert (r.code, r.errlines) == (69, ["Error:", '{:no_such_user, "nosuch"}'])
    broker.replies["authenticate_user"] = fail("user_not_found", "x")
    r = run("authenticate_user", "nosuch", "x")
    assert (r.code, r.errlines) == (
        65,
        [
            "Error:",
            'Error: failed to authenticate user "nosuch"',
            "user 'nosuch' - invalid credentials",
        ],
    )


def test_vhost_and_permission_errors(broker: FakeBroker) -> None:
    broker.replies["delete_vhost"] = fail("vhost_not_found", "x")
    r = run("delete_vhost", "nosuch")
    assert (r.code, r.lines, r.errlines) == (
        65,
        ['Deleting vhost "nosuch" ...'],
        ["Virtual host 'nosuch' does not exist"],
    )
    broker.replies["add_vhost"] = fail("exists", "vhost '/' already exists")
    assert run("add_vhost", "/").code == 0  # rabbitmqctl: adding an existing vhost is a no-op
    r = run(
        "add_vhost",
        "dev",
        "--description",
        "Dev",
        "--tags",
        "a,b",
        "--default-queue-type",
        "classic",
    )
    assert broker.last["args"] == {
        "vhost": "dev",
        "description": "Dev",
        "tags": ["a", "b"],
        "default_queue_type": "classic",
    }
    for command, args in (
        ("set_permissions", ["nosuch", "a", "b", "c"]),
        ("clear_permissions", ["nosuch"]),
    ):
        broker.replies[command] = fail("user_not_found", "x")
        r = run(command, *args)
        assert (r.code, r.errlines) == (67, ["Error:", "User nosuch does not exist"])
        broker.replies[command] = fail("vhost_not_found", "x")
        r = run(command, "-p", "nosuch", *args)
        assert (r.code, r.errlines) == (69, ["Error:", "Virtual host nosuch does not exist"])
    assert run("clear_permissions", "-p", "dev", "bob").lines == [
        'Clearing permissions for user "bob" in vhost "dev" ...'
    ]


def test_error_kinds_default_codes(broker: FakeBroker) -> None:
    """The kinds of docs/control-protocol.md, for commands without a special case."""
    for kind, code in (
        ("auth_failed", 65),
        ("user_not_found", 67),
        ("vhost_not_found", 67),
        ("not_found", 67),
        ("exists", 70),
        ("error", 70),
        ("other", 70),
    ):
        broker.replies["status"] = fail(kind, "the broker's text")
        r = run("status")
        assert (r.code, r.errlines) == (code, ["Error:", "the broker's text"]), kind
    broker.replies["status"] = fail("usage", "bad arguments")
    r = run("status")
    assert r.code == 64
    assert r.errlines[:3] == [
        "Error (argument validation): bad arguments",
        "Arguments given:",
        "\tstatus",
    ]


# -- queues and connections --------------------------------------------------------------------


def test_delete_and_purge_queue(broker: FakeBroker) -> None:
    broker.replies["delete_queue"] = ok({"messages": 4})
    r = run("delete_queue", "hello")
    assert r.lines == [
        "Deleting queue 'hello' on vhost '/' ...",
        "Queue was successfully deleted with 4 ready messages",
    ]
    assert broker.last["args"] == {
        "vhost": "/",
        "queue": "hello",
        "if_unused": False,
        "if_empty": False,
    }
    r = run("delete_queue", "-e", "-u", "-p", "dev", "hello")
    assert r.lines[0] == (
        "Deleting queue 'hello' on vhost 'dev' if queue is empty and if queue is unused ..."
    )
    assert broker.last["args"] == {
        "vhost": "dev",
        "queue": "hello",
        "if_unused": True,
        "if_empty": True,
    }
    r = run("delete_queue", "--if-unused", "hello")
    assert r.lines[0] == "Deleting queue 'hello' on vhost '/' if queue is unused ..."
    broker.replies["delete_queue"] = fail("not_found", "queue 'nosuch' in vhost '/' not found")
    r = run("delete_queue", "nosuch")
    assert (r.code, r.errlines) == (64, ["Error:", "Queue not found"])
    broker.replies["delete_queue"] = fail("in_use", "queue 'q' in vhost '/' in use")
    assert run("delete_queue", "-u", "q").errlines == ["Error:", "Queue is in use"]
    broker.replies["delete_queue"] = fail("not_empty", "queue 'q' in vhost '/' is not empty")
    assert run("delete_queue", "-e", "q").errlines == ["Error:", "Queue is not empty"]

    r = run("purge_queue", "-p", "dev", "hello")
    assert (r.code, r.lines) == (0, ["Purging queue 'hello' in vhost 'dev' ..."])
    assert broker.last["args"] == {"vhost": "dev", "queue": "hello"}
    broker.replies["purge_queue"] = fail("not_found", "queue 'nosuch' in vhost '/' not found")
    r = run("purge_queue", "nosuch")
    assert (r.code, r.errlines) == (69, ["Error:", "not_found"])


def test_close_connections(broker: FakeBroker) -> None:
    pid = f"<{NODE}.1.3.0>"
    r = run("close_connection", pid, "go away")
    assert (r.code, r.lines) == (0, [f"Closing connection {pid}, reason: go away..."])
    assert broker.last["args"] == {"name": pid, "reason": "go away"}
    broker.replies["close_connection"] = fail("not_found", "connection not found")
    assert run("close_connection", "<x>", "r").code == 0  # as rabbitmqctl: a no-op
    broker.replies["close_all_connections"] = ok({"closed": 2})
    r = run("close_all_connections", "maintenance")
    assert r.lines == [
        "Closing all connections in vhost /, reason: maintenance...",
        "Closed 2 connections",
    ]
    assert broker.last["args"] == {"reason": "maintenance", "limit": 0, "vhost": "/"}
    r = run("close_all_connections", "-p", "dev", "--limit", "3", "bye")
    assert r.lines[0] == "Closing 3 connections in vhost dev, reason: bye..."
    assert broker.last["args"] == {"reason": "bye", "limit": 3, "vhost": "dev"}
    r = run("close_all_connections", "--global", "bye")
    assert (
        r.lines[0] == f"Closing all connections to node {NODE} (across all vhosts), reason: bye..."
    )
    assert broker.last["args"] == {"reason": "bye", "limit": 0}


# -- node: status, stop ----------------------------------------------------------------------------


STATUS = {
    "pid": 4242,
    "version": "0.1.0",
    "node": NODE,
    "data_dir": "/var/lib/trimq",
    "listeners": [["::", 5672], ["0.0.0.0", 5673]],
    "uptime": 12.345,
    "connections": 2,
    "queues": 3,
    "messages": 7,
}


def test_status(broker: FakeBroker) -> None:
    broker.replies["status"] = ok(STATUS)
    r = run("status")
    assert r.code == 0
    lines = r.lines
    assert lines[:3] == [f"Status of node {NODE} ...", "Runtime", ""]
    assert "OS PID: 4242" in lines and "Uptime (seconds): 12" in lines
    assert f"Node name: {NODE}" in lines and "Product version: 0.1.0" in lines
    assert "Node data directory: /var/lib/trimq" in lines
    assert "Connection count: 2" in lines and "Queue count: 3" in lines
    assert lines[-2:] == [
        "Interface: [::], port: 5672, protocol: amqp, purpose: AMQP 0-9-1",
        "Interface: 0.0.0.0, port: 5673, protocol: amqp, purpose: AMQP 0-9-1",
    ]
    r = run("status", "--formatter", "json")
    doc = json.loads(r.out)
    assert doc["pid"] == 4242 and doc["totals"]["queue_count"] == 3
    assert doc["listeners"][0] == {
        "interface": "[::]",
        "node": NODE,
        "port": 5672,
        "protocol": "amqp",
        "purpose": "AMQP 0-9-1",
    }
    assert run("status", "--unit", "parsecs").code == 64


def test_stop(broker: FakeBroker, data_dir: Path) -> None:
    r = run("stop")
    assert (r.code, r.lines) == (0, [f"Stopping and halting node {NODE} ..."])
    assert broker.last == {"command": "stop", "args": {}}
    assert not (data_dir / "trimq.sock").exists()
    # not running any more: 69 after the banner, as rabbitmqctl does it
    r = run("stop")
    assert r.code == 69 and r.lines == [f"Stopping and halting node {NODE} ..."]
    assert r.errlines[0].startswith(f"Error: unable to perform an operation on node '{NODE}'.")
    r = run("stop", "--idempotent")
    assert (r.code, r.lines) == (
        0,
        [f"Stopping and halting node {NODE} ...", f"Node {NODE} is no longer running"],
    )


def test_stop_with_pid_file(data_dir: Path) -> None:
    fake = FakeBroker(data_dir / "trimq.sock")
    pidfile = data_dir / "trimq.pid"
    dead = 2**22 + 12345  # no such process
    pidfile.write_text(f"{dead}\n")
    r = run("stop", str(pidfile))
    assert (r.code, r.lines) == (
        0,
        [
            f"Stopping and halting node {NODE} (will monitor pid file {pidfile}) ...",
            f"process {dead} (take from pid file {pidfile}) is no longer running",
        ],
    )
    fake.stop()


def test_timeout(broker: FakeBroker) -> None:
    broker.delay = 1.5
    broker.replies["list_users"] = ok(USERS)
    r = run("list_users", "-t", "1")
    assert r.code == 75
    assert r.errlines == [
        f"Error: operation list_users on node {NODE} timed out. Timeout value used: 1000"
    ]


# -- definitions ---------------------------------------------------------------------------------


DEFINITIONS = {
    "rabbit_version": "3.13.0",
    "users": [],
    "vhosts": [{"name": "/"}],
    "queues": [
        {
            "name": "q",
            "vhost": "/",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-queue-type": "classic"},
        }
    ],
    "bindings": [],
    "exchanges": [],
    "permissions": [],
}


def test_export_definitions(broker: FakeBroker, tmp_path: Path) -> None:
    broker.replies["export_definitions"] = ok(DEFINITIONS)
    r = run("export_definitions", "-")
    assert r.code == 0 and not r.out.endswith("\n")  # no banner, raw JSON
    assert json.loads(r.out) == DEFINITIONS
    assert r.out.startswith(
        '{"bindings":[],"exchanges":[],"permissions":[],"queues":'
        '[{"arguments":{"x-queue-type":"classic"},"auto_delete":false,'
    )
    target = tmp_path / "defs.json"
    r = run("export_definitions", str(target))
    assert (r.code, r.lines) == (0, [f'Exporting definitions in JSON to a file at "{target}" ...'])
    assert json.loads(target.read_text()) == DEFINITIONS
    r = run("export_definitions", "/nonexistent/dir/defs.json")
    assert r.code == 65
    assert r.errlines[0] == (
        "Error (argument validation): Bad argument: Directory /nonexistent/dir does not exist"
    )


def test_import_definitions(broker: FakeBroker, tmp_path: Path) -> None:
    source = tmp_path / "defs.json"
    source.write_text(json.dumps(DEFINITIONS))
    r = run("import_definitions", str(source))
    assert r.code == 0
    assert r.out == (
        f'Importing definitions in JSON from a file at "{source}" ...\n'
        "Successfully started definition import. This process is asynchronous "
        "and can take some time.\n"
    )
    assert broker.last == {"command": "import_definitions", "args": {"definitions": DEFINITIONS}}
    r = run("import_definitions", stdin=json.dumps(DEFINITIONS))
    assert r.lines[0] == "Importing definitions in JSON from standard input ..."
    r = run("import_definitions", "-", stdin=json.dumps(DEFINITIONS))
    assert (r.code, r.out) == (0, "")
    r = run("import_definitions", str(tmp_path / "missing.json"))
    assert r.code == 65
    (tmp_path / "bad.json").write_text("{not json")
    r = run("import_definitions", str(tmp_path / "bad.json"))
    assert r.code == 65 and r.errlines[1].startswith("Failed to deserialise input (format: JSON)")
    (tmp_path / "empty.json").write_text("")
    r = run("import_definitions", str(tmp_path / "empty.json"))
    assert r.errlines == ["Error:", f"File {tmp_path / 'empty.json'} is zero-sized"]
    broker.replies["import_definitions"] = fail("error", "vhost 'x' in permissions is unknown")
    r = run("import_definitions", str(source))
    assert (r.code, r.errlines) == (69, ["Error:", "vhost 'x' in permissions is unknown"])


# -- argument handling -----------------------------------------------------------------------------


def test_usage_errors(broker: FakeBroker) -> None:
    r = run("list_users", "extra")
    assert r.code == 64
    assert r.errlines == [
        "Error (argument validation): too many arguments.",
        "Arguments given:",
        "\tlist_users extra",
        "",
        "Usage",
        "",
        USAGE_HEAD + "list_users [--no-table-headers] [--timeout <timeout>]",
    ]
    r = run("add_user")
    assert r.errlines[0] == "Error (argument validation): not enough arguments."
    assert r.errlines[-1] == USAGE_HEAD + "add_user <username> <password>"
    assert run("delete_user", "a", "b").code == 64
    assert run("set_permissions", "a", "b").code == 64
    assert run("close_connection", "x").code == 64
    assert run("stop", "a", "b").code == 64
    r = run("list_users", "--bogus")
    assert r.errlines[:4] == [
        "Error (argument validation): Invalid options for this command:",
        "--bogus : ",
        "Arguments given:",
        "\tlist_users --bogus",
    ]
    r = run("list_queues", "-t", "abc")
    assert r.errlines[:2] == [
        "Error (argument validation): Invalid options for this command:",
        "-t : abc",
    ]
    assert run("list_queues", "-p").errlines[1] == "-p : "
    # table switches only with the table formatter
    assert run("list_users", "--formatter", "json", "--no-table-headers").code == 64
    assert run("add_user", "--no-table-headers", "a", "b").code == 64
    r = run("add_user", "", "pw")
    assert r.code == 65
    assert r.errlines[0] == (
        "Error (argument validation): Bad argument: user cannot be an empty string"
    )
    assert run("delete_queue", "").code == 65
    assert broker.requests == []


def test_unknown_commands(data_dir: Path) -> None:
    r = run("list_quues")
    assert (r.code, r.out) == (64, "")
    assert r.err == "\nCommand 'list_quues' not found. \nDid you mean 'list_queues'? \n\n"
    # equally close names: the command registered first (trimq/cli/commands/__init__.py)
    assert run("delete_qusue").err.endswith("Did you mean 'delete_user'? \n\n")
    assert run("list_qusues").err.endswith("Did you mean 'list_users'? \n\n")
    r = run("frobnicate")
    assert r.code == 64
    assert r.errlines[:5] == ["", "Command 'frobnicate' not found. ", "", "Usage", ""]
    r = run()
    assert r.code == 64 and r.errlines[1] == "Usage"
    r = run("-q")
    assert r.code == 64


def test_help(data_dir: Path) -> None:
    r = run("--help")
    assert r.code == 0
    assert r.lines[:4] == [
        "",
        "Usage",
        "",
        f"{TOOL} [--node <node>] [--timeout <timeout>] "
        "[--longnames] [--quiet] <command> [<command options>]",
    ]
    assert "Available commands:" in r.lines
    pad = max(len(n) for n in ctl.COMMANDS)
    assert f"   {'list_queues'.ljust(pad)}  Lists queues and their properties" in r.lines
    assert r.lines[-1] == f"Use '{TOOL} help <command>' to learn more about a specific command"
    sections = [line for line in r.lines if line.endswith(":") and not line.startswith(" ")]
    assert sections == [
        "Available commands:",
        "Help:",
        "Nodes:",
        "Users:",
        "Access Control:",
        "Monitoring, observability and health checks:",
        "Policies:",
        "Virtual hosts:",
        "Configuration and Environment:",
        "Definitions:",
        "Operations:",
        "Queues:",
    ]
    for name in ctl.COMMANDS:
        assert any(line.startswith(f"   {name} ") for line in r.lines), name
    assert run("help").out == r.out
    r = run("help", "list_queues")
    assert r.code == 0
    assert r.lines[:8] == [
        "",
        "Usage",
        "",
        USAGE_HEAD + "list_queues [--vhost <vhost>] "
        "[--online] [--offline] [--local] [--no-table-headers] "
        "[<column>, ...] [--timeout <timeout>]",
        "",
        "Lists queues and their properties.",
        "",
        "",
    ]
    assert r.lines[8:11] == ["Arguments and Options", "", "<column>"]
    assert r.lines[11] == "\tmust be one of " + ", ".join(sorted(QUEUE_ITEMS))
    assert "General Options" in r.lines
    assert run("list_queues", "--help").out == r.out
    r = run("help", "nosuch")
    assert (r.code, r.errlines) == (64, ["Error:", "", "Command 'nosuch' not found."])
    r = run("help", "--list-commands")
    assert r.code == 0 and r.lines[1] == "Help:"


def test_dry_run(broker: FakeBroker) -> None:
    r = run("delete_user", "alice", "--dry-run")
    assert (r.code, r.lines) == (0, ['Deleting user "alice" ...'])
    assert broker.requests == []


def test_parse_options() -> None:
    switches = {**ctl.GLOBAL_SWITCHES, **ctl.TABLE_SWITCHES, "if_empty": "boolean"}
    opts, args, invalid = ctl.parse_options(
        ["-p", "/", "list", "--no-table-headers", "--timeout=5", "--if-empty", "--", "-x"],
        switches,
        {**ctl.GLOBAL_ALIASES, "e": "if_empty"},
    )
    assert opts == {"vhost": "/", "table_headers": False, "timeout": 5, "if_empty": True}
    assert args == ["list", "-x"]
    assert invalid == []
    assert prepare_info_keys(["name,messages", " durable ", "name", ","]) == [
        "name",
        "messages",
        "durable",
    ]
    assert jaro_distance("list_quues", "list_queues") > 0.9
    assert ctl.suggest_command("zzzz") is None


# -- rendering ---------------------------------------------------------------------------------


def test_erlang_float() -> None:
    cases = {
        0.1: "0.1",
        1.0: "1.0",
        1e-5: "1.0e-5",
        0.0001: "0.0001",
        1.2e-4: "1.2e-4",
        100.0: "100.0",
        1000.0: "1.0e3",
        1e15: "1.0e15",
        12345.678: "12345.678",
        123456789012345680.0: "1.2345678901234568e17",
        -2.5e-10: "-2.5e-10",
        0.0: "0.0",
        60.0: "60.0",
        0.5: "0.5",
    }
    for value, text in cases.items():
        assert erlang_float(value) == text, value


def test_erlang_terms() -> None:
    assert erl_atom("trimq@vm") == "trimq@vm"
    assert erl_atom("rabbit-side@localhost") == "'rabbit-side@localhost'"
    assert erl_atom("Abc") == "'Abc'" and erl_atom("and") == "'and'"
    assert erl_term("") == "[]"
    assert erl_term('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert erl_term("h\xe9llo") == '"h\xe9llo"'
    assert erl_term("\u65e5\u672c") == "[26085,26412]"  # outside the latin1 printable range
    assert erl_term([1, 2]) == "[1,2]" and erl_term([104, 105]) == '"hi"'
    assert erl_term((0, 9, 1)) == "{0,9,1}"
    assert erl_term(None) == "undefined"


def test_amqp_tables() -> None:
    # as io_lib's ~p prints rabbitmqctl's prettified table (checked against OTP 25)
    table = [
        ["x-message-ttl", 60000],
        ["k", ""],
        ["s", 'a"b\\c\nd'],
        ["b", True],
        ["n", [["x", 1]]],
        ["arr", [1, 2]],
        ["arr2", ["a", "b"]],
        ["f", 1.5],
        ["v", None],
    ]
    assert amqp_table_term(table) == (
        '[{"x-message-ttl",60000},{"k",[]},{"s","a\\"b\\\\c\\nd"},{"b",true},{"n",[{"x",1}]},'
        '{"arr",[1,2]},{"arr2",["a","b"]},{"f",1.5},{"v",undefined}]'
    )
    assert amqp_table_term([]) == "[]"
    assert amqp_table_term({"x-max-length": 10}) == '[{"x-max-length",10}]'
    assert amqp_table_json([*table[:5], ["big", 2**40], ["arr", ["a", 1]]]) == [
        ["x-message-ttl", "signedint", 60000],
        ["k", "longstr", ""],
        ["s", "longstr", 'a"b\\c\nd'],
        ["b", "bool", True],
        ["n", "table", [["x", "signedint", 1]]],
        ["big", "long", 2**40],
        ["arr", "array", [["longstr", "a"], ["signedint", 1]]],
    ]
    # explicitly typed entries keep their types
    assert amqp_table_json([["t", "long", 5]]) == [["t", "long", 5]]
    assert amqp_table_term([["t", "long", 5]]) == '[{"t",5}]'


def test_format_value() -> None:
    assert format_value(True) == "true" and format_value(False) == "false"
    assert format_value("") == "" and format_value(None) == ""
    assert format_value(["administrator"]) == "[administrator]"
    assert format_value(["a", "b"]) == "[a, b]" and format_value([]) == "[]"
    assert format_value([["x-message-ttl", 60000]], "arguments") == '[{"x-message-ttl",60000}]'
    assert format_value([], "arguments") == "[]"
    assert format_value(1.0) == "1.0" and format_value(7) == "7"
    assert format_value([0, 9, 1], "protocol") == "{0,9,1}"
    assert format_value({"trimq@vm": "running"}, "cluster_state") == "[{trimq@vm, running}]"


def test_table_and_json_lines() -> None:
    rows = [{"name": "hello", "messages": 0}, {"name": "world", "messages": 5}]
    assert output.table_lines(rows, ["name", "messages"]) == [
        "name\tmessages",
        "hello\t0",
        "world\t5",
    ]
    assert output.table_lines(rows, ["name"], headers=False) == ["hello", "world"]
    assert output.table_lines([], ["name"]) == []
    assert output.json_lines(rows, ["name", "messages"]) == [
        "[",
        '{"name":"hello","messages":0}',
        ',{"name":"world","messages":5}',
        "]",
    ]
    assert output.json_encode({"s": "\u00e9\t\x01/"}) == '{"s":"\u00e9\\t\\u0001/"}'
    assert output.json_encode(1e-5) == "1.0e-5"


def test_banners() -> None:
    opts = {"vhost": "/", "timeout": 60000, "node": "trimq@h"}

    def banner(name: str, args: list[str]) -> list[str]:
        return ctl.COMMANDS[name].banner_lines(args, opts)

    assert banner("list_queues", []) == [
        "Timeout: 60.0 seconds ...",
        "Listing queues for vhost / ...",
    ]
    assert banner("list_bindings", []) == ["Listing bindings for vhost /..."]
    assert banner("stop", []) == ["Stopping and halting node trimq@h ..."]
    assert banner("set_permissions", ["u", "a", "b", "c"]) == [
        'Setting permissions for user "u" in vhost "/" ...'
    ]
    assert banner("help", []) == []


def test_main_streams(broker: FakeBroker, capsys: pytest.CaptureFixture[str]) -> None:
    """main() writes results to stdout, errors to stderr, and returns the exit code."""
    broker.replies["list_users"] = ok(USERS)
    r = run_main(capsys, "list_users", "-q")
    assert (r.code, r.lines, r.err) == (
        0,
        ["user\ttags", "alice\t[monitoring]", "guest\t[administrator]"],
        "",
    )
    r = run_main(capsys, "list_users", "x")
    assert r.code == 64 and r.out == "" and "too many arguments" in r.err


def test_vhost_limits(broker: FakeBroker) -> None:
    """rabbitmqctl 3.10.8's formats; the requests trimqctl sends."""
    limits = [
        {"vhost": "/", "limits": {"max-queues": 3, "max-connections": 10}},
        {"vhost": "v2", "limits": {}},
    ]
    broker.replies["list_vhost_limits"] = ok(limits[:1])
    r = run("list_vhost_limits", "--formatter", "json")
    assert broker.last == {"command": "list_vhost_limits", "args": {"vhost": "/"}}
    assert r.lines == [
        f'{{"node":"{NODE}","result":"ok","value":'
        '"{\\"max-connections\\":10,\\"max-queues\\":3}"}'
    ]
    broker.replies["list_vhost_limits"] = ok(limits)
    r = run("list_vhost_limits", "--global", "--formatter", "csv")
    assert broker.last["args"] == {"global": True}
    assert r.lines == [
        '"vhost","limits"',
        '"/","{""max-connections"":10,""max-queues"":3}"',
        '"v2","{}"',
    ]
    r = run("list_vhost_limits", "--global", "--no-table-headers")
    assert r.lines == [
        "Listing limits for all vhosts ...",
        '/\t{"max-connections":10,"max-queues":3}',
        "v2\t{}",
    ]
    broker.replies["list_vhost_limits"] = ok([])
    assert run("list_vhost_limits", "--formatter", "json").lines == ["[]"]
    assert run("list_vhost_limits", "--global", "--formatter", "json").lines == ["[]"]
    assert run("list_vhost_limits", "--global", "-q").out == "\n"
    broker.replies["set_vhost_limits"] = ok({})
    r = run("set_vhost_limits", "-p", "dev", '{"max-queues": 1}')
    assert broker.last == {
        "command": "set_vhost_limits",
        "args": {"vhost": "dev", "definition": '{"max-queues": 1}'},
    }
    assert (r.code, r.lines) == (
        0,
        ['Setting vhost limits to "{"max-queues": 1}" for vhost "dev" ...'],
    )
    broker.replies["set_vhost_limits"] = fail("vhost_not_found", "x")
    r = run("set_vhost_limits", "-p", "nosuch", "{}")
    assert (r.code, r.errlines) == (65, ["Virtual host 'nosuch' does not exist"])
    broker.replies["clear_vhost_limits"] = fail("not_found", "Parameter does not exist")
    r = run("clear_vhost_limits", "-q")
    assert (r.code, r.out, r.errlines) == (69, "", ["Error:", "Parameter does not exist"])
