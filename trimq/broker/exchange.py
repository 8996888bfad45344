"""Exchanges and their routing: direct, fanout, topic and headers.

An exchange maps a routing key (and headers) to destinations, which are queues or, through
exchange-to-exchange bindings, other exchanges. The vhost follows exchange destinations.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from trimq.amqp.codec import TypedTable
from trimq.broker import headers
from trimq.broker.stats import MessageStats

if TYPE_CHECKING:
    from trimq.broker.message import Message
    from trimq.broker.policy import Policy
    from trimq.broker.queue import Queue

    Destination: TypeAlias = "Queue | Exchange"


ArgsKey: TypeAlias = tuple[tuple[str, str], ...]
# A binding's identity within its source: (id(destination), routing key, args_key).
BindingKey: TypeAlias = tuple[int, str, ArgsKey]
# A binding's identity within its destination's bound_by: (id(source), binding key).
BoundByKey: TypeAlias = tuple[int, BindingKey]


def args_key(arguments: TypedTable) -> ArgsKey:
    """A hashable form of a binding's (typed-decoded) arguments, so bindings compare by value."""
    return tuple(sorted((k, repr(v)) for k, v in arguments.items()))


class Binding(NamedTuple):
    source: str
    destination: Destination
    routing_key: str
    arguments: TypedTable

    @property
    def key(self) -> BindingKey:
        return (id(self.destination), self.routing_key, args_key(self.arguments))


class Exchange:
    """Common state; subclasses index bindings for their kind of matching."""

    TYPE = ""

    def __init__(
        self,
        name: str,
        vhost: str,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: TypedTable | None = None,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: TypedTable = arguments or {}
        self.bindings: dict[BindingKey, Binding] = {}  # this exchange's own, as their source
        # The bindings routing to it, by (id(source), binding key): deleting it never scans
        # the vhost's exchanges. Queues keep the same index.
        self.bound_by: dict[BoundByKey, tuple[Exchange, Binding]] = {}
        self.deleted = False
        self.policy: Policy | None = None
        self.alternate_exchange: str | None = None
        self.stats = MessageStats()
        self.apply_policy(None)

    def apply_policy(self, policy: Policy | None) -> None:
        """alternate-exchange from the arguments, else from the policy."""
        self.policy = policy
        merged = {**(policy.exchange_arguments() if policy else {}), **self.arguments}
        alternate = merged.get("alternate-exchange")
        self.alternate_exchange = (
            alternate[1] if alternate is not None and isinstance(alternate[1], str) else None
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} in {self.vhost!r}>"

    def add_binding(self, binding: Binding) -> bool:
        """Add a binding; False if an identical one exists already."""
        if binding.key in self.bindings:
            return False
        self.bindings[binding.key] = binding
        binding.destination.bound_by[(id(self), binding.key)] = (self, binding)
        self._index(binding)
        return True

    def remove_binding(self, binding: Binding) -> bool:
        """Remove a binding; False if there was none like it."""
        if self.bindings.pop(binding.key, None) is None:
            return False
        del binding.destination.bound_by[(id(self), binding.key)]
        self._unindex(binding)
        return True

    def validate_binding(self, arguments: TypedTable) -> None:
        """Refuse (ChannelError) a new binding whose arguments this kind cannot use."""

    def _index(self, binding: Binding) -> None:
        pass

    def _unindex(self, binding: Binding) -> None:
        pass

    def route(self, routing_key: str, message: Message | None) -> Iterable[Destination]:
        raise NotImplementedError


class DirectExchange(Exchange):
    TYPE = "direct"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_key: dict[str, dict[int, Destination]] = {}
        self._counts: dict[tuple[str, int], int] = {}

    def _index(self, binding: Binding) -> None:
        key = (binding.routing_key, id(binding.destination))
        self._counts[key] = self._counts.get(key, 0) + 1
        self._by_key.setdefault(binding.routing_key, {})[id(binding.destination)] = (
            binding.destination
        )

    def _unindex(self, binding: Binding) -> None:
        key = (binding.routing_key, id(binding.destination))
        self._counts[key] -= 1
        if self._counts[key] == 0:
            del self._counts[key]
            dests = self._by_key[binding.routing_key]
            del dests[id(binding.destination)]
            if not dests:
                del self._by_key[binding.routing_key]

    def route(self, routing_key: str, message: Message | None) -> Iterable[Destination]:
        dests = self._by_key.get(routing_key)
        return dests.values() if dests else ()


class FanoutExchange(Exchange):
    TYPE = "fanout"

    def route(self, routing_key: str, message: Message | None) -> Iterable[Destination]:
        return [b.destination for b in self.bindings.values()]


def topic_words(key: str) -> list[str]:
    """Split a routing or binding key into words; the empty key has no words (as RabbitMQ)."""
    return key.split(".") if key else []


def topic_match(pattern: list[str], words: list[str]) -> bool:
    """RabbitMQ's topic matching: '*' is exactly one word, '#' zero or more words."""
    # Iterative matching with backtracking to the last '#', linear in practice.
    p = w = 0
    star_p, star_w = -1, 0
    while w < len(words) or p < len(pattern):
        if p < len(pattern):
            word = pattern[p]
            if word == "#":
                star_p, star_w = p, w
                p += 1
                continue
            if w < len(words) and (word == "*" or word == words[w]):
                p += 1
                w += 1
                continue
        if star_p >= 0 and star_w < len(words):
            star_w += 1
            p, w = star_p + 1, star_w
            continue
        return False
    return True


class TopicExchange(Exchange):
    TYPE = "topic"
    CACHE_LIMIT = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._patterns: dict[BindingKey, tuple[list[str], Destination]] = {}
        self._cache: dict[str, list[Destination]] = {}

    def _index(self, binding: Binding) -> None:
        self._patterns[binding.key] = (topic_words(binding.routing_key), binding.destination)
        self._cache.clear()

    def _unindex(self, binding: Binding) -> None:
        del self._patterns[binding.key]
        self._cache.clear()

    def route(self, routing_key: str, message: Message | None) -> Iterable[Destination]:
        cached = self._cache.get(routing_key)
        if cached is not None:
            return cached
        words = topic_words(routing_key)
        found: dict[int, Destination] = {}
        for pattern, dest in self._patterns.values():
            if id(dest) not in found and topic_match(pattern, words):
                found[id(dest)] = dest
        result = list(found.values())
        if len(self._cache) >= self.CACHE_LIMIT:
            self._cache.clear()
        self._cache[routing_key] = result
        return result


class HeadersExchange(Exchange):
    """Matches message headers against binding arguments: x-match all (default) or any,
    comparing values as RabbitMQ does (trimq.broker.headers)."""

    TYPE = "headers"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._patterns: dict[BindingKey, tuple[headers.Pattern, Destination]] = {}

    def validate_binding(self, arguments: TypedTable) -> None:
        headers.validate(arguments)

    def _index(self, binding: Binding) -> None:
        self._patterns[binding.key] = (headers.pattern(binding.arguments), binding.destination)

    def _unindex(self, binding: Binding) -> None:
        del self._patterns[binding.key]

    def route(self, routing_key: str, message: Message | None) -> Iterable[Destination]:
        values = message.match_headers() if message is not None else {}
        found: dict[int, Destination] = {}
        for pattern, dest in self._patterns.values():
            if id(dest) not in found and headers.headers_match(pattern, values):
                found[id(dest)] = dest
        return found.values()


EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    cls.TYPE: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange)
}
