"""The management web UI: the static files of trimq/management/static, served at `/`.

The files are read once, when the application is built, and answered from memory: a request
never touches the disk or a worker thread. The headers allow scripts, styles and requests from
this origin only and forbid framing; the pages themselves put every value into the DOM as text.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC = Path(__file__).with_name("static")

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def load(directory: Path = STATIC) -> dict[str, tuple[bytes, str]]:
    """Each servable file of `directory` by name: its bytes and media type."""
    return {
        path.name: (path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in sorted(directory.iterdir())
        if path.suffix in MEDIA_TYPES and path.is_file()
    }


def routes(directory: Path = STATIC) -> list[BaseRoute]:
    """`/` answers index.html and `/static/NAME` the other files (GET and HEAD)."""
    files = load(directory)

    def answer(name: str) -> Response:
        found = files.get(name)
        if found is None:
            raise HTTPException(404)
        body, media_type = found
        return Response(body, media_type=media_type, headers=HEADERS)

    async def index(request: Request) -> Response:
        return answer("index.html")

    async def asset(request: Request) -> Response:
        return answer(request.path_params["name"])

    return [
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", asset, methods=["GET"]),
    ]
