"""trimqctl's side of the control socket (docs/control-protocol.md): which node `-n/--node`
names, one JSON request and its reply per connection, and how failures are told apart.

`NodeDown` (the node cannot be reached: exit 69), `RequestTimeout` (75) and `BrokerError` (the
node answered with an error `kind`, which the command maps to rabbitmqctl's exit code) are
raised here and turned into exit codes by the commands.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trimq.admin_errors import ErrorKind
from trimq.cli.output import erl_atom

TOOL = "trimqctl"
SOCKET_NAME = "trimq.sock"
NODE_NAME = "trimq"


class NodeDown(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RequestTimeout(Exception):
    pass


class BrokerError(Exception):
    """The broker refused a request: its kind (which decides the exit code) and its text."""

    def __init__(self, kind: ErrorKind, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


def _local_hosts() -> set[str]:
    names = {"localhost", "127.0.0.1", "::1"}
    hostname = socket.gethostname()
    names |= {hostname.lower(), hostname.split(".")[0].lower()}
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn().lower())
    return names


def host_name(longnames: bool) -> str:
    hostname = socket.gethostname()
    if longnames:
        fqdn = socket.getfqdn()
        return fqdn if "." in fqdn else hostname
    return hostname.split(".")[0]


@dataclass
class Target:
    node: str  # as shown in banners and errors
    socket: Path
    problem: str | None = None  # why this node cannot be reached at all


def resolve_target(node_opt: str | None, data_dir: Path, longnames: bool) -> Target:
    host = host_name(longnames)
    default_socket = data_dir / SOCKET_NAME
    if node_opt is None:
        return Target(f"{NODE_NAME}@{host}", default_socket)
    if "/" in node_opt or node_opt.endswith(".sock"):
        path = Path(node_opt).expanduser()
        if path.is_dir():
            path = path / SOCKET_NAME
        return Target(node_opt, path)
    node = node_opt if "@" in node_opt else f"{node_opt}@{host}"
    name, _, node_host = node.partition("@")
    if name != NODE_NAME or node_host.lower() not in _local_hosts():
        return Target(
            node,
            default_socket,
            f"{TOOL} reaches only the local node {NODE_NAME}@{host}, through the "
            "control socket of its data directory (or pass --node <socket path>)",
        )
    return Target(node, default_socket)


class ControlClient:
    """One request per connection: connect (to know the node is up), then call()."""

    def __init__(self, target: Target, timeout_ms: int | None) -> None:
        self.target = target
        self.timeout = None if timeout_ms is None else timeout_ms / 1000
        self.sock: socket.socket | None = None

    def connect(self) -> None:
        if self.target.problem:
            raise NodeDown(self.target.problem)
        path = self.target.socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10.0 if self.timeout is None else min(self.timeout, 10.0))
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            sock.close()
            raise NodeDown(
                f"control socket {path} does not exist (is the node running with "
                "this data directory?)"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise NodeDown(
                f"control socket {path} refused the connection (the node is not "
                "running; the socket file is stale)"
            ) from None
        except PermissionError:
            sock.close()
            raise NodeDown(
                f"no permission to open the control socket {path} (run as the "
                "user the node runs as)"
            ) from None
        except OSError as exc:
            sock.close()
            raise NodeDown(
                f"cannot connect to the control socket {path}: {exc.strerror or exc}"
            ) from None
        self.sock = sock

    def call(self, command: str, args: Mapping[str, Any]) -> Any:
        """The reply's `result` (any JSON value); raises BrokerError for an error reply."""
        if self.sock is None:
            self.connect()
        sock = self.sock
        assert sock is not None
        self.sock = None
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        request = json.dumps({"command": command, "args": dict(args)}) + "\n"
        buf = bytearray()
        try:
            with sock:
                sock.settimeout(self.timeout)
                sock.sendall(request.encode())
                while b"\n" not in buf:
                    if deadline is not None:
                        sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except TimeoutError:
            raise RequestTimeout() from None
        except OSError as exc:
            raise NodeDown(f"the control connection failed: {exc.strerror or exc}") from None
        line = bytes(buf).split(b"\n", 1)[0]
        if not line.strip():
            raise NodeDown("the node closed the control connection without a reply")
        try:
            reply = json.loads(line)
        except ValueError:
            raise NodeDown("the node sent a reply that is not JSON") from None
        if not isinstance(reply, dict):
            raise NodeDown("the node sent a malformed reply")
        if reply.get("ok"):
            return reply.get("result")
        raise BrokerError(ErrorKind.parse(str(reply.get("kind"))), str(reply.get("error") or ""))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def node_down_message(node: str, reason: str) -> str:
    """rabbitmqctl's "unable to perform an operation" text, with trimq's diagnostics."""
    return (
        f"Error: unable to perform an operation on node '{node}'. Please see diagnostics "
        "information and suggestions below.\n"
        "\n"
        "Most common reasons for this are:\n"
        "\n"
        " * Target node is not running\n"
        " * Target node uses another data directory (use --data-dir, or --node with the path "
        "of its control socket)\n"
        " * CLI tool may not open the node's control socket (it is accessible only to the "
        "user the node runs as)\n"
        "\n"
        "In addition to the diagnostics info below:\n"
        "\n"
        f" * Consult server logs on node {node}\n"
        "\n"
        "DIAGNOSTICS\n"
        "===========\n"
        "\n"
        f"attempted to contact: [{erl_atom(node)}]\n"
        "\n"
        f"{node}:\n"
        f"  * {reason}\n"
    )
