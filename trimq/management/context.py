"""What an endpoint gets: the request, the server's state, the authenticated user, the decoded
path parameters, and helpers to read the body and to decide what the user may see."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request

from trimq.broker.auth import User
from trimq.broker.broker import Broker
from trimq.broker.vhost import VHost
from trimq.management.auth import MONITORING, has_level
from trimq.management.errors import ApiError, bad_request, not_authorised, not_found
from trimq.server.state import ServerState

# RabbitMQ's management.http.max_body_size default
MAX_BODY_SIZE = 20_000_000


def body_too_large() -> ApiError:
    return ApiError(400, "bad_request", "Exceeded HTTP request body size limit")


def decode_segment(raw: str) -> str:
    """A path segment as routed (still percent-encoded: `%2F` is the vhost `/`), decoded."""
    return unquote(raw, errors="strict")


@dataclass
class Context:
    request: Request
    state: ServerState
    user: User
    params: dict[str, str]

    @property
    def broker(self) -> Broker:
        return self.state.broker

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def vhost(self, name: str | None = None) -> VHost:
        """The vhost named by the path (parameter `vhost`), or 404."""
        vhost = self.broker.vhosts.get(self.params["vhost"] if name is None else name)
        if vhost is None:
            raise not_found()
        return vhost

    def sees_all_vhosts(self) -> bool:
        return has_level(self.user, MONITORING)

    def may_see(self, vhost: str) -> bool:
        """monitoring and administrator users see every vhost; others the ones they have
        permissions in."""
        return (
            self.sees_all_vhosts()
            or self.broker.users.permission(vhost, self.user.name) is not None
        )

    def accessible_vhost(self, reason: str = "User not authorised to access virtual host") -> VHost:
        """The path's vhost (404 if there is none) if the user may see it, else 401."""
        vhost = self.vhost()
        if not self.may_see(vhost.name):
            raise not_authorised(reason)
        return vhost

    def visible_vhosts(self) -> list[VHost]:
        return [v for name, v in self.broker.vhosts.items() if self.may_see(name)]

    async def body(self) -> bytes:
        """The request body, refused beyond MAX_BODY_SIZE with RabbitMQ's 400 (its
        management.http.max_body_size, 20 MB by default)."""
        declared = self.request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_SIZE:
            raise body_too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.request.stream():
            size += len(chunk)
            if size > MAX_BODY_SIZE:
                raise body_too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    async def json(self) -> dict[str, Any]:
        """The body as a JSON object ({} when empty), else 400 not_json."""
        raw = await self.body()
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("not_json") from None
        if not isinstance(value, dict):
            raise bad_request("not_json")
        return value


def as_bool(value: Any, default: bool = False) -> bool:
    """A boolean as JSON sends it, or as rabbitmqadmin does ("true", "false")."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"{value!r} is not a boolean")


def as_int(value: Any, what: str) -> int:
    """An integer as JSON sends it, or as rabbitmqadmin does ("10")."""
    if isinstance(value, bool):
        raise bad_request(f"{what}: {value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise bad_request(f"{what}: {value!r} is not an integer")
