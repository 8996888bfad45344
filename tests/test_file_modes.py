"""File modes: trimq-server and trimq-wal create the data directory 0700 and every file 0600
whatever umask they inherit; an existing data directory that group or others can reach is
warned about in the log and in `trimqctl status`.

trimq-only: these run their own trimq-server processes and look at their files.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pika
import pytest
from conftest import start_server, stop_server

from storage.segment import list_segments, read_segment

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: runs its own trimq-server"
)

ENV = {k: v for k, v in os.environ.items() if not k.startswith("TRIMQ_")}
PERSISTENT = pika.BasicProperties(delivery_mode=2)


def _umask_000() -> None:
    os.umask(0)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """A trimq program (`trimq.cli.server`, `storage.cli`, ...) with umask 000."""
    return subprocess.run(
        [sys.executable, "-m", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        preexec_fn=_umask_000,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start_detached(data: Path) -> int:
    """trimq-server -detached with umask 000; returns its AMQP port."""
    result = run(
        "trimq.cli.server",
        "-detached",
        "--data-dir",
        str(data),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--wal-segment-size",
        "4096",
        "--wal-compaction-interval",
        "0.05",
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("listening on 127.0.0.1:")[1].split()[0])


def stop_detached(data: Path) -> None:
    pid = int((data / "trimq.pid").read_text())
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, "the detached broker to stop")


def test_every_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = start_detached(data)
    # Running: the pid file, the log, the lock, the control socket.
    seen = {
        p: mode(p)
        for p in (
            data / "trimq.pid",
            data / "trimq.log",
            data / "trimq.sock",
            data / "wal" / "LOCK",
        )
    }
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("keep", durable=True)
    ch.queue_declare("churn", durable=True)
    ch.basic_publish("", "keep", b"kept", PERSISTENT)
    for i in range(100):
        ch.basic_publish("", "churn", b"x" * 1000 + str(i).encode(), PERSISTENT)
    while ch.basic_get("churn", auto_ack=True)[0] is not None:
        pass
    # Online compaction: a checkpoint and rewritten segments.
    wait_for(
        lambda: '"event": "wal.compacted"' in (data / "trimq.log").read_text(),
        "an online compaction",
    )
    conn.close()
    stop_detached(data)

    # A torn tail cut at start-up leaves its copy beside the segment.
    _base, newest = list_segments(data / "wal")[-1]
    with newest.open("ab") as f:
        f.write(b"torn" * 10)
    start_detached(data)
    stop_detached(data)
    assert list((data / "wal").glob("*.broken-*"))

    # trimq-wal: repair quarantines a damaged sealed segment's record, compact rewrites.
    _base, sealed = list_segments(data / "wal")[0]
    content = bytearray(read_segment(sealed))
    content[60] ^= 0xFF
    sealed.write_bytes(bytes(content))
    sealed.chmod(0o600)  # the test's own write kept the mode; repair makes a new file
    assert run("storage.cli", "repair", str(data)).returncode == 0
    assert list((data / "wal" / "quarantine").iterdir())
    assert run("storage.cli", "compact", str(data)).returncode == 0

    for root, dirs, files in os.walk(data):
        for name in dirs:
            seen[Path(root) / name] = mode(Path(root) / name)
        for name in files:
            seen[Path(root) / name] = mode(Path(root) / name)
    seen[data] = mode(data)
    wrong = {str(p): f"{m:04o}" for p, m in seen.items() if m != (0o700 if p.is_dir() else 0o600)}
    assert not wrong, wrong
    kinds = {p.suffix or p.name for p in seen}
    assert {".seg", ".ckpt", ".bad", ".pid", ".log", ".sock", "LOCK"} <= kinds, kinds
    assert any(".broken-" in p.name for p in seen)


def test_an_exposed_data_directory_is_warned_about(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    log = tmp_path / "server.log"
    server = start_server(data, log_path=log)
    try:
        assert mode(data) == 0o755  # an existing directory is the operator's: only warned
        events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        [warning] = [e for e in events if e["event"] == "data_dir.exposed"]
        assert warning["level"] == "warning" and warning["path"] == str(data)
        assert "mode 0755" in warning["message"] and f"chmod 700 {data}" in warning["message"]

        def status(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "trimq.cli.ctl", "--data-dir", str(data), "status", *extra],
                check=False,
                capture_output=True,
                text=True,
                timeout=60,
                env=ENV,
            )

        text = status()
        assert text.returncode == 0
        assert f"Warning: {warning['message']}" in text.stdout.splitlines()
        assert json.loads(status("--formatter", "json").stdout)["warnings"] == [warning["message"]]
        data.chmod(0o700)  # fixed: the warning goes
        assert "Warning:" not in status().stdout
        assert json.loads(status("--formatter", "json").stdout)["warnings"] == []
    finally:
        assert stop_server(server) == 0
