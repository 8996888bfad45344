"""RabbitMQ's error answers: JSON bodies {"error", "reason"} with its status codes and texts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

REALM = 'Basic realm="RabbitMQ Management"'


class ApiError(Exception):
    """Answer the request with `status` and {"error": error, "reason": reason}."""

    def __init__(
        self, status: int, error: str, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers or {}

    def response(self) -> Response:
        if not self.error:  # no credentials at all: RabbitMQ sends no body
            return Response(status_code=self.status, headers=self.headers)
        return JSONResponse(
            {"error": self.error, "reason": self.reason}, self.status, headers=self.headers
        )


def bad_request(reason: str) -> ApiError:
    return ApiError(400, "bad_request", reason)


def not_found() -> ApiError:
    return ApiError(404, "Object Not Found", "Not Found")


def not_authorised(reason: str) -> ApiError:
    """A known user without the tag an endpoint needs (RabbitMQ's British spelling)."""
    return ApiError(401, "not_authorised", reason)


def api_error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


def http_error_response(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (no such method on a route), as RabbitMQ sends
    them: 404 with its JSON body, 405 with an empty body and Allow."""
    status = getattr(exc, "status_code", 500)
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 404:
        return not_found().response()
    if status == 405:
        allow = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
        headers["Allow"] = ", ".join(sorted({*allow, "HEAD", "OPTIONS"} - {""}))
        return Response(status_code=405, headers=headers)
    return ApiError(status, "bad_request", str(getattr(exc, "detail", ""))).response()
