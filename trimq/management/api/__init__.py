"""The API families, one module each, each exporting ROUTES; the application serves them all
(families added by other modules join FAMILIES)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from trimq.management.api import (
    bindings,
    connections,
    definitions,
    exchanges,
    find,
    limits,
    nodes,
    overview,
    permissions,
    policies,
    queues,
    topic_permissions,
    users,
    vhosts,
)

FAMILIES = (
    overview,
    nodes,
    vhosts,
    users,
    permissions,
    topic_permissions,
    policies,
    limits,
    definitions,
    queues,
    exchanges,
    bindings,
    connections,
    find,
)


def routes() -> list[BaseRoute]:
    return [route for family in FAMILIES for route in family.ROUTES]
