"""Online compaction that fails part way (a full disk, an I/O error, a damaged sealed
segment) leaves the log consistent on disk and in memory: appends go on, a later compaction
finishes the job, and the log replays to the same state."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from storage_helpers import (
    Model,
    Op,
    arecover_state,
    assert_state,
    copy_dir,
    flip_bit,
    ready_queues_op,
    record_for,
    record_spans,
    remove_checkpoints,
    run_ops,
    segments,
)

from storage import WAL, CorruptWAL

SEGMENT = 200


def _churn() -> list[Op]:
    """Most records die: compaction has segments to delete and to rewrite."""
    ops: list[Op] = [*ready_queues_op()]
    for i in range(50):
        q = [("/", "a"), ("/", "b"), ("v", "c")][i % 3]
        ops.append(("publish", [q], bytes(i % 9)))
        if i % 4 != 3:
            ops.append(("settle", q, [i + 1]))
        if i % 10 == 0:
            ops.append(("define", "exchange", ["/", "x"], {"n": i}))
    return ops


class Faults:
    """Makes the Nth file-system call of the armed stretch fail, as a full disk or a failing
    disk would (only while armed: the committer is idle then)."""

    NAMES = ("open", "write", "replace", "rename", "unlink", "fsync", "ftruncate")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        self.steps = 0
        self.fail_at = 0
        self.code = errno.ENOSPC
        self.failed = False
        self._lock = threading.Lock()
        for name in self.NAMES:
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))

    def arm(self, fail_at: int, code: int = errno.ENOSPC) -> None:
        self.steps, self.fail_at, self.code, self.failed, self.armed = 0, fail_at, code, False, True

    def _wrap(self, real: Any) -> Any:
        def step(*args: Any, **kwargs: Any) -> Any:
            if self.armed:
                with self._lock:
                    self.steps += 1
                    now = self.steps == self.fail_at
                if now:
                    self.failed = True
                    raise OSError(self.code, os.strerror(self.code))
            return real(*args, **kwargs)

        return step


def _on_disk(d: Path) -> tuple[int, int]:
    files = segments(d)
    return len(files), sum(p.stat().st_size for p in files)


def _consistent(wal: WAL, d: Path) -> None:
    """The WAL's segment list names exactly the segment files there are, at their sizes."""
    stats = wal.stats()
    assert (stats["segments"], stats["total_bytes"]) == _on_disk(d)
    assert not list((d / "wal").glob("*.tmp")), "a half-written temp file was left behind"


async def _append(wal: WAL, model: Model, ops: list[Op]) -> None:
    for op in ops:
        rtype, payload = record_for(op, model.next_id)
        model.apply(wal.append(rtype, payload), rtype, payload)
    await wal.wait_durable(wal.last_lsn)


async def _fail_then_recover(
    work: Path, model: Model, faults: Faults, fail_at: int, code: int
) -> bool:
    """One compaction with a fault at step `fail_at`; then the checks. False once the
    compaction has fewer steps than that."""
    wal = WAL(work, segment_size=SEGMENT, fsync=True)
    wal.open()
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        faults.arm(fail_at, code)
        try:
            await wal.compact_online()
        except OSError as exc:
            assert exc.errno == code
        finally:
            faults.armed = False
        if not faults.failed:
            await wal.close()
            return False
        _consistent(wal, work)
        # The log is not failed: appends are written and made durable as before.
        assert wal.failed is None
        await _append(
            wal, model, [("publish", [("/", "a")], b"after"), ("settle", ("/", "b"), [2, 3])]
        )
        # A later compaction finishes the job from what the failed one left.
        await wal.compact_online()
        _consistent(wal, work)
        await wal.close()
    return True


async def test_a_fault_at_any_step_of_online_compaction_leaves_the_log_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pristine = tmp_path / "pristine"
    base = await run_ops(pristine, _churn(), SEGMENT, checkpoint=False)
    faults = Faults(monkeypatch)
    work = tmp_path / "work"
    fail_at = 0
    while True:
        fail_at += 1
        copy_dir(pristine, work)
        model = Model()
        for entry in base.log:
            model.apply(*entry)
        code = errno.ENOSPC if fail_at % 2 else errno.EIO
        if not await _fail_then_recover(work, model, faults, fail_at, code):
            break
        assert_state(await arecover_state(work, SEGMENT), model)
        remove_checkpoints(work)
        assert_state(await arecover_state(work, SEGMENT), model)
    assert fail_at > 20, "compaction took too few steps to prove anything"


async def test_a_damaged_sealed_segment_fails_compaction_but_not_the_log(tmp_path: Path) -> None:
    model = await run_ops(tmp_path, _churn(), SEGMENT)  # a checkpoint: recovery skips it
    victim = segments(tmp_path)[1]
    flip_bit(victim, record_spans(victim)[0][0] + 20)
    wal = WAL(tmp_path, segment_size=SEGMENT, fsync=True)
    wal.open()
    before = {p.name: p.read_bytes() for p in segments(tmp_path)}
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        for _ in range(2):  # and again: the same answer, nothing changed
            with pytest.raises(CorruptWAL) as info:
                await wal.compact_online()
            assert info.value.path.name == victim.name
            assert {p.name: p.read_bytes() for p in segments(tmp_path)} == before
            _consistent(wal, tmp_path)
        await _append(wal, model, [("publish", [("/", "a")], b"still written")])
        await wal.close()
    assert_state(await arecover_state(tmp_path, SEGMENT), model)
