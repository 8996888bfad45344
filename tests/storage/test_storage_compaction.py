"""Compaction keeps exactly what replay needs: after it, and after a crash at any step of it,
the log replays to the same state, with or without the checkpoint."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import (
    Model,
    Op,
    arecover_state,
    assert_state,
    copy_dir,
    flip_bit,
    ops_strategy,
    ready_queues_op,
    record_for,
    record_spans,
    recover_state,
    remove_checkpoints,
    run_ops,
    segments,
    write_log,
)

from storage import WAL, CorruptWAL, RecordType
from storage.segment import SegmentReader, read_segment
from storage.wal import compact_directory

EXAMPLES = int(os.environ.get("TRIMQ_STORAGE_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _check(d: Path, model: Model, segment_size: int) -> None:
    assert_state(recover_state(d, segment_size), model)
    remove_checkpoints(d)
    assert_state(recover_state(d, segment_size), model)


def _churn() -> list[Op]:
    """A history where most records die: messages settled, queues and a vhost deleted and
    declared again, definitions updated."""
    ops: list[Op] = [*ready_queues_op(), ("define", "vhost", ["v"], {"n": 0})]
    for i in range(60):
        q = [("/", "a"), ("/", "b"), ("v", "a"), ("v", "c")][i % 4]
        ops.append(("publish", [q, ("/", "b")] if i % 5 == 0 else [q], bytes(i % 9)))
        if i % 3 == 2:
            ops.append(("settle", q, [i + 1, i, i - 1]))
        if i % 7 == 0:
            ops.append(("deliver", q, [i + 1]))
        if i == 30:
            ops += [
                ("define", "queue", ["/", "a"], None),
                ("define", "queue", ["/", "a"], {"again": True}),
                ("define", "vhost", ["v"], None),
                ("define", "vhost", ["v"], {"n": 1}),
                ("define", "queue", ["v", "c"], {"durable": True}),
            ]
        if i % 10 == 0:
            ops.append(("define", "exchange", ["/", "x"], {"n": i}))
    return ops


@FUZZ
@given(ops_strategy, ops_strategy, st.integers(80, 400))
def test_compaction_then_replay_is_replay(
    first: list[Op], second: list[Op], segment_size: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = write_log(d, [*ready_queues_op(), *first], segment_size, checkpoint=False)
        compact_directory(d)
        assert_state(recover_state(d, segment_size), model)
        # Keep going after compaction, compact again, check with and without checkpoint.
        write_log(d, second, segment_size, checkpoint=False, model=model)
        compact_directory(d)
        compact_directory(d)
        _check(d, model, segment_size)


def test_dead_records_in_a_kept_segment_stay_neutralised(tmp_path: Path) -> None:
    # A segment kept whole (mostly live) keeps the first incarnation of /a, so the deletion
    # that ended it must stay although nothing it deleted is live (found by hypothesis).
    model = write_log(tmp_path, ready_queues_op(), 156, checkpoint=False)
    compact_directory(tmp_path)
    ops: list[Op] = [
        ("define", "queue", ["/", "a"], {"n": 0}),
        ("define", "queue", ["/", "a"], None),
        ("define", "queue", ["/", "a"], {"n": 0}),
    ]
    write_log(tmp_path, ops, 156, checkpoint=False, model=model)
    compact_directory(tmp_path)
    _check(tmp_path, model, 156)


def test_compaction_shrinks_and_never_touches_the_active_segment(tmp_path: Path) -> None:
    model = write_log(tmp_path, _churn(), 200, checkpoint=False)
    active = segments(tmp_path)[-1]
    before = active.read_bytes()
    total = sum(p.stat().st_size for p in segments(tmp_path))
    result = compact_directory(tmp_path)
    assert result.rewritten and result.records_dropped
    assert active.read_bytes() == before
    assert sum(p.stat().st_size for p in segments(tmp_path)) < total
    _check(tmp_path, model, 200)


def test_fully_dead_prefix_is_deleted(tmp_path: Path) -> None:
    ops = [*ready_queues_op()] + [("publish", [("/", "a")], b"m")] * 20
    ops += [("settle", ("/", "a"), list(range(1, 21))), ("define", "queue", ["/", "b"], None)]
    ops += [("define", "queue", ["/", "a"], None)]
    model = write_log(tmp_path, ops, 150, checkpoint=False)
    result = compact_directory(tmp_path)
    # Nothing live but the first definitions: dead segments before them are deleted, the
    # dead run after them shrinks to one empty segment.
    files = segments(tmp_path)
    assert result.deleted and len(files) <= 4
    assert [len(record_spans(p)) for p in files][-2] == 0
    _check(tmp_path, model, 150)


@FUZZ
@given(
    st.lists(st.tuples(ops_strategy, st.integers(0, 30)), min_size=1, max_size=4),
    st.integers(80, 300),
)
def test_interleaved_writes_compactions_and_crashes(
    phases: list[tuple[list[Op], int]], segment_size: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = write_log(d, ready_queues_op(), segment_size, checkpoint=False)
        for ops, crash_at in phases:
            write_log(d, ops, segment_size, checkpoint=False, model=model)
            with pytest.MonkeyPatch.context() as m:
                StepCounter(m, crash_at or None)
                with contextlib.suppress(Crash):
                    compact_directory(d)
            assert_state(recover_state(d, segment_size), model)
        _check(d, model, segment_size)


class Crash(Exception):
    """Stands for the process dying at this point."""


class StepCounter:
    """Counts (and at step `fail_at` fails) the file-system steps compaction takes."""

    NAMES = ("replace", "rename", "unlink", "fsync")

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None) -> None:
        self.steps = 0
        self.fail_at = fail_at
        for name in self.NAMES:
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(real))

    def _wrap(self, real: Any) -> Any:
        def step(*args: Any, **kwargs: Any) -> Any:
            self.steps += 1
            if self.steps == self.fail_at:
                raise Crash(f"crash at step {self.steps}")
            return real(*args, **kwargs)

        return step


def test_a_crash_at_any_step_of_compaction_replays_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pristine = tmp_path / "pristine"
    model = write_log(pristine, _churn(), 200, checkpoint=False)
    work = tmp_path / "work"
    copy_dir(pristine, work)
    with monkeypatch.context() as m:
        counter = StepCounter(m)
        compact_directory(work)
    total = counter.steps
    assert total > 20
    for fail_at in range(1, total + 1):
        copy_dir(pristine, work)
        with monkeypatch.context() as m:
            StepCounter(m, fail_at)
            with pytest.raises(Crash):
                compact_directory(work)
        assert_state(recover_state(work, 200), model)
        # The next compaction finishes the job from whatever state the crash left.
        compact_directory(work)
        _check(work, model, 200)


def test_a_crash_during_the_second_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_log(tmp_path, _churn(), 200, checkpoint=False)
    compact_directory(tmp_path)
    ops = [("settle", q, list(range(1, 80))) for q in [("/", "b"), ("v", "c")]]
    write_log(tmp_path, ops + _churn()[4:40], 200, checkpoint=False, model=model)
    pristine = copy_dir(tmp_path, tmp_path.parent / "second")
    for fail_at in range(1, 60, 3):
        copy_dir(pristine, tmp_path)
        with monkeypatch.context() as m:
            StepCounter(m, fail_at)
            with contextlib.suppress(Crash):
                compact_directory(tmp_path)
        _check(tmp_path, model, 200)


def test_corrupt_sealed_segment_stops_compaction_before_any_change(tmp_path: Path) -> None:
    write_log(tmp_path, _churn(), 200)  # with a checkpoint: recovery skips the segments
    victim = segments(tmp_path)[1]
    flip_bit(victim, record_spans(victim)[0][0] + 20)
    before = {p.name: p.read_bytes() for p in segments(tmp_path)}
    with pytest.raises(CorruptWAL) as info:
        compact_directory(tmp_path)
    assert info.value.path.name == victim.name
    assert {p.name: p.read_bytes() for p in segments(tmp_path)} == before


async def test_online_compaction_while_appending(tmp_path: Path) -> None:
    ops = _churn()
    model = await run_ops(tmp_path, ops[:120], 200, checkpoint=False)
    wal = WAL(tmp_path, segment_size=200, fsync=False)
    wal.open()
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)

        async def appender() -> None:
            for op in ops[120:]:
                rtype, payload = record_for(op, model.next_id)
                model.apply(wal.append(rtype, payload), rtype, payload)
                await trio.sleep(0)

        nursery.start_soon(appender)
        for _ in range(5):
            await wal.compact_online()
            await trio.sleep(0)
        await wal.wait_durable(wal.last_lsn)
        await wal.close()
    assert_state(await arecover_state(tmp_path, 200), model)
    remove_checkpoints(tmp_path)
    assert_state(await arecover_state(tmp_path, 200), model)


async def test_message_ids_survive_compaction_of_their_records(tmp_path: Path) -> None:
    # The highest ids were settled and compacted away; the counter must not go back.
    ops = [*ready_queues_op()] + [("publish", [("/", "a")], b"m")] * 10
    ops += [("settle", ("/", "a"), list(range(1, 11)))] + [("define", "user", ["u"], {})] * 12
    model = await run_ops(tmp_path, ops, 150, checkpoint=False)
    wal = WAL(tmp_path, segment_size=150, fsync=False)
    wal.open()
    await wal.compact_online()
    await wal.close(checkpoint=False)
    remove_checkpoints(tmp_path)
    state = await arecover_state(tmp_path, 150)
    assert state.next_message_id == 11
    assert_state(state, model)
    assert RecordType.MESSAGE.name not in {t for p in segments(tmp_path) for t in _types(p)}


def _types(path: Path) -> list[str]:
    reader = SegmentReader(path, read_segment(path), int(path.name[:20]))
    return [RecordType(t).name for _o, _s, _l, t, _p in reader.records()]
