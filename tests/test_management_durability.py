"""What the management API answered is on disk: durable queues, exchanges and bindings
declared over HTTP, and persistent messages published over HTTP into durable queues, survive
kill -9 right after the answer; deletions made over HTTP stay made; and a durable declaration
is answered only once the fsync covering it is done (the test-only fsync hook holds it).

trimq-only: kills and restarts its own trimq-server on one data directory.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from conftest import Broker, start_server, stop_server
from http_helpers import Api
from msg_helpers import eventually

from storage.fsync_hook import ENV

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: kills its own trimq-server"
)


def _api(server: Broker) -> Api:
    assert server.management_port is not None
    return Api(f"http://{server.host}:{server.management_port}")


def _kill(server: Broker) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()


def test_answers_survive_kill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    api = _api(server)
    assert api.put("queues", "/", "kept", json={"durable": True}).status_code == 201
    assert api.put("queues", "/", "gone", json={"durable": True}).status_code == 201
    assert (
        api.put("exchanges", "/", "ex", json={"type": "topic", "durable": True}).status_code == 201
    )
    assert (
        api.post("bindings", "/", "e", "ex", "q", "kept", json={"routing_key": "k.*"}).status_code
        == 201
    )
    answer = api.post(
        "exchanges",
        "/",
        "ex",
        "publish",
        json={
            "properties": {"delivery_mode": 2, "message_id": "p1"},
            "routing_key": "k.1",
            "payload": "persisted",
            "payload_encoding": "string",
        },
    )
    assert answer.json() == {"routed": True}
    assert api.delete("queues", "/", "gone").status_code == 204
    _kill(server)

    server = start_server(data)
    try:
        api = _api(server)
        assert api.get("queues", "/", "gone").status_code == 404
        assert api.get("exchanges", "/", "ex").json()["type"] == "topic"
        keys = [b["routing_key"] for b in api.get("bindings", "/", "e", "ex", "q", "kept").json()]
        assert keys == ["k.*"]
        peeked = api.get("queues", "/", "kept", "messages").json()
        assert [(m["payload"], m["properties"]["message_id"]) for m in peeked] == [
            ("persisted", "p1")
        ]
    finally:
        stop_server(server)


def test_a_durable_declaration_answers_after_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = tmp_path / "fsync-hook"
    hook.mkdir()
    monkeypatch.setenv(ENV, str(hook))
    server = start_server(tmp_path / "data")
    try:
        api = _api(server)
        done = len((hook / "fsynced").read_text().split()) if (hook / "fsynced").exists() else 0
        (hook / "allow.tmp").write_text(f"{done}\n")
        (hook / "allow.tmp").replace(hook / "allow")  # hold every later fsync
        answers: list[int] = []
        request = threading.Thread(
            target=lambda: answers.append(
                api.put("queues", "/", "d", json={"durable": True}).status_code
            )
        )
        request.start()
        held = eventually((hook / "blocked").exists, bool, timeout=10)
        assert held, "the declaration's fsync never came"
        assert answers == []  # its batch waits for the disk: no answer yet
        (hook / "allow").unlink()
        request.join(timeout=10)
        assert answers == [201]
    finally:
        (hook / "allow").unlink(missing_ok=True)
        stop_server(server)
