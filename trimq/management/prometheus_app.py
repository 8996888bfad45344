"""The Prometheus listener's application: GET /metrics (every family summed over its
objects) and GET /metrics/per-object (a series per queue, channel and connection), as
rabbitmq_prometheus serves them, without authentication. Served by `serve_asgi` like the
management API, on its own port."""

from __future__ import annotations

from functools import partial

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trimq.management.app import internal_error
from trimq.management.listener import serve_asgi
from trimq.management.prometheus import CONTENT_TYPE, BrokerCollector, scrape
from trimq.server.state import ServerState


def build_app(state: ServerState) -> Starlette:
    aggregated = BrokerCollector(state, per_object=False)
    per_object = BrokerCollector(state, per_object=True)

    async def metrics(request: Request) -> Response:
        return Response(await scrape(aggregated), headers={"content-type": CONTENT_TYPE})

    async def metrics_per_object(request: Request) -> Response:
        return Response(await scrape(per_object), headers={"content-type": CONTENT_TYPE})

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/metrics/per-object", metrics_per_object, methods=["GET"]),
        ],
        exception_handlers={Exception: internal_error},  # logged, answered 500 in JSON
    )


async def serve_prometheus(
    state: ServerState,
    host: str | None,
    port: int,
    *,
    task_status: trio.TaskStatus[list[tuple[str, str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The `[prometheus]` listener, a service of trimq/server/app.py's serve(): reports its
    addresses as RabbitMQ lists this listener, protocol "http/prometheus"."""
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            partial(serve_asgi, build_app(state), host, port, name="prometheus")
        )
        task_status.started([("http/prometheus", h, p) for h, p in bound])
