"""The journal's schema: every kind of durable definition, once, with its DEFINE key and value.

A DEFINE record (storage/records.py) carries {"kind", "key", "value"}; storage only keeps the
latest value per (kind, key) and knows nothing of what they mean. This module is the one place
that says what each kind's key and value hold: the broker model builds a record here to
journal it (`Journal.put`), and recovery decodes the recovered ones here (`decode`) before
handing them to the same broker functions a live declaration uses, with `loading=True`.

The encoding must stay byte-compatible with logs and checkpoints already on disk: the keys and
value maps below are written exactly as before (same fields, same order). A deletion is a
DEFINE of the kind's key with value None (`Journal.drop`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from trimq.amqp.codec import decode_table_typed, encode_typed_table
from trimq.broker.exchange import args_key

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
        return {"password_hash": self.password_hash, "tags": list(self.tags),
                "hashing_algorithm": self.hashing_algorithm}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> UserDef:
        return cls(key[0], value.get("password_hash", ""), list(value.get("tags", [])),
                   value.get("hashing_algorithm", ""))


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
        return {"pattern": self.pattern, "definition": self.definition,
                "priority": self.priority, "apply_to": self.apply_to}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> PolicyDef:
        return cls(key[0], key[1], value["pattern"], value["definition"], value["priority"],
                   value["apply_to"])


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
        return {"type": self.type, "auto_delete": self.auto_delete, "internal": self.internal,
                "arguments": encode_typed_table(self.arguments)}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> ExchangeDef:
        return cls(key[0], key[1], value["type"], value["auto_delete"], value["internal"],
                   _table(value["arguments"]))


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
        return {"auto_delete": self.auto_delete,
                "arguments": encode_typed_table(self.arguments)}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> QueueDef:
        return cls(key[0], key[1], value["auto_delete"], _table(value["arguments"]))


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
    def make_key(vhost: str, source: str, destination_kind: str, destination: str,
                 routing_key: str, arguments: dict[str, Any]) -> list[str]:
        return [vhost, source, destination_kind, destination, routing_key,
                repr(args_key(arguments))]

    def key(self) -> list[str]:
        return self.make_key(self.vhost, self.source, self.destination_kind,
                             self.destination, self.routing_key, self.arguments)

    def value(self) -> Value:
        return {"arguments": encode_typed_table(self.arguments)}

    @classmethod
    def decode(cls, key: tuple[Any, ...], value: Value) -> BindingDef:
        return cls(key[0], key[1], key[2], key[3], key[4], _table(value["arguments"]))


Definition = (VHostDef | VHostLimitsDef | UserDef | PermissionDef | PolicyDef | ExchangeDef
              | QueueDef | BindingDef)

KINDS: dict[str, type[Definition]] = {
    cls.KIND: cls
    for cls in (VHostDef, VHostLimitsDef, UserDef, PermissionDef, PolicyDef, ExchangeDef,
                QueueDef, BindingDef)
}


def decode(kind: str, key: tuple[Any, ...], value: Value) -> Definition | None:
    """The typed form of a recovered definition; None for a kind this version does not know
    (left out, as before: a newer binary's definition is not this one's to interpret)."""
    cls = KINDS.get(kind)
    return cls.decode(key, value) if cls is not None else None
