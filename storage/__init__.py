"""trimq's storage engine: a segmented, CRC-checked write-ahead log with group commit,
checkpoints, compaction and inspection. It never imports trimq."""

from storage.errors import CorruptWAL, StorageError, WALClosed, WALFailed, WALLocked
from storage.records import PayloadError, RecordType
from storage.replay import RecoveredMessage, RecoveredState
from storage.wal import WAL

__all__ = [
    "WAL",
    "CorruptWAL",
    "PayloadError",
    "RecordType",
    "RecoveredMessage",
    "RecoveredState",
    "StorageError",
    "WALClosed",
    "WALFailed",
    "WALLocked",
]
