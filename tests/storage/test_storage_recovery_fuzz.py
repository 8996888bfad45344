"""Replay under random histories and random damage (hypothesis): appends, rotations and
reopens replay identically; a torn or bit-flipped tail loses only the damaged tail (and, in the
last batch, what follows the damage); damage that a later batch calls durable, or in a sealed
segment, is refused with its file and offset. Nothing but storage errors ever comes out."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import (
    Model,
    Op,
    assert_state,
    check_damage,
    copy_dir,
    flip_bit,
    ops_strategy,
    ops_with_reopens,
    ops_with_syncs,
    ready_queues_op,
    record_spans,
    recover_state,
    remove_checkpoints,
    segments,
    truncate,
    units,
    write_log,
)

from storage import CorruptWAL
from storage.format import SEGMENT_HEADER_SIZE

# TRIMQ_STORAGE_EXAMPLES=5000 for a long run.
EXAMPLES = int(os.environ.get("TRIMQ_STORAGE_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(ops_with_reopens, st.integers(60, 400))
def test_random_histories_replay_identically(ops: list[Op], segment_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = write_log(d, ops, segment_size)  # checks the model at every reopen too
        assert_state(recover_state(d, segment_size), model)
        remove_checkpoints(d)  # full replay gives the same state as checkpoint + tail
        assert_state(recover_state(d, segment_size), model)


def _expected_after_cut(
    model: Model, path: Path, spans: list[tuple[int, int, int]], cut: int
) -> tuple[Model, int]:
    """(model of what survives, bytes dropped) when the newest segment is cut at `cut`."""
    base = int(path.name[:20])
    whole = [s for s in spans if s[0] + s[1] <= cut]
    if cut < SEGMENT_HEADER_SIZE:
        return model.upto(base - 1), cut
    valid_end = whole[-1][0] + whole[-1][1] if whole else SEGMENT_HEADER_SIZE
    return model.upto(whole[-1][2] if whole else base - 1), cut - valid_end


def test_every_truncation_point_of_the_newest_segment(tmp_path: Path) -> None:
    ops = [*ready_queues_op()] + [
        ("publish", [("/", "a"), ("v", "c")], bytes(i)) for i in range(12)
    ]
    ops += [("settle", ("/", "a"), [1, 2]), ("deliver", ("v", "c"), [3])]
    pristine = tmp_path / "pristine"
    model = write_log(pristine, ops, segment_size=400, checkpoint=False)
    newest = segments(pristine)[-1]
    spans = record_spans(newest)
    assert len(spans) >= 3
    size = newest.stat().st_size
    work = tmp_path / "work"
    for cut in range(size + 1):
        copy_dir(pristine, work)
        target = work / "wal" / newest.name
        truncate(target, cut)
        state = recover_state(work, 400)
        expected, dropped = _expected_after_cut(model, newest, spans, cut)
        assert state.dropped_tail_bytes == dropped, cut
        assert_state(state, expected)
        again = recover_state(work, 400)  # the cut is final: nothing more is dropped
        assert again.dropped_tail_bytes == 0
        assert_state(again, expected)


@FUZZ
@given(ops_strategy, st.data())
def test_random_truncation_with_random_histories(ops: list[Op], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = write_log(d, ops, 200, checkpoint=False)
        newest = segments(d)[-1]
        spans = record_spans(newest)
        cut = data.draw(st.integers(0, newest.stat().st_size))
        truncate(newest, cut)
        state = recover_state(d, 200)
        expected, dropped = _expected_after_cut(model, newest, spans, cut)
        assert state.dropped_tail_bytes == dropped
        assert_state(state, expected)


@FUZZ
@given(ops_with_syncs, st.data())
def test_bit_flips_in_the_newest_segment(ops: list[Op], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = write_log(d, [*ready_queues_op(), *ops], 300, checkpoint=False)
        newest = segments(d)[-1]
        original = newest.read_bytes()
        size = len(original)
        low = data.draw(st.integers(0, size - 1), label="tail start")
        flips = data.draw(
            st.lists(
                st.tuples(st.integers(low, size - 1), st.integers(0, 7)),
                min_size=1,
                max_size=4,
                unique=True,
            ),
            label="flips",
        )
        for pos, bit in flips:
            flip_bit(newest, pos, bit)
        check_damage(d, newest, model, original, 300)


@FUZZ
@given(st.data())
def test_damage_in_a_sealed_segment_is_reported_with_its_offset(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ops = [*ready_queues_op()] + [("publish", [("/", "b")], bytes(i % 7)) for i in range(25)]
        write_log(d, ops, 250, checkpoint=False)
        files = segments(d)
        victim = data.draw(st.sampled_from(files[:-1]), label="segment")
        pieces = units(victim)
        pos = data.draw(st.integers(0, victim.stat().st_size - 1), label="offset")
        flip_bit(victim, pos, data.draw(st.integers(0, 7), label="bit"))
        with pytest.raises(CorruptWAL) as info:
            recover_state(d, 250)
        assert info.value.path.name == victim.name
        assert info.value.offset == max(off for off, _size, _lsn in pieces if off <= pos)
        assert f"offset {info.value.offset}" in str(info.value)


@FUZZ
@given(st.binary(min_size=1, max_size=300), st.booleans())
def test_junk_appended_to_the_newest_segment_is_cut(junk: bytes, sealed: bool) -> None:
    # Kafka's LogLoaderTest: junk after the last record, unclean reopen, every record back.
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ops = [*ready_queues_op()] + [("publish", [("/", "a")], b"m")] * 8
        model = write_log(d, ops, 250, checkpoint=False)
        victim = segments(d)[-2 if sealed else -1]
        with victim.open("ab") as f:
            f.write(junk)
        try:
            state = recover_state(d, 250)
        except CorruptWAL as exc:
            assert sealed and exc.path.name == victim.name
            return
        assert not sealed, "junk in a sealed segment was accepted"
        assert state.dropped_tail_bytes == len(junk)
        assert_state(state, model)
