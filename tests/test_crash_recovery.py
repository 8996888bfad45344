"""Crash-recovery fuzzing: publishers with confirms and acking consumers against a real
trimq-server that is SIGKILLed at random moments and restarted, round after round.

After every restart: every confirmed persistent message is present unless a consumer acked it;
nothing that was never published appears; no message appears twice; durable definitions are
there; transient messages and non-durable queues are gone.

    TRIMQ_CRASH_ROUNDS=200 TRIMQ_CRASH_SEED=1234 \
        .venv/bin/python -m pytest tests/test_crash_recovery.py -s

CI runs the default of 3 rounds; the seed is printed so a failing run can be replayed.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.skipif(bool(os.environ.get("TRIMQ_TEST_URL")),
                                reason="trimq-only: kills and restarts its own trimq-server")

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


def publisher(broker: Broker, ledger: Ledger, name: str, stop: threading.Event,
              rng: random.Random) -> None:
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


def consumer(broker: Broker, ledger: Ledger, queue: str, stop: threading.Event,
             rng: random.Random) -> None:
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
        assert not missing, (f"{queue}: {len(missing)} confirmed messages lost, e.g. "
                             f"{sorted(missing)[:3]} (seed {SEED})")
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


def test_kill_minus_nine_loses_no_confirmed_message(tmp_path: Path) -> None:
    print(f"\ncrash-recovery: {ROUNDS} rounds, seed {SEED}")
    compactions = 0
    rng = random.Random(SEED)
    data = tmp_path / "data"
    ledger = Ledger()
    # Tiny segments and frequent compaction checks: kills also land inside online compactions.
    server = start_server(data, "--wal-segment-size", str(rng.choice([4096, 65536, 1 << 20])),
                          "--wal-compaction-interval", "0.1",
                          log_path=tmp_path / "server-0.log")
    declare_topology(server)
    confirmed_total = 0
    for round_no in range(1, ROUNDS + 1):
        stop = threading.Event()
        threads = [
            threading.Thread(target=publisher, args=(server, ledger, f"r{round_no}p{i}", stop,
                                                      random.Random(rng.random())))
            for i in range(3)
        ] + [
            threading.Thread(target=consumer, args=(server, ledger, queue, stop,
                                                    random.Random(rng.random())))
            for queue in QUEUES
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.2, 1.5))
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server = start_server(data, "--wal-segment-size", "4096",
                              "--wal-compaction-interval", "0.1",
                              log_path=tmp_path / f"server-{round_no}.log")
        compactions += (tmp_path / f"server-{round_no - 1}.log").read_text().count(
            '"event": "wal.compacted"')
        checked, expected = check_after_restart(server, ledger)
        declare_topology(server)  # the non-durable queue again; the durable part is unchanged
        confirmed_total = len(ledger.confirmed)
        print(f"round {round_no}: {confirmed_total} confirmed so far, {expected} expected "
              f"present, {checked} present, 0 lost; {compactions} online compactions so far")
    assert stop_server(server) == 0
    assert confirmed_total > 0, "the publishers never got a confirm: the test proved nothing"
