"""A channel's idle_since in the management API: absent while the channel handles frames or
delivers, then the time its activity stopped, in RabbitMQ's format
(tests/test_management_connections.py checks that format and its absence on connections
against RabbitMQ).

trimq-only: RabbitMQ's reference node ticks its channels every 0.5 s, which keeps them from
ever showing idle_since.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import pytest
from conftest import Broker
from http_helpers import Api
from msg_helpers import connection_name, eventually

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: the reference node's channels never go idle",
)


def _channel(api: Api, name: str) -> dict[str, Any]:
    rows = [r for r in api.get("channels").json() if r["name"] == name]
    assert len(rows) == 1
    return rows[0]


def _since(row: dict[str, Any]) -> float:
    return datetime.fromisoformat(row["idle_since"]).timestamp()


def test_idle_since_follows_activity(management_url: str, broker: Broker, unique: str) -> None:
    api = Api(management_url)
    client = broker.connect()
    try:
        channel = client.channel()
        name = f"{connection_name(client)} (1)"
        opened = time.time()
        row = eventually(lambda: _channel(api, name), lambda r: "idle_since" in r)
        assert opened - 1 <= _since(row) <= time.time()
        channel.queue_declare(unique, auto_delete=True)  # a frame: active again
        assert "idle_since" not in _channel(api, name)
        later = eventually(lambda: _channel(api, name), lambda r: "idle_since" in r)
        assert _since(later) > _since(row)
        # deliveries count as activity too (noted by the 5 s sampling)
        channel.basic_consume(unique, lambda *a: None, auto_ack=True)
        idle = eventually(lambda: _channel(api, name), lambda r: "idle_since" in r)
        other = broker.connect()
        try:
            other.channel().basic_publish("", unique, b"x")
            moved = eventually(
                lambda: _channel(api, name),
                lambda r: "idle_since" in r and _since(r) > _since(idle),
                timeout=15,
            )
            assert _since(moved) > _since(idle)
        finally:
            other.close()
        connection = api.get("connections", connection_name(client)).json()
        assert "idle_since" not in connection
    finally:
        client.close()
