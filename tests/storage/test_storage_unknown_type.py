"""A record type this version does not know (written by a newer one) is refused, never guessed
at: opening, compacting or checking the log raises CorruptWAL naming the file, the offset and
the type, and nothing is cut or rewritten (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from storage_helpers import ready_queues_op, run_ops, segments

from storage import WAL, CorruptWAL
from storage.compaction import Liveness
from storage.format import encode_record
from storage.inspect import inspect_directory
from storage.records import RECORD_KINDS, RECORD_TYPES, RecordType, describe, record_kind
from storage.replay import ReplayState
from storage.segment import SegmentReader, read_segment
from storage.wal import compact_directory

UNKNOWN = 9  # no RecordType has this value


async def _log(directory: Path) -> int:
    """A log of several segments; returns its last LSN."""
    ops = [*ready_queues_op()] + [("publish", [("/", "a")], bytes(20))] * 30
    model = await run_ops(directory, ops, segment_size=400, checkpoint=False)
    return model.last_lsn


def _append_unknown(path: Path, lsn: int) -> int:
    """Append a whole record of the unknown type, CRC right; returns its offset."""
    off = path.stat().st_size
    with path.open("ab") as f:
        f.write(encode_record(lsn, UNKNOWN, msgpack.packb({"new": 1}, use_bin_type=True)))
    return off


async def test_unknown_type_at_the_end_of_the_newest_segment_is_refused_not_cut(
    tmp_path: Path,
) -> None:
    """A valid CRC after the last batch: as a torn write would lie, but no crash leaves a
    whole record of a type nobody writes. Cutting it would drop a newer binary's data."""
    last = await _log(tmp_path)
    newest = segments(tmp_path)[-1]
    off = _append_unknown(newest, last + 1)
    before = newest.read_bytes()
    with pytest.raises(CorruptWAL) as info:
        WAL(tmp_path, fsync=False).open()
    assert info.value.path == newest and info.value.offset == off
    assert f"unknown record type {UNKNOWN}" in str(info.value)
    assert newest.read_bytes() == before  # nothing cut, nothing set aside
    assert not list(newest.parent.glob("*.broken-*"))


async def test_unknown_type_in_a_sealed_segment_is_refused(tmp_path: Path) -> None:
    await _log(tmp_path)
    sealed = segments(tmp_path)[0]
    data = read_segment(sealed)
    spans = [(off, size, lsn) for off, size, lsn, _, _ in SegmentReader(sealed, data, 1).records()]
    off, size, lsn = spans[-1]
    payload = msgpack.packb({"new": 1}, use_bin_type=True)
    record = encode_record(lsn, UNKNOWN, payload)
    # Same LSN in the same place: only the type differs from what was there.
    sealed.write_bytes(data[:off] + record + data[off + size :])
    with pytest.raises(CorruptWAL) as info:
        WAL(tmp_path, fsync=False).open()
    assert info.value.path == sealed and info.value.offset == off
    assert f"unknown record type {UNKNOWN}" in str(info.value)
    with pytest.raises(CorruptWAL) as info:  # compaction refuses too, and changes nothing
        compact_directory(tmp_path)
    assert info.value.path == sealed and info.value.offset == off
    assert f"unknown record type {UNKNOWN}" in str(info.value)


async def test_inspect_and_verify_report_an_unknown_type_as_damage_not_a_torn_tail(
    tmp_path: Path,
) -> None:
    last = await _log(tmp_path)
    newest = segments(tmp_path)[-1]
    off = _append_unknown(newest, last + 1)
    report = inspect_directory(tmp_path, records=True)
    seg = report.segments[-1]
    assert seg.torn_tail_offset is None
    assert [(d.offset, d.reason) for d in seg.damage] == [(off, f"unknown record type {UNKNOWN}")]
    assert seg.corrupt and report.corrupt  # trimq-wal verify exits 1


def test_compaction_never_judges_an_unknown_type_as_a_definition() -> None:
    """Before, any type but MESSAGE, SETTLE and DELIVER fell into the DEFINE path (KeyError)."""
    judge = Liveness(ReplayState())
    with pytest.raises(ValueError, match=f"unknown record type {UNKNOWN}"):
        judge.is_live(1, UNKNOWN, {"new": 1})
    with pytest.raises(ValueError, match=f"unknown record type {UNKNOWN}"):
        judge.present(1, UNKNOWN, {"new": 1})
    assert describe(UNKNOWN, {"new": 1}) == (f"unknown record type {UNKNOWN}", [])


def test_replay_refuses_an_unknown_type_and_changes_nothing() -> None:
    state = ReplayState()
    with pytest.raises(ValueError, match=f"unknown record type {UNKNOWN}"):
        state.apply(7, UNKNOWN, {"kind": "queue", "key": ["/", "q"], "value": {}}, 10)
    assert (state.last_lsn, state.definitions, state.live_bytes) == (0, {}, 0)


def test_every_record_type_is_one_entry_of_the_table() -> None:
    """RECORD_KINDS is the one place a type is defined: every RecordType has its entry there,
    and the types a segment reader accepts are exactly those."""
    assert set(RECORD_KINDS) == set(RecordType) == RECORD_TYPES
    assert all(kind.type == rtype for rtype, kind in RECORD_KINDS.items())
    with pytest.raises(ValueError, match=f"unknown record type {UNKNOWN}"):
        record_kind(UNKNOWN)
