"""Operating trimq: configuration, -detached with its pid file, systemd notifications, and the
control socket's stop.

trimq-only: these run their own trimq-server processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pika
import pytest
from conftest import start_server, stop_server
from ctl_helpers import control_reply

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: runs its own trimq-server"
)

SERVER = [sys.executable, "-m", "trimq.cli.server"]


def run_server(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 20,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMQ_")}
    full_env.update(env or {})
    return subprocess.run(
        [*SERVER, *args], check=False, capture_output=True, text=True, timeout=timeout, env=full_env
    )


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[amqp]\nprot = 5672\n", "unknown key 'amqp.prot'"),
        ('[amqp]\nport = "many"\n', "'amqp.port' must be an integer from 0 to 65535"),
        ('[wal]\nfsync = "sometimes"\n', "'wal.fsync' must be true or false"),
        ('[log]\nlevel = "loud"\n', "'log.level' must be one of debug, info"),
        ("[auth]\nloopback_users = 5\n", "'auth.loopback_users' must be a list of user names"),
        ("[amqp\n", "is not valid TOML"),
    ],
)
def test_invalid_config_is_refused_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "trimq.toml"
    config.write_text(toml)
    result = run_server("--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 78
    assert "trimq-server: invalid configuration:" in result.stderr
    assert message in result.stderr


def test_environment_and_flags_are_checked_too(tmp_path: Path) -> None:
    result = run_server("--data-dir", str(tmp_path), env={"TRIMQ_AMQP_HEARTBEAT": "-1"})
    assert result.returncode == 78
    assert "'amqp.heartbeat'" in result.stderr and "TRIMQ_AMQP_HEARTBEAT" in result.stderr


def test_config_file_in_data_dir_is_used_and_flags_win(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "trimq.toml").write_text(
        '[auth]\ndefault_user = "admin"\ndefault_pass = "s3cret"\n'
        "[amqp]\nheartbeat = 7\nport = 1\n"  # the --port 0 flag overrides this port
    )
    server = start_server(data)
    try:
        params = pika.ConnectionParameters(
            server.host, server.port, credentials=pika.PlainCredentials("admin", "s3cret")
        )
        conn = pika.BlockingConnection(params)
        assert conn._impl.params.heartbeat == 7
        conn.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            server.connect(connection_attempts=1)  # guest was never created
    finally:
        assert stop_server(server) == 0


# -- daemon ----------------------------------------------------------------------------------


def test_detached_server_writes_pid_file_and_stops_over_control_socket(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_server("-detached", "--data-dir", str(data), "--host", "127.0.0.1", "--port", "0")
    assert result.returncode == 0, result.stderr
    assert "detached, listening on 127.0.0.1:" in result.stdout
    port = int(result.stdout.split("listening on 127.0.0.1:")[1].split()[0])
    pid = int((data / "trimq.pid").read_text())
    os.kill(pid, 0)  # alive
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    conn.channel().queue_declare("d", durable=True)
    conn.close()
    assert control_reply(data, "stop") == {"ok": True, "result": {}}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the detached broker did not stop")
    assert not (data / "trimq.pid").exists()
    assert not (data / "trimq.sock").exists()
    log = (data / "trimq.log").read_text()
    assert '"event": "server.stopping"' in log and '"event": "wal.closed"' in log


def test_detached_start_failure_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)  # holds the data directory's lock
    try:
        result = run_server("-detached", "--data-dir", str(data), "--port", "0")
        assert result.returncode == 1
        assert "the broker did not start" in result.stderr
        assert "lock" in (data / "trimq.log").read_text().lower()
    finally:
        assert stop_server(server) == 0


# -- systemd ---------------------------------------------------------------------------------


def test_sd_notify_ready_status_watchdog_stopping(tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(10)
    os.environ["NOTIFY_SOCKET"] = str(notify_path)
    os.environ["WATCHDOG_USEC"] = "200000"  # a ping every 0.1 s
    try:
        server = start_server(tmp_path / "data")
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
    messages: list[str] = []
    try:
        while not any("READY=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        ready = next(m for m in messages if "READY=1" in m)
        assert f"127.0.0.1:{server.port}" in ready  # READY=1 only once listening
        assert messages[0].startswith("STATUS=recovering")
        pings = 0
        while pings < 3:
            pings += notify.recv(4096).decode().count("WATCHDOG=1")
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        assert server.process.wait(10) == 0
    finally:
        notify.close()
        if server.process and server.process.poll() is None:
            stop_server(server)


def test_systemd_unit_is_well_formed() -> None:
    unit = (Path(__file__).parent.parent / "packaging" / "trimq.service").read_text()
    for line in (
        "Type=notify",
        "User=trimq",
        "StateDirectory=trimq",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LimitNOFILE=",
        "WatchdogSec=",
        "RestartPreventExitStatus=78",
    ):
        assert line in unit
    for raw in unit.splitlines():
        line = raw.strip()
        assert not line or line.startswith(("#", "[")) or "=" in line, line
