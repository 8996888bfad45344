"""File-system steps that durability depends on: complete writes, directory fsync, and
replacing a file atomically (temp file, fsync, rename, fsync the directory)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TMP_SUFFIX = ".tmp"
# Everything the log holds (messages, definitions, password hashes) is for its owner only.
FILE_MODE = 0o600
DIR_MODE = 0o700
PRIVATE_UMASK = 0o077  # what trimq-server and trimq-wal set first, whatever they inherit


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until everything is written (a write may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that names created, renamed or removed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, chunks: list[bytes], fsync: bool) -> None:
    """Create `path` (which must not exist) with `chunks`, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        for chunk in chunks:
            write_all(fd, chunk)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, chunks: list[bytes], fsync: bool) -> None:
    """Atomically give `path` the content `chunks`: after a crash it holds either the old or
    the new content, never a mix. A stale temp file from an earlier crash is discarded."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    if tmp.exists():
        tmp.unlink()
    try:
        write_new_file(tmp, chunks, fsync)
        tmp.replace(path)
    except BaseException:
        # A full disk or an I/O error: the old content stands; do not leave the part behind.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(path.parent)


def unique_path(path: Path) -> Path:
    """`path`, or `path` with -1, -2, ... appended if that name is taken."""
    candidate = path
    n = 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate
