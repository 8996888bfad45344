"""The directory lock: one process (and one WAL object) at a time owns a WAL directory.

flock() rather than fcntl record locks, because flock locks belong to the open file, so a
second WAL object in the same process is refused too; the kernel drops the lock when the
holder dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from storage.errors import WALLocked
from storage.fsutil import FILE_MODE

LOCK_NAME = "LOCK"


class DirLock:
    """An exclusive lock on DIR/wal/LOCK, held until release()."""

    def __init__(self, wal_dir: Path) -> None:
        self.path = wal_dir / LOCK_NAME
        self._fd = -1

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WALLocked(
                f"{self.path.parent} is locked by another process{holder}: stop the broker "
                "(or the other trimq-wal command) first"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # Note who holds it, for the message above; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
