"""trimqctl against a live broker: rabbitmqctl's output, line by line, and its exit codes.

trimq-only: drives its own trimq-server's control socket.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pika
import pytest
from conftest import Broker
from ctl_helpers import ctl

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: administers its own trimq-server"
)


def test_users_as_in_the_rabbitmqctl_transcript(node: Broker) -> None:
    assert ctl(node, "add_user", "alice", "secret") == (
        0,
        [
            'Adding user "alice" ...',
            "Done. Don't forget to grant the user permissions to some virtual hosts! See "
            "'trimqctl help set_permissions' to learn more.",
        ],
        [],
    )
    code, out, err = ctl(node, "add_user", "alice", "secret")
    assert code == 70 and out == ['Adding user "alice" ...']
    assert err == ["Error:", 'User "alice" already exists']
    code, out, err = ctl(node, "delete_user", "nosuch")
    assert code == 67 and err == ["Error:", 'User "nosuch" does not exist']
    assert ctl(node, "set_user_tags", "alice", "monitoring") == (
        0,
        ['Setting tags for user "alice" to [monitoring] ...'],
        [],
    )
    assert ctl(node, "list_users", "-s") == (
        0,
        ["alice\t[monitoring]", "guest\t[administrator]"],
        [],
    )
    code, out, _ = ctl(node, "list_users", "--formatter", "json")
    assert code == 0
    assert json.loads("".join(out)) == [
        {"user": "alice", "tags": ["monitoring"]},
        {"user": "guest", "tags": ["administrator"]},
    ]
    assert out[0] == "[" and out[-1] == "]" and out[2].startswith(",{")
    assert ctl(node, "authenticate_user", "alice", "secret") == (
        0,
        ['Authenticating user "alice" ...', "Success"],
        [],
    )
    code, out, err = ctl(node, "authenticate_user", "alice", "wrong")
    assert code == 65
    assert err[-2:] == [
        'Error: failed to authenticate user "alice"',
        "user 'alice' - invalid credentials",
    ]


def test_vhosts_permissions_and_the_recovery_recipe(node: Broker) -> None:
    assert ctl(node, "add_vhost", "dev")[0] == 0
    assert ctl(node, "list_vhosts") == (0, ["Listing vhosts ...", "name", "/", "dev"], [])
    assert ctl(node, "delete_vhost", "/")[0] == 0
    assert ctl(node, "add_vhost", "/")[0] == 0
    assert ctl(node, "set_permissions", "-p", "/", "guest", ".*", ".*", ".*") == (
        0,
        ['Setting permissions for user "guest" in vhost "/" ...'],
        [],
    )
    assert ctl(node, "list_permissions", "-p", "/") == (
        0,
        [
            'Listing permissions for vhost "/" ...',
            "user\tconfigure\twrite\tread",
            "guest\t.*\t.*\t.*",
        ],
        [],
    )
    conn = node.connect()
    conn.channel().queue_declare("after-recipe")
    conn.close()


def test_list_queues_exchanges_bindings_connections(node: Broker) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("hello", durable=True, arguments={"x-message-ttl": 60000})
    ch.exchange_declare("logs", "fanout")
    ch.queue_bind("hello", "logs")
    ch.confirm_delivery()
    ch.basic_publish("", "hello", b"x", pika.BasicProperties(delivery_mode=2))
    assert ctl(node, "list_queues") == (
        0,
        [
            "Timeout: 60.0 seconds ...",
            "Listing queues for vhost / ...",
            "name\tmessages",
            "hello\t1",
        ],
        [],
    )
    assert ctl(
        node, "list_queues", "-q", "name", "durable", "arguments", "messages_persistent"
    ) == (
        0,
        [
            "name\tdurable\targuments\tmessages_persistent",
            'hello\ttrue\t[{"x-message-ttl",60000}]\t1',
        ],
        [],
    )
    code, out, _ = ctl(node, "list_exchanges")
    assert code == 0 and out[:2] == ["Listing exchanges for vhost / ...", "name\ttype"]
    assert "\tdirect" in out and "logs\tfanout" in out and "amq.topic\ttopic" in out
    code, out, _ = ctl(node, "list_bindings", "-s")
    # pika binds with the queue name as routing key when none is given
    assert out == ["\texchange\thello\tqueue\thello\t[]", "logs\texchange\thello\tqueue\thello\t[]"]
    code, out, _ = ctl(node, "list_connections", "-s")
    assert code == 0 and len(out) == 1 and out[0].startswith("guest\t127.0.0.1\t")
    assert out[0].endswith("\trunning")
    code, out, _ = ctl(node, "list_channels", "-s", "number", "confirm")
    assert out == ["1\ttrue"]
    code, out, err = ctl(node, "list_queues", "nosuchitem")
    assert code == 64
    assert err[0] == "Error (argument validation): Info key(s) nosuchitem are not supported"
    conn.close()


def test_purge_delete_close_and_stop(node: Broker) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("work")
    ch.basic_publish("", "work", b"1")
    ch.basic_publish("", "work", b"2")
    assert ctl(node, "purge_queue", "work")[0] == 0
    assert ch.queue_declare("work", passive=True).method.message_count == 0
    assert ctl(node, "delete_queue", "work")[0] == 0
    assert ctl(node, "close_all_connections", "maintenance")[0] == 0
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.channel()
    assert (info.value.reply_code, info.value.reply_text) == (
        320,
        "CONNECTION_FORCED - maintenance",
    )
    code, out, _ = ctl(node, "stop")
    assert code == 0 and out[0].startswith("Stopping and halting node trimq@")
    assert node.process is not None and node.process.wait(10) == 0


def test_node_not_running(tmp_path: Path) -> None:
    server = Broker("127.0.0.1", 0, None, tmp_path)
    code, _out, err = ctl(server, "list_users")
    assert code == 69
    assert err[0].startswith("Error: unable to perform an operation on node 'trimq@")


def test_export_and_import_definitions(node: Broker, tmp_path: Path) -> None:
    conn = node.connect()
    conn.channel().queue_declare("kept", durable=True)
    conn.close()
    target = tmp_path / "defs.json"
    assert ctl(node, "export_definitions", str(target))[0] == 0
    document = json.loads(target.read_text())
    assert any(q["name"] == "kept" for q in document["queues"])
    assert document["users"][0]["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    document["queues"].append(
        {"name": "imported", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}
    )
    target.write_text(json.dumps(document))
    assert ctl(node, "import_definitions", str(target))[0] == 0
    conn = node.connect()
    conn.channel().queue_declare("imported", passive=True)
    conn.close()
