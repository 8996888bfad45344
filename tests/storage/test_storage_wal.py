"""The WAL as the broker uses it: append, group commit, durability waits, failure, lock,
rotation, checkpoints on close, recovery of torn tails and refusal of other damage."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from storage_helpers import (
    Model,
    arecover_state,
    assert_state,
    batch_marks,
    flip_bit,
    read_segment,
    ready_queues_op,
    record_for,
    record_spans,
    remove_checkpoints,
    run_ops,
    segments,
    truncate,
)

from storage import WAL, CorruptWAL, RecordType, WALClosed, WALFailed, WALLocked
from storage.format import SEGMENT_HEADER_SIZE, decode_segment_header, encode_record
from storage.records import PayloadError
from storage.segment import SegmentBuffer

QUEUE = {"kind": "queue", "key": ["/", "q"], "value": {"durable": True}}


def message(mid: int, body: bytes = b"x" * 20, queues: Any = (("/", "q"),)) -> dict[str, Any]:
    return {
        "id": mid,
        "exchange": "",
        "routing_key": "q",
        "properties": b"",
        "body": body,
        "queues": [list(q) for q in queues],
    }


class FsyncCounter:
    """Counts os.fsync calls on files (not directories) and can block or fail them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.fail: OSError | None = None
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        real = os.fsync

        def fsync(fd: int) -> None:
            self.calls += 1
            self.entered.set()
            if self.gate is not None:
                self.gate.wait(10)
            if self.fail is not None:
                raise self.fail
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


async def test_lsns_start_at_one_and_wait_durable(tmp_path: Path) -> None:
    wal = WAL(tmp_path, segment_size=4096, fsync=True)
    state = wal.open()
    assert state.last_lsn == 0 and state.next_message_id == 1
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        assert wal.append(RecordType.DEFINE, QUEUE) == 1
        assert wal.append(RecordType.MESSAGE, message(1)) == 2
        assert wal.durable_lsn == 0
        await wal.wait_durable(2)
        assert wal.durable_lsn == 2
        await wal.wait_durable(1)  # already durable: returns at once
        with pytest.raises(ValueError):
            await wal.wait_durable(3)
        await wal.close()
    state = await arecover_state(tmp_path)
    assert list(state.queues[("/", "q")]) == [1]
    assert state.last_lsn == 2 and state.next_message_id == 2


async def test_group_commit_many_appends_few_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WAL(tmp_path, segment_size=64 * 2**20, fsync=True)
    wal.open()
    counter = FsyncCounter(monkeypatch)
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        wal.append(RecordType.DEFINE, QUEUE)
        for i in range(1, 2001):
            lsn = wal.append(RecordType.MESSAGE, message(i))
        await wal.wait_durable(lsn)
        assert counter.calls == 1
        assert wal.stats()["commit_batches"] == 1
        await wal.close(checkpoint=False)


async def test_concurrent_publishers_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WAL(tmp_path, segment_size=64 * 2**20, fsync=True)
    wal.open()
    counter = FsyncCounter(monkeypatch)
    next_id = iter(range(1, 10**6))

    async def publisher() -> None:
        for _ in range(20):
            await wal.wait_durable(wal.append(RecordType.MESSAGE, message(next(next_id))))

    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        wal.append(RecordType.DEFINE, QUEUE)
        async with trio.open_nursery() as publishers:
            for _ in range(50):
                publishers.start_soon(publisher)
        assert wal.durable_lsn == 1 + 50 * 20
        # Every publisher waits for its own record each time: about one fsync per round.
        assert counter.calls <= 60
        await wal.close(checkpoint=False)


async def test_records_arriving_during_an_fsync_form_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WAL(tmp_path, segment_size=64 * 2**20, fsync=True)
    wal.open()
    counter = FsyncCounter(monkeypatch)
    counter.gate = threading.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        first = wal.append(RecordType.DEFINE, QUEUE)
        # the committer is inside the first fsync
        assert await trio.to_thread.run_sync(counter.entered.wait, 10)
        later = [wal.append(RecordType.MESSAGE, message(i)) for i in range(1, 100)]
        assert wal.durable_lsn == 0
        counter.gate.set()
        await wal.wait_durable(first)
        await wal.wait_durable(later[-1])
        assert counter.calls == 2
        await wal.close(checkpoint=False)


async def test_failed_fsync_fails_for_good_and_is_never_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WAL(tmp_path, segment_size=64 * 2**20, fsync=True)
    wal.open()
    counter = FsyncCounter(monkeypatch)
    counter.fail = OSError(errno.EIO, "injected EIO")
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        a = wal.append(RecordType.DEFINE, QUEUE)
        b = wal.append(RecordType.MESSAGE, message(1))

        async def waiter(lsn: int) -> None:
            with pytest.raises(WALFailed):
                await wal.wait_durable(lsn)

        async with trio.open_nursery() as waiters:
            waiters.start_soon(waiter, a)
            waiters.start_soon(waiter, b)
        assert isinstance(wal.failed, OSError)
        with pytest.raises(WALFailed, match="EIO"):
            wal.append(RecordType.MESSAGE, message(2))
        with pytest.raises(WALFailed):
            await wal.wait_durable(b)
        counter.fail = None  # even once the disk "recovers", nothing is retried:
        wal.flush_soon()  # not when woken,
        await wal.close()  # nor in the committer's last pass (no checkpoint is written either)
        assert counter.calls == 1
        assert wal.durable_lsn == 0
    assert not list((tmp_path / "wal").glob("checkpoint-*"))
    other = WAL(tmp_path, fsync=False)
    other.open()
    await other.close(checkpoint=False)


async def test_failed_write_fails_the_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal = WAL(tmp_path, fsync=False)
    wal.open()

    def no_space(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "injected ENOSPC")

    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        monkeypatch.setattr(os, "write", no_space)
        lsn = wal.append(RecordType.DEFINE, QUEUE)
        with pytest.raises(WALFailed, match="ENOSPC"):
            await wal.wait_durable(lsn)
        with pytest.raises(WALFailed):
            wal.append(RecordType.DEFINE, QUEUE)
        await wal.close()


async def test_lock_refuses_a_second_wal(tmp_path: Path) -> None:
    wal = WAL(tmp_path, fsync=False)
    wal.open()
    with pytest.raises(WALLocked, match="locked"):
        WAL(tmp_path, fsync=False).open()
    await wal.close()
    again = WAL(tmp_path, fsync=False)
    again.open()
    await again.close()


async def test_bad_payload_is_refused_without_using_an_lsn(tmp_path: Path) -> None:
    wal = WAL(tmp_path, fsync=False)
    wal.open()
    with pytest.raises(PayloadError):
        wal.append(RecordType.MESSAGE, {"id": 1})
    assert wal.append(RecordType.DEFINE, QUEUE) == 1
    await wal.close()


async def test_closed_wal_refuses_appends(tmp_path: Path) -> None:
    wal = WAL(tmp_path, fsync=False)
    with pytest.raises(WALClosed):
        wal.append(RecordType.DEFINE, QUEUE)
    wal.open()
    await wal.close()
    with pytest.raises(WALClosed):
        wal.append(RecordType.DEFINE, QUEUE)


async def test_close_without_a_committer_still_writes(tmp_path: Path) -> None:
    wal = WAL(tmp_path, fsync=True)
    wal.open()
    wal.append(RecordType.DEFINE, QUEUE)
    await wal.close(checkpoint=False)
    assert (await arecover_state(tmp_path)).last_lsn == 1


async def test_close_checkpoints_so_reopen_replays_nothing(tmp_path: Path) -> None:
    model = await run_ops(tmp_path, [*ready_queues_op(), ("publish", [("/", "a")], b"x")])
    wal = WAL(tmp_path, segment_size=256, fsync=False)
    state = wal.open()
    assert state.checkpoint_lsn == model.last_lsn
    assert state.records_replayed == 0
    assert_state(state, model)
    await wal.close()


async def test_rotation_names_segments_by_first_lsn(tmp_path: Path) -> None:
    ops = [*ready_queues_op()] + [("publish", [("/", "a")], bytes(30))] * 40
    await run_ops(tmp_path, ops, segment_size=300)
    files = segments(tmp_path)
    assert len(files) > 5
    for path in files:
        spans = record_spans(path)
        header = decode_segment_header(read_segment(path))
        assert header.base_lsn == int(path.name[:20])
        if spans:
            assert spans[0][2] == header.base_lsn
            assert spans[-1][0] + spans[-1][1] == path.stat().st_size
        if path != files[-1]:
            assert path.stat().st_size <= 300


async def test_a_record_larger_than_a_segment_gets_its_own(tmp_path: Path) -> None:
    ops = [
        *ready_queues_op(),
        ("publish", [("/", "a")], bytes(1000)),
        ("publish", [("/", "a")], b"small"),
    ]
    model = await run_ops(tmp_path, ops, segment_size=200)
    assert_state(await arecover_state(tmp_path, 200), model)
    sizes = {len(record_spans(p)) for p in segments(tmp_path)}
    assert 1 in sizes


async def test_progress_is_reported(tmp_path: Path) -> None:
    ops = [*ready_queues_op()] + [("publish", [("/", "a")], b"m")] * 20000
    await run_ops(tmp_path, ops, segment_size=2**20, checkpoint=False)
    seen: list[tuple[int, int, int]] = []
    wal = WAL(tmp_path, segment_size=2**20, fsync=False)
    wal.open(progress=lambda *a: seen.append(a))
    await wal.close(checkpoint=False)
    assert seen and seen[-1][0] == 20004 and seen[-1][1] == seen[-1][2]
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)


async def test_stats(tmp_path: Path) -> None:
    wal = WAL(tmp_path, segment_size=300, fsync=False)
    wal.open()
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        wal.append(RecordType.DEFINE, QUEUE)
        for i in range(1, 21):
            wal.append(RecordType.MESSAGE, message(i))
        lsn = wal.append(RecordType.SETTLE, {"queue": ["/", "q"], "ids": list(range(1, 21))})
        await wal.wait_durable(lsn)
        stats = wal.stats()
        assert stats["segments"] > 3
        assert stats["live_messages"] == 0
        assert stats["dead_bytes"] > stats["live_bytes"] > 0
        assert stats["total_bytes"] == sum(p.stat().st_size for p in segments(tmp_path))
        result = await wal.compact_online()
        assert result.deleted or result.rewritten
        assert wal.stats()["total_bytes"] < stats["total_bytes"]
        await wal.close()


# -- recovery ---------------------------------------------------------------------------------


async def _log_with_sealed_segments(directory: Path) -> Model:
    ops = [*ready_queues_op()] + [("publish", [("/", "a")], bytes(20))] * 30
    return await run_ops(directory, ops, segment_size=400, checkpoint=False)


async def test_torn_tail_is_cut_and_kept_beside(tmp_path: Path) -> None:
    await _log_with_sealed_segments(tmp_path)
    newest = segments(tmp_path)[-1]
    spans = record_spans(newest)
    assert len(spans) >= 2
    original = newest.read_bytes()
    cut = spans[-1][0] + 5  # inside the last record
    truncate(newest, cut)
    wal = WAL(tmp_path, segment_size=400, fsync=False)
    state = wal.open()
    assert state.dropped_tail_bytes == 5
    assert state.last_lsn == spans[-2][2]
    broken = newest.with_name(f"{newest.name}.broken-{spans[-1][0]}")
    assert broken.read_bytes() == original[spans[-1][0] : cut]
    assert newest.stat().st_size == spans[-1][0]
    async with trio.open_nursery() as nursery:  # appends continue where the log now ends
        await nursery.start(wal.run_committer)
        lsn = wal.append(RecordType.DEFINE, QUEUE)
        assert lsn == spans[-2][2] + 1
        await wal.close()
    assert (await arecover_state(tmp_path)).last_lsn == lsn


async def test_torn_segment_header_is_reinitialised(tmp_path: Path) -> None:
    model = await _log_with_sealed_segments(tmp_path)
    last = segments(tmp_path)[-1]
    nxt = last.with_name(f"{model.last_lsn + 1:020d}.seg")
    nxt.write_bytes(b"TRIMQW")  # a crash while the next segment was being created
    state = await arecover_state(tmp_path, 400)
    assert state.dropped_tail_bytes == 6
    assert_state(state, model)
    assert nxt.stat().st_size == SEGMENT_HEADER_SIZE


async def test_damage_in_a_sealed_segment_is_refused_with_its_offset(tmp_path: Path) -> None:
    await _log_with_sealed_segments(tmp_path)
    sealed = segments(tmp_path)[1]
    off = record_spans(sealed)[1][0]
    flip_bit(sealed, off + 20)
    with pytest.raises(CorruptWAL) as info:
        WAL(tmp_path, fsync=False).open()
    assert info.value.path == sealed and info.value.offset == off
    text = str(info.value)
    assert str(sealed) in text and f"offset {off}" in text
    assert f"trimq-wal inspect {tmp_path}" in text
    WAL(tmp_path, fsync=False)  # the lock was released: a new attempt gets the same answer
    with pytest.raises(CorruptWAL):
        WAL(tmp_path, fsync=False).open()


async def _three_batches(directory: Path) -> Model:
    """One segment: the queues (one batch), two messages (the next), two more (the last)."""
    ops = [
        *ready_queues_op(),
        ("sync",),
        *[("publish", [("/", "a")], bytes(5))] * 2,
        ("sync",),
        *[("publish", [("/", "a")], bytes(6))] * 2,
    ]
    model = await run_ops(directory, ops, segment_size=2000, checkpoint=False)
    assert len(segments(directory)) == 1
    return model


async def test_damage_in_a_batch_a_later_batch_calls_durable_is_refused(tmp_path: Path) -> None:
    await _three_batches(tmp_path)
    (newest,) = segments(tmp_path)
    spans = record_spans(newest)
    marks = batch_marks(newest)
    assert len(marks) == 3 and marks[2].durable_lsn == spans[5][2]
    flip_bit(newest, spans[4][0] + 18)  # a message of the middle batch
    with pytest.raises(CorruptWAL) as info:
        WAL(tmp_path, fsync=False).open()
    assert info.value.path == newest and info.value.offset == spans[4][0]


async def test_damage_in_the_last_batch_before_its_valid_records_is_a_torn_tail(
    tmp_path: Path,
) -> None:
    model = await _three_batches(tmp_path)
    (newest,) = segments(tmp_path)
    spans = record_spans(newest)
    flip_bit(newest, spans[6][0] + 18)  # the first record of the last batch; one follows
    size = newest.stat().st_size
    cut = batch_marks(newest)[-1].offset  # the batch's mark goes with its records
    state = await arecover_state(tmp_path, 2000)
    assert state.dropped_tail_bytes == size - cut
    assert state.dropped_tail_records == 2  # the batch mark says so
    assert_state(state, model.upto(spans[5][2]))
    assert newest.with_name(f"{newest.name}.broken-{cut}").exists()


async def test_sealed_segment_cut_at_a_record_boundary_is_refused(tmp_path: Path) -> None:
    await _log_with_sealed_segments(tmp_path)
    sealed = segments(tmp_path)[1]
    truncate(sealed, record_spans(sealed)[-1][0])
    with pytest.raises(CorruptWAL, match="records missing"):
        WAL(tmp_path, fsync=False).open()


async def test_missing_segment_is_refused(tmp_path: Path) -> None:
    await _log_with_sealed_segments(tmp_path)
    segments(tmp_path)[2].unlink()
    with pytest.raises(CorruptWAL, match="records missing"):
        WAL(tmp_path, fsync=False).open()


async def test_invalid_checkpoint_falls_back_to_full_replay(tmp_path: Path) -> None:
    model = await _log_with_sealed_segments(tmp_path)
    await run_ops(tmp_path, [], segment_size=400, model=model)  # reopen, close: checkpoint
    (ckpt,) = (tmp_path / "wal").glob("checkpoint-*.ckpt")
    flip_bit(ckpt, ckpt.stat().st_size - 3)
    wal = WAL(tmp_path, segment_size=400, fsync=False)
    state = wal.open()
    assert state.checkpoint_lsn == 0 and state.records_replayed == model.last_lsn
    assert_state(state, model)
    await wal.close(checkpoint=False)


async def test_checkpoint_beyond_the_log_end(tmp_path: Path) -> None:
    # Possible only without fsync: the checkpoint reached the disk, the log's tail did not.
    model = await _log_with_sealed_segments(tmp_path)
    await run_ops(tmp_path, [], segment_size=400, model=model)
    newest = segments(tmp_path)[-1]
    truncate(newest, record_spans(newest)[-1][0])
    wal = WAL(tmp_path, segment_size=400, fsync=False)
    assert_state(wal.open(), model)
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        rtype, payload = record_for(("publish", [("/", "a")], b"after"), model.next_id)
        model.apply(wal.append(rtype, payload), rtype, payload)
        await wal.close(checkpoint=False)
    assert_state(await arecover_state(tmp_path, 400), model)
    remove_checkpoints(tmp_path)
    assert (await arecover_state(tmp_path, 400)).last_lsn == model.last_lsn


async def test_coalesced_records_are_appended_before_each_batch_and_on_close(
    tmp_path: Path,
) -> None:
    wal = WAL(tmp_path, segment_size=1 << 20, fsync=False)
    wal.open()
    held: list[int] = []

    def flush() -> None:  # what the journal does with the deliveries it holds back
        if held:
            wal.append(RecordType.DELIVER, {"queue": ["/", "q"], "ids": list(held)})
            held.clear()

    wal.coalesce(flush)
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        wal.append(RecordType.DEFINE, QUEUE)
        wal.append(RecordType.MESSAGE, message(1))
        wal.append(RecordType.MESSAGE, message(2))
        await wal.wait_durable(3)
        held += [1, 2]
        wal.flush_soon()  # nothing else is appended: the committer still writes them
        with trio.fail_after(10):
            while wal.last_lsn < 4:
                await trio.sleep(0.001)
        await wal.wait_durable(4)
        held.append(2)
        await wal.close()  # and what is held at close is written too
    state = await arecover_state(tmp_path)
    counts = state.queues[("/", "q")]  # message id: times delivered
    assert counts == {1: 1, 2: 2} and state.last_lsn == 5


@pytest.mark.parametrize(
    "bad",
    [
        {**message(99), "id": "99"},
        {k: v for k, v in message(99).items() if k != "body"},
    ],
)
async def test_record_with_valid_crc_and_bad_payload_is_refused(
    tmp_path: Path, bad: dict[str, Any]
) -> None:
    """Written that way (no crash leaves a record whole with a valid CRC): not a torn tail."""
    model = await _log_with_sealed_segments(tmp_path)
    newest = segments(tmp_path)[-1]
    off = newest.stat().st_size
    lsn = model.last_lsn + 1
    with newest.open("ab") as f:
        f.write(encode_record(lsn, RecordType.MESSAGE, msgpack.packb(bad, use_bin_type=True)))
    with pytest.raises(CorruptWAL) as info:
        WAL(tmp_path, fsync=False).open()
    assert info.value.path == newest and info.value.offset == off
    assert f"LSN {lsn}: MESSAGE needs" in str(info.value)


def test_segment_buffer_reads_files_of_any_size_in_turn(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate([100, 5000, 10, 5000, 20000, 0]):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes([i + 1]) * size)
        files.append(path)
    buffer = SegmentBuffer()
    views = []
    for path in files:
        view = buffer.read(path)
        assert bytes(view) == path.read_bytes()
        views.append(view)  # a view kept alive does not stop a bigger file being read
    # Growing took new memory: a view from before still shows what it showed.
    assert bytes(views[3]) == files[3].read_bytes()
