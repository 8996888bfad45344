"""RabbitMQ's definitions document (export_definitions / import_definitions), so definitions
move between RabbitMQ and trimq in both directions."""

from __future__ import annotations

from typing import Any

from trimq import __version__
from trimq.amqp.codec import typed_to_plain
from trimq.broker.auth import HASHING_ALGORITHM
from trimq.broker.broker import AdminError, Broker
from trimq.broker.exchange import Exchange
from trimq.broker.vhost import DEFAULT_EXCHANGES
from trimq.errors import AMQPError


def _plain_table(typed: dict[str, Any]) -> dict[str, Any]:
    return {k: typed_to_plain(v) for k, v in typed.items()}


def _typed_table(plain: dict[str, Any] | None) -> dict[str, Any]:
    """JSON values to typed fields, with the letters RabbitMQ gives JSON numbers and strings."""
    typed: dict[str, Any] = {}
    for key, value in (plain or {}).items():
        if isinstance(value, bool):
            typed[key] = ("t", value)
        elif isinstance(value, int):
            typed[key] = ("l", value)
        elif isinstance(value, float):
            typed[key] = ("d", value)
        elif isinstance(value, dict):
            typed[key] = ("F", _typed_table(value))
        elif isinstance(value, list):
            typed[key] = ("A", [_typed_table({"v": v})["v"] for v in value])
        elif value is None:
            typed[key] = ("V", None)
        else:
            typed[key] = ("S", str(value))
    return typed


def export_definitions(broker: Broker) -> dict[str, Any]:
    predeclared = {name for name, _ in DEFAULT_EXCHANGES} | {""}
    users = broker.users
    doc: dict[str, Any] = {
        "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8",
        "product_name": "trimq", "product_version": __version__,
        "users": [{
            "name": u.name, "password_hash": u.password_hash,
            "hashing_algorithm": HASHING_ALGORITHM, "tags": list(u.tags), "limits": {},
        } for u in sorted(users.users.values(), key=lambda u: u.name)],
        "vhosts": [{
            "name": v.name, "limits": [],
            "metadata": {"description": v.description, "tags": list(v.tags)},
        } for v in sorted(broker.vhosts.values(), key=lambda v: v.name)],
        "permissions": [{
            "user": user, "vhost": vhost, "configure": p.configure, "write": p.write,
            "read": p.read,
        } for (vhost, user), p in sorted(users.permissions.items())],
        "topic_permissions": [], "parameters": [], "global_parameters": [], "policies": [],
        "queues": [], "exchanges": [], "bindings": [],
    }
    for vhost in broker.vhosts.values():
        for queue in vhost.queues.values():
            if queue.durable and not queue.exclusive:
                doc["queues"].append({
                    "name": queue.name, "vhost": vhost.name, "durable": True,
                    "auto_delete": queue.auto_delete,
                    "arguments": _plain_table(queue.arguments),
                })
        for exchange in vhost.exchanges.values():
            if exchange.durable and exchange.name not in predeclared:
                doc["exchanges"].append({
                    "name": exchange.name, "vhost": vhost.name, "type": exchange.TYPE,
                    "durable": True, "auto_delete": exchange.auto_delete,
                    "internal": exchange.internal,
                    "arguments": _plain_table(exchange.arguments),
                })
            for binding in exchange.bindings.values():
                dest = binding.destination
                if not dest.durable or getattr(dest, "exclusive", False):
                    continue
                doc["bindings"].append({
                    "source": exchange.name, "vhost": vhost.name, "destination": dest.name,
                    "destination_type": "exchange" if isinstance(dest, Exchange) else "queue",
                    "routing_key": binding.routing_key,
                    "arguments": _plain_table(binding.arguments),
                })
    return doc


def import_definitions(broker: Broker, doc: dict[str, Any]) -> None:
    """Create what the document defines; existing entities are updated or left as they are."""
    if not isinstance(doc, dict):
        raise AdminError("error", "definitions must be a JSON object")
    try:
        _import(broker, doc)
    except AMQPError as exc:
        raise AdminError("error", exc.text) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise AdminError("error", f"invalid definitions: {exc!r}") from exc


def _import(broker: Broker, doc: dict[str, Any]) -> None:
    for v in doc.get("vhosts", []):
        if v["name"] not in broker.vhosts:
            meta = v.get("metadata") or {}
            broker.add_vhost(v["name"], meta.get("description", ""), meta.get("tags", []))
    for u in doc.get("users", []):
        tags = u.get("tags", [])
        if isinstance(tags, str):  # RabbitMQ before 3.10 wrote "administrator,management"
            tags = [t for t in tags.split(",") if t]
        if u["name"] in broker.users.users:
            user = broker.get_user(u["name"])
            user.password_hash = u.get("password_hash", "")
            user.tags = list(tags)
            broker.set_user_tags(user.name, user.tags)
        else:
            broker.add_user(u["name"], None, tags, password_hash=u.get("password_hash", ""))
    for p in doc.get("permissions", []):
        broker.set_permissions(p["vhost"], p["user"], p["configure"], p["write"], p["read"])
    for x in doc.get("exchanges", []):
        vhost = broker.get_vhost(x["vhost"])
        vhost.declare_exchange(x["name"], x["type"], durable=x.get("durable", True),
                               auto_delete=x.get("auto_delete", False),
                               internal=x.get("internal", False),
                               arguments=_typed_table(x.get("arguments")))
    for q in doc.get("queues", []):
        vhost = broker.get_vhost(q["vhost"])
        vhost.declare_queue(q["name"], None, durable=q.get("durable", True),
                            auto_delete=q.get("auto_delete", False),
                            arguments=_typed_table(q.get("arguments")), server_named=True)
    for b in doc.get("bindings", []):
        vhost = broker.get_vhost(b["vhost"])
        source = vhost.get_exchange(b["source"])
        dests = vhost.exchanges if b.get("destination_type") == "exchange" else vhost.queues
        dest = dests.get(b["destination"])
        if dest is None:
            raise AdminError("error", f"binding destination '{b['destination']}' not found")
        vhost.bind(source, dest, b.get("routing_key", ""), _typed_table(b.get("arguments")))

