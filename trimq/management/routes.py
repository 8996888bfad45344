"""How an API family declares its endpoints: `route(path, GET=handler, PUT=handler, ...)`,
each handler marked with the tag level it needs by `@endpoint(level)`.

The route authenticates the request for the method's level, decodes the path parameters,
answers a change only once the log has it on disk, and turns what the handler returns into a
JSON answer (a Response is sent as it is)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trimq.management.auth import MANAGEMENT, authenticate
from trimq.management.context import MAX_BODY_SIZE, Context, body_too_large, decode_segment
from trimq.management.errors import ApiError, not_found
from trimq.management.upload import same_origin
from trimq.server.state import ServerState

Handler = Callable[[Context], Awaitable[Any]]

NO_CACHE = {"cache-control": "no-cache"}


class Endpoint:
    """A handler and the tag level it needs."""

    def __init__(self, handler: Handler, level: str) -> None:
        self.handler = handler
        self.level = level


def endpoint(level: str = MANAGEMENT) -> Callable[[Handler], Endpoint]:
    def mark(handler: Handler) -> Endpoint:
        return Endpoint(handler, level)

    return mark


def no_content() -> Response:
    return Response(status_code=204)


def created() -> Response:
    return Response(status_code=201)


def route(path: str, **methods: Endpoint) -> Route:
    """A Starlette route serving `methods` (GET, PUT, POST, DELETE) at `path`."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        chosen = methods[method]
        state: ServerState = request.app.state.server
        user = authenticate(
            state.broker,
            request.headers.get("authorization"),
            request.client.host if request.client else None,
            chosen.level,
        )
        if method != "GET" and not same_origin(request.headers):
            # a page of another site may not use the credentials a browser keeps for this one
            raise ApiError(403, "forbidden", "cross-origin request refused")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_SIZE:
            raise body_too_large()  # before anything else, as RabbitMQ
        try:
            params = {k: decode_segment(v) for k, v in request.path_params.items()}
        except UnicodeDecodeError:
            raise not_found() from None
        result = await chosen.handler(Context(request, state, user, params))
        wal = state.wal
        if method != "GET" and wal is not None and wal.last_lsn > wal.durable_lsn:
            # what the request changed (a user, a vhost, a policy...) is on disk before the
            # answer, as a durable declaration's -Ok on AMQP: a 201 or 204 survives a crash
            await wal.wait_durable(wal.last_lsn)
        if isinstance(result, Response):
            return result
        return JSONResponse(result, headers=NO_CACHE)

    return Route(path, dispatch, methods=list(methods))
