"""Driving a test's own trimq-server from outside: trimqctl runs, control-socket requests
(docs/control-protocol.md) and the server's resident memory. Shared by the trimq-only tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import Broker


def ctl(server: Broker, *args: str) -> tuple[int, list[str], list[str]]:
    """trimqctl against `server`: (exit code, stdout lines, stderr lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMQ_")}
    result = subprocess.run(
        [sys.executable, "-m", "trimq.cli.ctl", "--data-dir", str(server.data_dir), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    return result.returncode, result.stdout.splitlines(), result.stderr.splitlines()


def control_reply(data_dir: Path, command: str, **args: Any) -> dict[str, Any]:
    """One request on the control socket under `data_dir`; the whole reply, ok or not."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(data_dir / "trimq.sock"))
        sock.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, "the broker closed the control connection"
            reply += chunk
    answer: dict[str, Any] = json.loads(reply)
    return answer


def control(server: Broker, command: str, **args: Any) -> Any:
    """A control request that must succeed, for numbers trimqctl does not print: its result."""
    assert server.data_dir is not None
    answer = control_reply(server.data_dir, command, **args)
    assert answer["ok"], answer
    return answer["result"]


def rss(server: Broker) -> int:
    """The server process's resident set size in bytes."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
