"""Users, password hashes and per-vhost permissions, as RabbitMQ's internal auth backend has them.

A password hash is base64(4-byte salt ++ SHA-256(salt ++ UTF-8 password)), the
rabbit_password_hashing_sha256 scheme, so definitions move between trimq and RabbitMQ.
Permissions are three regular expressions per (vhost, user); as RabbitMQ, a resource is allowed
when the expression matches anywhere in its name (unanchored), and an empty expression allows
nothing. Topic permissions are two more (write, read) per (vhost, user, exchange), applied to
the routing keys of publishes to and bindings from a topic exchange. The expressions are
RabbitMQ's (PCRE), read through trimq/broker/pcre.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

from trimq.broker.pcre import PatternError, compile_pattern, name_bytes

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = os.urandom(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def check_password(password: str, password_hash: str) -> bool:
    if not password_hash:
        return False  # a cleared password never authenticates
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except ValueError:
        return False
    if len(raw) != 36:
        return False
    return hmac.compare_digest(hash_password(password, raw[:4]), password_hash)


@dataclass
class User:
    name: str
    password_hash: str
    tags: list[str] = field(default_factory=list)


class Permission:
    """configure / write / read expressions of one user in one vhost."""

    __slots__ = ("_compiled", "configure", "read", "write")

    def __init__(self, configure: str, write: str, read: str) -> None:
        """PatternError (from compile_pattern) if an expression cannot be used."""
        self.configure = configure
        self.write = write
        self.read = read
        self._compiled = {
            kind: (compile_pattern(expr) if expr else None)
            for kind, expr in (("configure", configure), ("write", write), ("read", read))
        }

    def allows(self, kind: str, name: str) -> bool:
        pattern = self._compiled[kind]
        return pattern is not None and pattern.search(name_bytes(name)) is not None


def regex_problem(expression: object) -> str | None:
    """None if `expression` can be a permission expression, else why not."""
    if not isinstance(expression, str):
        return "it is not a string"
    if not expression:
        return None
    try:
        compile_pattern(expression)
    except PatternError as exc:
        return f"{exc.message} at position {exc.position}"
    return None


class PermissionTable(dict[tuple[str, str], Permission]):
    """A dict that counts its changes."""

    generation = 0

    def __setitem__(self, key: tuple[str, str], value: Permission) -> None:
        self.generation += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: tuple[str, str]) -> None:
        self.generation += 1
        super().__delitem__(key)

    def pop(self, key: tuple[str, str], *default: object) -> object:  # type: ignore[override]
        self.generation += 1
        return super().pop(key, *default)


TopicKey = tuple[str, str, str]  # vhost, user, exchange


class TopicPermissionTable(dict[TopicKey, tuple[str, str]]):
    """(vhost, user, exchange) -> (write, read) expressions; counts its changes."""

    generation = 0

    def __setitem__(self, key: TopicKey, value: tuple[str, str]) -> None:
        self.generation += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: TopicKey) -> None:
        self.generation += 1
        super().__delitem__(key)


NEVER = re.compile(rb"(?!)")


def topic_refusal(routing_key: str, exchange: str, vhost: str, user: str) -> str:
    """RabbitMQ's ACCESS_REFUSED detail for a routing key the topic permissions refuse."""
    return (
        f"access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' "
        f"refused for user '{user}'"
    )


def topic_pattern(expression: str, vhost: str, user: str) -> re.Pattern[bytes]:
    """A topic permission's expression as RabbitMQ applies it to routing keys: `{username}`
    and `{vhost}` replaced, an empty expression meaning `^$`; one that cannot be used after
    the replacement matches nothing."""
    expanded = (expression or "^$").replace("{username}", user).replace("{vhost}", vhost)
    try:
        return compile_pattern(expanded)
    except PatternError:
        return NEVER


class Users:
    """The user database and the permission table."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.permissions: PermissionTable = PermissionTable()  # (vhost, user) -> Permission
        # routing-key expressions per (vhost, user, exchange), for topic exchanges
        self.topic_permissions = TopicPermissionTable()

    @property
    def generation(self) -> int:
        """Changes whenever a permission does, so channels know their cached answers expired."""
        return self.permissions.generation

    def add(self, name: str, password: str | None, tags: list[str] | None = None) -> User:
        user = User(name, hash_password(password) if password is not None else "", list(tags or []))
        self.users[name] = user
        return user

    def authenticate(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None or not check_password(password, user.password_hash):
            return None
        return user

    def topic_check(
        self, vhost: str, user: str, exchange: str, kind: str
    ) -> re.Pattern[bytes] | None:
        """The pattern a routing key must match to `kind` ("write": publish, "read": bind) on
        the topic exchange `exchange`; None when the user has no topic permissions there (as
        RabbitMQ: then every key is allowed)."""
        entry = self.topic_permissions.get((vhost, user, exchange))
        if entry is None:
            return None
        return topic_pattern(entry[0] if kind == "write" else entry[1], vhost, user)

    def topic_allowed(
        self, vhost: str, user: str, exchange: str, kind: str, routing_key: str
    ) -> bool:
        """Whether `routing_key` may be used to `kind` on the topic exchange `exchange` (one
        look-up: a channel caches the patterns instead, see Channel.permit_topic)."""
        pattern = self.topic_check(vhost, user, exchange, kind)
        return pattern is None or pattern.search(name_bytes(routing_key)) is not None

    def permission(self, vhost: str, user: str) -> Permission | None:
        return self.permissions.get((vhost, user))

    def allowed(self, vhost: str, user: str, kind: str, name: str) -> bool:
        permission = self.permissions.get((vhost, user))
        return permission is not None and permission.allows(kind, name)
