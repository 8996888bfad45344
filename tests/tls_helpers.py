"""TLS for the tests: certificates made with trustme at test time, a trimq-server with a
`[tls]` listener, client contexts, and a raw look at the login step (Connection.Start's
mechanisms and the answer to Start-Ok) that no client library shows."""

from __future__ import annotations

import socket
import ssl
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from conftest import Broker, free_port, start_server
from pika import spec

# the file names a certificate directory holds (tests/tls_helpers.make_certs writes them; a
# RabbitMQ node checked with TRIMQ_TEST_TLS_CERTS uses the same directory)
CLIENTS = ("guest", "nobody", "other")  # CN guest; CN nobody; CN guest from another CA


def make_certs(directory: Path, ca: trustme.CA | None = None) -> trustme.CA:
    """ca.pem, server_cert.pem/server_key.pem (localhost, 127.0.0.1) and the CLIENTS'
    NAME_cert.pem/NAME_key.pem in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = ca or trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.private_key_pem.write_to_path(str(directory / "server_key.pem"))
    server.cert_chain_pems[0].write_to_path(str(directory / "server_cert.pem"))
    other_ca = trustme.CA()
    for name, issuer, common_name in (
        ("guest", ca, "guest"),
        ("nobody", ca, "nobody"),
        ("other", other_ca, "guest"),
    ):
        cert = issuer.issue_cert(f"{name}@example.com", common_name=common_name)
        cert.private_key_pem.write_to_path(str(directory / f"{name}_key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(directory / f"{name}_cert.pem"))
    return ca


@dataclass
class TLSBroker:
    host: str
    port: int  # AMQPS
    plain_port: int
    certs: Path
    server: Broker | None = None  # None: a broker this test run did not start


def tls_config(certs: Path, port: int, **extra: Any) -> str:
    """A trimq.toml with a `[tls]` listener on `port` using the files in `certs`."""
    tls = {
        "port": port,
        "certfile": str(certs / "server_cert.pem"),
        "keyfile": str(certs / "server_key.pem"),
        "cacertfile": str(certs / "ca.pem"),
        "verify": "verify_peer",
        "fail_if_no_peer_cert": False,
    }
    auth = {"mechanisms": ["PLAIN", "AMQPLAIN", "EXTERNAL"], "ssl_cert_login_from": "common_name"}
    sections: dict[str, dict[str, Any]] = {"tls": tls, "auth": auth}
    for key, value in extra.items():
        section, _, name = key.partition("__")
        sections.setdefault(section, {})[name] = value
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for name, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{name} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                lines.append(f"{name} = {value}")
            elif isinstance(value, list):
                lines.append(f"{name} = [{', '.join(repr(v) for v in value)}]")
            else:
                lines.append(f"{name} = {value!r}".replace("'", '"'))
    return "\n".join(lines) + "\n"


def start_tls_server(
    tmp: Path, certs: Path, *extra_args: str, log_path: Path | None = None, **config: Any
) -> TLSBroker:
    """A trimq-server with a plain and a TLS listener (config keys as section__name)."""
    port = free_port()
    (tmp / "trimq.toml").write_text(tls_config(certs, port, **config))
    server = start_server(
        tmp / "data",
        "--config",
        str(tmp / "trimq.toml"),
        *extra_args,
        port=free_port(),
        log_path=log_path,
    )
    return TLSBroker("127.0.0.1", port, server.port, certs, server)


def client_context(
    certs: Path,
    client: str | None = None,
    version: ssl.TLSVersion | None = None,
    ca: str = "ca.pem",
) -> ssl.SSLContext:
    """A client context trusting `certs`'s CA, presenting `client`'s certificate if given,
    and limited to `version` if given."""
    context = ssl.create_default_context(cafile=str(certs / ca))
    if client is not None:
        context.load_cert_chain(certs / f"{client}_cert.pem", certs / f"{client}_key.pem")
    if version is not None:
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: tests ask for it anyway
            warnings.simplefilter("ignore", DeprecationWarning)
            if version < ssl.TLSVersion.TLSv1_2:
                context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client ask for it
            context.minimum_version = context.maximum_version = version
    return context


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


def _read_method(sock: socket.socket) -> Any:
    _, _, size = struct.unpack(">BHI", _read_exact(sock, 7))
    payload = _read_exact(sock, size)
    _read_exact(sock, 1)
    class_id, method_id = struct.unpack(">HH", payload[:4])
    method = spec.methods[(class_id << 16) | method_id]()
    method.decode(payload, 4)
    return method


def send_method(sock: socket.socket, channel: int, method: Any) -> None:
    payload = struct.pack(">HH", method.INDEX >> 16, method.INDEX & 0xFFFF)
    payload += b"".join(method.encode())
    sock.sendall(struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce")


def read_method(sock: socket.socket) -> Any:
    """The next method frame's method (heartbeats and content frames are not expected)."""
    return _read_method(sock)


def login_attempt(
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    mechanism: str,
    response: bytes = b"",
) -> tuple[str, Any]:
    """Connect (over TLS with `context`), send the header and a Start-Ok with `mechanism`:
    (the mechanisms offered, the method answered, or None if the socket was closed)."""
    sock = socket.create_connection((host, port), timeout=10)
    try:
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="localhost")
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        start = _read_method(sock)
        ok = spec.Connection.StartOk(
            client_properties={"capabilities": {"authentication_failure_close": True}},
            mechanism=mechanism,
            response=response,
        )
        send_method(sock, 0, ok)
        try:
            answer = _read_method(sock)
        except (EOFError, ConnectionResetError):
            answer = None
        return start.mechanisms.decode(), answer
    finally:
        sock.close()


def wait_closed(sock: socket.socket, timeout: float) -> float:
    """Seconds until the peer closes `sock` (reading and dropping anything it sends)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < timeout:
        try:
            if not sock.recv(4096):
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    raise AssertionError(f"not closed within {timeout} s")
