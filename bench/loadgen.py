"""Benchmark scenarios: each is a function `(target, sizes) -> {metric: value}`.

Publishers and consumers run in separate processes (multiprocessing, fork) using the raw client
of amqp_client.py; the calling process only sets up queues, waits, and reads the broker's RSS.
Throughputs are end-to-end: the number of deliveries divided by the time from the publisher's
first send to the last delivery seen by the consumers. Clock: time.monotonic(), which on Linux
is one system-wide clock, so timestamps from different processes compare.

A `Target` names one broker: its AMQP URL, a way to get its pid (for VmRSS), and, for the
recovery scenario, a way to stop it (hard or clean) and start it again.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from pika import spec

import amqp_client as ac  # bench/ is the script's directory, so on sys.path

CTX = mp.get_context("fork")
PERSISTENT = spec.BasicProperties(delivery_mode=2)


class Target(Protocol):
    name: str
    url: str

    def pid(self) -> int: ...

    def stop(self, mode: str) -> float: ...  # "kill" (SIGKILL) or "clean" (SIGTERM); seconds

    def start(self) -> float: ...  # spawns the broker; returns the monotonic spawn time


class ScenarioError(Exception):
    """A scenario could not complete: broker error, hang, crash."""


@dataclass
class Sizes:
    """How big each scenario is. `QUICK` is a smoke setting; `FULL` the default."""

    prefetch: int = 1000
    batch: int = 1000  # messages per sendall (capped at ~1 MiB)
    idle_timeout: float = 60.0  # a consumer with no delivery for this long fails the scenario
    s1_messages: int = 300_000
    s2_messages: int = 100_000
    s2_window: int = 1000
    s3_messages: int = 100_000  # published; each of the queues gets them all
    s3_queues: int = 10
    s3_consumer_procs: int = 2  # the 10 consumer connections are spread over these processes
    s4_4k_messages: int = 200_000
    s4_256k_messages: int = 10_000
    s4_256k_prefetch: int = 50
    s5_rate: int = 5000
    s5_seconds: float = 20.0
    s5_warmup: int = 1000  # first deliveries not counted in the latency percentiles
    s6_connections: int = 2000
    s6_lockstep: int = 100  # handshakes in flight at once
    s7_messages: int = 1_000_000
    s7_window: int = 5000
    s8_messages: int = 1_000_000
    s8_window: int = 5000
    s8_ready_timeout: float = 300.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            s1_messages=60_000,
            s2_messages=30_000,
            s3_messages=10_000,
            s4_4k_messages=30_000,
            s4_256k_messages=1_000,
            s5_seconds=3.0,
            s5_warmup=500,
            s6_connections=300,
            s7_messages=50_000,
            s8_messages=50_000,
            idle_timeout=30.0,
        )

    def override(self, spec_text: str) -> Sizes:
        """'s1_messages=1000,s5_seconds=5' -> a copy with those fields changed."""
        kinds = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in spec_text.split(","))):
            key, _, value = item.partition("=")
            if key not in kinds:
                raise ValueError(f"unknown size {key!r}; known: {', '.join(kinds)}")
            changes[key] = float(value) if kinds[key] in ("float", float) else int(value)
        return replace(self, **changes)


# -- process plumbing ---------------------------------------------------------------------------
@dataclass
class Worker:
    proc: Any
    conn: Any
    name: str
    result: Any = field(default=None)

    def get(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise ScenarioError(f"{self.name}: no result within {timeout:.0f} s (hang?)")
        status, value = self.conn.recv()
        self.proc.join(5)
        if status != "ok":
            raise ScenarioError(f"{self.name}: {value}")
        return value

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)


def _trampoline(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except ac.BrokerError as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"))
    finally:
        conn.close()


def spawn(name: str, fn: Callable[..., Any], *args: Any) -> Worker:
    parent, child = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=_trampoline, args=(child, fn, args), name=name, daemon=True)
    proc.start()
    child.close()
    return Worker(proc, parent, name)


class Workers:
    """Kills every worker still running when the scenario ends (also on errors)."""

    def __init__(self) -> None:
        self.all: list[Worker] = []

    def spawn(self, name: str, fn: Callable[..., Any], *args: Any) -> Worker:
        w = spawn(name, fn, *args)
        self.all.append(w)
        return w

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.all:
            w.kill()


def rss_kib(pid: int) -> int:
    with Path(f"/proc/{pid}/status").open() as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ScenarioError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    with Path(f"/proc/{pid}/stat").open() as f:
        fields_ = f.read().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


# -- worker bodies (run in child processes) -----------------------------------------------------
def consumer_proc(
    url: str,
    queues: list[str],
    expected_each: int,
    prefetch: int,
    ready: Any,
    latency: bool,
    idle_timeout: float,
) -> dict[str, Any]:
    consumers = []
    for q in queues:
        client = ac.connect_channel(url)
        consumers.append(ac.Consumer(client, 1, q, prefetch=prefetch, latency=latency))
    ready.set()
    started = time.monotonic()
    if len(consumers) == 1:
        consumers[0].run(expected_each, idle_timeout)
    else:
        ac.consume_many(consumers, expected_each, idle_timeout)
    out = {
        "count": sum(c.count for c in consumers),
        "started": started,
        "first": min(c.first_time for c in consumers),
        "last": max(c.last_time for c in consumers),
        "body_bytes": sum(c.body_bytes for c in consumers),
        "latencies": [x for c in consumers for x in c.latencies],
        "cpu": time.process_time(),
    }
    for c in consumers:
        c.client.close()
    return out


def publisher_proc(
    url: str,
    exchange: str,
    routing_key: str,
    body_size: int,
    n: int,
    persistent: bool,
    confirm: bool,
    window: int,
    batch: int,
) -> dict[str, Any]:
    c = ac.connect_channel(url)
    p = ac.Publisher(
        c,
        1,
        exchange,
        routing_key,
        b"\x2a" * body_size,
        PERSISTENT if persistent else None,
        confirm=confirm,
        window=window,
        batch=batch,
    )
    t0 = time.monotonic()
    p.publish(n)
    t_sent = time.monotonic()
    c.close()  # Close-Ok arrives after the broker handled every publish before it
    return {
        "t0": t0,
        "sent": t_sent,
        "closed": time.monotonic(),
        "acked": p.tracker.acked,
        "nacked": p.tracker.nacked,
        "cpu": time.process_time(),
    }


def timestamp_publisher_proc(
    url: str, queue: str, body_size: int, rate: int, seconds: float
) -> dict[str, Any]:
    c = ac.connect_channel(url)
    p = ac.TimestampPublisher(c, 1, "", queue, body_size)
    achieved = p.run(rate, int(rate * seconds))
    c.close()
    return {"published": p.published, "rate": achieved}


# -- helpers for the calling process ------------------------------------------------------------
def control(target: Target) -> ac.Client:
    return ac.connect_channel(target.url)


def fresh_queue(c: ac.Client, name: str, durable: bool = False) -> None:
    try:
        c.queue_delete(1, name)
    except ac.BrokerError:
        c.close()
        raise
    c.queue_declare(1, name, durable=durable)


def _pubsub(
    target: Target,
    sizes: Sizes,
    *,
    queue: str,
    body_size: int,
    n: int,
    persistent: bool = False,
    confirm: bool = False,
    window: int = 1000,
    durable: bool = False,
    prefetch: int | None = None,
) -> dict[str, Any]:
    """One publisher process, one consumer process, one queue."""
    c = control(target)
    fresh_queue(c, queue, durable)
    pid = target.pid()
    try:
        with Workers() as ws:
            ready = CTX.Event()
            cons = ws.spawn(
                "consumer",
                consumer_proc,
                target.url,
                [queue],
                n,
                prefetch or sizes.prefetch,
                ready,
                False,
                sizes.idle_timeout,
            )
            if not ready.wait(30):
                cons.get(1)
                raise ScenarioError("consumer did not start")
            cpu0 = cpu_seconds(pid)
            pub = ws.spawn(
                "publisher",
                publisher_proc,
                target.url,
                "",
                queue,
                body_size,
                n,
                persistent,
                confirm,
                window,
                sizes.batch,
            )
            limit = 120 + n * (body_size + 200) / 2e6 + n / 2000
            p = pub.get(limit)
            r = cons.get(limit)
            cpu = cpu_seconds(pid) - cpu0
    finally:
        c.queue_delete(1, queue)
        c.close()
    elapsed = r["last"] - p["t0"]
    return {
        "n": n,
        "e2e": n / elapsed,
        "pub": n / (p["closed"] - p["t0"]),
        "mbps": r["body_bytes"] / elapsed / 2**20,
        "p": p,
        "r": r,
        "cpu_us": cpu / n * 1e6,
        "client_cpu": (p["cpu"] + r["cpu"]) / elapsed,
    }


# -- the scenarios ------------------------------------------------------------------------------
def s1_transient(target: Target, sizes: Sizes) -> dict[str, float]:
    """1 publisher, 1 consumer, transient 16-byte messages, end to end."""
    x = _pubsub(target, sizes, queue="bench.s1", body_size=16, n=sizes.s1_messages)
    return {
        "s1 transient 16 B e2e msg/s": x["e2e"],
        "s1 publish msg/s (to Close-Ok)": x["pub"],
        "s1 broker CPU µs/msg": x["cpu_us"],
        "s1 load generator CPU (cores)": x["client_cpu"],
    }


def s2_persistent(target: Target, sizes: Sizes) -> dict[str, float]:
    """Persistent 16-byte messages to a durable queue with publisher confirms (window)."""
    x = _pubsub(
        target,
        sizes,
        queue="bench.s2",
        body_size=16,
        n=sizes.s2_messages,
        persistent=True,
        confirm=True,
        window=sizes.s2_window,
        durable=True,
    )
    p = x["p"]
    if p["acked"] != sizes.s2_messages:
        raise ScenarioError(
            f"{p['acked']} acks and {p['nacked']} nacks for {sizes.s2_messages} publishes"
        )
    return {
        "s2 persistent+confirms e2e msg/s": x["e2e"],
        "s2 confirmed msg/s": sizes.s2_messages / (p["sent"] - p["t0"]),
        "s2 broker CPU µs/msg": x["cpu_us"],
    }


def s3_fanout(target: Target, sizes: Sizes) -> dict[str, float]:
    """A fanout exchange bound to N queues, one consumer connection per queue."""
    n, nq = sizes.s3_messages, sizes.s3_queues
    queues = [f"bench.s3.{i}" for i in range(nq)]
    c = control(target)
    try:
        c.exchange_delete(1, "bench.fanout")
        c.exchange_declare(1, "bench.fanout", "fanout")
        for q in queues:
            fresh_queue(c, q)
            c.queue_bind(1, q, "bench.fanout")
        with Workers() as ws:
            procs = max(1, min(sizes.s3_consumer_procs, nq))
            groups = [queues[i::procs] for i in range(procs)]
            events = [CTX.Event() for _ in groups]
            cons = [
                ws.spawn(
                    f"consumer{i}",
                    consumer_proc,
                    target.url,
                    g,
                    n,
                    sizes.prefetch,
                    ev,
                    False,
                    sizes.idle_timeout,
                )
                for i, (g, ev) in enumerate(zip(groups, events, strict=True))
            ]
            for ev, w in zip(events, cons, strict=True):
                if not ev.wait(30):
                    w.get(1)
                    raise ScenarioError("consumer did not start")
            pid = target.pid()
            cpu0 = cpu_seconds(pid)
            pub = ws.spawn(
                "publisher",
                publisher_proc,
                target.url,
                "bench.fanout",
                "",
                16,
                n,
                False,
                False,
                0,
                sizes.batch,
            )
            limit = 120 + n * nq / 2000
            p = pub.get(limit)
            rs = [w.get(limit) for w in cons]
            cpu = cpu_seconds(pid) - cpu0
    finally:
        for q in queues:
            c.queue_delete(1, q)
        c.exchange_delete(1, "bench.fanout")
        c.close()
    elapsed = max(r["last"] for r in rs) - p["t0"]
    return {
        f"s3 fanout x{nq} deliveries/s": n * nq / elapsed,
        f"s3 fanout x{nq} publish msg/s": n / elapsed,
        "s3 broker CPU µs/delivery": cpu / (n * nq) * 1e6,
    }


def s4_bodies(target: Target, sizes: Sizes) -> dict[str, float]:
    """4 KiB and 256 KiB transient bodies, 1 publisher 1 consumer."""
    a = _pubsub(target, sizes, queue="bench.s4", body_size=4096, n=sizes.s4_4k_messages)
    b = _pubsub(
        target,
        sizes,
        queue="bench.s4",
        body_size=256 * 1024,
        n=sizes.s4_256k_messages,
        prefetch=sizes.s4_256k_prefetch,
    )
    return {
        "s4 4 KiB e2e msg/s": a["e2e"],
        "s4 4 KiB MiB/s": a["mbps"],
        "s4 4 KiB broker CPU µs/msg": a["cpu_us"],
        "s4 256 KiB e2e msg/s": b["e2e"],
        "s4 256 KiB MiB/s": b["mbps"],
        "s4 256 KiB broker CPU µs/msg": b["cpu_us"],
    }


def s5_latency(target: Target, sizes: Sizes) -> dict[str, float]:
    """Publish-to-deliver latency at a fixed rate (timestamp in the body)."""
    q = "bench.s5"
    n = int(sizes.s5_rate * sizes.s5_seconds)
    c = control(target)
    fresh_queue(c, q)
    try:
        with Workers() as ws:
            ready = CTX.Event()
            cons = ws.spawn(
                "consumer",
                consumer_proc,
                target.url,
                [q],
                n,
                sizes.prefetch,
                ready,
                True,
                sizes.idle_timeout,
            )
            if not ready.wait(30):
                cons.get(1)
                raise ScenarioError("consumer did not start")
            pub = ws.spawn(
                "publisher",
                timestamp_publisher_proc,
                target.url,
                q,
                16,
                sizes.s5_rate,
                sizes.s5_seconds,
            )
            p = pub.get(sizes.s5_seconds + 120)
            r = cons.get(sizes.s5_seconds + 120)
    finally:
        c.queue_delete(1, q)
        c.close()
    lat: list[float] = sorted(r["latencies"][sizes.s5_warmup :])
    if not lat:
        raise ScenarioError("no latency samples")

    def pct(p_: float) -> float:
        return lat[min(len(lat) - 1, int(p_ * len(lat)))] * 1000

    return {
        "s5 latency p50 ms": pct(0.50),
        "s5 latency p99 ms": pct(0.99),
        "s5 latency p99.9 ms": pct(0.999),
        "s5 achieved msg/s": p["rate"],
    }


def idle_connections_proc(url: str, n: int, lockstep: int, conn: Any) -> dict[str, Any]:
    """Open n connections with a channel each, `lockstep` handshakes at a time; report, wait
    for the word, close them all."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    clients: list[ac.Client] = []
    t0 = time.monotonic()
    for i in range(0, n, lockstep):
        group = [ac.Client(url, connect=False) for _ in range(min(lockstep, n - i))]
        for c in group:
            c.start_connect()
        for c in group:
            c.handshake_start()
        for c in group:
            c.handshake_tune()
        for c in group:
            c.handshake_open()
        # Channel.Open only after Connection.Open-Ok, as pika does: trimq leaves frames that
        # arrive in the same read as Connection.Open unhandled until more data comes
        for c in group:
            c.send_method(1, spec.Channel.Open())
        for c in group:
            c.expect(1, spec.Channel.OpenOk)
        clients += group
    opened = time.monotonic() - t0
    conn.send(("opened", opened))
    conn.recv()  # the parent has read the RSS
    t1 = time.monotonic()
    close = ac.method_frame(
        0, spec.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)
    )
    for i in range(0, n, lockstep):
        group = clients[i : i + lockstep]
        for c in group:
            c.send(close)
        for c in group:
            c.expect(0, spec.Connection.CloseOk)
            c.abort()
    return {"opened_s": opened, "closed_s": time.monotonic() - t1}


def s6_idle_connections(target: Target, sizes: Sizes) -> dict[str, float]:
    """N idle connections with one channel each: broker RSS per connection, open rate."""
    n = sizes.s6_connections
    pid = target.pid()
    time.sleep(1.0)
    before = rss_kib(pid)
    parent, child = CTX.Pipe()
    with Workers() as ws:
        w = ws.spawn("connections", idle_connections_proc, target.url, n, sizes.s6_lockstep, child)
        if not parent.poll(120 + n / 20):
            w.get(1)
            raise ScenarioError(f"{n} connections not opened in time")
        msg = parent.recv()
        time.sleep(2.0)
        during = rss_kib(pid)
        parent.send("close")
        r = w.get(120 + n / 20)
    time.sleep(1.0)
    after = rss_kib(pid)
    return {
        "s6 open conn/s": n / msg[1],
        "s6 RSS KiB/conn": (during - before) / n,
        "s6 RSS MiB before": before / 1024,
        "s6 RSS MiB after close": after / 1024,
        "s6 close conn/s": n / r["closed_s"],
    }


def s7_backlog(target: Target, sizes: Sizes) -> dict[str, float]:
    """Publish a backlog of N 100-byte transient messages (confirmed), read the broker's RSS,
    then drain it with one consumer."""
    q, n = "bench.s7", sizes.s7_messages
    pid = target.pid()
    c = control(target)
    fresh_queue(c, q)
    try:
        time.sleep(1.0)
        before = rss_kib(pid)
        with Workers() as ws:
            pub = ws.spawn(
                "publisher",
                publisher_proc,
                target.url,
                "",
                q,
                100,
                n,
                False,
                True,
                sizes.s7_window,
                sizes.batch,
            )
            p = pub.get(120 + n / 1000)
            if p["acked"] != n:
                raise ScenarioError(f"{p['acked']} acks, {p['nacked']} nacks for {n}")
            _, count, _ = c.queue_declare(1, q, passive=True)
            if count != n:
                raise ScenarioError(f"queue holds {count} messages, expected {n}")
            time.sleep(2.0)
            full = rss_kib(pid)
            ready = CTX.Event()
            cons = ws.spawn(
                "consumer",
                consumer_proc,
                target.url,
                [q],
                n,
                sizes.prefetch,
                ready,
                False,
                sizes.idle_timeout,
            )
            r = cons.get(120 + n / 1000)
        after = rss_kib(pid)
    finally:
        c.queue_delete(1, q)
        c.close()
    return {
        "s7 backlog publish msg/s (confirmed)": n / (p["sent"] - p["t0"]),
        "s7 backlog RSS MiB": (full - before) / 1024,
        "s7 backlog RSS bytes/msg": (full - before) * 1024 / n,
        "s7 drain msg/s": n / (r["last"] - r["started"]),
        "s7 RSS MiB after drain": after / 1024,
    }


def wait_ready(url: str, queue: str, expected: int, timeout: float) -> tuple[float, float]:
    """Poll until the broker accepts an AMQP connection and `queue` reports `expected`
    messages. Returns the monotonic times of the first accepted connection and of readiness."""
    deadline = time.monotonic() + timeout
    t_port = 0.0
    last_error = ""
    while time.monotonic() < deadline:
        try:
            c = ac.Client(url, timeout=5)
        except (OSError, ac.BrokerError) as exc:
            last_error = str(exc)
            time.sleep(0.01)
            continue
        if not t_port:
            t_port = time.monotonic()
        try:
            c.channel_open(1)
            while time.monotonic() < deadline:
                try:
                    _, count, _ = c.queue_declare(1, queue, passive=True)
                except ac.BrokerError as exc:  # 404 while queues are still being recovered
                    last_error = str(exc)
                    c.channel_open(1)
                    time.sleep(0.02)
                    continue
                if count == expected:
                    c.close()
                    return t_port, time.monotonic()
                last_error = f"{count} messages"
                time.sleep(0.02)
        except (OSError, ac.BrokerError) as exc:
            last_error = str(exc)
            time.sleep(0.02)
        finally:
            c.abort()
    raise ScenarioError(f"not ready after {timeout:.0f} s: {last_error}")


def s8_recovery(target: Target, sizes: Sizes) -> dict[str, float]:
    """N persistent 100-byte messages in a durable queue (published with confirms); then
    SIGKILL the broker and time its restart until a passive declare reports N; then stop it
    cleanly (SIGTERM) and time that restart too; finally time a start with the queue gone."""
    q, n = "bench.s8", sizes.s8_messages
    c = control(target)
    fresh_queue(c, q, durable=True)
    c.close()
    out: dict[str, float] = {}
    try:
        with Workers() as ws:
            pub = ws.spawn(
                "publisher",
                publisher_proc,
                target.url,
                "",
                q,
                100,
                n,
                True,
                True,
                sizes.s8_window,
                sizes.batch,
            )
            p = pub.get(120 + n / 500)
        if p["acked"] != n:
            raise ScenarioError(f"{p['acked']} acks, {p['nacked']} nacks for {n}")
        out["s8 persistent publish msg/s (confirmed)"] = n / (p["sent"] - p["t0"])
        for mode in ("kill", "clean"):
            time.sleep(0.5)  # let the last connections finish closing (see README: caveats)
            stop_s = target.stop(mode)
            t0 = target.start()
            t_port, t_ready = wait_ready(target.url, q, n, sizes.s8_ready_timeout)
            out[f"s8 restart after {mode}: ready s"] = t_ready - t0
            if t_ready - t_port > 0.05:  # both brokers accept connections only once recovered
                out[f"s8 restart after {mode}: port s"] = t_port - t0
            if mode == "clean":
                out["s8 clean stop s"] = stop_s
    finally:
        try:
            c = control(target)
            c.queue_delete(1, q)
            c.close()
        except (OSError, ac.BrokerError):
            pass
    time.sleep(0.5)
    target.stop("clean")
    t0 = target.start()
    t_port = _wait_port(target.url, 120)
    out["s8 start, no messages: port s"] = t_port - t0
    return out


def _wait_port(url: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = ac.Client(url, timeout=5)
        except (OSError, ac.BrokerError):
            time.sleep(0.01)
            continue
        t = time.monotonic()
        c.close()
        return t
    raise ScenarioError(f"broker not accepting connections after {timeout:.0f} s")


SCENARIOS: dict[int, Callable[[Target, Sizes], dict[str, float]]] = {
    1: s1_transient,
    2: s2_persistent,
    3: s3_fanout,
    4: s4_bodies,
    5: s5_latency,
    6: s6_idle_connections,
    7: s7_backlog,
    8: s8_recovery,
}
# scenarios that read the broker's RSS start from a freshly restarted broker
FRESH_BROKER = {6, 7}
# after these the runner stops the broker, deletes its data and starts it again: trimq's online
# compaction of the deleted 1M-message queue would otherwise run (~10 s of CPU) into the next
# scenario, as would RabbitMQ's message store clean-up
WIPE_AFTER = {8}
# metrics where lower is better (for the table)
LOWER_IS_BETTER = ("latency", "RSS", " s")


def median(values: list[float]) -> float:
    return statistics.median(values)
