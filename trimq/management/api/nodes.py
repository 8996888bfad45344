"""/api/nodes (monitoring), /api/aliveness-test/{vhost}, /api/healthchecks/node and
/api/health/checks/*: one node, its memory and disk figures from trimq/server/resources.py."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from starlette.responses import JSONResponse

from trimq.management.auth import MONITORING
from trimq.management.context import Context
from trimq.management.errors import not_found
from trimq.management.routes import endpoint, route
from trimq.server.control.node import count_open_files
from trimq.server.info import NODE

OK = {"status": "ok"}


def render_node(ctx: Context) -> dict[str, Any]:
    resources = ctx.state.resources
    alarms = resources.alarms
    fd_total = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    connections = sum(1 for c in ctx.state.connections if c.opened)
    return {
        "name": NODE,
        "type": "disc",
        "running": True,
        "os_pid": str(os.getpid()),
        "uptime": int((time.time() - ctx.state.started_at) * 1000),
        "mem_used": resources.memory_used or 0,
        "mem_limit": resources.memory_limit,
        "mem_alarm": "memory" in alarms,
        "mem_calculation_strategy": "rss",
        "disk_free": resources.disk_free or 0,
        "disk_free_limit": resources.disk_free_limit,
        "disk_free_alarm": "disk" in alarms,
        "fd_used": count_open_files() or 0,
        "fd_total": fd_total if fd_total != resource.RLIM_INFINITY else 1048576,
        "sockets_used": connections,
        "sockets_total": fd_total if fd_total != resource.RLIM_INFINITY else 1048576,
        "proc_used": 0,
        "proc_total": 0,
        "processors": os.cpu_count() or 1,
        "run_queue": 0,
        "rates_mode": "basic",
        "being_drained": False,
        "partitions": [],
        "applications": [],
        "enabled_plugins": ["rabbitmq_management"],
        "exchange_types": [],
        "auth_mechanisms": [{"name": "PLAIN", "description": "SASL PLAIN", "enabled": True}],
        "db_dir": str(ctx.state.data_dir or ""),
        "config_files": [],
        "log_files": [],
        "net_ticktime": 60,
    }


@endpoint(MONITORING)
async def list_nodes(ctx: Context) -> Any:
    return [render_node(ctx)]


@endpoint(MONITORING)
async def get_node(ctx: Context) -> Any:
    if ctx.params["node"] != NODE:
        raise not_found()
    return render_node(ctx)


@endpoint()
async def aliveness_test(ctx: Context) -> Any:
    """The vhost exists and the user may use it; the broker answering is the rest of the
    test (RabbitMQ also declares, publishes to and gets from a queue there)."""
    ctx.accessible_vhost()
    return OK


@endpoint()
async def healthcheck_node(ctx: Context) -> Any:
    return OK


@endpoint()
async def check_alarms(ctx: Context) -> Any:
    alarms = sorted(ctx.state.resources.alarms)
    if not alarms:
        return OK
    return JSONResponse(
        {
            "status": "failed",
            "reason": "resource alarm(s) in effect in the cluster",
            "alarms": [{"node": NODE, "resource": alarm} for alarm in alarms],
        },
        503,
    )


@endpoint()
async def check_port_listener(ctx: Context) -> Any:
    port = ctx.params["port"]
    ports = sorted(
        {p for _, p in ctx.state.listeners}
        | {p for _, p in ctx.state.tls_listeners}
        | {p for _, _, p in ctx.state.service_listeners}
    )
    if port.isdigit() and int(port) in ports:
        return {"status": "ok", "port": int(port)}
    return JSONResponse(
        {"status": "failed", "reason": "No active listener", "missing": port, "ports": ports}, 503
    )


@endpoint()
async def check_protocol_listener(ctx: Context) -> Any:
    protocol = ctx.params["protocol"]
    protocols = {"amqp"} if ctx.state.listeners else set()
    protocols |= {"amqp/ssl", "amqps"} if ctx.state.tls_listeners else set()
    protocols |= {p for p, _, _ in ctx.state.service_listeners}
    if protocol in protocols or (protocol == "amqp091" and "amqp" in protocols):
        return {"status": "ok", "protocol": protocol}
    return JSONResponse(
        {
            "status": "failed",
            "reason": "No active listener",
            "missing": protocol,
            "protocols": sorted(protocols),
        },
        503,
    )


@endpoint()
async def check_ok(ctx: Context) -> Any:
    return OK


@endpoint()
async def check_single_node(ctx: Context) -> Any:
    return {"status": "ok", "reason": "single node cluster"}


ROUTES = [
    route("/api/nodes", GET=list_nodes),
    route("/api/nodes/{node}", GET=get_node),
    route("/api/aliveness-test/{vhost}", GET=aliveness_test),
    route("/api/healthchecks/node", GET=healthcheck_node),
    route("/api/healthchecks/node/{node}", GET=healthcheck_node),
    route("/api/health/checks/alarms", GET=check_alarms),
    route("/api/health/checks/local-alarms", GET=check_alarms),
    route("/api/health/checks/port-listener/{port}", GET=check_port_listener),
    route("/api/health/checks/protocol-listener/{protocol}", GET=check_protocol_listener),
    route("/api/health/checks/virtual-hosts", GET=check_ok),
    route("/api/health/checks/node-is-quorum-critical", GET=check_single_node),
    route("/api/health/checks/node-is-mirror-sync-critical", GET=check_single_node),
    route("/api/health/checks/certificate-expiration/{within}/{unit}", GET=check_ok),
]
