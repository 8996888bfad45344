"""Rebuild the broker model from what storage recovered: durable definitions in the order they
were made, then each durable queue's messages in their original order."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from storage import RecoveredState
from storage.replay import StoredMessage
from trimq.amqp.spec import BasicProperties
from trimq.broker.broker import Broker
from trimq.broker.message import Message
from trimq.broker.records import decode


def restore(
    broker: Broker, state: RecoveredState, skipped: list[str] | None = None
) -> tuple[int, int]:
    """Load `state` into `broker` (whose journal is attached); returns (queues, messages).
    Definitions that no longer validate are left out and described in `skipped`."""
    if skipped is None:
        skipped = []
    kinds = {kind for kind, _ in state.definitions}
    if "vhost" not in kinds and "user" not in kinds:
        broker.bootstrap()  # a new data directory: default vhost and user, journaled
    for (kind, key), value in state.definitions.items():
        # Each through the function a live change uses, with loading=True (records.py).
        record = decode(kind, key, value)
        problem = record.load(broker) if record is not None else None
        if problem is not None:
            skipped.append(problem)
    for vhost in broker.vhosts.values():
        vhost.apply_policies()
    count = 0
    clock = (time.monotonic(), time.time())
    stored = state.messages
    properties_of = _properties_decoder()
    # A message that several queues hold is one Message, as it was when it was published.
    # The map is only needed when more than one queue holds messages.
    shared: dict[int, Message] | None = (
        {} if sum(1 for held in state.queues.values() if held) > 1 else None
    )
    for (vhost_name, queue_name), held in state.queues.items():
        owner = broker.vhosts.get(vhost_name)
        target = owner.queues.get(queue_name) if owner is not None else None
        if target is None:
            continue
        target.restore(_messages(held, stored, shared, properties_of), clock)
        count += len(held)
    return len([q for v in broker.vhosts.values() for q in v.queues.values()]), count


def _messages(
    held: dict[int, int],
    stored: dict[int, StoredMessage],
    shared: dict[int, Message] | None,
    properties_of: Callable[[bytes], tuple[BasicProperties, bytes]],
) -> Iterator[tuple[Message, int, int]]:
    """(message, delivery count, when recorded) of each message a queue held, in order."""
    for mid, delivery_count in held.items():
        item = stored[mid]
        message = shared.get(mid) if shared is not None else None
        if message is None:
            properties, raw = properties_of(item.properties)
            message = Message(item.exchange, item.routing_key, properties, raw, item.body)
            message.id = mid
            if shared is not None:
                shared[mid] = message
        yield message, delivery_count, item.time


def _properties_decoder() -> Callable[[bytes], tuple[BasicProperties, bytes]]:
    """Decodes encoded properties, once per distinct value: the messages of one publisher
    mostly carry the same bytes (delivery mode 2, a content type), so a million recovered
    messages share a handful of decoded objects (and encoded ones) instead of a million of
    each. Sharing is safe because the broker never changes a message's properties in place:
    it copies them first (dead-lettering, reply-to, delivery counts). Properties unique to
    each message (a message id) would fill the cache: it starts afresh when full."""
    cache: dict[bytes, tuple[BasicProperties, bytes]] = {}

    def decode(raw: bytes) -> tuple[BasicProperties, bytes]:
        found = cache.get(raw)
        if found is None:
            if len(cache) >= 1024:
                cache.clear()
            found = cache[raw] = (BasicProperties.decode(raw, 0)[0], raw)
        return found

    return decode
