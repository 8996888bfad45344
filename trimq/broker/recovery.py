"""Rebuild the broker model from what storage recovered: durable definitions in the order they
were made, then each durable queue's messages in their original order."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from storage import RecoveredState
from storage.replay import StoredMessage
from trimq.amqp.codec import decode_table_typed
from trimq.amqp.spec import BasicProperties
from trimq.broker.auth import Permission
from trimq.broker.broker import Broker
from trimq.broker.exchange import EXCHANGE_TYPES, Binding
from trimq.broker.message import Message
from trimq.broker.pcre import PatternError
from trimq.broker.policy import PolicyError, make_policy
from trimq.broker.queue import Queue


def _arguments(raw: bytes) -> dict[str, Any]:
    return decode_table_typed(raw, 0)[0] if raw else {}


def restore(broker: Broker, state: RecoveredState,
            skipped: list[str] | None = None) -> tuple[int, int]:
    """Load `state` into `broker` (whose journal is attached); returns (queues, messages).
    Definitions that no longer validate are left out and described in `skipped`."""
    if skipped is None:
        skipped = []
    journal = broker.journal
    kinds = {kind for kind, _ in state.definitions}
    if "vhost" not in kinds and "user" not in kinds:
        broker.bootstrap()  # a new data directory: default vhost and user, journaled
    for (kind, key), value in state.definitions.items():
        if kind == "vhost":
            broker.restore_vhost(key[0], value.get("description", ""), value.get("tags", []))
        elif kind == "vhost_limits":
            broker.restore_vhost(key[0]).limits = dict(value["limits"])
        elif kind == "user":
            user = broker.users.add(key[0], None, value.get("tags", []))
            user.password_hash = value.get("password_hash", "")
        elif kind == "policy":
            try:
                policy = make_policy(key[0], key[1], value["pattern"], value["definition"],
                                     value["priority"], value["apply_to"])
            except PolicyError as exc:  # set before its values were checked: left out
                skipped.append(f"policy {key[1]!r} in vhost {key[0]!r}: {exc}")
                continue
            broker.restore_vhost(key[0]).policies[key[1]] = policy
        elif kind == "permission":
            try:
                permission = Permission(value["configure"], value["write"], value["read"])
            except PatternError as exc:  # an expression this version cannot use: left out
                skipped.append(f"permissions of user {key[1]!r} in vhost {key[0]!r}: {exc}")
                continue
            broker.users.permissions[(key[0], key[1])] = permission
        elif kind == "exchange":
            vhost = broker.restore_vhost(key[0])
            cls = EXCHANGE_TYPES.get(value["type"])
            if cls is not None and key[1] not in vhost.exchanges:
                vhost.exchanges[key[1]] = cls(key[1], vhost.name, True, value["auto_delete"],
                                              value["internal"], _arguments(value["arguments"]))
        elif kind == "queue":
            vhost = broker.restore_vhost(key[0])
            queue = Queue(key[1], vhost.name, True, None, value["auto_delete"],
                          _arguments(value["arguments"]))
            vhost.queues[queue.name] = queue
            queue.journal = journal
            queue.attach(vhost, broker.timers)
        elif kind == "binding":
            vhost = broker.restore_vhost(key[0])
            _, source_name, dest_kind, dest_name, routing_key, _ = key
            source = vhost.exchanges.get(source_name)
            dest = (vhost.queues if dest_kind == "queue" else vhost.exchanges).get(dest_name)
            if source is not None and dest is not None:
                source.add_binding(
                    Binding(source_name, dest, routing_key, _arguments(value["arguments"]))
                )
    for vhost in broker.vhosts.values():
        vhost.apply_policies()
    count = 0
    clock = (time.monotonic(), time.time())
    stored = state.messages
    properties_of = _properties_decoder()
    # A message that several queues hold is one Message, as it was when it was published.
    # The map is only needed when more than one queue holds messages.
    shared: dict[int, Message] | None = (
        {} if sum(1 for held in state.queues.values() if held) > 1 else None)
    for (vhost_name, queue_name), held in state.queues.items():
        owner = broker.vhosts.get(vhost_name)
        target = owner.queues.get(queue_name) if owner is not None else None
        if target is None:
            continue
        target.restore(_messages(held, stored, shared, properties_of), clock)
        count += len(held)
    return len([q for v in broker.vhosts.values() for q in v.queues.values()]), count


def _messages(held: dict[int, int], stored: dict[int, StoredMessage],
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
