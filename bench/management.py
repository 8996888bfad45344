"""The management and Prometheus listeners under load (trimq issue #12):

  (a) GET /api/queues?page=1&page_size=100 with 10,000 queues, trimq and RabbitMQ 3.10 side by
      side in the same run (each broker holding the same queues);
  (b) trimq's publish/consume throughput (scenario 1 of loadgen.py) with the management and
      Prometheus listeners on and a poller fetching /api/overview and /metrics every second,
      against the same run with both listeners off; and what one poll costs the broker (its
      CPU time for a GET of each, measured back to back at rest after the run) as a share of
      its CPU during the run, a figure the machine's load moves far less than throughput;
  (c) the longest event-loop stall while the Prometheus endpoints are scraped with 10,000
      queues: in-process (the broker model and the Prometheus application on one trio loop,
      no sockets), a task records the largest gap between its `trio.sleep(0.001)` wake-ups
      during each scrape.

    .venv/bin/python bench/management.py                  # both parts, 3 rounds, medians
    .venv/bin/python bench/management.py --part b --rounds 5 --sizes s1_messages=500000
    .venv/bin/python bench/management.py --part c --rounds 5   # PYTHONPATH picks the trimq

Brokers are started as bench/run.py starts them (same classes, options and ports), with the
management and Prometheus listeners on ports of their own; both are stopped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import amqp_client as ac  # noqa: E402
import loadgen as lg  # noqa: E402
import run  # noqa: E402
import trimq  # noqa: E402  (whichever trimq PYTHONPATH names: part c measures it)
from trimq.amqp.spec import BasicProperties  # noqa: E402
from trimq.broker.broker import Broker  # noqa: E402
from trimq.broker.message import Message  # noqa: E402
from trimq.management.prometheus_app import build_app  # noqa: E402
from trimq.server.app import tune_gc  # noqa: E402
from trimq.server.state import ServerState  # noqa: E402

AUTH = ("guest", "guest")
QUEUES_PAGE = "/api/queues?page=1&page_size=100"


class TrimqHttp(run.Trimq):
    """trimq-server with its management and Prometheus listeners on the given ports, or
    without them (ports None)."""

    def __init__(
        self, port: int, workdir: Path, rev: str, http: int | None, metrics: int | None
    ) -> None:
        super().__init__(port, workdir, rev)
        self.http, self.metrics = http, metrics

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        if self.http is None:
            cmd.append("--no-management")
        else:
            cmd += ["--management-port", str(self.http)]
        if self.metrics is None:
            cmd.append("--no-prometheus")
        else:
            cmd += ["--prometheus-port", str(self.metrics)]
        return cmd, env


class RabbitMQHttp(run.RabbitMQ):
    """RabbitMQ with rabbitmq_management and rabbitmq_prometheus on the given ports."""

    def __init__(self, port: int, workdir: Path, node: str, http: int, metrics: int) -> None:
        super().__init__(port, workdir, node)
        self.http, self.metrics = http, metrics
        (self.base / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_prometheus].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"management.tcp.port = {http}\nprometheus.tcp.port = {metrics}\n"
        )


def wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, auth=AUTH, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def declare_queues(url: str, count: int) -> None:
    client = ac.Client(url, timeout=60)
    try:
        client.channel_open(1)
        for i in range(count):
            client.queue_declare(1, f"bench.mgmt.{i:05d}")
    finally:
        client.close()


def time_queue_page(base: str, rounds: int) -> list[float]:
    """Seconds per GET of the first page of 100 queues (after one warm-up request)."""
    session = requests.Session()
    session.auth = AUTH
    answer = session.get(base + QUEUES_PAGE, timeout=120)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    assert len(body["items"]) == 100, body.get("item_count")
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        session.get(base + QUEUES_PAGE, timeout=120).raise_for_status()
        times.append(time.perf_counter() - t0)
    return times


def part_a(args: argparse.Namespace) -> dict[str, float]:
    """Median seconds of GET /api/queues (first page of 100) with args.queues queues."""
    workdir = args.workdir / "part-a"
    workdir.mkdir(parents=True, exist_ok=True)
    brokers: list[TrimqHttp | RabbitMQHttp] = [
        TrimqHttp(args.trimq_port, workdir, args.trimq_rev, args.trimq_http, None),
        RabbitMQHttp(
            args.rabbitmq_port,
            workdir,
            args.rabbitmq_node,
            args.rabbitmq_http,
            args.rabbitmq_http + 20,
        ),
    ]
    results = {}
    for broker in brokers:
        try:
            run.log(f"starting {broker.name}")
            broker.start()
            broker.wait_up()
            base = f"http://127.0.0.1:{broker.http}"
            wait_http(base + "/api/overview")
            t0 = time.monotonic()
            declare_queues(broker.url, args.queues)
            run.log(
                f"{broker.name}: {args.queues} queues declared in {time.monotonic() - t0:.1f} s"
            )
            if broker.name == "rabbitmq":  # its statistics reach the API after an emission
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    total = requests.get(base + QUEUES_PAGE, auth=AUTH, timeout=120).json()
                    if total.get("total_count", 0) >= args.queues:
                        break
                    time.sleep(1)
            times = time_queue_page(base, args.requests)
            results[f"{broker.name} GET /api/queues page of 100, {args.queues} queues (ms)"] = (
                statistics.median(times) * 1000
            )
            run.log(f"{broker.name}: median {statistics.median(times) * 1000:.1f} ms")
        finally:
            broker.stop("clean")
    return results


class Poller(threading.Thread):
    """Fetches /api/overview and /metrics once a second until stopped; counts its own CPU
    time (the client side of the polls, which shares the machine with the broker)."""

    def __init__(self, management: str, prometheus: str) -> None:
        super().__init__(daemon=True)
        self.urls = poll_urls(management, prometheus)
        self.stopped = threading.Event()
        self.requests = 0
        self.failures = 0
        self.cpu = 0.0

    def run(self) -> None:
        session = requests.Session()
        session.auth = AUTH
        while not self.stopped.wait(1.0):
            t0 = time.thread_time()
            for url in self.urls:
                try:
                    session.get(url, timeout=10).raise_for_status()
                    self.requests += 1
                except requests.RequestException:
                    self.failures += 1
            self.cpu += time.thread_time() - t0


def poll_urls(management: str, prometheus: str) -> list[str]:
    return [management + "/api/overview", prometheus + "/metrics"]


def poll_cost(pid: int, urls: list[str], polls: int = 100) -> float:
    """The broker's CPU seconds per poll (one GET of each URL), measured back to back on the
    broker at rest: what the listeners cost it, whatever else the machine runs (CPU time,
    not wall time; /proc counts in ticks, hence many polls)."""
    session = requests.Session()
    session.auth = AUTH
    cpu0 = lg.cpu_seconds(pid)
    for _ in range(polls):
        for url in urls:
            session.get(url, timeout=10).raise_for_status()
    return (lg.cpu_seconds(pid) - cpu0) / polls


def part_b(args: argparse.Namespace) -> dict[str, float]:
    """Scenario 1's figures, medians of args.rounds runs, with and without the listeners,
    and the median of each round's on/off throughput ratio."""
    sizes = lg.Sizes.quick() if args.quick else lg.Sizes()
    if args.sizes:
        sizes = sizes.override(args.sizes)
    figures: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        order = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
        for mode in order:
            workdir = args.workdir / f"part-b-{mode}"
            workdir.mkdir(parents=True, exist_ok=True)
            on = mode == "on"
            http, metrics = args.trimq_http, args.trimq_http + 20
            broker = TrimqHttp(
                args.trimq_port,
                workdir,
                args.trimq_rev,
                http if on else None,
                metrics if on else None,
            )
            poller = None
            try:
                broker.start()
                broker.wait_up()
                management = f"http://127.0.0.1:{http}"
                prometheus = f"http://127.0.0.1:{metrics}"
                if on:
                    for url in poll_urls(management, prometheus):
                        wait_http(url)  # also the first scrape's one-off costs, before the run
                    poller = Poller(management, prometheus)
                    poller.start()
                result = lg.s1_transient(broker, sizes)
                if poller is not None:
                    poller.stopped.set()
                    poller.join()
                    if poller.failures:
                        raise RuntimeError(f"{poller.failures} poller requests failed")
                    cost = poll_cost(broker.pid(), poller.urls)
                    polls = poller.requests / len(poller.urls)
                    broker_cpu = result["s1 broker CPU µs/msg"] * sizes.s1_messages / 1e6
                    result = dict(result)
                    result["poll: broker CPU ms per poll (overview + metrics)"] = cost * 1000
                    result["poll: share of the broker CPU in the run (%)"] = (
                        100 * polls * cost / broker_cpu
                    )
                    result["poll: poller (client) CPU ms per poll"] = poller.cpu / polls * 1000
                    run.log(f"poller: {poller.requests} requests")
                for name, value in result.items():
                    figures.setdefault(f"{name} [listeners {mode}]", []).append(value)
                run.log(f"round {round_ + 1} listeners {mode}: {result}")
            finally:
                if poller is not None:
                    poller.stopped.set()
                broker.stop("clean")
    medians = {name: statistics.median(values) for name, values in figures.items()}
    # each round's two runs sit side by side in time: their ratio moves less with the
    # machine's load than either figure
    e2e = "s1 transient 16 B e2e msg/s [listeners {}]"
    pairs = zip(figures[e2e.format("on")], figures[e2e.format("off")], strict=True)
    ratios = [on / off - 1 for on, off in pairs]
    run.log("e2e listeners on against off, per round: " + ", ".join(f"{r:+.1%}" for r in ratios))
    medians["s1 e2e on against off (%), median of the rounds"] = 100 * statistics.median(ratios)
    return medians


SCRAPES = {
    "aggregated": "/metrics",
    "aggregated again": "/metrics",  # at once: within 5 s of the first
    "per-object": "/metrics/per-object",
    "detailed": "/metrics/detailed?family=queue_coarse_metrics&family=queue_metrics",
}


async def _asgi_get(app: Any, target: str) -> tuple[int, bytes]:
    """One GET through the ASGI application, as the listener would pass it."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "server": ("127.0.0.1", 15692),
        "client": ("127.0.0.1", 40000),
    }
    status = 0
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


def part_c(args: argparse.Namespace) -> dict[str, float]:
    """Longest loop stall and duration of each scrape (medians of args.rounds), with
    args.queues queues (each holding one message) in the default vhost. Scrapes made from
    one task in a row, each round on a new application: its first /metrics scrape computes
    the per-object sums, the second (at once) finds them kept."""
    run.log(f"part c: trimq from {Path(trimq.__file__).parent}")
    tune_gc()  # the collector's thresholds of trimq-server (queues declared at run time)
    broker = Broker()
    vhost = broker.vhosts["/"]
    for index in range(args.queues):
        queue, _ = vhost.declare_queue(f"bench-{index}", owner=None)
        properties = BasicProperties(timestamp=1_700_000_000)
        queue.enqueue(Message("", queue.name, properties, properties.encode(), b"x" * 100))
    state = ServerState(broker)
    stalls: dict[str, list[float]] = {}
    durations: dict[str, list[float]] = {}

    async def measure(app: Any, name: str, target: str) -> None:
        longest = 0.0
        done = trio.Event()

        async def watch() -> None:
            nonlocal longest
            last = trio.current_time()
            while not done.is_set():
                await trio.sleep(0.001)
                now = trio.current_time()
                longest = max(longest, now - last)
                last = now

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.sleep(0.01)
            started = trio.current_time()
            status, body = await _asgi_get(app, target)
            elapsed = trio.current_time() - started
            done.set()
        if status != 200:
            run.log(f"{name}: HTTP {status}, not measured")
            return
        stalls.setdefault(name, []).append(longest)
        durations.setdefault(name, []).append(elapsed)
        run.log(
            f"{name}: {len(body)} bytes in {elapsed * 1000:.0f} ms, longest stall "
            f"{longest * 1000:.1f} ms"
        )

    async def rounds() -> None:
        for _ in range(args.rounds):
            app = build_app(state)  # nothing kept from the previous round
            for name, target in SCRAPES.items():
                await measure(app, name, target)

    trio.run(rounds)
    results: dict[str, float] = {}
    for name, values in stalls.items():
        results[f"{name}: longest loop stall (ms)"] = statistics.median(values) * 1000
        results[f"{name}: scrape (ms)"] = statistics.median(durations[name]) * 1000
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["a", "b", "c", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=3, help="part b: runs per mode (default 3)")
    ap.add_argument("--requests", type=int, default=20, help="part a: timed GETs per broker")
    ap.add_argument("--queues", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="part b: loadgen's small sizes")
    ap.add_argument("--sizes", default="", help="part b: loadgen sizes, e.g. s1_messages=300000")
    ap.add_argument("--trimq-rev", default="HEAD", help="git revision, or 'worktree'")
    ap.add_argument("--trimq-port", type=int, default=5811)
    ap.add_argument("--rabbitmq-port", type=int, default=5812)
    ap.add_argument("--trimq-http", type=int, default=15811, help="(Prometheus: this + 20)")
    ap.add_argument("--rabbitmq-http", type=int, default=15812, help="(Prometheus: this + 20)")
    ap.add_argument("--rabbitmq-node", default="")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/trimq-bench-management"))
    args = ap.parse_args(argv)
    results: dict[str, float] = {}
    if args.part in ("a", "both"):
        results.update(part_a(args))
    if args.part in ("b", "both"):
        results.update(part_b(args))
    if args.part == "c":
        results.update(part_c(args))
    width = max(len(name) for name in results)
    for name, value in results.items():
        print(f"{name:<{width}}  {run.fmt(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
