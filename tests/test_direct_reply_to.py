"""Direct reply-to (amq.rabbitmq.reply-to), as RPC clients and Celery's rpc:// backend use it."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest
from pika_helpers import pump, wait_until

REPLY_TO = "amq.rabbitmq.reply-to"


def test_rpc_round_trip(broker, unique: str) -> None:  # type: ignore[no-untyped-def]
    server_conn = broker.connect()
    server = server_conn.channel()
    server.queue_declare(unique, auto_delete=True)
    client_conn = broker.connect()
    client = client_conn.channel()
    replies: list[tuple[bytes, str | None]] = []
    client.basic_consume(
        REPLY_TO, lambda ch, m, p, b: replies.append((b, p.correlation_id)), auto_ack=True
    )
    for n in range(3):
        client.basic_publish(
            "", unique, b"%d" % n, pika.BasicProperties(reply_to=REPLY_TO, correlation_id=str(n))
        )

    def request() -> tuple | None:
        method, props, body = server.basic_get(unique, auto_ack=True)
        return None if method is None else (props, body)

    for _ in range(3):
        got = wait_until(request)
        assert got is not None, "the request never reached the server's queue"
        props, body = got
        assert props.reply_to.startswith(REPLY_TO + ".")
        server.basic_publish(
            "", props.reply_to, body * 2, pika.BasicProperties(correlation_id=props.correlation_id)
        )
    assert pump(client_conn, lambda: len(replies) == 3)
    assert replies == [(b"00", "0"), (b"11", "1"), (b"22", "2")]
    client_conn.close()
    server_conn.close()


def test_consumer_must_not_ack(broker) -> None:  # type: ignore[no-untyped-def]
    conn = broker.connect()
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - reply consumer cannot acknowledge",
    )
    conn.close()


def test_publishing_with_reply_to_needs_the_consumer(broker, unique: str) -> None:  # type: ignore[no-untyped-def]
    conn = broker.connect()
    ch = conn.channel()
    ch.queue_declare(unique, auto_delete=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.basic_publish("", unique, b"x", pika.BasicProperties(reply_to=REPLY_TO))
        ch.queue_declare(unique, passive=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        406,
        "PRECONDITION_FAILED - fast reply consumer does not exist",
    )
    conn.close()
