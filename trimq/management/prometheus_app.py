"""The Prometheus listener's application: GET /metrics (every family summed over its
objects), GET /metrics/per-object (a series per queue, channel and connection) and GET
/metrics/detailed (the metric groups asked for), as rabbitmq_prometheus serves them, without
authentication. Served by `serve_asgi` like the management API, on its own port."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial

import trio
from prometheus_client.core import Metric, SummaryMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trimq.management import prometheus_detailed as detailed
from trimq.management.app import internal_error
from trimq.management.listener import serve_asgi
from trimq.management.prometheus import CONTENT_TYPE, Scraper, render
from trimq.management.prometheus_rows import read_broker
from trimq.server.state import ServerState

DEFAULT, PER_OBJECT, DETAILED = "default", "per-object", "detailed"  # RabbitMQ's registries


class Telemetry:
    """rabbitmq_prometheus's telemetry_scrape_* summaries: each endpoint (a registry) counts
    its scrapes' durations and sizes; the encoded sizes of all show on /metrics. A scrape
    shows what the scrapes before it counted."""

    def __init__(self) -> None:
        self.durations: dict[str, tuple[int, float]] = {}
        self.sizes: dict[str, tuple[int, float]] = {}

    def observe(self, registry: str, seconds: float, size: int) -> None:
        count, total = self.durations.get(registry, (0, 0.0))
        self.durations[registry] = (count + 1, total + seconds)
        count, total = self.sizes.get(registry, (0, 0.0))
        self.sizes[registry] = (count + 1, total + size)

    def families(self, registry: str) -> Iterator[Metric]:
        durations = SummaryMetricFamily(
            "telemetry_scrape_duration_seconds",
            "Scrape duration",
            labels=["registry", "content_type"],
        )
        sizes = SummaryMetricFamily(
            "telemetry_scrape_size_bytes",
            "Scrape size, not encoded",
            labels=["registry", "content_type"],
        )
        encoded = SummaryMetricFamily(
            "telemetry_scrape_encoded_size_bytes",
            "Scrape size, encoded",
            labels=["registry", "content_type", "encoding"],
        )
        if registry in self.durations:
            count, total = self.durations[registry]
            durations.add_metric([registry, CONTENT_TYPE], count, total)
            count, total = self.sizes[registry]
            sizes.add_metric([registry, CONTENT_TYPE], count, total)
        if registry == DEFAULT:  # trimq sends no compressed answer: encoded is the size
            for name, (count, total) in sorted(self.sizes.items()):
                encoded.add_metric([name, CONTENT_TYPE, "identity"], count, total)
        yield from (durations, encoded, sizes)


def build_app(state: ServerState) -> Starlette:
    scraper = Scraper(state)
    telemetry = Telemetry()

    async def answer(registry: str, scrape: Callable[[], Awaitable[bytes]]) -> Response:
        started = time.perf_counter()
        body = await scrape()
        telemetry.observe(registry, time.perf_counter() - started, len(body))
        return Response(body, headers={"content-type": CONTENT_TYPE})

    async def metrics(request: Request) -> Response:
        return await answer(DEFAULT, partial(scraper.aggregated, list(telemetry.families(DEFAULT))))

    async def metrics_per_object(request: Request) -> Response:
        return await answer(
            PER_OBJECT, partial(scraper.per_object, list(telemetry.families(PER_OBJECT)))
        )

    async def metrics_detailed(request: Request) -> Response:
        params = request.query_params
        asked = detailed.parse(
            params.getlist("family"), params.getlist("vhost"), list(state.broker.vhosts)
        )
        extra = list(telemetry.families(DETAILED))

        async def scrape() -> bytes:
            rows = await read_broker(
                state,
                queues=asked.queues,
                channels=asked.channels,
                exchanges=asked.exchanges,
                global_stats=False,
            )
            return await render(lambda: [*detailed.families(asked, rows), *extra])

        return await answer(DETAILED, scrape)

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/metrics/per-object", metrics_per_object, methods=["GET"]),
            Route("/metrics/detailed", metrics_detailed, methods=["GET"]),
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
