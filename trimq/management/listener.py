"""Serve an ASGI application with hypercorn's trio worker inside the broker's nursery.

Used by the management API and by the Prometheus endpoint alike. The sockets are bound here,
not by hypercorn, so that port 0 (any free port) gives one port for IPv4 and IPv6 and the
caller learns it before the first request.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

log = structlog.get_logger("trimq.management")

BACKLOG = 128


def _listening_socket(family: socket.AddressFamily, address: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_sockets(host: str | None, port: int) -> list[socket.socket]:
    """Listening sockets on `host` (None: every interface, IPv4 and IPv6, as the AMQP
    listener) and `port` (0: a free port, the same for every socket)."""
    if host not in (None, "", "*"):
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return [_listening_socket(family, address)]
    sockets = [_listening_socket(socket.AF_INET, ("0.0.0.0", port))]
    chosen = sockets[0].getsockname()[1]
    if socket.has_ipv6:
        try:
            sockets.append(_listening_socket(socket.AF_INET6, ("::", chosen)))
        except OSError as exc:
            log.info("http.ipv6_unavailable", port=chosen, error=str(exc))
    return sockets


def _config() -> Config:
    config = Config()
    config.accesslog = None
    config.errorlog = None  # the application logs its own failures (trimq/management/app.py)
    config.graceful_timeout = 1.0
    return config


async def serve_asgi(
    app: Callable[..., Any],
    host: str | None,
    port: int,
    *,
    name: str,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `host`:`port` until cancelled (over HTTPS with `certfile` and
    `keyfile`); reports the bound addresses when it listens, and logs them as
    `<name>.listening`."""
    config = _config()
    if certfile is not None:
        config.certfile, config.keyfile = str(certfile), str(keyfile or certfile)
        config.create_ssl_context()  # a bad file fails here, before any socket is bound
    sockets = bind_sockets(host, port)
    addresses = [(s.getsockname()[0], s.getsockname()[1]) for s in sockets]
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                worker_serve,
                wrapped,
                config,
                sockets=Sockets(sockets, [], []) if certfile else Sockets([], sockets, []),
            )
        )
        log.info(f"{name}.listening", addresses=[f"{h}:{p}" for h, p in addresses])
        task_status.started(addresses)
