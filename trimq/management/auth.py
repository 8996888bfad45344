"""HTTP basic authentication against trimq's users, with RabbitMQ's management tag rules.

Every endpoint needs one of the management tags; some need more: `administrator` (users,
vhosts, permissions, definitions), `monitoring` (every vhost's objects, nodes) or
`policymaker` (policies). A user with only `management` sees the vhosts it has permissions in.
As for AMQP, the users in `loopback_users` (guest) may log in only from the loopback address.
"""

from __future__ import annotations

import base64
import binascii

from trimq.broker.auth import User
from trimq.broker.broker import Broker
from trimq.management.errors import REALM, ApiError, not_authorised
from trimq.server.connection import is_loopback

MANAGEMENT = "management"
POLICYMAKER = "policymaker"
MONITORING = "monitoring"
ADMINISTRATOR = "administrator"

# the tags that grant each level (administrator implies every other one)
GRANTED_BY = {
    MANAGEMENT: {MANAGEMENT, POLICYMAKER, MONITORING, ADMINISTRATOR},
    POLICYMAKER: {POLICYMAKER, ADMINISTRATOR},
    MONITORING: {MONITORING, ADMINISTRATOR},
    ADMINISTRATOR: {ADMINISTRATOR},
}
REFUSAL = {
    MANAGEMENT: "Not management user",
    POLICYMAKER: "User not authorised to access object",  # as RabbitMQ words it
    MONITORING: "Not monitor user",
    ADMINISTRATOR: "Not administrator user",
}


def has_level(user: User, level: str) -> bool:
    return not GRANTED_BY[level].isdisjoint(user.tags)


def _credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return (name, password) if colon else None


def authenticate(broker: Broker, header: str | None, peer: str | None, level: str) -> User:
    """The user the Authorization `header` names, if it may use an endpoint of `level`;
    ApiError (401, RabbitMQ's bodies) otherwise."""
    credentials = _credentials(header)
    if credentials is None:
        raise ApiError(401, "", "", {"WWW-Authenticate": REALM})
    user = broker.users.authenticate(*credentials)
    broker.totals.count_login("http", user is not None)
    if user is None:
        raise ApiError(401, "not_authorized", "Login failed", {"WWW-Authenticate": REALM})
    if user.name in broker.config.loopback_users and not (peer and is_loopback(peer)):
        raise not_authorised("User can only log in via localhost")
    if not has_level(user, MANAGEMENT):
        raise not_authorised(REFUSAL[MANAGEMENT])
    if not has_level(user, level):
        raise not_authorised(REFUSAL[level])
    return user
