"""A fixed sequence of publishes, gets, deliveries and acks, and the message counters RabbitMQ
3.10.8 reports for it (observed on a private node through its management API and
rabbitmq_prometheus), shared by the tests of trimq's counters, message_stats and metrics.

Channel 1 publishes in confirm mode: 3 messages to a fanout exchange bound to queues q1 and
q2, 2 to q3 through the default exchange, one mandatory and one plain to a direct exchange
that routes nowhere. Channel 2 gets from q1 (the first get is nacked with requeue, so the
next one is a redelivery; then acked; then one without ack) and consumes q2 without acks.
Channel 3 consumes q3 with acks and acks both deliveries at once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pika

from tests.pika_helpers import pump


@dataclass
class Scenario:
    prefix: str
    connection: pika.BlockingConnection

    def name(self, short: str) -> str:
        return f"{self.prefix}.{short}"


def run(connection: pika.BlockingConnection, prefix: str) -> Scenario:
    """Run the scenario on an open connection; the connection stays open (its channels'
    counters live as long as they do)."""
    s = Scenario(prefix, connection)
    fan, empty = s.name("fan"), s.name("empty")
    q1, q2, q3 = s.name("q1"), s.name("q2"), s.name("q3")
    ch1 = connection.channel()
    ch1.exchange_declare(fan, "fanout", auto_delete=True)
    ch1.exchange_declare(empty, "direct", auto_delete=True)
    for queue in (q1, q2, q3):
        ch1.queue_declare(queue, auto_delete=True)
    ch1.queue_bind(q1, fan)
    ch1.queue_bind(q2, fan)
    ch1.confirm_delivery()
    for _ in range(3):
        ch1.basic_publish(fan, "", b"x")
    for _ in range(2):
        ch1.basic_publish("", q3, b"y")
    with contextlib.suppress(pika.exceptions.UnroutableError):  # returned, as expected
        ch1.basic_publish(empty, "nowhere", b"z", mandatory=True)
    ch1.basic_publish(empty, "nowhere", b"z")

    ch2 = connection.channel()
    method, _, _ = ch2.basic_get(q1, auto_ack=False)
    ch2.basic_nack(method.delivery_tag, requeue=True)
    method, _, _ = ch2.basic_get(q1, auto_ack=False)
    ch2.basic_ack(method.delivery_tag)
    ch2.basic_get(q1, auto_ack=True)
    got2: list[int] = []
    ch2.basic_consume(q2, lambda c, m, p, b: got2.append(m.delivery_tag), auto_ack=True)

    ch3 = connection.channel()
    got3: list[int] = []
    ch3.basic_consume(q3, lambda c, m, p, b: got3.append(m.delivery_tag), auto_ack=False)
    assert pump(connection, lambda: len(got2) == 3 and len(got3) == 2)
    ch3.basic_ack(got3[-1], multiple=True)
    ch3.basic_qos(prefetch_count=0)  # a round trip: the ack is handled before it returns
    return s


# What RabbitMQ 3.10.8 reports for the scenario (counts only; rates depend on timing).
QUEUES: dict[str, dict[str, int]] = {
    "q1": {
        "ack": 1,
        "deliver": 0,
        "deliver_get": 3,
        "deliver_no_ack": 0,
        "get": 2,
        "get_empty": 0,
        "get_no_ack": 1,
        "publish": 3,
        "redeliver": 1,
    },
    "q2": {
        "ack": 0,
        "deliver": 0,
        "deliver_get": 3,
        "deliver_no_ack": 3,
        "get": 0,
        "get_empty": 0,
        "get_no_ack": 0,
        "publish": 3,
        "redeliver": 0,
    },
    "q3": {
        "ack": 2,
        "deliver": 2,
        "deliver_get": 2,
        "deliver_no_ack": 0,
        "get": 0,
        "get_empty": 0,
        "get_no_ack": 0,
        "publish": 2,
        "redeliver": 0,
    },
}
EXCHANGES: dict[str, dict[str, int]] = {
    "fan": {"publish_in": 3, "publish_out": 6},
    "empty": {"publish_in": 2},
}
CHANNELS: list[dict[str, int]] = [  # channels 1, 2, 3
    {"confirm": 7, "drop_unroutable": 1, "publish": 7, "return_unroutable": 1},
    {
        "ack": 1,
        "deliver": 0,
        "deliver_get": 6,
        "deliver_no_ack": 3,
        "get": 2,
        "get_empty": 0,
        "get_no_ack": 1,
        "redeliver": 1,
    },
    {
        "ack": 2,
        "deliver": 2,
        "deliver_get": 2,
        "deliver_no_ack": 0,
        "get": 0,
        "get_empty": 0,
        "get_no_ack": 0,
        "redeliver": 0,
    },
]
# The vhost's (and overview's) counters grow by these.
VHOST_DELTA: dict[str, int] = {
    "publish": 7,
    "confirm": 7,
    "return_unroutable": 1,
    "drop_unroutable": 1,
    "get": 2,
    "get_no_ack": 1,
    "deliver": 2,
    "deliver_no_ack": 3,
    "redeliver": 1,
    "ack": 3,
    "deliver_get": 8,
    "get_empty": 0,
}


def counts(message_stats: dict[str, Any]) -> dict[str, int]:
    """The counts of a message_stats object, without the _details."""
    return {k: v for k, v in message_stats.items() if not k.endswith("_details")}
