"""The storage errors: everything the engine raises on purpose derives from StorageError, so
callers can tell a damaged or unusable log from a bug."""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Base of every error the storage engine raises on purpose."""


class CorruptWAL(StorageError):
    """Damage that is not a torn tail: it may hit confirmed data, so nothing is skipped and the
    operator decides (inspect, then repair)."""

    def __init__(self, path: Path | str, offset: int, detail: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.detail = detail
        super().__init__(path, offset, detail)

    def __str__(self) -> str:
        data_dir = self.path.parent.parent
        return (
            f"corrupt write-ahead log: {self.path} at offset {self.offset}: {self.detail}; "
            f"run `trimq-wal inspect {data_dir}` to see the damage "
            f"(and `trimq-wal repair {data_dir}` to set it aside)"
        )


class WALFailed(StorageError):
    """A write or fsync failed: the WAL stays failed for good, because after a failed fsync the
    kernel may have dropped the dirty pages and a retry could report success falsely."""


class WALLocked(StorageError):
    """Another process (or another WAL object) holds the directory lock."""


class WALClosed(StorageError):
    """The WAL was closed (or never opened): appends and waits are refused."""
