"""trimq-wal: output and exit status on healthy, torn, damaged and locked directories."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
import trio
from storage_helpers import (
    Op,
    batch_marks,
    flip_bit,
    queue_messages,
    ready_queues_op,
    record_spans,
    recover_state,
    segments,
    truncate,
    write_log,
)

from storage import WAL, RecordType
from storage.cli import ProgressBar, main
from storage.format import MARK_SIZE, encode_record

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def _history() -> list[Op]:
    ops: list[Op] = [*ready_queues_op()]
    ops += [("publish", [("/", "a")], bytes(10)) for _ in range(20)]
    ops += [("settle", ("/", "a"), list(range(1, 15))), ("deliver", ("/", "a"), [15])]
    return ops


@pytest.fixture
def healthy(tmp_path: Path) -> Path:
    write_log(tmp_path, _history(), 300, checkpoint=False)
    return tmp_path


def test_inspect_healthy(healthy: Path) -> None:
    code, text = run("inspect", str(healthy))
    assert code == 0
    for path in segments(healthy):
        assert path.name in text
    assert "CORRUPT" not in text
    assert "active" in text


def test_inspect_json(healthy: Path) -> None:
    code, text = run("inspect", str(healthy), "--json", "--records")
    assert code == 0
    report = json.loads(text)
    assert report["corrupt"] is False
    assert report["live_messages"] == 6
    assert [s["name"] for s in report["segments"]] == [p.name for p in segments(healthy)]
    assert sum(s["records"] for s in report["segments"]) == len(_history())
    rows = [r for r in report["records"] if r["type"] != "BATCH"]
    assert [r["lsn"] for r in rows] == list(range(1, len(_history()) + 1))
    # One write (a batch) went to each segment, each opened by its batch mark.
    marks = [r for r in report["records"] if r["type"] == "BATCH"]
    assert len(marks) == len(segments(healthy)) == sum(s["batches"] for s in report["segments"])
    assert (
        marks[0]["offset"] == 48 and marks[0]["lsn"] == 1 and "durable up to" in marks[0]["subject"]
    )
    by_lsn = {r["lsn"]: r for r in rows}
    assert by_lsn[5]["type"] == "MESSAGE" and by_lsn[5]["message_ids"] == [1]
    assert by_lsn[5]["live"] is False and by_lsn[24]["live"] is True
    assert by_lsn[25]["subject"] == "/:a" and by_lsn[25]["crc"] == "ok"
    seg = report["segments"][0]
    assert seg["live_bytes"] + seg["dead_bytes"] + 48 == seg["size"]


def test_inspect_records_text(healthy: Path) -> None:
    code, text = run("inspect", str(healthy), "--records")
    assert code == 0
    assert "MESSAGE" in text and "SETTLE" in text and "ids=1,2,3" in text


def test_verify_and_compact_healthy(healthy: Path) -> None:
    code, text = run("verify", str(healthy))
    assert (code, text.split(":")[0]) == (0, "OK")
    code, text = run("compact", str(healthy))
    assert code == 0 and "checkpoint at LSN 26" in text
    code, _ = run("verify", str(healthy))
    assert code == 0


def test_torn_tail_is_not_corruption(healthy: Path) -> None:
    newest = segments(healthy)[-1]
    truncate(newest, newest.stat().st_size - 3)
    code, text = run("inspect", str(healthy), "--json")
    report = json.loads(text)
    assert code == 0 and report["corrupt"] is False and report["torn_tail_bytes"] > 0
    assert report["segments"][-1]["invalid_bytes_at_end"] == report["torn_tail_bytes"]
    code, text = run("verify", str(healthy))
    assert code == 0 and "torn tail" in text


def _damage_sealed(directory: Path) -> tuple[Path, int]:
    victim = segments(directory)[1]
    offset = record_spans(victim)[1][0]
    flip_bit(victim, offset + 19)
    return victim, offset


def test_damaged_directory(healthy: Path) -> None:
    victim, offset = _damage_sealed(healthy)
    code, text = run("inspect", str(healthy))
    assert code == 1
    assert f"{victim.name} offset {offset}: CORRUPT: CRC mismatch" in text
    code, text = run("inspect", str(healthy), "--json", "--records")
    report = json.loads(text)
    assert code == 1 and report["corrupt"] is True
    seg = next(s for s in report["segments"] if s["name"] == victim.name)
    assert seg["corrupt"] and seg["crc_errors"] == 1 and seg["damage"][0]["offset"] == offset
    bad = [r for r in report["records"] if r["crc"] == "BAD"]
    assert len(bad) == 1 and bad[0]["offset"] == offset and bad[0]["segment"] == victim.name
    code, text = run("verify", str(healthy))
    assert code == 1 and "CORRUPT" in text
    code, text = run("compact", str(healthy))
    assert code == 1 and "trimq-wal inspect" in text


def test_repair_sets_aside_exactly_the_damage(healthy: Path) -> None:
    victim, offset = _damage_sealed(healthy)
    end = next((s[0] for s in record_spans(victim) if s[0] > offset), victim.stat().st_size)
    damaged = victim.read_bytes()[offset:end]
    code, text = run("repair", str(healthy), "--dry-run")
    assert code == 0 and "would set aside" in text
    assert victim.read_bytes()[offset:end] == damaged  # nothing changed
    code, text = run("repair", str(healthy), "--json")
    assert code == 0
    report = json.loads(text)
    (item,) = report["items"]
    assert (item["segment"], item["offset"], item["length"]) == (victim.name, offset, len(damaged))
    assert Path(item["quarantine_file"]).read_bytes() == damaged
    assert report["segments_rewritten"] == [victim.name]
    assert run("verify", str(healthy))[0] == 0
    state = recover_state(healthy, 300)  # replayable again; the lost record was LSN 6
    assert state.last_lsn == len(_history())
    code, text = run("repair", str(healthy))
    assert code == 0 and "nothing to repair" in text


def test_repair_text_output(healthy: Path) -> None:
    victim, offset = _damage_sealed(healthy)
    code, text = run("repair", str(healthy))
    assert code == 0
    assert f"set aside: {victim.name} offset {offset}" in text and "CRC mismatch" in text
    assert "quarantine" in text


def test_repair_of_a_missing_segment_and_a_bad_checkpoint(tmp_path: Path) -> None:
    model = write_log(tmp_path, _history(), 300)
    segments(tmp_path)[2].unlink()
    (ckpt,) = (tmp_path / "wal").glob("checkpoint-*.ckpt")
    flip_bit(ckpt, 100)
    assert run("verify", str(tmp_path))[0] == 1
    code, text = run("repair", str(tmp_path))
    assert code == 0 and "invalid checkpoint" in text and "records missing" in text
    assert run("verify", str(tmp_path))[0] == 0
    assert recover_state(tmp_path, 300).last_lsn == model.last_lsn


async def test_every_command_refuses_a_locked_directory(
    healthy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wal = WAL(healthy, segment_size=300, fsync=False)
    wal.open()
    try:
        for argv in (
            ["inspect", str(healthy)],
            ["verify", str(healthy)],
            ["compact", str(healthy)],
            ["repair", str(healthy)],
        ):
            code, _ = await trio.to_thread.run_sync(run, *argv)
            assert code == 2
            assert "locked" in capsys.readouterr().err
    finally:
        await wal.close(checkpoint=False)


def test_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("verify", str(tmp_path / "nope"))[0] == 2
    assert "not a directory" in capsys.readouterr().err


def test_empty_data_directory(tmp_path: Path) -> None:
    code, text = run("inspect", str(tmp_path))
    assert code == 0 and "0 segments" in text
    assert not (tmp_path / "wal").exists()


def test_compact_keeps_the_state(healthy: Path) -> None:
    before = recover_state(healthy, 300)
    assert run("compact", str(healthy))[0] == 0
    after = recover_state(healthy, 300)
    assert list(after.definitions.items()) == list(before.definitions.items())
    assert queue_messages(after) == queue_messages(before)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_only_on_a_terminal() -> None:
    term = FakeTerminal()
    bar = ProgressBar("inspect", term)
    bar(10, 50, 100)
    bar(20, 100, 100)
    bar.finish()
    assert "inspect [" in term.getvalue() and "100%" in term.getvalue()
    assert term.getvalue().endswith("\n")
    plain = io.StringIO()
    quiet = ProgressBar("inspect", plain)
    quiet(1, 1, 2)
    quiet.finish()
    assert plain.getvalue() == ""


def test_the_tools_script_runs(healthy: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "trimq_wal.py"), "verify", str(healthy)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK")


def test_repair_sets_aside_only_a_record_whose_payload_is_bad(tmp_path: Path) -> None:
    """A record with a valid CRC and a bad payload, mid-segment in a batch that a later batch
    calls durable: the records after it still follow on from its LSN and are kept."""
    write_log(tmp_path, [*_history()[:5], ("sync",), *_history()[5:7]], 4096, checkpoint=False)
    [segment] = segments(tmp_path)
    spans = record_spans(segment)
    off, size, lsn = spans[4]
    data = segment.read_bytes()
    bad = encode_record(lsn, RecordType.SETTLE, msgpack.packb({"queue": "a", "ids": [1]}))
    segment.write_bytes(data[:off] + bad + data[off + size :])
    code, text = run("repair", str(tmp_path), "--json")
    assert code == 0
    [item] = json.loads(text)["items"]
    assert (item["offset"], item["length"], item["lsn"]) == (off, len(bad), lsn)
    assert [s[2] for s in record_spans(segment)] == [s[2] for s in spans if s[2] != lsn]
    assert recover_state(tmp_path, 4096).last_lsn == spans[-1][2]


def test_repair_cuts_a_torn_last_batch_whole(tmp_path: Path) -> None:
    """Damage in the last batch, with a valid record after it: a torn tail, which repair cuts
    as startup would, keeping the whole tail (the valid record too) in quarantine."""
    write_log(tmp_path, [*_history()[:5], ("sync",), *_history()[5:8]], 4096, checkpoint=False)
    [segment] = segments(tmp_path)
    spans = record_spans(segment)
    flip_bit(segment, spans[5][0] + 20)  # the first record of the last batch; two follow
    off = batch_marks(segment)[-1].offset  # its batch mark goes with it
    assert off == spans[5][0] - MARK_SIZE
    data = segment.read_bytes()
    code, text = run("verify", str(tmp_path))
    assert code == 0 and "torn tail (cut at startup)" in text and "at least 3 records" in text
    code, text = run("repair", str(tmp_path), "--json")
    assert code == 0
    report = json.loads(text)
    [item] = report["items"]
    assert (item["offset"], item["length"]) == (off, len(data) - off)
    assert item["reason"].startswith("torn tail: ")
    assert Path(item["quarantine_file"]).read_bytes() == data[off:]
    assert report["segments_truncated"] == [segment.name]
    assert segment.read_bytes() == data[:off]
    assert recover_state(tmp_path, 4096).last_lsn == spans[4][2]
