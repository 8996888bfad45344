"""Throughput against the number of queues and of connections, trimq and RabbitMQ side by side.

    .venv/bin/python bench/scaling.py                  # both brokers, 1/10/100/1,000, 3 rounds
    .venv/bin/python bench/scaling.py --quick          # smoke setting, well under a minute
    .venv/bin/python bench/scaling.py --url trimq=amqp://guest:guest@127.0.0.1:5672/
    .venv/bin/python bench/chart.py                    # draws bench/scaling.png from the JSON

Two series, end-to-end deliveries/s (messages delivered / time from the first publish to the
last delivery):
- queues: one publisher connection spreads 16-byte transient messages round-robin over N
  non-durable queues; consumers on all N queues (one consumer per queue, the queues spread over
  up to 4 consumer connections in up to 4 processes, prefetch 1000 per consumer, multiple acks).
- connections: N connections, each publishing to and consuming from its own queue on one channel
  (the connections spread over up to 4 client processes, each driving its connections with a
  selector); all start publishing together once every connection is set up.

Brokers are started as bench/run.py starts them (the same classes), unless `--url NAME=URL`
names brokers already running. Each point is measured once per round on every broker, the order
alternating per point and round; the JSON (bench/results/scaling-DATE.json and
bench/results/scaling.json, the latest) keeps every run, the median, min and max.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import amqp_client as ac  # noqa: E402
import loadgen as lg  # noqa: E402
import run  # noqa: E402

RESULTS_DIR = HERE / "results"
LATEST = RESULTS_DIR / "scaling.json"
BODY = b"\x2a" * 16
MAX_PROCS = 4  # client processes per side; the machine has 2 cores
CHUNK = 4096  # publishes per send once a socket is writable (whole messages, ~4 KiB)


class Endpoint:
    """A broker already running, named by URL (no pid: no CPU figures)."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url


# -- queues: one publisher over N queues --------------------------------------------------------
def queue_consumer_proc(
    url: str, queues: list[str], expected: int, prefetch: int, ready: Any, idle: float
) -> dict[str, Any]:
    """One connection, one channel, one consumer per queue (consumer tags of equal length, so
    the scan of amqp_client.Consumer finds the delivery tag)."""
    client = ac.connect_channel(url)
    cons = ac.Consumer(client, 1, queues[0], prefetch=prefetch)
    for i, q in enumerate(queues[1:], 1):
        client.basic_consume(1, q, consumer_tag=f"{cons.consumer_tag[:-6]}{i:06d}")
    ready.set()
    cons.run(expected, idle)
    client.close()
    return {"count": cons.count, "last": cons.last_time, "cpu": time.process_time()}


def queue_publisher_proc(url: str, queues: list[str], n: int) -> dict[str, Any]:
    """Publishes n messages, one to each queue in turn, pre-encoded, ~1 MiB per sendall."""
    client = ac.connect_channel(url)
    cycle = b"".join(ac.encode_message(1, "", q, BODY, None, client.frame_max) for q in queues)
    per_batch = max(1, (1 << 20) // len(cycle))
    batch = cycle * per_batch
    assert client.sock is not None
    t0 = time.monotonic()
    cycles = n // len(queues)
    for _ in range(cycles // per_batch):
        client.sock.sendall(batch)
    if cycles % per_batch:
        client.sock.sendall(cycle * (cycles % per_batch))
    client.close()
    return {"t0": t0, "closed": time.monotonic(), "cpu": time.process_time()}


def measure_queues(target: Any, nq: int, messages: int, prefetch: int, idle: float) -> float:
    queues = [f"bench.scale.q{i}" for i in range(nq)]
    per_queue = max(1, messages // nq)
    n = per_queue * nq
    c = lg.control(target)
    try:
        for q in queues:
            lg.fresh_queue(c, q)
        procs = min(MAX_PROCS, nq)
        groups = [queues[i::procs] for i in range(procs)]
        with lg.Workers() as ws:
            events = [lg.CTX.Event() for _ in groups]
            cons = [
                ws.spawn(
                    f"consumer{i}",
                    queue_consumer_proc,
                    target.url,
                    g,
                    per_queue * len(g),
                    prefetch,
                    ev,
                    idle,
                )
                for i, (g, ev) in enumerate(zip(groups, events, strict=True))
            ]
            for ev, w in zip(events, cons, strict=True):
                if not ev.wait(120):
                    w.get(1)
                    raise lg.ScenarioError("consumer did not start")
            pub = ws.spawn("publisher", queue_publisher_proc, target.url, queues, n)
            limit = 120 + n / 1000
            p = pub.get(limit)
            rs = [w.get(limit) for w in cons]
    finally:
        for q in queues:
            c.queue_delete(1, q)
        c.close()
    if sum(r["count"] for r in rs) != n:
        raise lg.ScenarioError(f"{sum(r['count'] for r in rs)} deliveries for {n} publishes")
    return float(n / (max(r["last"] for r in rs) - p["t0"]))


# -- connections: N connections, each publishing and consuming on its own queue -----------------
@dataclass
class Conn:
    """One connection of the connections series: its consumer and what is left to publish."""

    cons: ac.Consumer
    sock: socket.socket
    out: bytes
    chunk: int  # bytes per send: a whole number of messages
    sent: int = 0


def connections_proc(
    url: str, names: list[str], per_conn: int, prefetch: int, ready: Any, go: Any, idle: float
) -> dict[str, Any]:
    """Set up one connection per queue name (declare, consume), signal `ready`, wait for `go`,
    then publish `per_conn` messages on each while consuming them, driven by one selector."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < len(names) + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, len(names) + 1000), hard))
    conns: list[Conn] = []
    for q in names:
        client = ac.connect_channel(url)
        lg.fresh_queue(client, q)
        cons = ac.Consumer(client, 1, q, prefetch=prefetch)
        cons._take_setup_leftover()
        msg = ac.encode_message(1, "", q, BODY, None, client.frame_max)
        assert client.sock is not None
        # whole messages per send: an ack the consumer sends goes between two frames
        conns.append(Conn(cons, client.sock, msg * per_conn, len(msg) * max(1, CHUNK // len(msg))))
    ready.set()
    go.wait()
    sel = selectors.DefaultSelector()
    for conn in conns:
        conn.sock.settimeout(None)
        sel.register(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
    t0 = time.monotonic()
    left = len(conns)
    while left:
        events = sel.select(idle)
        if not events:
            counts = sum(c.cons.count for c in conns)
            raise ac.BrokerError(f"nothing for {idle} s; {counts} of {per_conn * len(conns)}")
        for key, mask in events:
            conn = key.data
            if mask & selectors.EVENT_WRITE and conn.sent < len(conn.out):
                end = min(len(conn.out), conn.sent + conn.chunk)
                conn.sock.sendall(conn.out[conn.sent : end])
                conn.sent = end
                if end == len(conn.out):
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if mask & selectors.EVENT_READ:
                conn.cons.step()
                if conn.cons.count >= per_conn:
                    conn.cons.ack_all()
                    sel.unregister(conn.sock)
                    left -= 1
    sel.close()
    last = max(c.cons.last_time for c in conns)
    count = sum(c.cons.count for c in conns)
    for c in conns:
        c.cons.client.close()
    return {"t0": t0, "last": last, "count": count, "cpu": time.process_time()}


def measure_connections(target: Any, nc: int, messages: int, prefetch: int, idle: float) -> float:
    per_conn = max(1, messages // nc)
    n = per_conn * nc
    names = [f"bench.scale.c{i}" for i in range(nc)]
    procs = min(MAX_PROCS, nc)
    groups = [names[i::procs] for i in range(procs)]
    try:
        with lg.Workers() as ws:
            go = lg.CTX.Event()
            events = [lg.CTX.Event() for _ in groups]
            workers = [
                ws.spawn(
                    f"connections{i}",
                    connections_proc,
                    target.url,
                    g,
                    per_conn,
                    prefetch,
                    ev,
                    go,
                    idle,
                )
                for i, (g, ev) in enumerate(zip(groups, events, strict=True))
            ]
            for ev, w in zip(events, workers, strict=True):
                if not ev.wait(120 + nc / 10):
                    w.get(1)
                    raise lg.ScenarioError("connections not set up in time")
            go.set()
            rs = [w.get(120 + n / 1000) for w in workers]
    finally:
        c = lg.control(target)
        for q in names:
            c.queue_delete(1, q)
        c.close()
    if sum(r["count"] for r in rs) != n:
        raise lg.ScenarioError(f"{sum(r['count'] for r in rs)} deliveries for {n} publishes")
    return float(n / (max(r["last"] for r in rs) - min(r["t0"] for r in rs)))


MEASURES = {"queues": measure_queues, "connections": measure_connections}


# -- the run ------------------------------------------------------------------------------------
def summary(runs: list[float]) -> dict[str, Any]:
    return {
        "runs": runs,
        "median": statistics.median(runs) if runs else None,
        "min": min(runs) if runs else None,
        "max": max(runs) if runs else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smoke setting: small, 1 round")
    ap.add_argument("--queues", default="", help="queue counts (default 1,10,100,1000)")
    ap.add_argument("--connections", default="", help="connection counts (default 1,10,100,1000)")
    ap.add_argument("--messages", type=int, default=0, help="messages per point (default 60000)")
    ap.add_argument("--rounds", type=int, default=0, help="rounds (default 3; quick 1)")
    ap.add_argument("--prefetch", type=int, default=1000)
    ap.add_argument("--idle-timeout", type=float, default=60.0)
    ap.add_argument("--brokers", default="trimq,rabbitmq", help="brokers to start")
    ap.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a broker already running (repeat); then none is started",
    )
    ap.add_argument("--trimq-rev", default="HEAD")
    ap.add_argument("--trimq-port", type=int, default=5811)
    ap.add_argument("--rabbitmq-port", type=int, default=5812)
    ap.add_argument("--rabbitmq-node", default="")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/trimq-bench-scaling"))
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/)")
    args = ap.parse_args(argv)

    def counts(text: str, default: str) -> list[int]:
        return [int(x) for x in (text or default).split(",") if x.strip()]

    quick_points = "1,10,100"
    dims = {
        "queues": counts(args.queues, quick_points if args.quick else "1,10,100,1000"),
        "connections": counts(args.connections, quick_points if args.quick else "1,10,100,1000"),
    }
    messages = args.messages or (6000 if args.quick else 60_000)
    rounds = args.rounds or (1 if args.quick else 3)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 20000)), hard))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the brokers on SIGTERM too

    targets: dict[str, Any] = {}
    started: list[run.Broker] = []
    for item in args.url:
        name, _, url = item.partition("=")
        targets[name] = Endpoint(name, url)
    if not targets:
        args.workdir.mkdir(parents=True, exist_ok=True)
        for name in (b.strip() for b in args.brokers.split(",") if b.strip()):
            b: run.Broker
            if name == "trimq":
                b = run.Trimq(args.trimq_port, args.workdir, args.trimq_rev)
            elif name == "rabbitmq":
                b = run.RabbitMQ(args.rabbitmq_port, args.workdir, args.rabbitmq_node)
            else:
                ap.error(f"unknown broker {name!r}")
            targets[name] = b
            started.append(b)
    results: dict[str, dict[str, dict[str, list[float]]]] = {
        d: {name: {str(n): [] for n in ns} for name in targets} for d, ns in dims.items()
    }
    failures: list[str] = []
    t_start = time.monotonic()
    info: dict[str, str] = {}
    try:
        for b in started:
            run.log(f"starting {b.name} on port {b.port} (log {b.logfile})")
            b.start()
            b.wait_up()
        info = (
            run.machine_info({b.name: b for b in started})
            if started
            else {
                "nproc": str(os.cpu_count()),
                "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            }
        )
        for r in range(rounds):
            for d, ns in dims.items():
                for i, n in enumerate(ns):
                    seq = list(targets.values())
                    if (r + i) % 2:
                        seq.reverse()
                    for t in seq:
                        if isinstance(t, run.Broker) and not t.alive():
                            t.restart()
                        try:
                            v = MEASURES[d](t, n, messages, args.prefetch, args.idle_timeout)
                        except Exception as exc:
                            msg = f"round {r + 1}, {d}={n}, {t.name}: {type(exc).__name__}: {exc}"
                            run.log("FAILED " + msg)
                            failures.append(msg)
                            continue
                        results[d][t.name][str(n)].append(v)
                        run.log(f"round {r + 1} {d}={n} {t.name}: {v:,.0f} deliveries/s")
    except KeyboardInterrupt:
        run.log("interrupted")
        return 130
    finally:
        for b in started:
            if b.alive():
                time.sleep(0.5)
                b.stop("clean")
    doc = {
        "kind": "scaling",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python bench/scaling.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "minutes": round((time.monotonic() - t_start) / 60, 2),
        "machine": info,
        "unit": "end-to-end deliveries/s",
        "messages_per_point": messages,
        "body_bytes": len(BODY),
        "prefetch": args.prefetch,
        "rounds": rounds,
        "quick": args.quick,
        "brokers": list(targets),
        "series": {
            d: {name: {n: summary(v) for n, v in per.items()} for name, per in by.items()}
            for d, by in results.items()
        },
        "failures": failures,
    }
    out = args.out
    if out is None:
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"scaling-{doc['date'].replace(':', '')}.json"
        LATEST.write_text(json.dumps(doc, indent=1) + "\n")
    out.write_text(json.dumps(doc, indent=1) + "\n")
    run.log(f"wrote {out}")
    for d, by in doc["series"].items():
        for name, per in by.items():
            run.log(
                f"{d:11} {name:9} "
                + "  ".join(f"{n}: {s['median'] or 0:,.0f}" for n, s in per.items())
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
