"""The management API's queue figures: message counts and bytes, ready and unacked, and the
persistent ones (a persistent message counts as persistent only in a durable queue), the
in-memory copies of those, the head message's timestamp, memory and consumer_utilisation,
on the queue's own answer and on its list row alike.

RabbitMQ reference: every expected answer was taken from RabbitMQ 3.10.8 and the file runs
against it (TRIMQ_TEST_URL and TRIMQ_TEST_MANAGEMENT_URL).
"""

from __future__ import annotations

from typing import Any

import pika
import pytest
from http_helpers import Api
from msg_helpers import eventually

# (body size, delivery mode, timestamp) of the four messages, in order
MESSAGES = [(10, 2, 1700000001), (20, 2, None), (40, 1, 1700000003), (80, 2, 1700000004)]
FIGURES = (
    "messages",
    "messages_ready",
    "messages_unacknowledged",
    "messages_persistent",
    "message_bytes",
    "message_bytes_ready",
    "message_bytes_unacknowledged",
    "message_bytes_persistent",
    "message_bytes_ram",
    "messages_ram",
    "messages_ready_ram",
    "messages_unacknowledged_ram",
    "head_message_timestamp",
    "consumers",
)


@pytest.fixture
def api(management_url: str) -> Api:
    return Api(management_url)


@pytest.fixture
def queues(api: Api, unique: str) -> Any:
    names = (unique + ".durable", unique + ".transient")
    yield names
    for name in names:
        api.delete("queues", "/", name)


def _fill(channel: Any, queue: str, durable: bool) -> None:
    channel.queue_declare(queue, durable=durable)
    for size, mode, stamp in MESSAGES:
        properties = pika.BasicProperties(delivery_mode=mode, timestamp=stamp)
        channel.basic_publish("", queue, b"x" * size, properties)


def _figures(api: Api, queue: str) -> dict[str, Any]:
    return _only_figures(api.get("queues", "/", queue).json())


def _only_figures(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k in FIGURES}


def _wait(api: Api, queue: str, wanted: dict[str, Any]) -> dict[str, Any]:
    return eventually(lambda: _figures(api, queue), lambda shown: shown == wanted)


def _expected(durable: bool, unacked: int, acked: int = 0) -> dict[str, Any]:
    """The figures once the first `acked` messages were acked and the next `unacked` are held
    by a consumer."""
    held = MESSAGES[acked:]
    out, ready = held[:unacked], held[unacked:]
    persistent = [size for size, mode, _ in held if mode == 2 and durable]
    ready_bytes = sum(size for size, _, _ in ready)
    out_bytes = sum(size for size, _, _ in out)
    return {
        "messages": len(held),
        "messages_ready": len(ready),
        "messages_unacknowledged": len(out),
        "messages_persistent": len(persistent),
        "message_bytes": ready_bytes + out_bytes,
        "message_bytes_ready": ready_bytes,
        "message_bytes_unacknowledged": out_bytes,
        "message_bytes_persistent": sum(persistent),
        "message_bytes_ram": ready_bytes + out_bytes,
        "messages_ram": len(held),
        "messages_ready_ram": len(ready),
        "messages_unacknowledged_ram": len(out),
        "consumers": 1 if unacked else 0,
        # the lower timestamp of the first ready message and the oldest unacked one
        "head_message_timestamp": min(
            (m[2] for m in (*ready[:1], *out[:1]) if m[2] is not None), default=None
        ),
    }


@pytest.mark.parametrize("durable", [True, False])
def test_figures_of_ready_and_unacked_messages(
    api: Api, broker: Any, queues: tuple[str, str], durable: bool
) -> None:
    queue = queues[0] if durable else queues[1]
    connection = broker.connect()
    try:
        channel = connection.channel()
        _fill(channel, queue, durable)
        assert _wait(api, queue, _expected(durable, 0)) == _expected(durable, 0)
        assert api.get("queues", "/", queue).json()["consumer_utilisation"] == 0
        channel.basic_qos(prefetch_count=2)
        tags: list[int] = []
        channel.basic_consume(queue, lambda _ch, method, _p, _b: tags.append(method.delivery_tag))
        while len(tags) < 2:
            connection.process_data_events(time_limit=1)
        wanted = _expected(durable, 2)
        assert _wait(api, queue, wanted) == wanted
        shown = api.get("queues", "/", queue).json()
        assert isinstance(shown["memory"], int) and shown["memory"] > 0
        # RabbitMQ: the share of time its consumers could take messages (trimq's: 1.0)
        assert isinstance(shown["consumer_utilisation"], (int, float))
        assert 0 <= shown["consumer_utilisation"] <= 1
        row = [r for r in api.get("queues", "/").json() if r["name"] == queue]
        assert [_only_figures(r) for r in row] == [wanted]
        channel.basic_ack(tags[0])  # the first message goes, the other comes back
    finally:
        connection.close()
    wanted = _expected(durable, 0, acked=1)  # the unacked ones are back, ready
    assert _wait(api, queue, wanted) == wanted
