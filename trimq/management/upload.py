"""A file uploaded with a multipart/form-data POST, as RabbitMQ's web UI sends a definitions
file: the named part's bytes and the form's other text fields, parsed by Starlette's multipart
parser (python-multipart) from a body already read under the size limit."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from trimq.management.errors import ApiError

# a form that needs more parts than this is not one the UI or curl -F sends
MAX_PARTS = 32


@dataclass
class Upload:
    """The chosen part's content (None if the form has no part of that name) and the text
    fields by name (the last part of a name wins, as in RabbitMQ)."""

    content: bytes | None
    fields: dict[str, str] = field(default_factory=dict)


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def parse_upload(headers: Headers, body: bytes, name: str, max_size: int) -> Upload:
    """The part `name` of the multipart `body` (a file or a plain field); a body that is not
    multipart data is refused with RabbitMQ's empty 400."""
    parser = MultiPartParser(
        headers, _once(body), max_files=MAX_PARTS, max_fields=MAX_PARTS, max_part_size=max_size
    )
    try:
        form = await parser.parse()
    except MultiPartException:
        raise ApiError(400, "", "") from None
    try:
        content: bytes | None = None
        fields: dict[str, str] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key == name:
                    content = await value.read()
            elif key == name:
                content = value.encode()
            else:
                fields[key] = value
        return Upload(content, fields)
    finally:
        await form.close()


def same_origin(headers: Headers) -> bool:
    """False when a browser says the form comes from a page of another site (its Origin
    header names another host than the request's): such a page may not use the credentials
    the browser keeps for this one. curl and other clients send no Origin."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def safe_redirect(target: str | None) -> str | None:
    """The form's `redirect` target if it is a path on this server (RabbitMQ's UI sends
    `../../#/`), else None: no other site, no header-breaking characters."""
    if not target or not target.isascii() or not target.isprintable():
        return None
    if "\\" in target or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
