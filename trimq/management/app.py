"""The management application: the routes of every API family in api/, the web UI's static
files (ui.py), RabbitMQ's error answers, and the listener task trimq-server runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trimq.management import api, ui
from trimq.management.errors import ApiError, api_error_response, http_error_response
from trimq.management.listener import serve_asgi
from trimq.server.state import ServerState

log = structlog.get_logger("trimq.management")


class RawPathRouting:
    """Route on the path as sent, still percent-encoded, so that `%2F` (the vhost `/`) stays
    inside one segment; endpoints decode their parameters (routes.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw:
            scope = dict(scope, path=raw.split(b"?", 1)[0].decode("latin-1"))
        await self.app(scope, receive, send)


# What is read and dropped of a body the application left unread, at most.
DRAIN_BYTES = 64 * 2**20
DRAIN_SECONDS = 30.0


class DrainUnreadBody:
    """A client still sending a body that is answered early (over the size limit, or an
    error found before the body was read) blocks on its send and never reads the answer if
    the server stops reading, and hypercorn closes a connection whose answer is complete
    while its request is not: read the rest and drop it before the answer goes out, as
    RabbitMQ does, up to a limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        finished = False

        async def watched() -> Message:
            nonlocal finished
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                finished = True
            return message

        async def drained_first(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.start" and not finished:
                finished = True
                dropped = 0
                with trio.move_on_after(DRAIN_SECONDS):
                    while dropped < DRAIN_BYTES:
                        rest = await receive()
                        if rest["type"] != "http.request" or not rest.get("more_body", False):
                            break
                        dropped += len(rest.get("body", b""))
            await send(message)

        await self.app(scope, watched, drained_first)


def internal_error(request: Request, exc: Exception) -> Response:
    log.error(
        "management.request_failed",
        method=request.method,
        path=request.url.path,
        error=str(exc),
        error_type=type(exc).__name__,
        exc_info=exc,
    )
    return JSONResponse({"error": "internal_server_error", "reason": type(exc).__name__}, 500)


def build_app(state: ServerState) -> ASGIApp:
    app = Starlette(
        routes=[*api.routes(), *ui.routes()],  # the API first: it keeps its paths
        exception_handlers={
            ApiError: api_error_response,
            HTTPException: http_error_response,
            Exception: internal_error,
        },
    )
    app.state.server = state
    app.state.overview_cache = {}  # api/overview.py: sums reused until the next rate sample
    return DrainUnreadBody(RawPathRouting(app))


async def serve_management(
    state: ServerState,
    host: str | None,
    port: int,
    *,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The `[management]` listener, a service of trimq/server/app.py's serve(); HTTPS
    when `certfile` and `keyfile` are given."""
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            lambda task_status: serve_asgi(
                build_app(state),
                host,
                port,
                name="management",
                certfile=certfile,
                keyfile=keyfile,
                task_status=task_status,
            )
        )
        task_status.started([("https" if certfile else "http", h, p) for h, p in bound])
