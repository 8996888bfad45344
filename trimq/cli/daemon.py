"""Detaching from the terminal (`trimq-server -detached`), the classic double fork.

The first process waits until the daemon reports that it listens (or failed), so its exit
status and output tell the operator whether the broker started. The daemon keeps a pid file
in the data directory and writes its log next to it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path


class Daemon:
    def __init__(self, report_fd: int, pid_file: Path) -> None:
        self._report_fd: int | None = report_fd
        self.pid_file = pid_file

    def _report(self, text: str) -> None:
        if self._report_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._report_fd, text.encode())
        os.close(self._report_fd)
        self._report_fd = None

    def ready(
        self, addresses: list[tuple[str, int]], tls_addresses: Sequence[tuple[str, int]] = ()
    ) -> None:
        """Report the listeners (plain first, then TLS) to the waiting parent."""
        lines = [f"listening on {h}:{p}\n" for h, p in addresses]
        lines += [f"listening on {h}:{p} (TLS)\n" for h, p in tls_addresses]
        self._report("".join(lines))

    def finished(self, code: int) -> None:
        self._report(f"failed with status {code}\n")
        try:
            if self.pid_file.read_text().strip() == str(os.getpid()):
                self.pid_file.unlink()
        except OSError:
            pass


def running_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file` if that process is alive."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def daemonize(pid_file: Path, log_file: Path) -> Daemon:
    """Fork into the background; only the daemon returns from this."""
    existing = running_pid(pid_file)
    if existing is not None:
        print(f"trimq-server: already running with pid {existing} ({pid_file})", file=sys.stderr)
        sys.exit(1)
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
        report = b"".join(chunks).decode()
        if report.startswith("listening"):
            for line in report.splitlines():
                print(f"trimq-server: detached, {line} (log: {log_file}, pid file: {pid_file})")
            os._exit(0)
        print(f"trimq-server: the broker did not start; see {log_file}", file=sys.stderr)
        os._exit(1)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    os.chdir("/")
    pid_fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(pid_fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    return Daemon(write_end, pid_file)
