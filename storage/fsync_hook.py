"""Test-only: a hook at the log's fsync call site that lets a test hold, fail and watch the
fsyncs of a running broker, to prove that nothing is confirmed before the fsync covering it.

Off, and free, unless the environment names a directory in TRIMQ_TEST_FSYNC_DIR when storage
is imported: SegmentWriter.sync() then checks one module global per batch, nothing more. When
on, every fsync of a segment (one per group-commit batch, one more when a full segment is
sealed) is numbered from 1 and, in that directory:

- while its number is above the integer in the file `allow` (no file: no limit), it waits,
  after writing its number to the file `blocked`;
- then, if a file `fail` exists, it raises EIO instead of calling fsync (as a dying disk);
- otherwise it fsyncs, then appends its number to the file `fsynced`.

A test writes `allow` atomically (write another file, rename it over). Never set the variable
outside tests: a held fsync holds every confirm, commit and durable declaration.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

ENV = "TRIMQ_TEST_FSYNC_DIR"
POLL = 0.002  # seconds between looks at `allow` while held


class FsyncHook:
    """Called instead of os.fsync(fd) for segment fsyncs, from the committer's thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    def __call__(self, fd: int) -> None:
        self.count += 1
        number = self.count
        if number > self._allowed():
            _replace(self.directory / "blocked", f"{number}\n")
            while number > self._allowed():
                time.sleep(POLL)
        if (self.directory / "fail").exists():
            raise OSError(errno.EIO, f"fsync {number} failed on purpose ({ENV})")
        os.fsync(fd)
        with (self.directory / "fsynced").open("a") as done:
            done.write(f"{number}\n")

    def _allowed(self) -> float:
        try:
            return int((self.directory / "allow").read_text())
        except FileNotFoundError:
            return float("inf")
        except ValueError:  # being written: hold on until it is whole
            return 0


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def from_environment() -> Callable[[int], None] | None:
    """The hook if TRIMQ_TEST_FSYNC_DIR is set, else None (the normal case)."""
    directory = os.environ.get(ENV)
    return FsyncHook(Path(directory)) if directory else None
