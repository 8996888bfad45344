"""Batch marks and the start-up rule: damage in the last group-commit batch (or in writes no
later batch calls durable) is a torn tail that recovery cuts, keeping every earlier batch;
damage in records a later batch mark calls durable is corruption, refused with file and
offset. Logs written before batch marks (format version 1) still load under the old rule."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import (
    Op,
    arecover_state,
    assert_state,
    batch_marks,
    check_damage,
    copy_dir,
    flip_bit,
    op_strategy,
    queue_messages,
    ready_queues_op,
    record_for,
    record_spans,
    recover_state,
    segments,
    units,
    write_log,
)

import storage.segment
from storage import WAL, CorruptWAL, RecordType
from storage.format import MARK_SIZE, decode_segment_header
from storage.inspect import verify_directory

EXAMPLES = int(os.environ.get("TRIMQ_STORAGE_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "wal-v1"
BIG = 1 << 20  # one segment holds every batch

# Histories of several batches: a sync ends one.
batches = st.lists(st.lists(op_strategy, min_size=1, max_size=8), min_size=2, max_size=6)


def _ops(groups: list[list[Op]]) -> list[Op]:
    out: list[Op] = [*ready_queues_op(), ("sync",)]
    for group in groups:
        out += [*group, ("sync",)]
    return out


def _tear(path: Path, kind: str, at: int, length: int, junk: bytes) -> None:
    """Damage `path` from offset `at` the way a crash in the middle of a write can."""
    data = bytearray(path.read_bytes())
    if kind == "flip":
        data[at] ^= 0xFF
    elif kind == "zeros":  # a sector that never made it
        data[at : at + length] = bytes(len(data[at : at + length]))
    elif kind == "junk":  # stale or random bytes in its place
        part = (junk * (length // max(1, len(junk)) + 1))[: len(data[at : at + length])]
        data[at : at + len(part)] = part
    elif kind == "truncate":
        del data[at:]
    elif kind == "append":
        data += junk
    path.write_bytes(bytes(data))


def test_every_append_is_one_write_that_starts_with_its_batch_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    real = storage.segment.write_all
    monkeypatch.setattr(
        storage.segment, "write_all", lambda fd, data: (writes.append(len(data)), real(fd, data))
    )

    async def main() -> None:
        wal = WAL(tmp_path, segment_size=BIG, fsync=True)
        wal.open()
        async with trio.open_nursery() as nursery:
            await nursery.start(wal.run_committer)
            for n in (1, 50, 7):
                writes.clear()
                lsns = [
                    wal.append(RecordType.DEFINE, {"kind": "user", "key": [f"u{i}"], "value": {}})
                    for i in range(n)
                ]
                await wal.wait_durable(lsns[-1])
                assert len(writes) == 1  # one write per batch, the mark inside it
            await wal.close(checkpoint=False)

    trio.run(main)
    (segment,) = segments(tmp_path)
    marks = batch_marks(segment)
    assert [(m.first_lsn, m.last_lsn) for m in marks] == [(1, 1), (2, 51), (52, 58)]
    # Each mark vouches for the batches before it, never for its own.
    assert [m.durable_lsn for m in marks] == [0, 1, 51]
    assert marks[0].offset == 48 and marks[1].offset == 48 + MARK_SIZE + record_spans(segment)[0][1]


def test_a_tear_at_every_offset_of_the_last_batch_keeps_every_earlier_batch(tmp_path: Path) -> None:
    groups: list[list[Op]] = [[("publish", [("/", "a")], bytes(i))] for i in range(3)]
    groups.append(
        [
            ("publish", [("/", "a"), ("v", "c")], b"last"),
            ("settle", ("/", "a"), [1]),
            ("define", "exchange", ["/", "x"], {"n": 1}),
        ]
    )
    pristine = tmp_path / "pristine"
    model = write_log(pristine, _ops(groups), BIG, checkpoint=False)
    (newest,) = segments(pristine)
    original = newest.read_bytes()
    last = batch_marks(newest)[-1]
    earlier = last.first_lsn - 1
    work = tmp_path / "work"
    tried = 0
    for at in range(last.offset, len(original)):
        for kind, length in (("flip", 1), ("zeros", 512), ("truncate", 0)):
            copy_dir(pristine, work)
            target = work / "wal" / newest.name
            _tear(target, kind, at, length, b"\x02\x00garbage")
            check_damage(work, target, model, original, BIG)  # never refused
            state = recover_state(work, BIG)  # and the cut is final
            assert state.dropped_tail_bytes == 0 and state.last_lsn >= earlier
            assert_state(state, model.upto(state.last_lsn))
            tried += 1
    assert tried > 3 * 100


@FUZZ
@given(batches, st.data())
def test_random_tears_in_the_last_batch_start_and_keep_earlier_batches(
    groups: list[list[Op]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = write_log(d, _ops(groups), BIG, checkpoint=False)
        (newest,) = segments(d)
        original = newest.read_bytes()
        last = batch_marks(newest)[-1]
        kind = data.draw(st.sampled_from(["flip", "zeros", "junk", "truncate", "append"]))
        at = data.draw(st.integers(last.offset, len(original) - 1), label="offset")
        length = data.draw(st.integers(1, 600), label="length")
        junk = data.draw(st.binary(min_size=1, max_size=64), label="junk")
        _tear(newest, kind, at, length, junk)
        check_damage(d, newest, model, original, BIG)
        state = recover_state(d, BIG)
        assert state.last_lsn >= last.first_lsn - 1  # every earlier batch is there


@FUZZ
@given(batches, st.data())
def test_damage_in_an_earlier_batch_followed_by_a_complete_batch_is_refused(
    groups: list[list[Op]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_log(d, _ops(groups), BIG, checkpoint=False)
        (newest,) = segments(d)
        pieces = units(newest)
        last = batch_marks(newest)[-1]
        pos = data.draw(st.integers(0, last.offset - 1), label="offset")
        flip_bit(newest, pos, data.draw(st.integers(0, 7), label="bit"))
        with pytest.raises(CorruptWAL) as info:
            recover_state(d, BIG)
        assert info.value.path.name == newest.name
        assert info.value.offset == max(off for off, _s, _l in pieces if off <= pos)
        assert "trimq-wal inspect" in str(info.value)
        report = verify_directory(d)
        assert report.corrupt and report.segments[0].batches >= len(groups)  # one may be hit


# -- logs written before batch marks --------------------------------------------------------


def _fixture(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of a log written by the code before batch marks (format version 1: fourteen
    segments of 300 bytes, a reopen in the middle, no checkpoint) and what it holds."""
    d = tmp_path / "v1"
    shutil.copytree(FIXTURE, d)
    return d, json.loads((d / "expected.json").read_text())


def _check_fixture_state(state: Any, expected: dict[str, Any]) -> None:
    assert [[k, list(key), v] for (k, key), v in state.definitions.items()] == expected[
        "definitions"
    ]
    got = {
        f"{q[0]}|{q[1]}": [[m.id, m.body.decode(), m.delivery_count] for m in msgs]
        for q, msgs in queue_messages(state).items()
    }
    assert got == expected["queues"]
    assert state.next_message_id == expected["next_message_id"]
    assert state.last_lsn == expected["last_lsn"]


async def test_a_log_from_before_batch_marks_loads_and_grows_in_a_new_segment(
    tmp_path: Path,
) -> None:
    d, expected = _fixture(tmp_path)
    old = {p.name: p.read_bytes() for p in segments(d)}
    assert {decode_segment_header(b).version for b in old.values()} == {1}
    assert not verify_directory(d).corrupt
    wal = WAL(d, segment_size=300, fsync=True)
    state = wal.open()
    _check_fixture_state(state, expected)
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        rtype, payload = record_for(("publish", [("/", "a")], b"new"), state.next_message_id)
        lsn = wal.append(rtype, payload)
        await wal.wait_durable(lsn)
        await wal.close(checkpoint=False)
    assert lsn == expected["last_lsn"] + 1
    # The old segments are as they were; the new record went into a new version 2 segment.
    assert {p.name: p.read_bytes() for p in segments(d)[:-1]} == old
    newest = segments(d)[-1]
    assert newest.name not in old
    assert decode_segment_header(newest.read_bytes()).version == 2
    assert [m.first_lsn for m in batch_marks(newest)] == [lsn]
    again = await arecover_state(d, 300)
    assert again.last_lsn == lsn and again.queue_messages(("/", "a"))[-1].body == b"new"


def test_a_torn_tail_of_an_old_log_is_cut_as_before(tmp_path: Path) -> None:
    d, expected = _fixture(tmp_path)
    newest = segments(d)[-1]
    spans = record_spans(newest)
    size = newest.stat().st_size
    with newest.open("r+b") as f:
        f.truncate(size - 3)
    state = recover_state(d, 300)
    assert state.dropped_tail_bytes == spans[-1][1] - 3
    assert state.last_lsn == expected["last_lsn"] - 1


def test_damage_before_valid_records_of_an_old_log_is_still_refused(tmp_path: Path) -> None:
    # Without batch marks nothing tells the last write from confirmed records: the old rule
    # (only unparseable bytes running to the end are a torn tail) still applies.
    d, _expected = _fixture(tmp_path)
    segments(d)[-1].unlink()  # so that the newest segment holds several records
    newest = segments(d)[-1]
    spans = record_spans(newest)
    assert len(spans) >= 2
    pristine = copy_dir(d, tmp_path / "pristine")
    flip_bit(newest, spans[0][0] + 20)
    with pytest.raises(CorruptWAL) as info:
        recover_state(d, 300)
    assert info.value.path.name == newest.name and info.value.offset == spans[0][0]
    copy_dir(pristine, d)
    flip_bit(newest, spans[-1][0] + 20)  # the last record: a torn tail
    state = recover_state(d, 300)
    assert state.last_lsn == spans[-2][2] and state.dropped_tail_bytes == spans[-1][1]
