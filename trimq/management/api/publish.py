"""POST /api/exchanges/{vhost}/{name}/publish: a message published as a channel publishes it
(the same permission, internal-exchange, topic permission and user_id checks, the same routing
with CC and BCC and direct reply-to), answered with {"routed": bool} once it is durable when
it reached durable queues persistent, as RabbitMQ's management plugin answers only after its
publisher confirm."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from trimq.amqp.spec import BasicProperties
from trimq.broker import reply_to
from trimq.broker.arguments import parse_expiration
from trimq.broker.auth import topic_refusal
from trimq.broker.message import Message
from trimq.broker.vhost import VHost
from trimq.errors import ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED, reply_text
from trimq.management.amqp_ops import permit
from trimq.management.api.get import TermReason
from trimq.management.context import Context
from trimq.management.errors import bad_request
from trimq.server.channel import without_bcc

STRING_PROPERTIES = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)
INTEGER_PROPERTIES = ("delivery_mode", "priority", "timestamp")


def _required(body: dict[str, Any], key: str) -> Any:
    if key not in body:
        raise bad_request(f"[{{key_missing,{key}}}]")
    return body[key]


def json_properties(value: Any) -> BasicProperties:
    """Properties from their JSON object (RabbitMQ's names); refused as RabbitMQ refuses."""
    if not isinstance(value, dict):
        raise bad_request("properties must be an object")
    properties = BasicProperties()
    for name in STRING_PROPERTIES:
        if name in value:
            setattr(properties, name, str(value[name]))
    for name in INTEGER_PROPERTIES:
        if name in value:
            raw = value[name]
            if isinstance(raw, bool) or not isinstance(raw, (int, str)):
                raise TermReason("not_int", name)
            try:
                setattr(properties, name, int(raw))
            except ValueError:
                raise TermReason("not_int", name) from None
    headers = value.get("headers")
    if headers not in (None, ""):
        if not isinstance(headers, dict):
            raise bad_request("headers must be an object")
        properties.headers = headers
    return properties


def _payload(body: dict[str, Any]) -> bytes:
    payload = _required(body, "payload")
    encoding = _required(body, "payload_encoding")
    if not isinstance(payload, str):
        payload = str(payload)
    if encoding == "string":
        return payload.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise TermReason("not_base64", payload) from None
    raise TermReason("unsupported_encoding", str(encoding))


def _refused(code: int, detail: str) -> Exception:
    """RabbitMQ's answer when its internal channel is closed: 400 with the close text."""
    return bad_request(f"{code} {reply_text(code, detail)}")


async def publish(ctx: Context, vhost: VHost, name: str) -> dict[str, bool]:
    body = await ctx.json()
    properties = json_properties(_required(body, "properties"))
    routing_key = _required(body, "routing_key")
    if not isinstance(routing_key, str):
        routing_key = str(routing_key)
    payload = _payload(body)
    exchange_name = "" if name == "amq.default" else name
    permit(ctx, vhost.name, "write", exchange_name)
    exchange = vhost.exchanges.get(exchange_name)
    if exchange is None:
        raise _refused(NOT_FOUND, f"no exchange '{name}' in vhost '{vhost.name}'")
    if exchange.internal:
        raise _refused(
            ACCESS_REFUSED,
            f"cannot publish to internal exchange '{name}' in vhost '{vhost.name}'",
        )
    users = ctx.broker.users
    if exchange.TYPE == "topic" and not users.topic_allowed(
        vhost.name, ctx.user.name, exchange.name, "write", routing_key
    ):  # after the internal check and before user_id's, as a channel's publish
        raise _refused(
            ACCESS_REFUSED, topic_refusal(routing_key, exchange.name, vhost.name, ctx.user.name)
        )
    if properties.user_id is not None and properties.user_id != ctx.user.name:
        raise _refused(
            PRECONDITION_FAILED,
            f"user_id property set to '{properties.user_id}' but authenticated user was "
            f"'{ctx.user.name}'",
        )
    if properties.expiration is not None:
        problem = parse_expiration(properties.expiration)[1]
        if problem is not None:
            raise _refused(
                PRECONDITION_FAILED, f"invalid expiration '{properties.expiration}': {problem}"
            )
    try:
        encoded = properties.encode()
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad_request(f"properties cannot be encoded: {exc}") from None
    message = Message(exchange_name, routing_key, properties, encoded, payload)
    if exchange is vhost.default_exchange and routing_key.startswith(reply_to.PREFIX):
        replier = ctx.broker.reply_to.lookup(routing_key)
        if replier is not None:  # delivered as a channel's publish delivers it; RabbitMQ
            replier.deliver_reply(message)  # answers routed false (no queue took it)
            return {"routed": False}
    queues = vhost.route(exchange, routing_key, message)
    if not queues:
        return {"routed": False}
    if properties.headers and "BCC" in properties.headers:
        message = without_bcc(message)
    lsn, _refused_by_queue = vhost.publish(message, queues)
    wal = ctx.state.wal
    if lsn and wal is not None:
        await wal.wait_durable(lsn)
    return {"routed": True}
