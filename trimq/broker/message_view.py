"""A message as RabbitMQ's management API shows it (the answer to POST .../get): payload as a
string when it is UTF-8 (else base64), its byte count, the properties set (header values as
JSON values), exchange, routing key and redelivered flag. Peek, find and get all use it, so a
message looks the same wherever it is shown.
"""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from typing import Any

from trimq.amqp.codec import Typed
from trimq.amqp.spec import BasicProperties

PROPERTY_NAMES = BasicProperties.__slots__


def json_value(value: Any) -> Any:
    """A decoded field value as RabbitMQ renders it in JSON: timestamps as seconds, void as
    "undefined", byte arrays as text."""
    if isinstance(value, Typed):
        return json_value(value.value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if value is None:
        return "undefined"
    return value


def properties_json(properties: BasicProperties) -> dict[str, Any] | list[Any]:
    """The properties that are set; RabbitMQ answers `[]` (not `{}`) when none is."""
    shown = {}
    for name in PROPERTY_NAMES:
        value = getattr(properties, name)
        if value is not None:
            shown[name] = json_value(value) if name == "headers" else value
    return shown or []


def payload_json(
    body: bytes, encoding: str = "auto", truncate: int | None = None
) -> dict[str, Any]:
    """payload_bytes (the whole body's), payload (cut to `truncate` bytes) and
    payload_encoding: "string" when the body is UTF-8 text and `encoding` is "auto"."""
    shown = body if truncate is None else body[:truncate]
    if encoding == "auto":
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:  # a cut inside a character leaves that character out
            text = shown.decode("utf-8", "ignore")
            return {"payload_bytes": len(body), "payload": text, "payload_encoding": "string"}
    return {
        "payload_bytes": len(body),
        "payload": base64.b64encode(shown).decode("ascii"),
        "payload_encoding": "base64",
    }


def message_json(
    exchange: str,
    routing_key: str,
    properties: BasicProperties,
    body: bytes,
    redelivered: bool,
    encoding: str = "auto",
    truncate: int | None = None,
) -> dict[str, Any]:
    """One message in the field order of RabbitMQ's /get answer (without message_count)."""
    shown = payload_json(body, encoding, truncate)
    return {
        "payload_bytes": shown["payload_bytes"],
        "redelivered": redelivered,
        "exchange": exchange,
        "routing_key": routing_key,
        "properties": properties_json(properties),
        "payload": shown["payload"],
        "payload_encoding": shown["payload_encoding"],
    }
