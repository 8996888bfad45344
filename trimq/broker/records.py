"""The journal's schema: every kind of durable definition, once, with its DEFINE key and value.

A DEFINE record (storage/records.py) carries {"kind", "key", "value"}; storage only keeps the
latest value per (kind, key) and knows nothing of what they mean. This module is the one place
that says what each kind's key and value hold: the broker model builds a record here to
journal it (`Journal.put`), and recovery decodes the recovered ones here (`decode`) and has
each `load` itself through the broker function a live change uses, with `loading=True`: not
journaled again, not checked again (as LavinMQ's `apply(f, loading)`). `load` returns why a
definition was left out (a value this version no longer accepts), or None.

The encoding must stay byte-compatible with logs and checkpoints already on disk: the keys and
value maps below are written exactly as before (same fields, same order). A deletion is a
DEFINE of the kind's key with value None (`Journal.drop`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from trimq.amqp.codec import decode_table_typed, encode_typed_table
from trimq.broker.exchange import EXCHANGE_TYPES, args_key
from trimq.broker.pcre import PatternError
from trimq.broker.policy import PolicyError
from trimq.broker.queue import Queue

if TYPE_CHECKING:
    from trimq.broker.broker import Broker

# A definition's value as it is stored: a msgpack map.
Value = dict[str, Any]


def _table(raw: bytes) -> dict[str, Any]:
    """Arguments stored as an encoded AMQP table (typed values, as declared)."""
    return decode_table_typed(raw, 0)[0] if raw else {}


@dataclass(frozen=True)
class VHostDef:
    KIND: ClassVar[str] = "vhost"
    name: str
    description: str = ""
    tags: list[str] = field(default_factory=list)

    @staticmethod
    def make_key(name: str) -> list[str]:
        return [name]

    def key(self) -> list[str]:
        return self.make_key(self.name)

    def value(self) -> Value:
        return {"description": self.description, "tags": self.tags}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> VHostDef:
        return cls(key[0], value.get("description", ""), list(value.get("tags", [])))

    def load(self, broker: Broker) -> str | None:
        broker.add_vhost(self.name, self.description, self.tags, loading=True)
        return None


@dataclass(frozen=True)
class VHostLimitsDef:
    KIND: ClassVar[str] = "vhost_limits"
    vhost: str
    limits: dict[str, int]

    @staticmethod
    def make_key(vhost: str) -> list[str]:
        return [vhost]

    def key(self) -> list[str]:
        return self.make_key(self.vhost)

    def value(self) -> Value:
        return {"limits": self.limits}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> VHostLimitsDef:
        return cls(key[0], dict(value["limits"]))

    def load(self, broker: Broker) -> str | None:
        broker.set_vhost_limits(self.vhost, self.limits, loading=True)
        return None


@dataclass(frozen=True)
class UserDef:
    KIND: ClassVar[str] = "user"
    name: str
    password_hash: str
    tags: list[str]
    hashing_algorithm: str

    @staticmethod
    def make_key(name: str) -> list[str]:
        return [name]

    def key(self) -> list[str]:
        return self.make_key(self.name)

    def value(self) -> Value:
        return {
            "password_hash": self.password_hash,
            "tags": list(self.tags),
            "hashing_algorithm": self.hashing_algorithm,
        }

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> UserDef:
        return cls(
            key[0],
            value.get("password_hash", ""),
            list(value.get("tags", [])),
            value.get("hashing_algorithm", ""),
        )

    def load(self, broker: Broker) -> str | None:
        broker.add_user(self.name, None, self.tags, password_hash=self.password_hash, loading=True)
        return None


@dataclass(frozen=True)
class PermissionDef:
    KIND: ClassVar[str] = "permission"
    vhost: str
    user: str
    configure: str
    write: str
    read: str

    @staticmethod
    def make_key(vhost: str, user: str) -> list[str]:
        return [vhost, user]

    def key(self) -> list[str]:
        return self.make_key(self.vhost, self.user)

    def value(self) -> Value:
        return {"configure": self.configure, "write": self.write, "read": self.read}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> PermissionDef:
        return cls(key[0], key[1], value["configure"], value["write"], value["read"])

    def load(self, broker: Broker) -> str | None:
        try:
            broker.set_permissions(
                self.vhost, self.user, self.configure, self.write, self.read, loading=True
            )
        except PatternError as exc:  # an expression this version cannot use: left out
            return f"permissions of user {self.user!r} in vhost {self.vhost!r}: {exc}"
        return None


@dataclass(frozen=True)
class TopicPermissionDef:
    KIND: ClassVar[str] = "topic_permission"
    vhost: str
    user: str
    exchange: str
    write: str
    read: str

    @staticmethod
    def make_key(vhost: str, user: str, exchange: str) -> list[str]:
        return [vhost, user, exchange]

    def key(self) -> list[str]:
        return self.make_key(self.vhost, self.user, self.exchange)

    def value(self) -> Value:
        return {"write": self.write, "read": self.read}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> TopicPermissionDef:
        return cls(key[0], key[1], key[2], value["write"], value["read"])

    def load(self, broker: Broker) -> str | None:
        broker.set_topic_permissions(
            self.vhost, self.user, self.exchange, self.write, self.read, loading=True
        )
        return None


@dataclass(frozen=True)
class PolicyDef:
    KIND: ClassVar[str] = "policy"
    vhost: str
    name: str
    pattern: str
    definition: Any  # the policy's JSON object, as given
    priority: int
    apply_to: str

    @staticmethod
    def make_key(vhost: str, name: str) -> list[str]:
        return [vhost, name]

    def key(self) -> list[str]:
        return self.make_key(self.vhost, self.name)

    def value(self) -> Value:
        return {
            "pattern": self.pattern,
            "definition": self.definition,
            "priority": self.priority,
            "apply_to": self.apply_to,
        }

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> PolicyDef:
        return cls(
            key[0],
            key[1],
            value["pattern"],
            value["definition"],
            value["priority"],
            value["apply_to"],
        )

    def load(self, broker: Broker) -> str | None:
        try:
            broker.set_policy(
                self.vhost,
                self.name,
                self.pattern,
                self.definition,
                self.priority,
                self.apply_to,
                loading=True,
            )
        except PolicyError as exc:  # set before its values were checked: left out
            return f"policy {self.name!r} in vhost {self.vhost!r}: {exc}"
        return None


@dataclass(frozen=True)
class ExchangeDef:
    KIND: ClassVar[str] = "exchange"
    vhost: str
    name: str
    type: str
    auto_delete: bool
    internal: bool
    arguments: dict[str, Any]  # typed values, as declared

    @staticmethod
    def make_key(vhost: str, name: str) -> list[str]:
        return [vhost, name]

    def key(self) -> list[str]:
        return self.make_key(self.vhost, self.name)

    def value(self) -> Value:
        return {
            "type": self.type,
            "auto_delete": self.auto_delete,
            "internal": self.internal,
            "arguments": encode_typed_table(self.arguments),
        }

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> ExchangeDef:
        return cls(
            key[0],
            key[1],
            value["type"],
            value["auto_delete"],
            value["internal"],
            _table(value["arguments"]),
        )

    def load(self, broker: Broker) -> str | None:
        """An exchange type this version lacks, or a default exchange: left as it is."""
        vhost = broker.loading_vhost(self.vhost)
        cls = EXCHANGE_TYPES.get(self.type)
        if cls is not None and self.name not in vhost.exchanges:
            vhost.add_exchange(
                cls(self.name, vhost.name, True, self.auto_delete, self.internal, self.arguments),
                loading=True,
            )
        return None


@dataclass(frozen=True)
class QueueDef:
    KIND: ClassVar[str] = "queue"
    vhost: str
    name: str
    auto_delete: bool
    arguments: dict[str, Any]  # typed values, as declared

    @staticmethod
    def make_key(vhost: str, name: str) -> list[str]:
        return [vhost, name]

    def key(self) -> list[str]:
        return self.make_key(self.vhost, self.name)

    def value(self) -> Value:
        return {"auto_delete": self.auto_delete, "arguments": encode_typed_table(self.arguments)}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> QueueDef:
        return cls(key[0], key[1], value["auto_delete"], _table(value["arguments"]))

    def load(self, broker: Broker) -> str | None:
        vhost = broker.loading_vhost(self.vhost)
        vhost.add_queue(
            Queue(self.name, vhost.name, True, None, self.auto_delete, self.arguments), loading=True
        )
        return None


@dataclass(frozen=True)
class BindingDef:
    """The key holds the arguments' hashable form too: bindings that differ only in their
    arguments are different bindings."""

    KIND: ClassVar[str] = "binding"
    vhost: str
    source: str
    destination_kind: str  # "queue" or "exchange"
    destination: str
    routing_key: str
    arguments: dict[str, Any]  # typed values, as declared

    @staticmethod
    def make_key(
        vhost: str,
        source: str,
        destination_kind: str,
        destination: str,
        routing_key: str,
        arguments: dict[str, Any],
    ) -> list[str]:
        return [
            vhost,
            source,
            destination_kind,
            destination,
            routing_key,
            repr(args_key(arguments)),
        ]

    def key(self) -> list[str]:
        return self.make_key(
            self.vhost,
            self.source,
            self.destination_kind,
            self.destination,
            self.routing_key,
            self.arguments,
        )

    def value(self) -> Value:
        return {"arguments": encode_typed_table(self.arguments)}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> BindingDef:
        return cls(key[0], key[1], key[2], key[3], key[4], _table(value["arguments"]))

    def load(self, broker: Broker) -> str | None:
        """A binding whose source or destination is missing: left out, silently."""
        vhost = broker.loading_vhost(self.vhost)
        source = vhost.exchanges.get(self.source)
        dests = vhost.queues if self.destination_kind == "queue" else vhost.exchanges
        dest = dests.get(self.destination)
        if source is not None and dest is not None:
            vhost.bind(source, dest, self.routing_key, self.arguments, loading=True)
        return None


Definition = (
    VHostDef
    | VHostLimitsDef
    | UserDef
    | PermissionDef
    | TopicPermissionDef
    | PolicyDef
    | ExchangeDef
    | QueueDef
    | BindingDef
)

KINDS: dict[str, type[Definition]] = {
    cls.KIND: cls
    for cls in (
        VHostDef,
        VHostLimitsDef,
        UserDef,
        PermissionDef,
        TopicPermissionDef,
        PolicyDef,
        ExchangeDef,
        QueueDef,
        BindingDef,
    )
}


def decode(kind: str, key: tuple[Any, ...], value: Value) -> Definition | None:
    """The typed form of a recovered definition; None for a kind this version does not know
    (left out, as before: a newer binary's definition is not this one's to interpret)."""
    cls = KINDS.get(kind)
    return cls.decode(key, value) if cls is not None else None
