"""pika's asynchronous SelectConnection driving a whole publish/confirm/consume/ack flow.

Checked against RabbitMQ 3.10.8.
"""

from __future__ import annotations

import functools

import pika
import pytest
from pika.adapters.select_connection import SelectConnection

pytestmark = pytest.mark.timeout(30)

N = 10


class Flow:
    """Callbacks chained on one SelectConnection; `events` records what happened, in order."""

    def __init__(self, broker, queue: str) -> None:
        self.queue = queue
        self.events: list[tuple] = []
        self.confirmed: set[int] = set()
        self.deliveries: list[tuple[int, bool, bytes, str]] = []
        self.error: str | None = None
        self.channel = None
        self.conn = SelectConnection(
            broker.params(),
            on_open_callback=self.on_open,
            on_open_error_callback=lambda _c, err: self.fail(f"open failed: {err!r}"),
            on_close_callback=self.on_closed,
        )
        self.conn.ioloop.call_later(10, lambda: self.fail("timed out"))

    def run(self) -> None:
        self.conn.ioloop.start()

    def fail(self, why: str) -> None:
        self.error = why
        if self.conn.is_open:
            self.conn.close()
        else:
            self.conn.ioloop.stop()

    def on_closed(self, _conn, reason) -> None:
        self.events.append(("connection closed", type(reason).__name__))
        self.conn.ioloop.stop()

    def on_open(self, conn) -> None:
        conn.channel(on_open_callback=self.on_channel)

    def on_channel(self, channel) -> None:
        self.channel = channel
        channel.add_on_close_callback(self.on_channel_closed)
        channel.queue_declare(self.queue, auto_delete=True, callback=self.on_declared)

    def on_channel_closed(self, _channel, reason) -> None:
        self.events.append(("channel closed", reason.reply_code, reason.reply_text))
        if self.conn.is_open:
            self.conn.close()

    def on_declared(self, frame) -> None:
        self.events.append(("declared", frame.method.queue, frame.method.message_count))
        self.channel.confirm_delivery(
            ack_nack_callback=self.on_confirm, callback=self.on_confirm_mode
        )

    def on_confirm_mode(self, frame) -> None:
        self.events.append(("confirm mode", type(frame.method).__name__))
        for i in range(N):
            self.channel.basic_publish(
                "",
                self.queue,
                b"msg-%d" % i,
                pika.BasicProperties(message_id=str(i), delivery_mode=2),
            )

    def on_confirm(self, frame) -> None:
        method = frame.method
        if not isinstance(method, pika.spec.Basic.Ack):
            self.fail(f"unexpected {method}")
            return
        tags = set(range(1, method.delivery_tag + 1)) if method.multiple else {method.delivery_tag}
        self.confirmed |= tags
        if len(self.confirmed) == N and not self.deliveries:
            self.channel.basic_qos(prefetch_count=3, callback=self.on_qos)

    def on_qos(self, _frame) -> None:
        self.channel.basic_consume(
            self.queue,
            self.on_message,
            consumer_tag="async-consumer",
            callback=lambda f: self.events.append(("consuming", f.method.consumer_tag)),
        )

    def on_message(self, channel, method, props, body) -> None:
        self.deliveries.append((method.delivery_tag, method.redelivered, body, props.message_id))
        channel.basic_ack(method.delivery_tag)
        if len(self.deliveries) == N:
            channel.basic_cancel("async-consumer", callback=self.on_cancelled)

    def on_cancelled(self, frame) -> None:
        self.events.append(("cancelled", frame.method.consumer_tag))
        # the auto-delete queue went away with its last consumer: this closes the channel
        self.channel.queue_declare(
            self.queue, passive=True, callback=lambda _f: self.fail("queue still exists")
        )


def test_select_connection_publish_confirm_consume(broker, unique):
    flow = Flow(broker, unique)
    flow.run()
    assert flow.error is None
    assert flow.confirmed == set(range(1, N + 1))
    assert flow.deliveries == [(i + 1, False, b"msg-%d" % i, str(i)) for i in range(N)]
    assert flow.events == [
        ("declared", unique, 0),
        ("confirm mode", "SelectOk"),
        ("consuming", "async-consumer"),
        ("cancelled", "async-consumer"),
        ("channel closed", 404, f"NOT_FOUND - no queue '{unique}' in vhost '/'"),
        ("connection closed", "ConnectionClosedByClient"),
    ]


def test_select_connection_server_cancels_consumer_on_queue_delete(broker, unique):
    """Deleting a queue sends Basic.Cancel to its consumers (consumer_cancel_notify)."""
    events: list[tuple] = []
    state: dict = {}

    def on_open(conn):
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch):
        state["ch"] = ch
        ch.add_on_cancel_callback(on_server_cancel)
        ch.queue_declare(
            unique,
            callback=lambda _f: ch.basic_consume(
                unique, lambda *a: None, consumer_tag="doomed", callback=on_consuming
            ),
        )

    def on_consuming(frame):
        events.append(("consuming", frame.method.consumer_tag))
        # delete the queue from a second channel
        state["conn"].channel(
            on_open_callback=lambda ch2: ch2.queue_delete(
                unique, callback=lambda f: events.append(("deleted", f.method.message_count))
            )
        )

    def on_server_cancel(frame):
        events.append(("server cancel", frame.method.consumer_tag, frame.method.nowait))
        state["conn"].ioloop.call_later(0.2, state["conn"].close)

    conn = SelectConnection(
        broker.params(), on_open_callback=on_open, on_close_callback=lambda *_: conn.ioloop.stop()
    )
    state["conn"] = conn
    conn.ioloop.call_later(10, functools.partial(events.append, ("timed out",)))
    conn.ioloop.call_later(10, conn.ioloop.stop)
    conn.ioloop.start()
    assert ("consuming", "doomed") in events
    assert ("server cancel", "doomed", True) in events
    assert ("timed out",) not in events
    assert ("deleted", 0) in events
