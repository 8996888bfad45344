"""/api/definitions[/{vhost}] (administrators): export and import with the code trimqctl's
export_definitions / import_definitions run (trimq/broker/definitions.py). Import takes the
document as a JSON body or as the `file` of a multipart/form-data upload, as RabbitMQ does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response

from trimq.admin_errors import AdminError
from trimq.broker.definitions import (
    export_definitions,
    export_vhost_definitions,
    import_definitions,
    import_vhost_definitions,
)
from trimq.management.auth import ADMINISTRATOR
from trimq.management.context import MAX_BODY_SIZE, Context
from trimq.management.errors import ApiError, bad_request
from trimq.management.routes import NO_CACHE, endpoint, no_content, route
from trimq.management.upload import parse_upload, safe_redirect, same_origin


def _download(ctx: Context, doc: dict[str, Any]) -> Response:
    """The document, as a file to save when `?download=NAME` asks for one (the web UI)."""
    headers = dict(NO_CACHE)
    name = ctx.query("download")
    if name:
        safe = "".join(c for c in name if c.isalnum() or c in "._-") or "definitions.json"
        headers["content-disposition"] = f'attachment; filename="{safe}"'
    return JSONResponse(doc, headers=headers)


@dataclass
class _Import:
    doc: dict[str, Any]
    redirect: str | None = None


async def _import_request(ctx: Context) -> _Import:
    """The document to import: the JSON body, or the `file` part of a multipart/form-data
    upload (RabbitMQ's web UI and `curl -F file=@defs.json`) with its optional `redirect`.
    Any other media type is refused with RabbitMQ's empty 415; an empty document is {}."""
    media = ctx.request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in ("application/json", "multipart/form-data"):
        raise ApiError(415, "", "")
    raw: bytes | None = await ctx.body()
    redirect = None
    if media == "multipart/form-data":
        if not same_origin(ctx.request.headers):
            raise ApiError(403, "forbidden", "cross-origin form upload refused")
        upload = await parse_upload(ctx.request.headers, raw or b"", "file", MAX_BODY_SIZE)
        raw, redirect = upload.content, safe_redirect(upload.fields.get("redirect"))
    if raw is None:
        raise bad_request("failed_to_parse_json")
    if not raw.strip():
        return _Import({}, redirect)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("failed_to_parse_json") from None
    if not isinstance(doc, dict):
        raise bad_request("failed_to_parse_json")
    return _Import(doc, redirect)


def _imported(request: _Import) -> Response:
    """204, or 303 to the form's `redirect` (where RabbitMQ's form sends the browser back)."""
    if request.redirect is not None:
        return Response(status_code=303, headers={"location": request.redirect})
    return no_content()


@endpoint(ADMINISTRATOR)
async def get_definitions(ctx: Context) -> Response:
    return _download(ctx, export_definitions(ctx.broker))


@endpoint(ADMINISTRATOR)
async def post_definitions(ctx: Context) -> Response:
    request = await _import_request(ctx)
    try:
        import_definitions(ctx.broker, request.doc)
    except AdminError as exc:
        raise bad_request(exc.message) from None
    return _imported(request)


@endpoint(ADMINISTRATOR)
async def get_vhost_definitions(ctx: Context) -> Response:
    return _download(ctx, export_vhost_definitions(ctx.broker, ctx.vhost().name))


@endpoint(ADMINISTRATOR)
async def post_vhost_definitions(ctx: Context) -> Response:
    request = await _import_request(ctx)  # RabbitMQ reads the document before the vhost
    name = ctx.params["vhost"]
    if name not in ctx.broker.vhosts:
        raise ApiError(404, "not_found", "vhost_not_found")
    try:
        import_vhost_definitions(ctx.broker, name, request.doc)
    except AdminError as exc:
        raise bad_request(exc.message) from None
    return _imported(request)


ROUTES = [
    route("/api/definitions", GET=get_definitions, POST=post_definitions),
    route("/api/definitions/{vhost}", GET=get_vhost_definitions, POST=post_vhost_definitions),
]
