"""RabbitMQ's definitions document (export_definitions / import_definitions), so definitions
move between RabbitMQ and trimq in both directions."""

from __future__ import annotations

from typing import Any

from trimq import __version__
from trimq.amqp.codec import typed_to_plain
from trimq.broker.auth import HASHING_ALGORITHM, regex_problem
from trimq.broker.broker import AdminError, Broker, check_permissions
from trimq.broker.exchange import Exchange
from trimq.broker.limits import in_force
from trimq.broker.policy import PolicyError, make_policy
from trimq.broker.vhost import DEFAULT_EXCHANGES
from trimq.errors import AMQPError


def _plain_table(typed: dict[str, Any]) -> dict[str, Any]:
    return {k: typed_to_plain(v) for k, v in typed.items()}


def typed_table(plain: dict[str, Any] | None) -> dict[str, Any]:
    """JSON values to typed fields, with the letters RabbitMQ gives JSON numbers and strings
    (the management API's arguments too)."""
    typed: dict[str, Any] = {}
    for key, value in (plain or {}).items():
        if isinstance(value, bool):
            typed[key] = ("t", value)
        elif isinstance(value, int):
            typed[key] = ("l", value)
        elif isinstance(value, float):
            typed[key] = ("d", value)
        elif isinstance(value, dict):
            typed[key] = ("F", typed_table(value))
        elif isinstance(value, list):
            typed[key] = ("A", [typed_table({"v": v})["v"] for v in value])
        elif value is None:
            typed[key] = ("V", None)
        else:
            typed[key] = ("S", str(value))
    return typed


def export_definitions(broker: Broker) -> dict[str, Any]:
    predeclared = {name for name, _ in DEFAULT_EXCHANGES} | {""}
    users = broker.users
    doc: dict[str, Any] = {
        "rabbit_version": "3.10.8",
        "rabbitmq_version": "3.10.8",
        "product_name": "trimq",
        "product_version": __version__,
        "users": [
            {
                "name": u.name,
                "password_hash": u.password_hash,
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": list(u.tags),
                "limits": {},
            }
            for u in sorted(users.users.values(), key=lambda u: u.name)
        ],
        "vhosts": [
            {
                "name": v.name,
                "limits": [[k, n] for k, n in sorted((v.limits or {}).items())],
                "metadata": {"description": v.description, "tags": list(v.tags)},
            }
            for v in sorted(broker.vhosts.values(), key=lambda v: v.name)
        ],
        "permissions": [
            {
                "user": user,
                "vhost": vhost,
                "configure": p.configure,
                "write": p.write,
                "read": p.read,
            }
            for (vhost, user), p in sorted(users.permissions.items())
        ],
        "topic_permissions": [
            {"user": user, "vhost": vhost, "exchange": exchange, "write": w, "read": r}
            for (vhost, user, exchange), (w, r) in sorted(users.topic_permissions.items())
        ],
        "global_parameters": [],
        "policies": [
            {
                "vhost": v.name,
                "name": p.name,
                "pattern": p.pattern,
                "apply-to": p.apply_to,
                "definition": dict(p.definition),
                "priority": p.priority,
            }
            for v in sorted(broker.vhosts.values(), key=lambda v: v.name)
            for p in sorted(v.policies.values(), key=lambda p: p.name)
        ],
        "parameters": [
            {  # vhost limits are a runtime parameter to RabbitMQ
                "vhost": v.name,
                "component": "vhost-limits",
                "name": "limits",
                "value": dict(v.limits),
            }
            for v in sorted(broker.vhosts.values(), key=lambda v: v.name)
            if v.limits is not None
        ],
        "queues": [],
        "exchanges": [],
        "bindings": [],
    }
    for vhost in broker.vhosts.values():
        for queue in vhost.queues.values():
            if queue.durable and not queue.exclusive:
                doc["queues"].append(
                    {
                        "name": queue.name,
                        "vhost": vhost.name,
                        "durable": True,
                        "auto_delete": queue.auto_delete,
                        "arguments": _plain_table(queue.arguments),
                    }
                )
        for exchange in vhost.exchanges.values():
            if exchange.durable and exchange.name not in predeclared:
                doc["exchanges"].append(
                    {
                        "name": exchange.name,
                        "vhost": vhost.name,
                        "type": exchange.TYPE,
                        "durable": True,
                        "auto_delete": exchange.auto_delete,
                        "internal": exchange.internal,
                        "arguments": _plain_table(exchange.arguments),
                    }
                )
            for binding in exchange.bindings.values():
                dest = binding.destination
                if not dest.durable or getattr(dest, "exclusive", False):
                    continue
                doc["bindings"].append(
                    {
                        "source": exchange.name,
                        "vhost": vhost.name,
                        "destination": dest.name,
                        "destination_type": "exchange" if isinstance(dest, Exchange) else "queue",
                        "routing_key": binding.routing_key,
                        "arguments": _plain_table(binding.arguments),
                    }
                )
    return doc


# The sections of a single vhost's definitions (RabbitMQ's GET /api/definitions/{vhost}), and
# those whose entries then carry no "vhost" of their own.
VHOST_SECTIONS = ("parameters", "policies", "queues", "exchanges", "bindings")
VHOST_IMPLIED = ("queues", "exchanges", "bindings")


def export_vhost_definitions(broker: Broker, vhost: str) -> dict[str, Any]:
    """One vhost's definitions, as RabbitMQ exports them for a vhost."""
    whole = export_definitions(broker)
    doc: dict[str, Any] = {"rabbit_version": whole["rabbit_version"]}
    for section in VHOST_SECTIONS:
        entries = [e for e in whole[section] if e["vhost"] == vhost]
        if section in VHOST_IMPLIED:
            entries = [{k: v for k, v in e.items() if k != "vhost"} for e in entries]
        doc[section] = entries
    return doc


def import_vhost_definitions(broker: Broker, vhost: str, doc: dict[str, Any]) -> None:
    """Import one vhost's definitions into `vhost` (its entries need no "vhost"); users,
    vhosts and permissions in the document are left out, as RabbitMQ does."""
    if not isinstance(doc, dict):
        raise AdminError("error", "definitions must be a JSON object")
    broker.get_vhost(vhost)
    scoped: dict[str, Any] = {}
    for section in VHOST_SECTIONS:
        entries = _entries(doc, section)
        scoped[section] = [{**e, "vhost": vhost} for e in entries]
    import_definitions(broker, scoped)


def import_definitions(broker: Broker, doc: dict[str, Any]) -> None:
    """Create what the document defines; existing entities are updated or left as they are.
    Permissions that cannot be used and queues over a vhost's limit refuse the whole document
    before anything changes."""
    if not isinstance(doc, dict):
        raise AdminError("error", "definitions must be a JSON object")
    try:
        _check(broker, doc)
        _import(broker, doc)
    except AMQPError as exc:
        raise AdminError("error", exc.text) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise AdminError("error", f"invalid definitions: {exc!r}") from exc


def _entries(doc: dict[str, Any], section: str, *names: str) -> list[dict[str, Any]]:
    """The objects of a section, each with the string fields `names`."""
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise AdminError("error", f"invalid definitions: '{section}' must be a list")
    for entry in entries:
        if not isinstance(entry, dict):
            raise AdminError("error", f"invalid definitions: '{section}' must hold objects")
        for name in names:
            if not isinstance(entry.get(name), str):
                raise AdminError(
                    "error", f"invalid definitions: each of '{section}' needs a string '{name}'"
                )
    return entries


def _table(entry: dict[str, Any], section: str) -> dict[str, Any]:
    arguments = entry.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise AdminError("error", f"invalid definitions: arguments in '{section}' must be objects")
    return typed_table(arguments)


def _check(broker: Broker, doc: dict[str, Any]) -> None:
    """What RabbitMQ checks before importing: permission expressions, policies and queue
    limits."""
    for p in _entries(doc, "permissions", "vhost", "user"):
        check_permissions(p["vhost"], p["user"], p.get("configure"), p.get("write"), p.get("read"))
    for t in _entries(doc, "topic_permissions", "vhost", "user", "exchange", "write", "read"):
        for expression in (t["write"], t["read"]):
            problem = regex_problem(expression)
            if problem is not None:
                raise AdminError(
                    "error", f"invalid definitions: topic permission '{expression}': {problem}"
                )
    for p in _entries(doc, "policies", "vhost", "name", "pattern"):
        priority = p.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise AdminError("error", "invalid definitions: a policy's priority must be a number")
        apply_to = p.get("apply-to", "all")
        if not isinstance(apply_to, str):
            raise AdminError("error", "invalid definitions: a policy's apply-to must be a string")
        try:
            make_policy(
                p["vhost"], p["name"], p["pattern"], p.get("definition"), priority, apply_to
            )
        except PolicyError as exc:
            raise AdminError("error", str(exc)) from None
    new: dict[str, set[str]] = {}
    for q in _entries(doc, "queues", "name", "vhost"):
        vhost = broker.vhosts.get(q["vhost"])
        if vhost is not None and q["name"] not in vhost.queues:
            new.setdefault(vhost.name, set()).add(q["name"])
    for name, added in new.items():
        vhost = broker.vhosts[name]
        limit = in_force(vhost.limits, "max-queues")
        if limit is not None and len(vhost.queues) + len(added) > limit:
            raise AdminError(
                "error",
                f'Adding {len(added)} queue(s) to virtual host "{name}" '
                f"would exceed the limit of {limit} queue(s).\n\nThis "
                f"virtual host currently has {len(vhost.queues)} queue(s) "
                "defined.\n\nImport aborted!",
            )


def _import(broker: Broker, doc: dict[str, Any]) -> None:
    for v in _entries(doc, "vhosts", "name"):
        if v["name"] not in broker.vhosts:
            meta = v.get("metadata") or {}
            if not isinstance(meta, dict):
                raise AdminError("error", "invalid definitions: vhost metadata must be objects")
            broker.add_vhost(v["name"], str(meta.get("description") or ""), _tags(meta.get("tags")))
    for u in _entries(doc, "users", "name"):
        tags = _tags(u.get("tags"))
        password_hash = u.get("password_hash") or ""
        if not isinstance(password_hash, str):
            raise AdminError("error", "invalid definitions: password_hash must be a string")
        if u["name"] in broker.users.users:
            user = broker.get_user(u["name"])
            user.password_hash = password_hash
            broker.set_user_tags(user.name, tags)
        else:
            broker.add_user(u["name"], None, tags, password_hash=password_hash)
    for p in _entries(doc, "permissions", "vhost", "user"):
        broker.set_permissions(p["vhost"], p["user"], p["configure"], p["write"], p["read"])
    for t in _entries(doc, "topic_permissions", "vhost", "user", "exchange"):
        broker.set_topic_permissions(t["vhost"], t["user"], t["exchange"], t["write"], t["read"])
    for parameter in _entries(doc, "parameters", "vhost", "component"):
        if parameter["component"] == "vhost-limits":
            broker.set_vhost_limits(parameter["vhost"], parameter.get("value"))
    for p in _entries(doc, "policies", "vhost", "name", "pattern"):
        broker.set_policy(
            p["vhost"],
            p["name"],
            p["pattern"],
            p.get("definition"),
            p.get("priority", 0),
            p.get("apply-to", "all"),
        )
    for x in _entries(doc, "exchanges", "name", "vhost", "type"):
        vhost = broker.get_vhost(x["vhost"])
        vhost.declare_exchange(
            x["name"],
            x["type"],
            durable=bool(x.get("durable", True)),
            auto_delete=bool(x.get("auto_delete", False)),
            internal=bool(x.get("internal", False)),
            arguments=_table(x, "exchanges"),
        )
    for q in _entries(doc, "queues", "name", "vhost"):
        vhost = broker.get_vhost(q["vhost"])
        vhost.declare_queue(
            q["name"],
            None,
            durable=bool(q.get("durable", True)),
            auto_delete=bool(q.get("auto_delete", False)),
            arguments=_table(q, "queues"),
            server_named=True,
            enforce_limit=False,
        )
    for b in _entries(doc, "bindings", "vhost", "source", "destination"):
        vhost = broker.get_vhost(b["vhost"])
        source = vhost.get_exchange(b["source"])
        dests = vhost.exchanges if b.get("destination_type") == "exchange" else vhost.queues
        dest = dests.get(b["destination"])
        if dest is None:
            raise AdminError("error", f"binding destination '{b['destination']}' not found")
        routing_key = b.get("routing_key") or ""
        if not isinstance(routing_key, str):
            raise AdminError("error", "invalid definitions: routing_key must be a string")
        vhost.bind(source, dest, routing_key, _table(b, "bindings"))


def _tags(tags: Any) -> list[str]:
    """User or vhost tags: a list, or (RabbitMQ before 3.10) "administrator,management"."""
    if isinstance(tags, str):
        return [t for t in tags.split(",") if t]
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise AdminError("error", "invalid definitions: tags must be a list of strings")
    return list(tags)
