"""/api/definitions[/{vhost}] (administrators): export and import with the code trimqctl's
export_definitions / import_definitions run (trimq/broker/definitions.py)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

from trimq.broker.broker import AdminError
from trimq.broker.definitions import (
    export_definitions,
    export_vhost_definitions,
    import_definitions,
    import_vhost_definitions,
)
from trimq.management.auth import ADMINISTRATOR
from trimq.management.context import Context
from trimq.management.errors import ApiError, bad_request
from trimq.management.routes import NO_CACHE, endpoint, no_content, route


def _download(ctx: Context, doc: dict[str, Any]) -> Response:
    """The document, as a file to save when `?download=NAME` asks for one (the web UI)."""
    headers = dict(NO_CACHE)
    name = ctx.query("download")
    if name:
        safe = "".join(c for c in name if c.isalnum() or c in "._-") or "definitions.json"
        headers["content-disposition"] = f'attachment; filename="{safe}"'
    return JSONResponse(doc, headers=headers)


async def _document(ctx: Context) -> dict[str, Any]:
    try:
        doc = json.loads(await ctx.body())
    except (ValueError, UnicodeDecodeError):
        raise bad_request("failed_to_parse_json") from None
    if not isinstance(doc, dict):
        raise bad_request("failed_to_parse_json")
    return doc


@endpoint(ADMINISTRATOR)
async def get_definitions(ctx: Context) -> Response:
    return _download(ctx, export_definitions(ctx.broker))


@endpoint(ADMINISTRATOR)
async def post_definitions(ctx: Context) -> Response:
    doc = await _document(ctx)
    try:
        import_definitions(ctx.broker, doc)
    except AdminError as exc:
        raise bad_request(exc.message) from None
    return no_content()


@endpoint(ADMINISTRATOR)
async def get_vhost_definitions(ctx: Context) -> Response:
    return _download(ctx, export_vhost_definitions(ctx.broker, ctx.vhost().name))


@endpoint(ADMINISTRATOR)
async def post_vhost_definitions(ctx: Context) -> Response:
    name = ctx.params["vhost"]
    if name not in ctx.broker.vhosts:
        raise ApiError(404, "not_found", "vhost_not_found")
    doc = await _document(ctx)
    try:
        import_vhost_definitions(ctx.broker, name, doc)
    except AdminError as exc:
        raise bad_request(exc.message) from None
    return no_content()


ROUTES = [
    route("/api/definitions", GET=get_definitions, POST=post_definitions),
    route("/api/definitions/{vhost}", GET=get_vhost_definitions, POST=post_vhost_definitions),
]
