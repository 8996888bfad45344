"""GET /api/overview reuses what it sums over every queue and channel (queue_totals,
message_stats, the consumer count) until the next rate sample, as RabbitMQ computes them from
the statistics it emits every 5 s, while the counts of objects stay live. The management
application runs in-process, called as an ASGI application, so the test controls when a
sample is taken."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from trimq.broker.broker import Broker, BrokerConfig
from trimq.management.app import build_app
from trimq.server.state import ServerState

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: runs the management application in-process",
)


async def get(app: Any, path: str) -> dict[str, Any]:
    """One GET as guest from the loopback address; the decoded JSON answer."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"authorization", b"Basic " + base64.b64encode(b"guest:guest")),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 15672),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent
    answer: dict[str, Any] = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    return answer


async def test_overview_sums_are_reused_until_the_next_sample() -> None:
    broker = Broker(BrokerConfig())
    state = ServerState(broker)
    app = build_app(state)
    vhost = broker.vhosts["/"]
    first = await get(app, "/api/overview")
    queues = first["object_totals"]["queues"]
    published = first["message_stats"]["publish"]

    vhost.stats.publish += 5  # counted since the answer: a publish on a closed channel
    vhost.declare_queue("overview.sums", owner=None)
    second = await get(app, "/api/overview")
    assert second["object_totals"]["queues"] == queues + 1  # counted at once, as RabbitMQ
    assert second["message_stats"]["publish"] == published  # summed at the last sample
    assert second["queue_totals"] == first["queue_totals"]

    state.rate_samples += 1  # what the rates sampler does every 5 s
    third = await get(app, "/api/overview")
    assert third["message_stats"]["publish"] == published + 5
    assert third["object_totals"]["queues"] == queues + 1
