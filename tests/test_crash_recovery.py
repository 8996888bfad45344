"""Crash-recovery fuzzing: publishers with confirms and acking consumers against a real
trimq-server that is SIGKILLed at random moments and restarted, round after round.

Between kill and restart the tail of the log is damaged as a power cut could leave it
(SIGKILL keeps the page cache, so everything written is there): the last write (the last
group-commit batch) is truncated inside, or one byte of it is flipped, or garbage is appended
after it. A batch is damaged only when none of its records was confirmed (no confirmed
message, no definition): a power cut cannot damage what an fsync covered, and a confirm
waits for that fsync. Otherwise garbage is appended. The broker must come back by itself,
cutting the torn tail; a start that fails is counted as needing a repair (the test runs
`trimq-wal repair` to go on, and fails at the end).

After every restart: every confirmed persistent message is present unless a consumer acked it;
nothing that was never published appears; no message appears twice; durable definitions are
there; transient messages and non-durable queues are gone.

    TRIMQ_CRASH_ROUNDS=200 TRIMQ_CRASH_SEED=1234 \
        .venv/bin/python -m pytest tests/test_crash_recovery.py -s

CI runs the default of 3 rounds (one of each kind of damage); the seed is printed so a failing
run can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pika.exceptions
import pytest
from conftest import Broker, start_server, stop_server

from storage.cli import main as trimq_wal
from storage.records import RecordType
from storage.segment import SegmentReader, list_segments, read_segment

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: kills and restarts its own trimq-server",
)

ROUNDS = int(os.environ.get("TRIMQ_CRASH_ROUNDS", "3"))
SEED = int(os.environ.get("TRIMQ_CRASH_SEED", str(random.randrange(2**32))))
QUEUES = ("crash.a", "crash.b")  # both bound to the fanout below: every message goes to both
EXCHANGE = "crash.fanout"
PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)


@dataclass
class Ledger:
    """What the clients know, shared by their threads."""

    attempted: set[bytes] = field(default_factory=set)  # persistent publishes sent
    confirmed: set[bytes] = field(default_factory=set)  # ... and acked by the broker
    transient: set[bytes] = field(default_factory=set)
    acked: dict[str, set[bytes]] = field(default_factory=lambda: {q: set() for q in QUEUES})
    lock: threading.Lock = field(default_factory=threading.Lock)


def publisher(
    broker: Broker, ledger: Ledger, name: str, stop: threading.Event, rng: random.Random
) -> None:
    try:
        conn = broker.connect(connection_attempts=1)
        ch = conn.channel()
        ch.confirm_delivery()
        i = 0
        while not stop.is_set():
            i += 1
            if rng.random() < 0.1:
                body = f"{name}-t{i}".encode()
                with ledger.lock:
                    ledger.transient.add(body)
                ch.basic_publish(EXCHANGE, "", body, TRANSIENT)
                continue
            body = f"{name}-{i}".encode() + b"." * rng.randrange(0, 3000)
            with ledger.lock:
                ledger.attempted.add(body)
            ch.basic_publish(EXCHANGE, "", body, PERSISTENT)
            with ledger.lock:
                ledger.confirmed.add(body)
    except (pika.exceptions.AMQPError, OSError):
        return  # the broker was killed


def firehose(
    broker: Broker, ledger: Ledger, name: str, stop: threading.Event, rng: random.Random
) -> None:
    """Persistent publishes without confirms: they keep the committer busy, so that a kill
    often lands while a batch nobody was told about is being written (the unsynced tail)."""
    try:
        conn = broker.connect(connection_attempts=1)
        ch = conn.channel()
        i = 0
        while not stop.is_set():
            for _ in range(10):
                i += 1
                body = f"{name}-f{i}".encode() + b"." * rng.randrange(0, 500)
                with ledger.lock:
                    ledger.attempted.add(body)
                ch.basic_publish(EXCHANGE, "", body, PERSISTENT)
            conn.process_data_events(time_limit=0.01)
    except (pika.exceptions.AMQPError, OSError):
        return


def consumer(
    broker: Broker, ledger: Ledger, queue: str, stop: threading.Event, rng: random.Random
) -> None:
    try:
        conn = broker.connect(connection_attempts=1)
        ch = conn.channel()
        ch.basic_qos(prefetch_count=rng.choice([1, 10, 100]))

        def on_message(channel, method, _props, body) -> None:  # type: ignore[no-untyped-def]
            if rng.random() < 0.2:
                return  # leave it unacked: it must come back after the crash
            with ledger.lock:
                ledger.acked[queue].add(body)
            channel.basic_ack(method.delivery_tag)

        ch.basic_consume(queue, on_message)
        while not stop.is_set():
            conn.process_data_events(time_limit=0.05)
    except (pika.exceptions.AMQPError, OSError):
        return


def declare_topology(broker: Broker) -> None:
    conn = broker.connect()
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, "fanout", durable=True)
    for queue in QUEUES:
        ch.queue_declare(queue, durable=True)
        ch.queue_bind(queue, EXCHANGE)
    ch.queue_declare("crash.transient-queue")  # not durable
    ch.queue_bind("crash.transient-queue", EXCHANGE)
    conn.close()


def check_after_restart(broker: Broker, ledger: Ledger) -> tuple[int, int]:
    """Verify the invariants; returns (messages checked, confirmed messages expected)."""
    conn = broker.connect()
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, "fanout", durable=True, passive=True)
    checked = expected_total = 0
    for queue in QUEUES:
        ch.queue_declare(queue, durable=True, passive=True)
        present: list[bytes] = []
        while True:
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            present.append(body)
        seen = set(present)
        assert len(seen) == len(present), f"{queue}: a message appears twice"
        unknown = seen - ledger.attempted
        assert not unknown, f"{queue}: never-published messages appeared: {sorted(unknown)[:3]}"
        expected = ledger.confirmed - ledger.acked[queue]
        missing = expected - seen
        assert not missing, (
            f"{queue}: {len(missing)} confirmed messages lost, e.g. "
            f"{sorted(missing)[:3]} (seed {SEED})"
        )
        checked += len(present)
        expected_total += len(expected)
        with ledger.lock:  # drained with auto-ack: they may still come back after a crash
            ledger.acked[queue].update(seen)
    ch.close()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        conn.channel().queue_declare("crash.transient-queue", passive=True)
    assert info.value.reply_code == 404
    conn.close()
    return checked, expected_total


DAMAGE_KINDS = ("truncate", "flip", "garbage")


def damage_unsynced_tail(data: Path, ledger: Ledger, kind: str, rng: random.Random) -> str:
    """Damage the last write of the newest segment the way `kind` says, if nothing in it was
    confirmed; else append garbage after it. Returns what was done."""
    _base, path = list_segments(data / "wal")[-1]
    content = read_segment(path)
    reader = SegmentReader(path, content, _base)
    records = list(reader.records())
    last = reader.marks[-1] if reader.marks else None
    # No batch yet, or the kill itself left a torn write (a segment being created): only
    # garbage after it.
    confirmed = last is None or bool(reader.damage)
    for off, _size, _lsn, rtype, payload in records:
        if last is None or off < last.offset:
            continue
        if rtype == RecordType.DEFINE or (
            rtype == RecordType.MESSAGE and payload["body"] in ledger.confirmed
        ):
            confirmed = True
    if confirmed or kind == "garbage":
        with path.open("ab") as f:
            f.write(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        if kind == "garbage":
            return "garbage"
        return f"garbage (no unconfirmed last batch, not {kind})"
    assert last is not None
    at = rng.randrange(last.offset + (1 if kind == "truncate" else 0), len(content))
    if kind == "truncate":
        with path.open("r+b") as f:
            f.truncate(at)
    else:
        damaged = bytearray(content)
        damaged[at] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
    return f"{kind} at {at} of {len(content)} (last batch from {last.offset})"


def restart(data: Path, log_path: Path) -> tuple[Broker, bool]:
    """Start the broker on `data`; (broker, whether it needed `trimq-wal repair` first)."""
    args = ("--wal-segment-size", "4096", "--wal-compaction-interval", "0.1")
    try:
        return start_server(data, *args, log_path=log_path), False
    except RuntimeError:
        print(f"start refused: {log_path.read_text()[-2000:]}")
        assert trimq_wal(["repair", str(data)]) == 0
        return start_server(data, *args, log_path=log_path.with_suffix(".repaired.log")), True


def torn_tails(log_path: Path) -> list[dict[str, object]]:
    """The torn tails a broker's log says it cut at start-up."""
    out = []
    for line in log_path.read_text().splitlines():
        if '"wal.torn_tail"' in line:
            out.append(json.loads(line))
    return out


def test_kill_minus_nine_loses_no_confirmed_message(tmp_path: Path) -> None:
    print(f"\ncrash-recovery: {ROUNDS} rounds, seed {SEED}")
    compactions = 0
    rng = random.Random(SEED)
    data = tmp_path / "data"
    ledger = Ledger()
    # Tiny segments and frequent compaction checks: kills also land inside online compactions.
    server = start_server(
        data,
        "--wal-segment-size",
        str(rng.choice([4096, 65536, 1 << 20])),
        "--wal-compaction-interval",
        "0.1",
        log_path=tmp_path / "server-0.log",
    )
    declare_topology(server)
    confirmed_total = 0
    kinds: dict[str, int] = {}
    repairs = cuts = records_cut = bytes_cut = 0
    for round_no in range(1, ROUNDS + 1):
        stop = threading.Event()
        threads = (
            [
                threading.Thread(
                    target=publisher,
                    args=(server, ledger, f"r{round_no}p{i}", stop, random.Random(rng.random())),
                )
                for i in range(3)
            ]
            + [
                threading.Thread(
                    target=firehose,
                    args=(server, ledger, f"r{round_no}", stop, random.Random(rng.random())),
                ),
            ]
            + [
                threading.Thread(
                    target=consumer, args=(server, ledger, queue, stop, random.Random(rng.random()))
                )
                for queue in QUEUES
            ]
        )
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.2, 1.5))
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        kind = DAMAGE_KINDS[(round_no - 1) % len(DAMAGE_KINDS)]
        done = damage_unsynced_tail(data, ledger, kind, rng)
        kinds[done.split(" ")[0]] = kinds.get(done.split(" ")[0], 0) + 1
        log_path = tmp_path / f"server-{round_no}.log"
        server, repaired = restart(data, log_path)
        repairs += repaired
        cut = torn_tails(log_path)
        cuts += len(cut)
        records_cut += sum(int(str(c["dropped_records"])) for c in cut)
        bytes_cut += sum(int(str(c["dropped_bytes"])) for c in cut)
        compactions += (
            (tmp_path / f"server-{round_no - 1}.log").read_text().count('"event": "wal.compacted"')
        )
        checked, expected = check_after_restart(server, ledger)
        declare_topology(server)  # the non-durable queue again; the durable part is unchanged
        confirmed_total = len(ledger.confirmed)
        print(
            f"round {round_no}: {confirmed_total} confirmed so far, {expected} expected "
            f"present, {checked} present, 0 lost; {compactions} online compactions so far; "
            f"tail: {done}; cut at start: {cut[0]['dropped_bytes'] if cut else 0} bytes"
            f"{'; NEEDED A REPAIR' if repaired else ''}"
        )
    assert stop_server(server) == 0
    print(
        f"crash-recovery summary: {ROUNDS} rounds, seed {SEED}: {confirmed_total} confirmed "
        f"messages, 0 lost; tail damage {kinds}; {cuts} torn tails cut at start "
        f"({records_cut} records, {bytes_cut} bytes); {repairs} starts needed a repair; "
        f"{compactions} online compactions"
    )
    assert confirmed_total > 0, "the publishers never got a confirm: the test proved nothing"
    assert repairs == 0, f"{repairs} starts were refused and needed trimq-wal repair"


def _last_batch(data: Path) -> tuple[Path, int, list[bytes]]:
    """The newest segment, where its last batch starts and the bodies of its messages."""
    base, path = list_segments(data / "wal")[-1]
    reader = SegmentReader(path, read_segment(path), base)
    records = list(reader.records())
    start = reader.marks[-1].offset if reader.marks else len(reader.data)
    return (
        path,
        start,
        [p["body"] for off, _s, _l, t, p in records if off > start and t == RecordType.MESSAGE],
    )


def test_a_byte_flipped_in_the_unconfirmed_last_batch_does_not_keep_the_broker_down(
    tmp_path: Path,
) -> None:
    """kill -9 during load, one byte flipped a few hundred bytes before the end of the active
    segment, inside the last write (whose messages were never confirmed): the broker cuts the
    torn tail, says so in its log, and starts with every confirmed message."""
    data = tmp_path / "data"
    server = start_server(data, log_path=tmp_path / "first.log")
    conn = server.connect()
    ch = conn.channel()
    ch.queue_declare("q", durable=True)
    ch.confirm_delivery()
    confirmed = [f"confirmed-{i}".encode() for i in range(50)]
    for body in confirmed:
        ch.basic_publish("", "q", body, PERSISTENT)
    unconfirmed = conn.channel()  # no confirms: nothing it publishes is ever confirmed
    burst = [f"burst-{i}".encode() + b"." * 200 for i in range(40)]
    for body in burst:
        unconfirmed.basic_publish("", "q", body, PERSISTENT)
    deadline = time.monotonic() + 10
    while burst[-1] not in _last_batch(data)[2]:  # written, fsynced or not
        assert time.monotonic() < deadline, "the burst never reached the log"
        time.sleep(0.01)
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    path, start, bodies = _last_batch(data)
    assert bodies and not set(bodies) & set(confirmed)
    size = path.stat().st_size
    at = max(start, size - 300)
    content = bytearray(path.read_bytes())
    content[at] ^= 0x10
    path.write_bytes(bytes(content))

    log_path = tmp_path / "second.log"
    server = start_server(data, log_path=log_path)  # no repair needed
    [cut] = torn_tails(log_path)
    assert cut["offset"] <= at and cut["dropped_bytes"] == size - int(str(cut["offset"]))
    assert int(str(cut["dropped_records"])) >= 1 and Path(str(cut["copy"])).exists()
    ch = server.connect().channel()
    present = []
    while True:
        method, _props, body = ch.basic_get("q", auto_ack=True)
        if method is None:
            break
        present.append(body)
    assert present[: len(confirmed)] == confirmed
    assert set(present[len(confirmed) :]) <= set(burst)
    assert len(present) < len(confirmed) + len(burst)  # the torn batch is gone
    assert stop_server(server) == 0
