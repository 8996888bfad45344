"""Checkpoints: the state at an LSN, written atomically; a bad one is ignored, never trusted."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import crc32c
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from storage_helpers import (
    Op,
    assert_state,
    ops_strategy,
    ready_queues_op,
    recover_state,
    remove_checkpoints,
    same_state,
    wal_dir,
    write_log,
)

from storage.checkpoint import (
    _CRC,
    _HEADER,
    CHECKPOINT_MAGIC,
    HEADER_SIZE,
    CheckpointError,
    checkpoint_name,
    decode_checkpoint,
    encode_checkpoint,
    list_checkpoints,
    load_newest,
    write_checkpoint,
)
from storage.format import mask_crc
from storage.records import RecordType
from storage.replay import ReplayState

EXAMPLES = int(os.environ.get("TRIMQ_STORAGE_EXAMPLES", "60"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops_strategy)
def test_checkpoint_then_reopen_equals_full_replay(ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = write_log(d, [*ready_queues_op(), *ops], 200)
        from_checkpoint = recover_state(d, 200)
        assert from_checkpoint.checkpoint_lsn == model.last_lsn
        assert from_checkpoint.records_replayed == 0
        remove_checkpoints(d)
        full = recover_state(d, 200)
        assert full.checkpoint_lsn == 0
        same_state(from_checkpoint, full)
        assert_state(full, model)


def _state(tmp_path: Path) -> tuple[int, ReplayState]:
    ops = [
        *ready_queues_op(),
        ("publish", [("/", "a"), ("/", "b")], b"body"),
        ("deliver", ("/", "a"), [1]),
        ("define", "user", ["u"], {"tags": ["admin"]}),
    ]
    write_log(tmp_path, ops, 4096)
    lsn, state, ignored = load_newest(wal_dir(tmp_path))
    assert state is not None and not ignored
    return lsn, state


def test_encoding_round_trips(tmp_path: Path) -> None:
    lsn, state = _state(tmp_path)
    again_lsn, again = decode_checkpoint(b"".join(encode_checkpoint(state, lsn)))
    assert again_lsn == lsn
    same_state(again.recovered(), state.recovered())
    # Values come back exactly as replay gives them (lists stay lists).
    assert again.recovered().definitions[("user", ("u",))] == {"tags": ["admin"]}
    assert again.live_bytes == state.live_bytes
    assert {k: (d.first_lsn, d.last_lsn) for k, d in again.definitions.items()} == {
        k: (d.first_lsn, d.last_lsn) for k, d in state.definitions.items()
    }


@pytest.mark.parametrize("damage", ["truncate", "flip", "extend", "rename", "empty"])
def test_a_bad_checkpoint_is_ignored_and_an_older_one_used(tmp_path: Path, damage: str) -> None:
    lsn, state = _state(tmp_path)
    d = wal_dir(tmp_path)
    newer = d / checkpoint_name(lsn + 5)
    data = b"".join(encode_checkpoint(state, lsn))
    if damage == "truncate":
        data = data[:-1]
    elif damage == "flip":
        data = data[:30] + bytes([data[30] ^ 1]) + data[31:]
    elif damage == "extend":
        data += b"\x00"
    elif damage == "empty":
        data = b""
    newer.write_bytes(data)  # "rename": a valid file under another LSN's name
    found_lsn, found, ignored = load_newest(d)
    assert found_lsn == lsn and found is not None
    assert [p for p, _ in ignored] == [newer]


def test_writing_a_checkpoint_removes_older_ones_and_leaves_no_temp_file(tmp_path: Path) -> None:
    lsn, state = _state(tmp_path)
    d = wal_dir(tmp_path)
    write_checkpoint(d, state, lsn + 1, fsync=True)
    assert [n for n, _ in list_checkpoints(d)] == [lsn + 1]
    assert not list(d.glob("*.tmp"))


def test_a_stale_temp_file_is_removed_on_open(tmp_path: Path) -> None:
    model = write_log(tmp_path, ready_queues_op(), 4096)
    tmp = wal_dir(tmp_path) / (checkpoint_name(99) + ".tmp")
    tmp.write_bytes(b"half a checkpoint")
    assert_state(recover_state(tmp_path), model)
    assert not tmp.exists()


def _v1_checkpoint(state: ReplayState, lsn: int, with_time: bool = True) -> bytes:
    """A checkpoint as version 1 wrote it: an array per message, [id, count] arrays per queue
    (and, before messages kept their time, six fields per message)."""
    body = {
        "lsn": lsn,
        "next_message_id": state.next_message_id,
        "definitions": [
            [kind, key, d.value, d.first_lsn, d.last_lsn, d.size]
            for (kind, key), d in state.definitions.items()
        ],
        "messages": [
            [
                mid,
                m.exchange,
                m.routing_key,
                m.properties,
                m.body,
                m.size,
                *([m.time] if with_time else []),
            ]
            for mid, m in state.messages.items()
        ],
        "queues": [[q[0], q[1], list(held.items())] for q, held in state.queues.items()],
    }
    return _framed(1, lsn, msgpack.packb(body, use_bin_type=True))


def _framed(version: int, lsn: int, payload: bytes) -> bytes:
    head = _HEADER.pack(CHECKPOINT_MAGIC, version, 0, lsn, len(payload))
    crc = mask_crc(crc32c.crc32c(payload, crc32c.crc32c(head)))
    return head + _CRC.pack(crc) + payload


def _messages(state: ReplayState) -> dict[int, tuple[object, ...]]:
    return {
        mid: (m.exchange, m.routing_key, m.properties, m.body, m.size, m.time, m.refs)
        for mid, m in state.messages.items()
    }


def test_version_2_round_trips_messages_exactly(tmp_path: Path) -> None:
    lsn, state = _state(tmp_path)
    data = b"".join(encode_checkpoint(state, lsn))
    assert _HEADER.unpack_from(data, 0)[1] == 2
    _lsn, again = decode_checkpoint(data)
    assert _messages(again) == _messages(state)
    assert again.queues == state.queues
    assert again.messages[1].refs == 2  # held by both queues


def test_messages_repeating_values_share_them_after_a_load() -> None:
    state = ReplayState()
    state.apply(1, RecordType.DEFINE, {"kind": "queue", "key": ["/", "a"], "value": {}}, 10)
    for mid in range(1, 6):  # equal values, distinct objects: as msgpack gives them
        state.apply(
            mid + 1,
            RecordType.MESSAGE,
            {
                "id": mid,
                "exchange": "".join(["e", "x"]),
                "routing_key": "".join(["r", "k"]),
                "properties": bytes(bytearray(b"pp")),
                "body": b"body%d" % mid,
                "queues": [["/", "a"]],
                "time": 1_790_000_000_000 + mid // 3,
            },
            10,
        )
    _lsn, again = decode_checkpoint(b"".join(encode_checkpoint(state, 6)))
    first, *rest = again.messages.values()
    for m in rest:
        assert m.exchange is first.exchange and m.routing_key is first.routing_key
        assert m.properties is first.properties
    assert [m.time for m in again.messages.values()] == [m.time for m in state.messages.values()]
    assert len({m.body for m in again.messages.values()}) == 5


@pytest.mark.parametrize("with_time", [True, False])
def test_a_version_1_checkpoint_still_loads(tmp_path: Path, with_time: bool) -> None:
    lsn, state = _state(tmp_path)
    again_lsn, again = decode_checkpoint(_v1_checkpoint(state, lsn, with_time))
    assert again_lsn == lsn
    expected = _messages(state)
    if not with_time:
        expected = {mid: (*m[:5], 0, m[6]) for mid, m in expected.items()}
    assert _messages(again) == expected
    assert again.queues == state.queues
    assert again.live_bytes == state.live_bytes
    assert list(again.definitions) == list(state.definitions)


def test_a_version_1_checkpoint_on_disk_is_used(tmp_path: Path) -> None:
    model = write_log(tmp_path, [*ready_queues_op(), ("publish", [("/", "a")], b"x")], 4096)
    d = wal_dir(tmp_path)
    [(lsn, path)] = list_checkpoints(d)
    _lsn, state = decode_checkpoint(path.read_bytes())
    path.write_bytes(_v1_checkpoint(state, lsn))
    recovered = recover_state(tmp_path, 4096)
    assert recovered.checkpoint_lsn == lsn and recovered.records_replayed == 0
    assert_state(recovered, model)


def test_an_unknown_version_is_ignored(tmp_path: Path) -> None:
    lsn, state = _state(tmp_path)
    payload = b"".join(encode_checkpoint(state, lsn))[HEADER_SIZE:]
    with pytest.raises(CheckpointError, match="unsupported version 3"):
        decode_checkpoint(_framed(3, lsn, payload))


@pytest.mark.parametrize(
    "change", ["message in no queue", "queue names a missing message", "odd pairs", "short message"]
)
def test_a_version_2_checkpoint_that_does_not_add_up_is_refused(
    tmp_path: Path, change: str
) -> None:
    lsn, state = _state(tmp_path)
    body = msgpack.unpackb(
        b"".join(encode_checkpoint(state, lsn))[HEADER_SIZE:], strict_map_key=False
    )
    if change == "message in no queue":
        body["messages"] += [99, *body["messages"][1:4], b"x", 10, body["messages"][6]]
    elif change == "queue names a missing message":
        body["queues"][0][2] += [99, 0]
    elif change == "odd pairs":
        body["queues"][0][2].append(7)
    else:
        body["messages"].pop()
    with pytest.raises(CheckpointError):
        decode_checkpoint(_framed(2, lsn, msgpack.packb(body, use_bin_type=True)))
