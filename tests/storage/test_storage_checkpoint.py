"""Checkpoints: the state at an LSN, written atomically; a bad one is ignored, never trusted."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
    checkpoint_name,
    decode_checkpoint,
    encode_checkpoint,
    list_checkpoints,
    load_newest,
    write_checkpoint,
)
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
    ops = [*ready_queues_op(), ("publish", [("/", "a"), ("/", "b")], b"body"),
           ("deliver", ("/", "a"), [1]), ("define", "user", ["u"], {"tags": ["admin"]})]
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
        k: (d.first_lsn, d.last_lsn) for k, d in state.definitions.items()}


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
