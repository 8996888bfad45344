"""Users, vhosts and permissions: enforced where RabbitMQ enforces them, with its 403 and 530
texts, durable across restarts, and managed over the control socket.

Most tests run their own trimq-server to administer it (trimq-only). Those using the `admin`
fixture administer the shared broker: trimq's control socket, or, under TRIMQ_TEST_URL,
rabbitmqctl for that node given as TRIMQ_TEST_RABBITMQCTL (a command line, for example
`env HOME=/tmp/rmq/home /usr/lib/rabbitmq/bin/rabbitmqctl -n rabbit-side-5690@localhost`);
without it they skip. Their expectations were checked against RabbitMQ 3.10.8.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
import trio
import trio.testing
from amqp_wire import CONNECTION_TUNE, WireConnection, longstr, shortstr, table
from conftest import Broker, start_server, stop_server
from ctl_helpers import control_reply
from pika import frame as pf
from pika import spec as ps

from trimq.broker.broker import Broker as Model
from trimq.server.connection import ServerConnection, is_loopback

trimq_only = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: administers its own trimq-server"
)


def ok(reply: dict) -> object:
    assert reply["ok"], reply
    return reply["result"]


def connect(
    server: Broker,
    user: str,
    password: str,
    vhost: str = "/",
) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            server.host,
            server.port,
            vhost,
            pika.PlainCredentials(user, password),
            connection_attempts=1,
        )
    )


def refused(action: object, *args: object, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        action(*args, **kwargs)  # type: ignore[operator]
    return info.value.reply_code, info.value.reply_text


def denial(user: str, kind: str, name: str, vhost: str = "/") -> tuple[int, str]:
    return 403, (
        f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"
    )


@trimq_only
def test_each_operation_checks_its_permission(node: Broker) -> None:
    data = node.data_dir
    assert data is not None
    ok(control_reply(data, "add_user", user="bob", password="pw"))
    # bob may configure and write only "bob.*" resources, and read only "shared.*" ones.
    ok(
        control_reply(
            data,
            "set_permissions",
            vhost="/",
            user="bob",
            configure="^bob\\.",
            write="^bob\\.",
            read="^shared\\.",
        )
    )
    admin = node.connect().channel()
    admin.exchange_declare("shared.x", "fanout")
    admin.queue_declare("shared.q")
    admin.queue_declare("other.q")

    conn = connect(node, "bob", "pw")
    ch = conn.channel()
    ch.queue_declare("bob.q")  # configure: allowed
    ch.exchange_declare("bob.x", "direct")
    assert refused(ch.queue_declare, "alice.q") == denial("bob", "queue", "alice.q")
    ch = conn.channel()
    assert refused(ch.exchange_declare, "alice.x", "direct") == denial("bob", "exchange", "alice.x")
    ch = conn.channel()
    ch.queue_declare("other.q", passive=True)  # passive declares need no permission
    assert refused(ch.queue_delete, "other.q") == denial("bob", "queue", "other.q")
    ch = conn.channel()
    ch.queue_bind("bob.q", "shared.x")  # write on the queue, read on the exchange
    assert refused(ch.queue_bind, "bob.q", "bob.x") == denial("bob", "exchange", "bob.x")
    ch = conn.channel()
    ch.basic_publish("bob.x", "k", b"fine")  # write on the exchange
    assert refused(
        lambda: (ch.basic_publish("shared.x", "", b"no"), ch.queue_declare("bob.q", passive=True))
    ) == denial("bob", "exchange", "shared.x")
    ch = conn.channel()
    assert refused(
        lambda: (ch.basic_publish("", "bob.q", b"no"), ch.queue_declare("bob.q", passive=True))
    ) == denial("bob", "exchange", "amq.default")
    ch = conn.channel()
    assert ch.basic_get("shared.q") == (None, None, None)  # read: allowed
    assert refused(ch.basic_get, "bob.q") == denial("bob", "queue", "bob.q")
    ch = conn.channel()
    assert refused(ch.basic_consume, "other.q", lambda *a: None) == denial(
        "bob", "queue", "other.q"
    )
    ch = conn.channel()
    assert refused(ch.queue_purge, "bob.q") == denial("bob", "queue", "bob.q")
    ch = conn.channel()
    # server-named queues are checked under their generated name
    assert refused(ch.queue_declare, "")[0] == 403
    conn.close()


@trimq_only
def test_vhost_access_needs_a_permission(node: Broker) -> None:
    data = node.data_dir
    assert data is not None
    ok(control_reply(data, "add_user", user="carol", password="pw"))
    ok(control_reply(data, "add_vhost", vhost="dev"))
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect(node, "carol", "pw", "dev")
    assert "NOT_ALLOWED - access to vhost 'dev' refused for user 'carol'" in str(info.value)
    ok(
        control_reply(
            data,
            "set_permissions",
            vhost="dev",
            user="carol",
            configure=".*",
            write=".*",
            read=".*",
        )
    )
    conn = connect(node, "carol", "pw", "dev")
    conn.channel().queue_declare("in-dev")
    conn.close()


@trimq_only
def test_password_changes_and_cleared_passwords(node: Broker) -> None:
    data = node.data_dir
    assert data is not None
    ok(control_reply(data, "add_user", user="dave", password="old"))
    ok(
        control_reply(
            data, "set_permissions", vhost="/", user="dave", configure=".*", write=".*", read=".*"
        )
    )
    connect(node, "dave", "old").close()
    ok(control_reply(data, "change_password", user="dave", password="new"))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(node, "dave", "old")
    connect(node, "dave", "new").close()
    assert control_reply(data, "authenticate_user", user="dave", password="new")["ok"]
    failed = control_reply(data, "authenticate_user", user="dave", password="old")
    assert failed == {
        "ok": False,
        "kind": "auth_failed",
        "error": "user 'dave' - invalid credentials",
    }
    ok(control_reply(data, "clear_password", user="dave"))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(node, "dave", "new")


@trimq_only
def test_delete_vhost_closes_its_connections_and_drops_its_queues(node: Broker) -> None:
    data = node.data_dir
    assert data is not None
    ok(control_reply(data, "add_vhost", vhost="tmp"))
    ok(
        control_reply(
            data,
            "set_permissions",
            vhost="tmp",
            user="guest",
            configure=".*",
            write=".*",
            read=".*",
        )
    )
    inside = connect(node, "guest", "guest", "tmp")
    inside.channel().queue_declare("doomed", durable=True)
    outside = node.connect()
    ok(control_reply(data, "delete_vhost", vhost="tmp"))
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        inside.channel()
    assert info.value.reply_code == 320
    assert outside.channel().queue_declare("", exclusive=True)  # others are untouched
    ok(control_reply(data, "add_vhost", vhost="tmp"))
    ok(
        control_reply(
            data,
            "set_permissions",
            vhost="tmp",
            user="guest",
            configure=".*",
            write=".*",
            read=".*",
        )
    )
    again = connect(node, "guest", "guest", "tmp")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        again.channel().queue_declare("doomed", passive=True)


@trimq_only
def test_recovery_recipe_and_everything_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    ok(control_reply(data, "delete_vhost", vhost="/"))
    ok(control_reply(data, "add_vhost", vhost="/"))
    ok(control_reply(data, "add_user", user="erin", password="pw"))
    ok(control_reply(data, "set_user_tags", user="erin", tags=["monitoring"]))
    ok(
        control_reply(
            data, "set_permissions", vhost="/", user="erin", configure=".*", write=".*", read=".*"
        )
    )
    ok(control_reply(data, "delete_user", user="guest"))
    assert stop_server(server) == 0

    server = start_server(data)
    try:
        assert ok(control_reply(data, "list_users")) == [{"user": "erin", "tags": ["monitoring"]}]
        assert ok(control_reply(data, "list_permissions", vhost="/")) == [
            {"user": "erin", "configure": ".*", "write": ".*", "read": ".*"}
        ]
        conn = connect(server, "erin", "pw")
        conn.channel().queue_declare("works")
        conn.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            server.connect(connection_attempts=1)
    finally:
        assert stop_server(server) == 0


@trimq_only
def test_definitions_export_import_round_trip(tmp_path: Path) -> None:
    first = start_server(tmp_path / "a")
    second = start_server(tmp_path / "b")
    try:
        a, b = tmp_path / "a", tmp_path / "b"
        ok(control_reply(a, "add_user", user="frank", password="pw"))
        ok(control_reply(a, "add_vhost", vhost="prod"))
        ok(
            control_reply(
                a,
                "set_permissions",
                vhost="prod",
                user="frank",
                configure=".*",
                write=".*",
                read=".*",
            )
        )
        ch = pika.BlockingConnection(
            pika.ConnectionParameters(
                first.host, first.port, "prod", pika.PlainCredentials("frank", "pw")
            )
        ).channel()
        ch.exchange_declare("orders", "topic", durable=True)
        ch.queue_declare("orders.eu", durable=True, arguments={"x-max-length": 10})
        ch.queue_bind("orders.eu", "orders", "eu.#")
        exported = ok(control_reply(a, "export_definitions"))
        frank = next(u for u in exported["users"] if u["name"] == "frank")
        assert frank["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert {
            "name": "orders.eu",
            "vhost": "prod",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-max-length": 10},
        } in exported["queues"]
        ok(control_reply(b, "import_definitions", definitions=exported))
        ch = pika.BlockingConnection(
            pika.ConnectionParameters(
                second.host, second.port, "prod", pika.PlainCredentials("frank", "pw")
            )
        ).channel()
        ch.confirm_delivery()
        ch.basic_publish("orders", "eu.de", b"order-1")
        assert ch.basic_get("orders.eu", auto_ack=True)[2] == b"order-1"
        assert (
            refused(ch.queue_declare, "orders.eu", durable=True, arguments={"x-max-length": 20})[0]
            == 406
        )
    finally:
        stop_server(first)
        stop_server(second)


# RabbitMQ 3.10 (listening on every interface) let guest in from 127.0.0.1, 127.0.0.2, ::1
# and ::ffff:127.0.0.1, and refused it from 192.0.2.2, fd00::2 and ::ffff:192.0.2.2 (the host's
# own addresses) with 403 and its usual login-refused text.
LOOPBACK = ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1", "::ffff:7f00:2"]
NOT_LOOPBACK = [
    "10.1.2.3",
    "192.0.2.2",
    "0.0.0.0",
    "::",
    "::2",
    "2001:db8::1",
    "fd00::2",
    "::ffff:10.1.2.3",
    "::127.0.0.1",
    "fe80::1%2",
    "localhost",
    "",
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_other_addresses_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@trimq_only
@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", False),
        ("2001:db8::1", False),
        ("::ffff:10.1.2.3", False),
    ],
)
def test_guest_only_from_loopback(peer: str, allowed: bool) -> None:
    """loopback_users: guest's correct password is refused from another address (in-process,
    so that any peer address can be tried, mapped IPv4 included)."""

    async def login(peer: str) -> bytes:
        model = Model()
        client, server_stream = trio.testing.memory_stream_pair()
        conn = ServerConnection(server_stream, model, (peer, 40000))
        received = b""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.serve)
            await client.send_all(b"AMQP\x00\x00\x09\x01")
            await client.send_all(
                pf.Method(
                    0,
                    ps.Connection.StartOk(
                        {"capabilities": {"authentication_failure_close": True}},
                        "PLAIN",
                        b"\0guest\0guest",
                        "en_US",
                    ),
                ).marshal()
            )
            with trio.move_on_after(2):
                while chunk := await client.receive_some(65536):
                    received += chunk
            nursery.cancel_scope.cancel()
        return received

    received = trio.run(login, peer)
    if allowed:
        assert b"ACCESS_REFUSED" not in received
        assert b"\x00\x0a\x00\x1e" in received  # Connection.Tune
    else:
        assert (
            b"ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in received
        )


def own_address(family: socket.AddressFamily, somewhere: str) -> str | None:
    """The address this host would send from to reach `somewhere` (a UDP connect sends
    nothing), if that is not a loopback one: an address of its own that is not loopback."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((somewhere, 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if is_loopback(address) else address


@pytest.fixture(scope="module")
def everywhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A trimq-server listening on every interface, IPv4 and IPv6."""
    server = start_server(tmp_path_factory.mktemp("everywhere") / "data", "--host", "")
    yield server
    stop_server(server)


def guest_login_from(server: Broker, address: str) -> bool:
    """Log in as guest over TCP from `address` to `address`: True if the server goes on to
    Connection.Tune, False if it refuses with RabbitMQ's 403."""
    with WireConnection(address, server.port, source=address) as conn:
        conn.start()
        props = table({"capabilities": {"authentication_failure_close": True}})
        conn.send_method(
            0, (10, 11), props + shortstr("PLAIN") + longstr(b"\0guest\0guest") + shortstr("en_US")
        )
        frame = conn.read_method()
        if frame.class_method == CONNECTION_TUNE:
            return True
        close = frame.args()
        assert (frame.class_method, close.short(), close.shortstr()) == (
            (10, 50),
            403,
            "ACCESS_REFUSED - Login was refused using authentication mechanism "
            "PLAIN. For details see the broker logfile.",
        )
        return False


@trimq_only
@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1"])
def test_guest_logs_in_over_loopback(everywhere: Broker, address: str) -> None:
    assert guest_login_from(everywhere, address)


@trimq_only
@pytest.mark.parametrize(
    ("family", "somewhere"), [(socket.AF_INET, "198.51.100.1"), (socket.AF_INET6, "2001:db8::1")]
)
def test_guest_is_refused_from_an_address_of_the_host_that_is_not_loopback(
    everywhere: Broker, family: socket.AddressFamily, somewhere: str
) -> None:
    address = own_address(family, somewhere)
    if address is None:
        pytest.skip(f"this host has no {family.name} address other than loopback")
    assert not guest_login_from(everywhere, address)


# -- exchanges that receive messages on the declarer's behalf ------------------------------


class Admin:
    """Users, permissions and policies of the shared broker under test (see the docstring)."""

    def __init__(self, broker: Broker, rabbitmqctl: list[str] | None) -> None:
        self.broker = broker
        self.rabbitmqctl = rabbitmqctl
        self.users: list[str] = []
        self.policies: list[str] = []

    def _run(self, command: str, ctl_args: list[str], **args: object) -> None:
        if self.rabbitmqctl is None:
            assert self.broker.data_dir is not None
            ok(control_reply(self.broker.data_dir, command, **args))
            return
        done = subprocess.run(
            [*self.rabbitmqctl, command, *ctl_args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def add_user(self, user: str, configure: str, write: str, read: str) -> pika.BlockingConnection:
        """A user with these permissions on vhost /, connected."""
        self._run("add_user", [user, "pw"], user=user, password="pw")
        self.users.append(user)
        self._run(
            "set_permissions",
            ["-p", "/", user, configure, write, read],
            vhost="/",
            user=user,
            configure=configure,
            write=write,
            read=read,
        )
        return connect(self.broker, user, "pw")

    def set_policy(self, name: str, pattern: str, definition: dict, apply_to: str) -> None:
        text = json.dumps(definition)
        self._run(
            "set_policy",
            [name, pattern, text, "--apply-to", apply_to],
            vhost="/",
            name=name,
            pattern=pattern,
            definition=text,
            apply_to=apply_to,
        )
        self.policies.append(name)

    def cleanup(self) -> None:
        for name in self.policies:
            self._run("clear_policy", [name], vhost="/", name=name)
        for user in self.users:
            self._run("delete_user", [user], user=user)


@pytest.fixture
def admin(broker: Broker) -> Iterator[Admin]:
    ctl = None
    if os.environ.get("TRIMQ_TEST_URL"):
        if not os.environ.get("TRIMQ_TEST_RABBITMQCTL"):
            pytest.skip("administering the other broker needs TRIMQ_TEST_RABBITMQCTL")
        ctl = shlex.split(os.environ["TRIMQ_TEST_RABBITMQCTL"])
    tool = Admin(broker, ctl)
    yield tool
    tool.cleanup()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """Names this test's user may configure and write start with it."""
    return f"p{zlib.crc32(request.node.nodeid.encode()):08x}{os.getpid()}"


@pytest.fixture
def target(broker: Broker, prefix: str) -> Iterator[str]:
    """An exchange that users of these tests may not write to, and a queue it routes to."""
    conn = broker.connect()
    ch = conn.channel()
    name = f"target.{prefix}"
    ch.exchange_declare(name, "fanout")
    ch.queue_declare(name)
    ch.queue_bind(name, name)
    yield name
    ch.queue_delete(name)
    ch.exchange_delete(name)
    conn.close()


def exists(broker: Broker, kind: str, name: str) -> bool:
    conn = broker.connect()
    try:
        ch = conn.channel()
        if kind == "queue":
            ch.queue_declare(name, passive=True)
        else:
            ch.exchange_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404
        return False
    finally:
        conn.close()


def test_dead_letter_exchange_needs_write_permission(
    admin: Admin, broker: Broker, prefix: str, target: str
) -> None:
    """Else a queue with x-message-ttl 0 would publish to `target` on the user's behalf."""
    user = f"{prefix}.u"
    conn = admin.add_user(user, f"^{prefix}\\.", f"^{prefix}\\.", ".*")
    mine = f"{prefix}.q"
    args = {"x-dead-letter-exchange": target, "x-message-ttl": 0}
    assert refused(conn.channel().queue_declare, mine, arguments=args) == denial(
        user, "exchange", target
    )
    assert not exists(broker, "queue", mine)
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": target}
    assert refused(conn.channel().queue_declare, mine, arguments=args) == denial(
        user, "exchange", "amq.default"
    )
    # the permission is checked before the other arguments, after the exchange name's type
    args = {"x-dead-letter-exchange": target, "x-message-ttl": -1}
    assert refused(conn.channel().queue_declare, mine, arguments=args) == denial(
        user, "exchange", target
    )
    args = {"x-dead-letter-exchange": 5}
    assert refused(conn.channel().queue_declare, mine, arguments=args) == (
        406,
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange'"
        f" in queue '{mine}' in vhost '/'",
    )
    ch = conn.channel()
    ch.queue_declare(mine, exclusive=True, arguments={"x-dead-letter-exchange": f"{prefix}.x"})
    # an existing queue is not checked again, nor is a passive declaration
    guest = broker.connect()
    guest.channel().queue_declare(f"{prefix}.old", arguments={"x-dead-letter-exchange": target})
    ch.queue_declare(f"{prefix}.old", arguments={"x-dead-letter-exchange": target})
    ch.queue_declare(f"{prefix}.old", passive=True)
    guest.channel().queue_delete(f"{prefix}.old")
    guest.close()
    conn.close()


def test_dead_letter_exchange_needs_read_permission_on_the_queue(
    admin: Admin, prefix: str, target: str
) -> None:
    user = f"{prefix}.u"
    conn = admin.add_user(user, f"^{prefix}\\.", ".*", "^$")
    mine = f"{prefix}.q"
    assert refused(
        conn.channel().queue_declare,
        mine,
        exclusive=True,
        arguments={"x-dead-letter-exchange": target},
    ) == denial(user, "queue", mine)
    conn.channel().queue_declare(mine, exclusive=True)  # without one, configure is enough
    conn.close()


def test_alternate_exchange_needs_write_permission(
    admin: Admin, broker: Broker, prefix: str, target: str
) -> None:
    user = f"{prefix}.u"
    conn = admin.add_user(user, f"^{prefix}\\.", f"^{prefix}\\.", ".*")
    mine = f"{prefix}.x"
    assert refused(
        conn.channel().exchange_declare, mine, "fanout", arguments={"alternate-exchange": target}
    ) == denial(user, "exchange", target)
    assert not exists(broker, "exchange", mine)
    assert refused(
        conn.channel().exchange_declare, mine, "fanout", arguments={"alternate-exchange": ""}
    ) == denial(user, "exchange", "amq.default")
    assert refused(
        conn.channel().exchange_declare, mine, "fanout", arguments={"alternate-exchange": 5}
    ) == (
        406,
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in "
        f"exchange '{mine}' in vhost '/'",
    )
    ch = conn.channel()
    ch.exchange_declare(
        mine, "fanout", auto_delete=True, arguments={"alternate-exchange": f"{prefix}.ae"}
    )
    # an existing exchange is not checked again
    guest = broker.connect()
    old = f"{prefix}.old"
    guest.channel().exchange_declare(old, "fanout", arguments={"alternate-exchange": target})
    ch.exchange_declare(old, "fanout", arguments={"alternate-exchange": target})
    guest.channel().exchange_delete(old)
    guest.close()
    ch.exchange_delete(mine)
    conn.close()


def test_alternate_exchange_needs_read_permission_on_the_exchange(
    admin: Admin, prefix: str, target: str
) -> None:
    user = f"{prefix}.u"
    conn = admin.add_user(user, f"^{prefix}\\.", ".*", "^$")
    mine = f"{prefix}.x"
    assert refused(
        conn.channel().exchange_declare, mine, "fanout", arguments={"alternate-exchange": target}
    ) == denial(user, "exchange", mine)
    conn.close()


def test_policies_name_exchanges_without_the_declarers_permission(
    admin: Admin, broker: Broker, prefix: str, target: str
) -> None:
    """Policies are the operator's: a dead-letter or alternate exchange they give is not
    checked against the declaring user's permissions (as RabbitMQ)."""
    admin.set_policy(f"{prefix}.dlx", f"^{prefix}\\.dl", {"dead-letter-exchange": target}, "queues")
    admin.set_policy(f"{prefix}.ae", f"^{prefix}\\.ae", {"alternate-exchange": target}, "exchanges")
    conn = admin.add_user(f"{prefix}.u", f"^{prefix}\\.", f"^{prefix}\\.", ".*")
    ch = conn.channel()
    ch.queue_declare(f"{prefix}.dl", exclusive=True)
    ch.exchange_declare(f"{prefix}.ae", "fanout", auto_delete=True)
    conn.close()
