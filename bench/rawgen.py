"""An independent raw-socket AMQP 0-9-1 load generator, to check bench/'s figures.

    .venv/bin/python bench/rawgen.py --broker trimq=amqp://guest:guest@127.0.0.1:5672/ \\
        --broker rabbitmq=amqp://guest:guest@127.0.0.1:5673/ --runs 3

Written apart from trimq's codec and from bench/amqp_client.py (it imports neither, nor pika):
its frames are built here with struct, a message is encoded once and sent as many copies per
sendall, and the consumer scans frame headers in a reused buffer (recv_into). A generator that
shares code or assumptions with the broker could flatter it; this one shares nothing but the
protocol. Scenario 5 (latency) is measured by a second generator, pika's BlockingConnection
(bench/pika_latency.py).

Scenarios (bench/README.md numbering), each one publisher process and one consumer process:
  1  transient 16-byte messages, non-durable queue, end-to-end msg/s
  2  persistent 16-byte messages, durable queue, publisher confirms (window 1,000), e2e msg/s
  4  256 KiB transient bodies (prefetch 50), e2e msg/s and MiB/s
  5  p50/p99 latency at a fixed 5,000 msg/s (pika)

Brokers are already running (any AMQP URL). Every run measures each broker once, the order
alternating per run and scenario; reported: the median of the runs, min-max, and the ratio of
the first broker's median to the second's. JSON: bench/results/rawgen-DATE.json and
bench/results/rawgen.json (the latest), unless --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pika_latency  # bench/ is the script's directory: on sys.path (scenario 5 only)

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
CTX = mp.get_context("fork")

FRAME_HEADER = struct.Struct(">BHI")  # type, channel, payload size
U16, U32, U64 = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">Q")
METHOD_ID = struct.Struct(">HH")
FRAME_END = b"\xce"
DELIVER = (60, 60)
ACK = (60, 80)
NACK = (60, 120)


class AmqpError(Exception):
    """The broker closed the connection or a channel, or the generator gave up waiting."""


# -- frames -------------------------------------------------------------------------------------
def shortstr(s: str) -> bytes:
    b = s.encode()
    return bytes([len(b)]) + b


def longstr(b: bytes) -> bytes:
    return U32.pack(len(b)) + b


def frame(ftype: int, channel: int, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(ftype, channel, len(payload)) + payload + FRAME_END


def method(channel: int, class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return frame(1, channel, METHOD_ID.pack(class_id, method_id) + args)


def publish_frames(
    channel: int, routing_key: str, body: bytes, persistent: bool, frame_max: int
) -> bytes:
    """Basic.Publish to the default exchange + content header + body frames."""
    out = method(channel, 60, 40, U16.pack(0) + shortstr("") + shortstr(routing_key) + b"\x00")
    # property flags: delivery-mode is bit 12
    props = U16.pack(0x1000) + b"\x02" if persistent else U16.pack(0)
    out += frame(2, channel, METHOD_ID.pack(60, 0) + U64.pack(len(body)) + props)
    step = frame_max - 8
    for i in range(0, len(body), step):
        out += frame(3, channel, body[i : i + step])
    return out


def ack(channel: int, tag: int) -> bytes:
    return method(channel, 60, 80, U64.pack(tag) + b"\x01")  # multiple


# -- a connection with one channel --------------------------------------------------------------
class Conn:
    """Handshake (PLAIN), channel 1, the few set-up methods, and a frame reader for set-up."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        u = urlparse(url)
        if u.scheme != "amqp":
            raise ValueError(f"only amqp:// URLs: {url!r}")
        vhost = unquote(u.path[1:]) if len(u.path) > 1 else "/"
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 5672), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.wait(0, 10, 10)  # Connection.Start
        plain = b"\x00" + unquote(u.username or "guest").encode()
        plain += b"\x00" + unquote(u.password or "guest").encode()
        props = shortstr("product") + b"S" + longstr(b"rawgen")
        self.send(
            method(
                0,
                10,
                11,
                longstr(props) + shortstr("PLAIN") + longstr(plain) + shortstr("en_US"),
            )
        )
        tune = self.wait(0, 10, 30)
        channel_max, frame_max = U16.unpack_from(tune, 0)[0], U32.unpack_from(tune, 2)[0]
        self.frame_max = min(frame_max or 131072, 131072)
        self.send(method(0, 10, 31, U16.pack(channel_max) + U32.pack(self.frame_max) + U16.pack(0)))
        self.send(method(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00"))
        self.wait(0, 10, 41)
        self.rpc(20, 10, shortstr(""), 11)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> tuple[int, int, bytes]:
        while True:
            if len(self.buf) >= 7:
                ftype, channel, size = FRAME_HEADER.unpack_from(self.buf, 0)
                if len(self.buf) >= size + 8:
                    payload = bytes(self.buf[7 : 7 + size])
                    del self.buf[: size + 8]
                    return ftype, channel, payload
            data = self.sock.recv(1 << 16)
            if not data:
                raise AmqpError("connection closed by the broker")
            self.buf += data

    def wait(self, channel: int, class_id: int, method_id: int) -> bytes:
        """The arguments of the next (class_id, method_id) on `channel`; raises on a Close."""
        while True:
            ftype, ch, payload = self.read_frame()
            if ftype != 1:
                continue
            ids = METHOD_ID.unpack_from(payload, 0)
            if ids in ((10, 50), (20, 40)):
                code = U16.unpack_from(payload, 4)[0]
                text = payload[7 : 7 + payload[6]].decode(errors="replace")
                raise AmqpError(f"closed by the broker: {code} {text}")
            if ch == channel and ids == (class_id, method_id):
                return payload[4:]

    def rpc(self, class_id: int, method_id: int, args: bytes, reply_id: int) -> bytes:
        self.send(method(1, class_id, method_id, args))
        return self.wait(1, class_id, reply_id)

    def queue_declare(self, queue: str, durable: bool = False) -> None:
        self.rpc(
            50, 10, U16.pack(0) + shortstr(queue) + bytes([2 if durable else 0]) + U32.pack(0), 11
        )

    def queue_delete(self, queue: str) -> None:
        self.rpc(50, 40, U16.pack(0) + shortstr(queue) + b"\x00", 41)

    def qos(self, prefetch: int) -> None:
        self.rpc(60, 10, U32.pack(0) + U16.pack(prefetch) + b"\x00", 11)

    def consume(self, queue: str) -> None:
        self.rpc(60, 20, U16.pack(0) + shortstr(queue) + shortstr("") + b"\x00" + U32.pack(0), 21)

    def confirm_select(self) -> None:
        self.rpc(85, 10, b"\x00", 11)

    def close(self) -> None:
        """Connection.Close and wait for Close-Ok: the broker has handled all sent before."""
        self.send(method(0, 10, 50, U16.pack(200) + shortstr("bye") + U16.pack(0) + U16.pack(0)))
        try:
            self.wait(0, 10, 51)
        finally:
            self.sock.close()


# -- publisher and consumer (child processes) ---------------------------------------------------
def publisher(
    url: str, queue: str, body_size: int, n: int, persistent: bool, window: int
) -> dict[str, Any]:
    """Publish n copies of one message; with window > 0, in confirm mode with at most `window`
    unconfirmed. Returns the monotonic times of the first send and of the last confirm."""
    c = Conn(url)
    if window:
        c.confirm_select()
    one = publish_frames(1, queue, b"\x2a" * body_size, persistent, c.frame_max)
    per_send = max(1, min((1 << 20) // len(one), window // 2 if window else 1 << 30))
    batch = one * per_send
    t0 = time.monotonic()
    sent = 0
    if not window:
        while n - sent >= per_send:
            c.send(batch)
            sent += per_send
        c.send(one * (n - sent))
        c.close()
        return {"t0": t0, "done": time.monotonic(), "nacked": 0}
    done = bytearray(n + 2)  # done[tag]: confirmed; `low`: every tag <= low confirmed
    low = nacked = 0
    buf = bytearray()
    while low < n:
        if sent < n and sent - low < window:
            k = min(per_send, n - sent, window - (sent - low))
            c.send(batch if k == per_send else one * k)
            sent += k
            continue
        data = c.sock.recv(1 << 16)
        if not data:
            raise AmqpError("connection closed by the broker")
        buf += data
        pos = 0
        while len(buf) - pos >= 8:
            ftype, _, size = FRAME_HEADER.unpack_from(buf, pos)
            if len(buf) - pos < size + 8:
                break
            if ftype == 1:
                ids = METHOD_ID.unpack_from(buf, pos + 7)
                if ids in (ACK, NACK):
                    tag = U64.unpack_from(buf, pos + 11)[0]
                    nacked += ids == NACK
                    if buf[pos + 19] & 1:  # multiple
                        low = max(low, tag)
                    else:
                        done[tag] = 1
                    while low < n and done[low + 1]:
                        low += 1
                elif ids in ((10, 50), (20, 40)):
                    raise AmqpError(f"closed by the broker after {low} confirms")
            pos += size + 8
        del buf[:pos]
    t_done = time.monotonic()
    c.close()
    return {"t0": t0, "done": t_done, "nacked": nacked}


def consumer(
    url: str, queue: str, n: int, body_size: int, prefetch: int, ready: Any
) -> dict[str, Any]:
    """Consume n deliveries of body_size bytes, acking (multiple) every prefetch/4; returns the
    time the last body frame arrived."""
    c = Conn(url)
    c.qos(prefetch)
    c.consume(queue)
    ready.set()
    c.sock.settimeout(60)
    every = max(1, prefetch // 4)
    size = (1 << 20) + 2 * c.frame_max
    buf = bytearray(size)
    view = memoryview(buf)
    filled = len(c.buf)  # deliveries that came with Consume-Ok
    buf[:filled] = c.buf
    c.buf.clear()
    count = body = last_tag = acked = 0
    t_last = time.monotonic()
    while count < n or body < n * body_size:
        got = c.sock.recv_into(view[filled:])
        if not got:
            raise AmqpError(f"connection closed by the broker after {count} deliveries")
        t_last = time.monotonic()
        end = filled + got
        pos = 0
        while end - pos >= 8:
            ftype, _, fsize = FRAME_HEADER.unpack_from(buf, pos)
            if end - pos < fsize + 8:
                break
            if ftype == 3:
                body += fsize
            elif ftype == 1:
                ids = METHOD_ID.unpack_from(buf, pos + 7)
                if ids == DELIVER:
                    count += 1
                    last_tag = U64.unpack_from(buf, pos + 12 + buf[pos + 11])[0]
                elif ids in ((10, 50), (20, 40)):
                    raise AmqpError(f"closed by the broker after {count} deliveries")
            pos += fsize + 8
        filled = end - pos
        buf[:filled] = buf[pos:end]
        if last_tag - acked >= every:
            c.send(ack(1, last_tag))
            acked = last_tag
    if last_tag > acked:
        c.send(ack(1, last_tag))
    c.buf[:] = buf[:filled]
    c.close()
    return {"last": t_last, "count": count, "body": body}


def _trampoline(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


def spawn(fn: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
    parent, child = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=_trampoline, args=(child, fn, args), daemon=True)
    proc.start()
    child.close()
    return proc, parent


def result(worker: tuple[Any, Any], timeout: float) -> dict[str, Any]:
    proc, pipe = worker
    try:
        if not pipe.poll(timeout):
            raise AmqpError(f"no result within {timeout:.0f} s")
        status, value = pipe.recv()
        if status != "ok":
            raise AmqpError(value)
        out: dict[str, Any] = value
        return out
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)


# -- scenarios ----------------------------------------------------------------------------------
@dataclass
class Sizes:
    s1_messages: int = 200_000
    s2_messages: int = 50_000
    s2_window: int = 1000
    s4_messages: int = 2_000
    s4_prefetch: int = 50
    prefetch: int = 1000
    s5_rate: int = 5000
    s5_seconds: float = 10.0
    s5_warmup: int = 1000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(s1_messages=20_000, s2_messages=5_000, s4_messages=200, s5_seconds=2.0)

    def override(self, text: str) -> Sizes:
        kinds = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, _, value = item.partition("=")
            if key not in kinds:
                raise ValueError(f"unknown size {key!r}; known: {', '.join(kinds)}")
            changes[key] = float(value) if kinds[key] in ("float", float) else int(value)
        return replace(self, **changes)


def pubsub(
    url: str,
    queue: str,
    *,
    body_size: int,
    n: int,
    prefetch: int,
    persistent: bool = False,
    window: int = 0,
) -> dict[str, float]:
    c = Conn(url)
    c.queue_delete(queue)
    c.queue_declare(queue, durable=persistent)
    try:
        ready = CTX.Event()
        cons = spawn(consumer, url, queue, n, body_size, prefetch, ready)
        if not ready.wait(30):
            result(cons, 1)
            raise AmqpError("consumer did not start")
        pub = spawn(publisher, url, queue, body_size, n, persistent, window)
        limit = 120 + n * (body_size + 200) / 2e6 + n / 2000
        p = result(pub, limit)
        r = result(cons, limit)
    finally:
        c.queue_delete(queue)
        c.close()
    if r["count"] != n or p["nacked"]:
        raise AmqpError(f"{r['count']} deliveries, {p['nacked']} nacks for {n} publishes")
    elapsed = r["last"] - p["t0"]
    return {
        "e2e": n / elapsed,
        "confirmed": n / (p["done"] - p["t0"]),
        "mibps": r["body"] / elapsed / 2**20,
    }


def s1(url: str, sz: Sizes) -> dict[str, float]:
    x = pubsub(url, "rawgen.s1", body_size=16, n=sz.s1_messages, prefetch=sz.prefetch)
    return {"s1 transient 16 B e2e msg/s": x["e2e"]}


def s2(url: str, sz: Sizes) -> dict[str, float]:
    x = pubsub(
        url,
        "rawgen.s2",
        body_size=16,
        n=sz.s2_messages,
        prefetch=sz.prefetch,
        persistent=True,
        window=sz.s2_window,
    )
    return {"s2 persistent+confirms e2e msg/s": x["e2e"], "s2 confirmed msg/s": x["confirmed"]}


def s4(url: str, sz: Sizes) -> dict[str, float]:
    x = pubsub(url, "rawgen.s4", body_size=256 * 1024, n=sz.s4_messages, prefetch=sz.s4_prefetch)
    return {"s4 256 KiB e2e msg/s": x["e2e"], "s4 256 KiB MiB/s": x["mibps"]}


def s5(url: str, sz: Sizes) -> dict[str, float]:
    x = pika_latency.measure(url, sz.s5_rate, sz.s5_seconds, sz.s5_warmup)
    return {
        "s5 pika latency p50 ms": x["p50_ms"],
        "s5 pika latency p99 ms": x["p99_ms"],
        "s5 pika achieved msg/s": x["achieved"],
    }


SCENARIOS: dict[int, Callable[[str, Sizes], dict[str, float]]] = {1: s1, 2: s2, 4: s4, 5: s5}


# -- the run ------------------------------------------------------------------------------------
def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--broker", action="append", required=True, metavar="NAME=URL")
    ap.add_argument("--scenarios", default="1,2,4,5")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--sizes", default="", help="override sizes, e.g. s1_messages=100000")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/)")
    args = ap.parse_args(argv)
    brokers = dict(b.split("=", 1) for b in args.broker)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.sizes:
        sizes = sizes.override(args.sizes)
    scenarios = [int(s) for s in args.scenarios.split(",") if s.strip()]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    runs: dict[str, dict[str, list[float]]] = {}
    failures: list[str] = []
    for r in range(args.runs):
        for s in scenarios:
            names = list(brokers)
            if (r + s) % 2:
                names.reverse()
            for name in names:
                try:
                    metrics = SCENARIOS[s](brokers[name], sizes)
                except Exception as exc:
                    failures.append(f"run {r + 1}, scenario {s}, {name}: {exc}")
                    print("FAILED", failures[-1], flush=True)
                    continue
                for k, v in metrics.items():
                    runs.setdefault(k, {b: [] for b in brokers})[name].append(v)
                print(
                    f"run {r + 1} s{s} {name}: "
                    + ", ".join(f"{k} {fmt(v)}" for k, v in metrics.items()),
                    flush=True,
                )
    names = list(brokers)
    summary: dict[str, dict[str, Any]] = {}
    for metric, by in runs.items():
        row: dict[str, Any] = {
            b: {
                "runs": v,
                "median": statistics.median(v) if v else None,
                "min": min(v) if v else None,
                "max": max(v) if v else None,
            }
            for b, v in by.items()
        }
        meds = [row[b]["median"] for b in names]
        if len(names) == 2 and None not in meds and meds[1]:
            row["ratio"] = meds[0] / meds[1]
        summary[metric] = row
    doc = {
        "kind": "rawgen",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python bench/rawgen.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "loadavg_start": load,
        "nproc": os.cpu_count(),
        "runs": args.runs,
        "brokers": names,
        "urls": brokers,
        "sizes": {f.name: getattr(sizes, f.name) for f in fields(sizes)},
        "results": summary,
        "failures": failures,
    }
    out = args.out
    if out is None:
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"rawgen-{doc['date'].replace(':', '')}.json"
        (RESULTS_DIR / "rawgen.json").write_text(json.dumps(doc, indent=1) + "\n")
    out.write_text(json.dumps(doc, indent=1) + "\n")
    header = ["metric", *(f"{b} median (min-max)" for b in names)]
    if len(names) == 2:
        header.append(f"{names[0]}/{names[1]}")
    print("\n| " + " | ".join(header) + " |")
    print("|---" + "|---:" * (len(header) - 1) + "|")
    for metric, row in summary.items():
        cells = [metric]
        for b in names:
            x = row[b]
            cells.append(f"{fmt(x['median'])} ({fmt(x['min'])}-{fmt(x['max'])})")
        if len(names) == 2:
            cells.append(f"{row['ratio']:.2f}" if "ratio" in row else "—")
        print("| " + " | ".join(cells) + " |")
    print(f"\nwrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
