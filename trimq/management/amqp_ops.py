"""What the messaging endpoints share with an AMQP channel: the same permission checks
(configure, write, read on a resource, the default exchange being `amq.default`), the
model's errors turned into RabbitMQ's HTTP answers, and JSON tables turned into typed AMQP
tables with the types RabbitMQ gives JSON values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trimq.amqp.codec import typed_to_plain
from trimq.broker.definitions import typed_table
from trimq.broker.message_view import json_value
from trimq.broker.vhost import VHost
from trimq.errors import ACCESS_REFUSED, NOT_FOUND, AMQPError
from trimq.management.context import Context
from trimq.management.errors import ApiError, bad_request, not_authorised, not_found

VHOST_NOT_FOUND = ApiError(404, "not_found", "vhost_not_found")  # PUT into a missing vhost


def vhost_for(ctx: Context, name: str | None = None, missing: ApiError | None = None) -> VHost:
    """The vhost the path names (or `name`): 404 when it does not exist (or `missing`), and
    RabbitMQ's 401 when the user may not see it (no permissions there, no monitoring tag)."""
    vhost = ctx.broker.vhosts.get(ctx.params["vhost"] if name is None else name)
    if vhost is None:
        raise missing or not_found()
    if not ctx.may_see(vhost.name):
        raise not_authorised("User not authorised to access virtual host")
    return vhost


def permit(ctx: Context, vhost: str, kind: str, name: str) -> None:
    """The user's configure/write/read permission on `name` in `vhost`, else RabbitMQ's 401."""
    if name == "":
        name = "amq.default"
    if not ctx.broker.users.allowed(vhost, ctx.user.name, kind, name):
        raise not_authorised("Access refused.")


def http_error(exc: AMQPError) -> ApiError:
    """A refusal from the model as the management API answers it: 401 for access refused,
    404 {"error": "not_found"} for a missing object, else 400 with the detail."""
    if exc.code == ACCESS_REFUSED:
        return not_authorised("Access refused.")
    if exc.code == NOT_FOUND:
        return ApiError(404, "not_found", exc.detail)
    return bad_request(exc.detail)


def json_table(value: Any, what: str = "arguments") -> dict[str, Any]:
    """A JSON object as a typed AMQP table (numbers long or double, strings longstr)."""
    if value is None or value in ("", []):  # pyrabbit2 sends [] for none
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be an object")
    return typed_table(value)


def plain_table(typed: dict[str, Any]) -> dict[str, Any]:
    """A typed table as JSON shows it (RabbitMQ's objects, not pair lists)."""
    return {k: json_value(typed_to_plain(v)) for k, v in typed.items()}


def timestamp(seconds: float) -> str:
    """RabbitMQ's `idle_since` format: 2026-12-03T15:43:47.366+00:00."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
