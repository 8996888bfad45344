"""The AMQP handshake, server side: protocol header, Start/Start-Ok (the login), Tune/Tune-Ok
(the limits) and Open (the vhost), with RabbitMQ's refusals.

It runs before the connection's tasks start and sends directly. Which method may come when is
the connection state machine's (trimq/amqp/state.py); the checks of the login, the limits and
the vhost are here, so that connection.py is the running connection's I/O only.
"""

from __future__ import annotations

import ipaddress
import platform
import socket
import struct
from typing import TYPE_CHECKING, Any

import structlog

from trimq import __version__
from trimq.amqp import frames, spec
from trimq.amqp.codec import decode_table
from trimq.amqp.state import ConnectionEvent
from trimq.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_ALLOWED,
    SYNTAX_ERROR,
    AMQPError,
    ConnectionError,
    reply_text,
)
from trimq.server.tls_peer import login_name

if TYPE_CHECKING:
    from trimq.broker.auth import User
    from trimq.server.connection import ServerConnection

log = structlog.get_logger("trimq.connection")

CAPABILITIES = (
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
)


# every mechanism trimq knows, in the order RabbitMQ lists them in Connection.Start
MECHANISMS = ("EXTERNAL", "AMQPLAIN", "PLAIN")


class PeerGone(Exception):
    """The client closed or reset the socket."""


def _text(value: Any) -> str | None:
    """An AMQPLAIN field as text (a string or byte array), else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return None


def is_loopback(host: str) -> bool:
    """RabbitMQ's rule for loopback_users: 127.0.0.0/8, ::1, and 127.x mapped into IPv6
    (::ffff:127.0.0.1, as a dual-stack socket reports an IPv4 peer)."""
    try:
        address = ipaddress.ip_address(host.split("%", maxsplit=1)[0])
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def server_properties() -> dict[str, Any]:
    return {
        "product": "trimq",
        "version": __version__,
        "platform": f"Python {platform.python_version()} / trio",
        "cluster_name": f"trimq@{socket.gethostname()}",
        "copyright": "trimq contributors",
        "information": "Licensed under the MIT licence",
        "capabilities": dict.fromkeys(CAPABILITIES, True),
    }


async def next_method(conn: ServerConnection) -> Any:
    """The method the handshake waits for; a Connection.Close is answered and ends it."""
    proto = conn.proto
    while True:
        frame = conn.frames.next_frame()
        if frame is None:
            await conn.receive()
            continue
        method = proto.handshake_method(frame)
        if method is None:
            continue
        if type(method) is spec.ConnectionClose:
            await conn.send_now(frames.method_frame(0, spec.ConnectionCloseOk()))
            proto.event(ConnectionEvent.CLIENT_CLOSE)
            raise PeerGone
        return method


async def handshake(conn: ServerConnection) -> bool:
    """From the protocol header to Open-Ok; False when the connection is refused without an
    error to report (a wrong protocol header, a refused login)."""
    proto = conn.proto
    while (header := conn.frames.take(8)) is None:
        await conn.receive()
    if header != spec.PROTOCOL_HEADER:
        log.info("connection.bad_protocol_header", peer=conn.peer, header=repr(header))
        await conn.send_now(spec.PROTOCOL_HEADER)
        return False
    offered = " ".join(mechanisms(conn)).encode()
    await conn.send_now(
        frames.method_frame(0, spec.ConnectionStart(0, 9, server_properties(), offered, b"en_US"))
    )
    proto.event(ConnectionEvent.PROTOCOL_HEADER)
    start_ok: spec.ConnectionStartOk = await next_method(conn)
    conn.client_properties = start_ok.client_properties
    conn.auth_mechanism = start_ok.mechanism
    if not await authenticate(conn, start_ok):
        return False
    await conn.send_now(
        frames.method_frame(
            0, spec.ConnectionTune(conn.channel_max, conn.frame_max, conn.heartbeat)
        )
    )
    proto.event(ConnectionEvent.LOGIN)
    tune_ok: spec.ConnectionTuneOk = await next_method(conn)
    apply_tune(conn, tune_ok)
    proto.event(ConnectionEvent.TUNE_OK)
    open_: spec.ConnectionOpen = await next_method(conn)
    vhost = conn.broker.vhosts.get(open_.virtual_host)
    if vhost is None:
        raise ConnectionError(
            NOT_ALLOWED,
            f"vhost {open_.virtual_host} not found",
            open_.CLASS_ID,
            open_.METHOD_ID,
        )
    vhost_limit = vhost.connection_limit_reached()  # as RabbitMQ, before permissions
    if vhost_limit is not None:
        raise ConnectionError(
            NOT_ALLOWED,
            f"access to vhost '{vhost.name}' refused for user "
            f"'{conn.username}': connection limit ({vhost_limit}) is reached",
            open_.CLASS_ID,
            open_.METHOD_ID,
        )
    if conn.broker.users.permission(vhost.name, conn.username) is None:
        log.warning(
            "connection.vhost_refused", peer=conn.peer, user=conn.username, vhost=vhost.name
        )
        raise ConnectionError(
            NOT_ALLOWED,
            f"access to vhost '{vhost.name}' refused for user '{conn.username}'",
            open_.CLASS_ID,
            open_.METHOD_ID,
        )
    limit = conn.broker.config.connection_max
    if limit and conn.resources.connections >= limit:
        log.warning("connection.limit_reached", peer=conn.peer, limit=limit)
        raise ConnectionError(
            NOT_ALLOWED,
            f"connection refused: node connection limit ({limit}) is reached",
            open_.CLASS_ID,
            open_.METHOD_ID,
        )
    conn.vhost = vhost
    vhost.connections += 1  # counted at once: no other handshake can pass the check first
    await conn.send_now(frames.method_frame(0, spec.ConnectionOpenOk("")))
    proto.event(ConnectionEvent.OPEN)
    return True


def mechanisms(conn: ServerConnection) -> list[str]:
    """The configured mechanisms this connection is offered, in RabbitMQ's order. As
    RabbitMQ, EXTERNAL is offered on every TLS connection (one without a client certificate
    is refused when it tries, with a clearer reason than a failed negotiation) and never on
    the plain listener."""
    configured = conn.broker.config.auth_mechanisms
    return [
        name
        for name in MECHANISMS
        if name in configured and (name != "EXTERNAL" or conn.tls is not None)
    ]


def credentials(
    start_ok: spec.ConnectionStartOk, offered: list[str] | None = None
) -> tuple[str, str | None]:
    """The user name and password (None: not a string, so refused). A response that does
    not parse closes the connection without a frame, as RabbitMQ; the error names
    neither the response nor any of its octets (it holds the password)."""
    mechanism = start_ok.mechanism
    response = start_ok.response
    if offered is not None and mechanism in MECHANISMS and mechanism not in offered:
        raise ConnectionError(
            COMMAND_INVALID,
            f"invalid authentication mechanism '{mechanism}'",
            start_ok.CLASS_ID,
            start_ok.METHOD_ID,
        )
    if mechanism == "PLAIN":
        # As RabbitMQ: NUL, user name, NUL, password; no authorisation identity.
        parts = response.split(b"\x00")
        if len(parts) != 3 or parts[0]:
            raise ConnectionError(SYNTAX_ERROR, "PLAIN response is malformed")
        return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
    if mechanism == "AMQPLAIN":
        # A field table without its length prefix, as py-amqp and RabbitMQ have it.
        try:
            table, _ = decode_table(len(response).to_bytes(4, "big") + response, 0)
        except (AMQPError, struct.error, IndexError, ValueError, OverflowError):
            raise ConnectionError(SYNTAX_ERROR, "AMQPLAIN response is malformed") from None
        if "LOGIN" not in table or "PASSWORD" not in table:
            raise ConnectionError(SYNTAX_ERROR, "AMQPLAIN response is missing LOGIN or PASSWORD")
        login, password = _text(table["LOGIN"]), _text(table["PASSWORD"])
        if login is None or password is None:  # not strings: refused, as RabbitMQ
            return login or "", None
        return login, password
    raise ConnectionError(
        COMMAND_INVALID,
        f"unknown authentication mechanism '{mechanism}'",
        start_ok.CLASS_ID,
        start_ok.METHOD_ID,
    )


async def authenticate(conn: ServerConnection, start_ok: spec.ConnectionStartOk) -> bool:
    """Check the credentials; a refused login gets RabbitMQ's 403 Connection.Close (if the
    client has the authentication_failure_close capability) and the socket is kept up
    to 3 s for its Close-Ok (`serve`), as RabbitMQ does."""
    if start_ok.mechanism == "EXTERNAL":
        user, name, reason = external_user(conn, start_ok)
    else:
        name, password = credentials(start_ok, mechanisms(conn))
        user = conn.broker.users.authenticate(name, password) if password is not None else None
        reason = "invalid credentials"
    if (
        user is not None
        and name in conn.broker.config.loopback_users
        and not (is_loopback(conn.peer[0]))
    ):
        log.warning(
            "connection.auth_failed",
            peer=conn.peer,
            user=name,
            mechanism=start_ok.mechanism,
            reason=f"user '{name}' can only connect via localhost",
        )
        user = None
    elif user is None:
        log.warning(
            "connection.auth_failed",
            peer=conn.peer,
            user=name,
            mechanism=start_ok.mechanism,
            reason=reason,
        )
    conn.broker.totals.count_login("amqp091", user is not None)
    if user is not None:
        conn.username = user.name
        conn.authenticated()
        return True
    if conn.capability("authentication_failure_close"):
        text = reply_text(
            ACCESS_REFUSED,
            f"Login was refused using authentication mechanism {start_ok.mechanism}. "
            "For details see the broker logfile.",
        )
        await conn.send_now(
            frames.method_frame(0, spec.ConnectionClose(ACCESS_REFUSED, text, 0, 0))
        )
    conn.proto.event(ConnectionEvent.REFUSE)
    return False


def external_user(
    conn: ServerConnection, start_ok: spec.ConnectionStartOk
) -> tuple[User | None, str, str]:
    """EXTERNAL: the user named by the verified client certificate, which must exist (no
    password is checked); (user, name, why it is refused)."""
    if "EXTERNAL" not in mechanisms(conn):
        credentials(start_ok, mechanisms(conn))  # raises: not offered here
    name = login_name(conn.tls, conn.broker.config.ssl_cert_login_from)
    if name is None:
        return None, "", "connection peer presented no TLS (x.509) certificate"
    user = conn.broker.users.users.get(name)
    return user, name, f"user '{name}' - invalid credentials"


def apply_tune(conn: ServerConnection, tune_ok: spec.ConnectionTuneOk) -> None:
    config = conn.broker.config
    frame_max = tune_ok.frame_max or config.frame_max
    if frame_max < spec.FRAME_MIN_SIZE:
        raise ConnectionError(
            NOT_ALLOWED, f"frame_max={frame_max} < {spec.FRAME_MIN_SIZE} min size"
        )
    if frame_max > config.frame_max:
        raise ConnectionError(NOT_ALLOWED, f"frame_max={frame_max} > {config.frame_max} max size")
    channel_max = tune_ok.channel_max or config.channel_max
    if channel_max > config.channel_max:
        raise ConnectionError(
            NOT_ALLOWED, f"channel_max={channel_max} > {config.channel_max} max size"
        )
    conn.frame_max = frame_max
    conn.frames.frame_max = frame_max
    conn.proto.channel_max = channel_max
    conn.heartbeat = tune_ok.heartbeat
