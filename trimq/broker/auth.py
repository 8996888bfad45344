"""Users and their password hashes, in RabbitMQ's format so definitions move between the two.

A hash is base64(4-byte salt ++ SHA-256(salt ++ UTF-8 password)), the rabbit_password_hashing_sha256
scheme.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field

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
    salt = raw[:4]
    return hmac.compare_digest(hash_password(password, salt), password_hash)


@dataclass
class User:
    name: str
    password_hash: str
    tags: list[str] = field(default_factory=list)


class Users:
    """The user database; authentication answers only yes or no (never why, to the client)."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}

    def add(self, name: str, password: str, tags: list[str] | None = None) -> User:
        user = User(name, hash_password(password), list(tags or []))
        self.users[name] = user
        return user

    def authenticate(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None or not check_password(password, user.password_hash):
            return None
        return user
