"""A queue's persistent count and bytes and its unacked bytes (the figures behind the
management API's messages_persistent, message_bytes_persistent, message_bytes_unacknowledged
and list_queues' items) stay exact as messages enter and leave it any way there is: ack,
requeue, reject, basic.get, no-ack delivery, TTL expiry, max-length drops, purge,
dead-lettering and delivery limits. Each step compares the counters with a recount of the
messages the queue holds.

trimq-only: the model runs in-process (the HTTP answers are compared with RabbitMQ's in
test_management_queue_figures.py).
"""

from __future__ import annotations

from typing import Any

from trimq.amqp.codec import TypedValue
from trimq.amqp.spec import BasicProperties
from trimq.broker.broker import Broker, BrokerConfig
from trimq.broker.message import Message, QueuedMessage
from trimq.broker.queue import Consumer, Queue
from trimq.broker.queue_figures import head_timestamp, message_figures
from trimq.broker.stats import MessageStats
from trimq.broker.vhost import VHost


class Sink:
    """A consumer's channel that takes everything and keeps the deliveries."""

    def __init__(self) -> None:
        self.stats = MessageStats()
        self.held: list[QueuedMessage] = []

    def can_deliver(self, consumer: Consumer) -> bool:
        return True

    def deliver(self, consumer: Consumer, entry: QueuedMessage, queue: Queue) -> None:
        if not consumer.no_ack:
            self.held.append(entry)

    def consumer_cancelled(self, consumer: Consumer) -> None:
        pass


def _vhost() -> VHost:
    return Broker(BrokerConfig()).vhosts["/"]


def _publish(vhost: VHost, queue: Queue, size: int, persistent: bool, **props: Any) -> None:
    properties = BasicProperties(delivery_mode=2 if persistent else 1, **props)
    message = Message("", queue.name, properties, properties.encode(), b"x" * size)
    vhost.publish(message, [queue])


def _recount(queue: Queue, unacked: list[QueuedMessage]) -> dict[str, int]:
    held = [*queue.ready, *unacked]
    persistent = [e for e in held if e.message.persistent and queue.durable]
    return {
        "messages_ready": len(queue.ready),
        "messages_unacknowledged": len(unacked),
        "message_bytes_ready": sum(e.message.size for e in queue.ready),
        "message_bytes_unacknowledged": sum(e.message.size for e in unacked),
        "messages_persistent": len(persistent),
        "message_bytes_persistent": sum(e.message.size for e in persistent),
    }


def _check(queue: Queue, unacked: list[QueuedMessage]) -> dict[str, int]:
    figures = message_figures(queue)
    recount = _recount(queue, unacked)
    assert {k: figures[k] for k in recount} == recount
    return recount


def _fill(vhost: VHost, queue: Queue, sizes: list[int]) -> None:
    for i, size in enumerate(sizes):  # every other one persistent
        _publish(vhost, queue, size, persistent=i % 2 == 0)


def test_get_ack_requeue_reject_and_purge() -> None:
    vhost = _vhost()
    queue, _ = vhost.declare_queue("q", owner=None, durable=True)
    _fill(vhost, queue, [1, 2, 4, 8, 16, 32])
    assert _check(queue, [])["message_bytes_persistent"] == 1 + 4 + 16
    taken = [queue.get(no_ack=False) for _ in range(4)]
    unacked = [e for e in taken if e is not None]
    assert _check(queue, unacked)["message_bytes_unacknowledged"] == 15
    queue.settle(unacked[:1])
    _check(queue, unacked[1:])
    queue.requeue(unacked[1:2])
    _check(queue, unacked[2:])
    queue.reject(unacked[2:3])
    _check(queue, unacked[3:])
    gone = queue.get(no_ack=True)
    assert gone is not None and gone.message.size in (2, 16)
    _check(queue, unacked[3:])
    assert queue.purge() == 2
    assert _check(queue, unacked[3:])["messages_persistent"] == 0
    queue.settle(unacked[3:])
    assert _check(queue, []) == dict.fromkeys(_recount(queue, []), 0)


def test_transient_queue_holds_nothing_persistent() -> None:
    vhost = _vhost()
    queue, _ = vhost.declare_queue("q", owner=None)
    _fill(vhost, queue, [1, 2, 4])
    assert _check(queue, [])["messages_persistent"] == 0
    assert message_figures(queue)["message_bytes"] == 7


def test_consumers_with_and_without_ack() -> None:
    vhost = _vhost()
    queue, _ = vhost.declare_queue("q", owner=None, durable=True)
    _fill(vhost, queue, [1, 2, 4, 8])
    acking = Sink()
    consumer = Consumer("c1", queue, acking, False, False, {}, prefetch=0)
    queue.add_consumer(consumer)
    assert _check(queue, acking.held)["messages_unacknowledged"] == 4
    queue.remove_consumer(consumer)
    queue.requeue(acking.held)
    acking.held.clear()
    _check(queue, [])
    queue.add_consumer(Consumer("c2", queue, Sink(), True, False, {}, prefetch=0))
    assert _check(queue, []) == dict.fromkeys(_recount(queue, []), 0)


def test_max_length_drops_and_delivery_limit() -> None:
    vhost = _vhost()
    arguments = {"x-max-length": TypedValue("l", 2), "x-delivery-limit": TypedValue("l", 0)}
    queue, _ = vhost.declare_queue("q", owner=None, durable=True, arguments=arguments)
    _fill(vhost, queue, [1, 2, 4, 8, 16])  # the first three are dropped
    assert _check(queue, [])["message_bytes_persistent"] == 16
    entry = queue.get(no_ack=False)
    assert entry is not None
    _check(queue, [entry])
    queue.requeue([entry])  # delivered once, limit 0: dropped instead
    assert _check(queue, [])["messages_ready"] == 1


def test_expiry_and_dead_lettering() -> None:
    vhost = _vhost()
    target, _ = vhost.declare_queue("dead", owner=None, durable=True)
    arguments = {
        "x-message-ttl": TypedValue("l", 60_000),
        "x-dead-letter-exchange": TypedValue("S", ""),
        "x-dead-letter-routing-key": TypedValue("S", "dead"),
    }
    queue, _ = vhost.declare_queue("q", owner=None, durable=True, arguments=arguments)
    _fill(vhost, queue, [1, 2, 4, 8])
    entry = queue.get(no_ack=False)
    assert entry is not None
    queue.expire_due(float("inf"))  # every ready one expires and goes to the target
    _check(queue, [entry])
    assert _check(target, [])["message_bytes_persistent"] == 4
    queue.reject([entry])
    _check(queue, [])
    assert _check(target, [])["message_bytes_persistent"] == 5


def test_head_timestamp_takes_the_oldest_unacked_message() -> None:
    vhost = _vhost()
    queue, _ = vhost.declare_queue("q", owner=None)
    for stamp in (None, 20, 10, 30):
        _publish(vhost, queue, 1, persistent=False, timestamp=stamp)
    assert head_timestamp(queue) is None  # the first has none
    first, second = queue.get(no_ack=False), queue.get(no_ack=False)
    assert first is not None and second is not None
    assert head_timestamp(queue) == 10  # unacked 20, ready head 10
    queue.requeue([second])  # back at the head of the ready ones
    assert head_timestamp(queue) == 20
    again = queue.get(no_ack=False)
    assert again is second and head_timestamp(queue) == 10
    queue.settle([second])
    assert head_timestamp(queue) == 10 and queue.oldest_unacked() is first
    queue.settle([first])
    assert queue.oldest_unacked() is None and head_timestamp(queue) == 10


def test_settled_entries_do_not_pile_up() -> None:
    vhost = _vhost()
    queue, _ = vhost.declare_queue("q", owner=None)
    stuck = None
    for i in range(1000):
        _publish(vhost, queue, 1, persistent=False, timestamp=i + 1)
        entry = queue.get(no_ack=False)
        assert entry is not None
        if stuck is None:
            stuck = entry  # never acked: the oldest unacked throughout
        else:
            queue.settle([entry])
    assert len(queue._out) + len(queue._out_late) <= 2 * queue.unacked + 65
    assert queue.oldest_unacked() is stuck and head_timestamp(queue) == 1


def test_redelivered_entries_count_by_their_order() -> None:
    """A requeued message delivered again is older than those delivered after it."""
    vhost = _vhost()
    queue, _ = vhost.declare_queue("q", owner=None)
    for stamp in (1, 2, 3):
        _publish(vhost, queue, 1, persistent=False, timestamp=stamp)
    one, two = queue.get(no_ack=False), queue.get(no_ack=False)
    assert one is not None and two is not None
    queue.requeue([one])
    three = queue.get(no_ack=False)  # one again: delivered after two, yet older
    assert three is one and queue.oldest_unacked() is one and head_timestamp(queue) == 1
    queue.settle([one])
    assert queue.oldest_unacked() is two and head_timestamp(queue) == 2
