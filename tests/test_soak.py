"""Soak: a long run of short-lived clients leaves the broker's memory, descriptors and trio
tasks flat (tests/soak.py has the workload).

    TRIMQ_SOAK_SECONDS=1800 pytest -q -s tests/test_soak.py     # the long setting

Without TRIMQ_SOAK_SECONDS the run is short (CI). It is cut into rounds; after each one the
clients pause, the durable queue is drained and the broker is sampled idle. Asserted: no client
ever failed; every idle sample has exactly the first one's (taken after the warm-up round) task
and descriptor counts and the same number of live objects of each of trimq's own types (the
control socket's `object_counts`); over the second half of the run, the least-squares fit of
idle RSS and of Python's allocated blocks rises by less than a fixed allowance (what bounded
caches and allocator high-water marks may still add; a leak keeps going, so the longer the run,
the smaller the slope that fails); nothing the clients declared is left behind; every confirmed
persistent message was acked. TRIMQ_SOAK_REPORT=path writes the samples and slopes as JSON.
trimq-only: it watches its own trimq-server process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Broker, start_server, stop_server
from soak import (
    DURABLE_QUEUE,
    Gate,
    Sample,
    Totals,
    control,
    drain,
    idle_sample,
    sample,
    second_half,
    slope,
    worker,
)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: samples its own trimq-server process",
)

SECONDS = float(os.environ.get("TRIMQ_SOAK_SECONDS", "40"))  # of load, pauses not counted
WORKERS = int(os.environ.get("TRIMQ_SOAK_WORKERS", "4"))
ROUND = min(20.0, max(3.0, SECONDS / 12))  # seconds of load between idle samples
LOAD_SAMPLE_EVERY = 0.5
# What the fitted line may still rise over the second half. Measured without a leak: RSS steps
# of up to 2 MiB (the first online compaction, allocator arenas), allocated blocks swinging by
# ~5,000 (trio's deadline heap is pruned lazily). A leaked connection is ~5 KiB and ~100 blocks.
RSS_ALLOWANCE = 4 * 2**20
BLOCKS_ALLOWANCE = 20_000


def fit(samples: list[Sample], attr: str) -> float:
    """Slope per second of `attr` over the second half of `samples`."""
    return slope(second_half([(s.t, getattr(s, attr)) for s in samples]))


def summary(
    idle: list[Sample], load: list[Sample], totals: Totals, elapsed: float
) -> dict[str, Any]:
    half = (idle[-1].t - idle[0].t) / 2 if len(idle) > 1 else elapsed
    return {
        "seconds": round(elapsed, 1),
        "workers": WORKERS,
        "cycles": totals.cycles,
        "cycles_per_second": round(totals.cycles / elapsed, 1),
        "confirmed": totals.confirmed + totals.durable_confirmed,
        "consumed": totals.consumed,
        "slopes": {
            "idle_rss_bytes_per_s": round(fit(idle, "rss"), 1),
            "idle_allocated_blocks_per_s": round(fit(idle, "blocks"), 2),
            "idle_gc_objects_per_s": round(fit(idle, "gc_objects"), 3),
            "idle_fds_per_s": round(fit(idle, "fds"), 5),
            "idle_tasks_per_s": round(fit(idle, "tasks"), 5),
            "load_rss_bytes_per_s": round(fit(load, "rss"), 1),
            "load_fds_per_s": round(fit(load, "fds"), 5),
            "load_tasks_per_s": round(fit(load, "tasks"), 5),
        },
        "limits": {
            "rss_bytes_per_s": round(RSS_ALLOWANCE / half, 1),
            "allocated_blocks_per_s": round(BLOCKS_ALLOWANCE / half, 2),
        },
        "first_idle": {
            "rss": idle[0].rss,
            "fds": idle[0].fds,
            "tasks": idle[0].tasks,
            "blocks": idle[0].blocks,
        }
        if idle
        else {},
        "last_idle": {
            "rss": idle[-1].rss,
            "fds": idle[-1].fds,
            "tasks": idle[-1].tasks,
            "blocks": idle[-1].blocks,
        }
        if idle
        else {},
        "errors": totals.errors,
        "idle": [vars(s) for s in idle],
        "load": [vars(s) for s in load],
    }


def own_objects(data_dir: Path) -> dict[str, int]:
    counts = control(data_dir, "object_counts")["types"]
    return {name: n for name, n in counts.items() if name.startswith("trimq.")}


def test_object_counts_see_a_client_and_forget_it_once_gone(node: Broker) -> None:
    assert node.data_dir is not None
    before = own_objects(node.data_dir)
    conn = node.connect()
    ch = conn.channel()
    ch.queue_declare("", exclusive=True)
    ch.basic_consume(ch.queue_declare("", exclusive=True).method.queue, lambda *a: None)
    during = own_objects(node.data_dir)
    for name, count in (
        ("trimq.server.connection.ServerConnection", 1),
        ("trimq.server.channel.Channel", 1),
        ("trimq.broker.queue.Queue", 2),
        ("trimq.broker.queue.Consumer", 1),
    ):
        assert during.get(name, 0) - before.get(name, 0) == count, name
    conn.close()
    deadline = time.monotonic() + 10
    while (after := own_objects(node.data_dir)) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert after == before


@pytest.mark.timeout(SECONDS * 2 + 120)  # the idle samples take time too
def test_short_lived_clients_leave_memory_descriptors_and_tasks_flat(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # Small segments and frequent checks, so that online compaction runs during the soak too.
    server = start_server(
        data,
        "--wal-segment-size",
        str(256 * 1024),
        "--wal-compaction-interval",
        "1",
        log_path=tmp_path / "server.log",
    )
    assert server.process is not None
    pid = server.process.pid
    setup = server.connect()
    setup.channel().queue_declare(DURABLE_QUEUE, durable=True)
    setup.close()

    gate, totals = Gate(), Totals()
    failed = threading.Event()
    threads = [
        threading.Thread(
            target=worker, daemon=True, args=(server.params(), n, gate, totals, failed.set)
        )
        for n in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    idle: list[Sample] = []
    load: list[Sample] = []
    started = time.monotonic()
    rounds = max(4, round(SECONDS / ROUND))
    try:
        for _ in range(rounds):
            gate.resume()
            round_end = time.monotonic() + SECONDS / rounds
            while not failed.is_set() and (left := round_end - time.monotonic()) > 0:
                failed.wait(min(LOAD_SAMPLE_EVERY, left))
                load.append(sample(pid, data, started, totals.cycles))
            gate.pause()
            if failed.is_set():
                break
            drain(server.params(), totals)
            idle.append(idle_sample(pid, data, started, totals.cycles, idle[0] if idle else None))
    finally:
        gate.stop()
        for thread in threads:
            thread.join(30)
    report = summary(idle, load, totals, time.monotonic() - started)
    if os.environ.get("TRIMQ_SOAK_REPORT"):
        Path(os.environ["TRIMQ_SOAK_REPORT"]).write_text(json.dumps(report, indent=1))
    print("\nsoak:", json.dumps({k: v for k, v in report.items() if k not in ("idle", "load")}))
    exchanges = control(data, "list_exchanges", vhost="/", items=["name"])
    queues = control(data, "list_queues", vhost="/", items=["name", "messages"])
    stop_server(server)

    assert totals.errors == []
    assert totals.cycles >= 4 * WORKERS
    first = idle[0]
    assert [
        (s.t, s.tasks, s.fds) for s in idle if (s.tasks, s.fds) != (first.tasks, first.fds)
    ] == [], f"first idle sample: {first}"
    assert [(s.t, s.own_objects) for s in idle if s.own_objects != first.own_objects] == [], (
        f"first idle sample: {first.own_objects}"
    )
    slopes, limits = report["slopes"], report["limits"]
    assert slopes["idle_rss_bytes_per_s"] < limits["rss_bytes_per_s"], report["slopes"]
    assert slopes["idle_allocated_blocks_per_s"] < limits["allocated_blocks_per_s"], slopes
    assert [e["name"] for e in exchanges if e["name"].startswith("soak.")] == []
    assert queues == [{"name": DURABLE_QUEUE, "messages": 0}]
    assert totals.durable_acked == totals.durable_confirmed
