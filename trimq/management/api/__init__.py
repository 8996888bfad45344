"""The API families, one module each, each exporting ROUTES; the application serves them all
(families added by other modules join FAMILIES)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from trimq.management.api import (
    bindings,
    connections,
    exchanges,
    find,
    overview,
    permissions,
    queues,
    users,
    vhosts,
)

FAMILIES = (overview, vhosts, users, permissions, queues, exchanges, bindings, connections, find)


def routes() -> list[BaseRoute]:
    return [route for family in FAMILIES for route in family.ROUTES]
