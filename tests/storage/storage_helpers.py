"""Shared pieces of the storage tests: a reference model of what replay must produce (written
independently of storage/replay.py, as plainly as possible), a generator of record sequences,
a runner that writes them through a real WAL, and helpers that damage files."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypothesis import strategies as st

from storage import WAL, CorruptWAL, RecordType, RecoveredMessage, RecoveredState
from storage.format import MARK_SIZE, SEGMENT_HEADER_SIZE
from storage.segment import BatchMark, SegmentReader, list_segments, read_segment

__all__ = ["read_segment"]

VHOSTS = ["/", "v"]
QUEUES = [("/", "a"), ("/", "b"), ("v", "a"), ("v", "c")]


class Model:
    """What the broker expects back: the obvious meaning of each record."""

    def __init__(self) -> None:
        self.defs: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}
        self.queues: dict[tuple[str, str], dict[int, int]] = {}  # id -> delivery count
        self.messages: dict[int, tuple[str, str, bytes, bytes]] = {}
        self.times: dict[int, int] = {}  # when each message was recorded (0: not said)
        self.next_id = 1
        self.last_lsn = 0
        self.log: list[tuple[int, RecordType, dict[str, Any]]] = []

    def upto(self, lsn: int) -> Model:
        """The model of the records up to `lsn` only."""
        model = Model()
        for entry in self.log:
            if entry[0] <= lsn:
                model.apply(*entry)
        model.last_lsn = lsn
        return model

    def apply(self, lsn: int, rtype: RecordType, p: dict[str, Any]) -> None:
        self.log.append((lsn, rtype, p))
        self.last_lsn = lsn
        if rtype is RecordType.DEFINE:
            key = tuple(p["key"])
            if p["value"] is not None:
                self.defs[(p["kind"], key)] = p["value"]
                return
            self.defs.pop((p["kind"], key), None)
            if p["kind"] == "queue":
                self.queues.pop((key[0], key[1]), None)
            if p["kind"] == "vhost":
                for k in list(self.defs):
                    if k[1][0] == key[0] and k[0] != "user":
                        del self.defs[k]
                for q in list(self.queues):
                    if q[0] == key[0]:
                        del self.queues[q]
        elif rtype is RecordType.MESSAGE:
            self.next_id = max(self.next_id, p["id"] + 1)
            self.messages[p["id"]] = (p["exchange"], p["routing_key"], p["properties"], p["body"])
            self.times[p["id"]] = p.get("time", 0)
            for v, n in p["queues"]:
                self.queues.setdefault((v, n), {}).setdefault(p["id"], 0)
        elif rtype is RecordType.SETTLE:
            held = self.queues.get((p["queue"][0], p["queue"][1]), {})
            for mid in p["ids"]:
                held.pop(mid, None)
        elif rtype is RecordType.DELIVER:
            held = self.queues.get((p["queue"][0], p["queue"][1]), {})
            for mid in p["ids"]:
                if mid in held:
                    held[mid] += 1

    def queues_expected(self) -> dict[tuple[str, str], list[RecoveredMessage]]:
        out = {}
        for kind, key in self.defs:
            if kind == "queue":
                out[(key[0], key[1])] = [
                    RecoveredMessage(mid, *self.messages[mid], count, self.times[mid])
                    for mid, count in self.queues.get((key[0], key[1]), {}).items()
                ]
        return out


def queue_messages(state: RecoveredState) -> dict[tuple[str, str], list[RecoveredMessage]]:
    return {queue: state.queue_messages(queue) for queue in state.queues}


def assert_state(state: RecoveredState, model: Model) -> None:
    assert list(state.definitions.items()) == list(model.defs.items())
    assert queue_messages(state) == model.queues_expected()
    assert state.next_message_id == model.next_id
    assert state.last_lsn == model.last_lsn


def same_state(a: RecoveredState, b: RecoveredState) -> None:
    assert list(a.definitions.items()) == list(b.definitions.items())
    assert queue_messages(a) == queue_messages(b)
    assert a.next_message_id == b.next_message_id
    assert a.last_lsn == b.last_lsn


# -- operations ---------------------------------------------------------------------------

Op = tuple[Any, ...]
_value = st.one_of(st.none(), st.builds(lambda n: {"n": n, "tags": ["t", n]}, st.integers(0, 3)))
_queue = st.sampled_from(QUEUES)
_ids = st.lists(st.integers(1, 40), max_size=4)

op_strategy = st.one_of(
    st.tuples(
        st.just("define"),
        st.just("queue"),
        _queue.map(list),
        st.builds(lambda n: {"durable": True, "n": n}, st.integers(0, 3)),
    ),
    st.tuples(st.just("define"), st.just("queue"), _queue.map(list), st.none()),
    st.tuples(
        st.just("define"), st.just("vhost"), st.sampled_from(VHOSTS).map(lambda v: [v]), _value
    ),
    st.tuples(
        st.just("define"),
        st.just("exchange"),
        st.sampled_from(VHOSTS).map(lambda v: [v, "x"]),
        _value,
    ),
    st.tuples(st.just("define"), st.just("user"), st.just(["v"]), _value),
    st.tuples(
        st.just("define"),
        st.just("binding"),
        _queue.map(lambda q: [q[0], "x", "queue", q[1], "rk", ""]),
        _value,
    ),
    st.tuples(
        st.just("publish"), st.lists(_queue, max_size=3, unique=True), st.binary(max_size=40)
    ),
    st.tuples(
        st.just("publish"),
        st.lists(_queue, min_size=1, max_size=2, unique=True),
        st.binary(max_size=40),
    ),
    st.tuples(st.just("settle"), _queue, _ids),
    st.tuples(st.just("deliver"), _queue, _ids),
)
ops_strategy = st.lists(op_strategy, max_size=60)
reopen_op = st.tuples(st.just("reopen"), st.booleans())
sync_op = st.just(("sync",))  # ends a group-commit batch
ops_with_reopens = st.lists(st.one_of(op_strategy, reopen_op, sync_op), max_size=60)
ops_with_syncs = st.lists(st.one_of(op_strategy, op_strategy, sync_op), max_size=60)


def record_for(op: Op, next_id: int) -> tuple[RecordType, dict[str, Any]]:
    kind = op[0]
    if kind == "define":
        return RecordType.DEFINE, {"kind": op[1], "key": op[2], "value": op[3]}
    if kind == "publish":
        payload = {
            "id": next_id,
            "exchange": "x",
            "routing_key": f"rk{next_id}",
            "properties": b"\x00" + bytes([next_id % 256]),
            "body": op[2],
            "queues": [list(q) for q in op[1]],
        }
        if next_id % 2:  # the record time is optional: odd ids have none
            payload["time"] = 1_790_000_000_000 + next_id
        return RecordType.MESSAGE, payload
    rtype = RecordType.SETTLE if kind == "settle" else RecordType.DELIVER
    return rtype, {"queue": list(op[1]), "ids": op[2]}


def ready_queues_op() -> list[Op]:
    """Definitions that make every test queue exist, so that messages stay live."""
    return [("define", "queue", list(q), {"durable": True}) for q in QUEUES]


async def run_ops(
    directory: Path,
    ops: Sequence[Op],
    segment_size: int = 256,
    *,
    fsync: bool = False,
    checkpoint: bool = True,
    model: Model | None = None,
) -> Model:
    """Write `ops` through a real WAL (reopening it where an op says so, and checking each
    reopen against the model); returns the model of everything written."""
    model = model if model is not None else Model()
    wal = WAL(directory, segment_size=segment_size, fsync=fsync)
    state = wal.open()
    assert_state(state, model)
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        for op in ops:
            if op[0] == "sync":  # what was appended so far is one batch, durable
                if wal.last_lsn:
                    await wal.wait_durable(wal.last_lsn)
                continue
            if op[0] == "reopen":
                await wal.close(checkpoint=op[1])
                wal = WAL(directory, segment_size=segment_size, fsync=fsync)
                assert_state(wal.open(), model)
                await nursery.start(wal.run_committer)
                continue
            rtype, payload = record_for(op, model.next_id)
            lsn = wal.append(rtype, payload)
            model.apply(lsn, rtype, payload)
        if wal.last_lsn:
            await wal.wait_durable(wal.last_lsn)
        await wal.close(checkpoint=checkpoint)
    return model


def write_log(directory: Path, ops: Sequence[Op], segment_size: int = 256, **kwargs: Any) -> Model:
    return trio.run(partial(run_ops, directory, ops, segment_size, **kwargs))


async def arecover_state(directory: Path, segment_size: int = 256) -> RecoveredState:
    """recover_state for async tests."""
    wal = WAL(directory, segment_size=segment_size, fsync=False)
    state = wal.open()
    await wal.close(checkpoint=False)
    return state


def recover_state(directory: Path, segment_size: int = 256) -> RecoveredState:
    """Open (recover) and close again without writing a checkpoint."""
    return trio.run(arecover_state, directory, segment_size)


# -- files ----------------------------------------------------------------------------------


def wal_dir(directory: Path) -> Path:
    return directory / "wal"


def segments(directory: Path) -> list[Path]:
    return [p for _, p in list_segments(wal_dir(directory))]


def record_spans(path: Path) -> list[tuple[int, int, int]]:
    """(offset, size, lsn) of each valid record in a segment."""
    base = int(path.name.split(".")[0])
    reader = SegmentReader(path, read_segment(path), base)
    return [(off, size, lsn) for off, size, lsn, _t, _p in reader.records()]


def batch_marks(path: Path) -> list[BatchMark]:
    """The batch marks of a segment (offset, first LSN, last LSN, durable LSN)."""
    return marks_of(read_segment(path), path)


def units(path: Path) -> list[tuple[int, int, int | None]]:
    """(offset, size, LSN or None) of the header, each batch mark (LSN None) and each record
    of a healthy segment, in file order: the pieces damage can hit."""
    return units_of(read_segment(path), path)


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


def copy_dir(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def remove_checkpoints(directory: Path) -> None:
    for p in wal_dir(directory).glob("checkpoint-*.ckpt"):
        p.unlink()


def expected_damage(
    path: Path,
    original: bytes,
    model: Model,
) -> tuple[str, int, Model | None]:
    """What recovery must make of the newest segment `path` (once `original`) as it is now,
    worked out from which of its pieces (header, batch marks, records) differ:
    ("corrupt", offset, None), or ("ok", bytes dropped, model of what survives).

    The rule: the first damaged piece is a torn tail unless a later intact batch mark calls
    an LSN it can have hit durable; a tail is cut at that piece (at the batch mark before it
    if it opens the batch); a damaged header is a torn tail only with nothing intact after."""
    now = path.read_bytes()
    base = int(path.name[:20])
    pieces = units_of(original, path)
    damaged = [now[off : off + size] != original[off : off + size] for off, size, _ in pieces]
    if True not in damaged:
        return "ok", max(0, len(now) - len(original)), model
    first = damaged.index(True)
    if first == 0:
        if False in damaged[1:]:
            return "corrupt", 0, None
        return "ok", len(now), model.upto(base - 1)
    before = [lsn for _off, _size, lsn in pieces[:first] if lsn is not None]
    prev = before[-1] if before else base - 1
    marks = {m.offset: m for m in marks_of(original, path)}
    for i in range(first + 1, len(pieces)):
        mark = marks.get(pieces[i][0])
        if mark is not None and not damaged[i] and mark.durable_lsn > prev:
            return "corrupt", pieces[first][0], None
    cut = pieces[first][0]
    if pieces[first - 1][0] in marks:
        cut = pieces[first - 1][0]
    return "ok", len(now) - cut, model.upto(prev)


def check_damage(
    directory: Path, path: Path, model: Model, original: bytes, segment_size: int
) -> None:
    """Recover and compare with expected_damage."""
    verdict, value, expected = expected_damage(path, original, model)
    try:
        state = recover_state(directory, segment_size)
    except CorruptWAL as exc:
        assert verdict == "corrupt", f"refused, yet only a torn tail: {exc}"
        assert exc.path.name == path.name and exc.offset == value
        return
    assert verdict == "ok", f"damage at {value} that a later batch calls durable was accepted"
    assert expected is not None
    assert state.dropped_tail_bytes == value
    assert_state(state, expected)


def marks_of(data: bytes, path: Path) -> list[BatchMark]:
    reader = SegmentReader(path, data, int(path.name[:20]))
    for _ in reader.records():
        pass
    return reader.marks


def units_of(data: bytes, path: Path) -> list[tuple[int, int, int | None]]:
    """units() of a segment's bytes."""
    reader = SegmentReader(path, data, int(path.name[:20]))
    spans: list[tuple[int, int, int | None]] = [(0, SEGMENT_HEADER_SIZE, None)]
    spans += [(off, size, lsn) for off, size, lsn, _t, _p in reader.records()]
    spans += [(m.offset, MARK_SIZE, None) for m in reader.marks]
    return sorted(spans)
