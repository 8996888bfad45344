"""The management API as tests call it: requests with basic auth and the path's
segments percent-encoded (`%2F` for the vhost `/`), and throwaway users and vhosts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import requests

TIMEOUT = 10.0


class Api:
    def __init__(self, base: str, user: str = "guest", password: str = "guest") -> None:
        self.base = base.rstrip("/")
        self.auth = (user, password)

    def as_user(self, user: str, password: str) -> Api:
        return Api(self.base, user, password)

    def url(self, *segments: str) -> str:
        return self.base + "/api/" + "/".join(quote(s, safe="") for s in segments)

    def request(self, method: str, *segments: str, **kwargs: Any) -> requests.Response:
        # a connection per request: a kept-alive one may be closed by the server (RabbitMQ's
        # does so after 100 requests) just as the next request goes out
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("auth", self.auth)
        return requests.request(method, self.url(*segments), **kwargs)

    def get(self, *segments: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", *segments, **kwargs)

    def put(self, *segments: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", *segments, **kwargs)

    def post(self, *segments: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", *segments, **kwargs)

    def delete(self, *segments: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", *segments, **kwargs)


@contextmanager
def temp_user(api: Api, name: str, password: str = "secret", tags: str = "") -> Iterator[Api]:
    """A user (tags as a comma-separated string), deleted afterwards; yields its own Api."""
    answer = api.put("users", name, json={"password": password, "tags": tags})
    assert answer.status_code == 201, answer.text
    try:
        yield api.as_user(name, password)
    finally:
        api.delete("users", name)


@contextmanager
def temp_vhost(api: Api, name: str) -> Iterator[str]:
    answer = api.put("vhosts", name)
    assert answer.status_code == 201, answer.text
    try:
        yield name
    finally:
        api.delete("vhosts", name)
