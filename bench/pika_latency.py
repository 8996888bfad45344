"""Publish-to-deliver latency at a fixed rate, measured with pika's BlockingConnection.

    .venv/bin/python bench/pika_latency.py amqp://guest:guest@127.0.0.1:5672/ --rate 5000

A second generator for scenario 5, independent of bench/amqp_client.py: the publisher process
publishes through pika at `rate` messages a second (what is due every millisecond), the body
starting with the send time (time.monotonic(), one clock for all processes on Linux); the
consumer process (pika, prefetch 1000, multiple acks every 100) subtracts it when pika hands
the message to its callback. So the figure includes pika's own decoding on both sides, the
same for every broker. The first `warmup` deliveries are not counted. bench/rawgen.py runs it
as its scenario 5, alternating brokers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import struct
import sys
import time
import traceback
from typing import Any

import pika

CTX = mp.get_context("fork")
STAMP = struct.Struct(">d")
QUEUE = "pika_latency"


def _params(url: str) -> pika.URLParameters:
    return pika.URLParameters(url)


def publisher(url: str, rate: int, n: int) -> dict[str, Any]:
    conn = pika.BlockingConnection(_params(url))
    ch = conn.channel()
    pad = b"\x00" * 8  # 16-byte bodies, as bench/'s scenario 5
    t0 = time.monotonic()
    sent = 0
    while sent < n:
        due = min(n, int((time.monotonic() - t0) * rate) + 1)
        while sent < due:
            ch.basic_publish("", QUEUE, STAMP.pack(time.monotonic()) + pad)
            sent += 1
        next_tick = t0 + (sent / rate)
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.001))
    elapsed = time.monotonic() - t0
    conn.close()
    return {"achieved": n / elapsed}


def consumer(url: str, n: int, ready: Any) -> dict[str, Any]:
    conn = pika.BlockingConnection(_params(url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    latencies: list[float] = []

    def on_message(c: Any, deliver: Any, _props: Any, body: bytes) -> None:
        latencies.append(time.monotonic() - STAMP.unpack_from(body)[0])
        if len(latencies) % 100 == 0 or len(latencies) >= n:
            c.basic_ack(deliver.delivery_tag, multiple=True)
        if len(latencies) >= n:
            c.stop_consuming()

    ch.basic_consume(QUEUE, on_message)
    ready.set()
    ch.start_consuming()
    conn.close()
    return {"latencies": latencies}


def _trampoline(pipe: Any, fn: Any, args: tuple[Any, ...]) -> None:
    try:
        pipe.send(("ok", fn(*args)))
    except Exception as exc:
        pipe.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


def _spawn(fn: Any, *args: Any) -> tuple[Any, Any]:
    parent, child = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=_trampoline, args=(child, fn, args), daemon=True)
    proc.start()
    child.close()
    return proc, parent


def _get(worker: tuple[Any, Any], timeout: float) -> dict[str, Any]:
    proc, pipe = worker
    try:
        if not pipe.poll(timeout):
            raise RuntimeError(f"pika latency probe: no result within {timeout:.0f} s")
        status, value = pipe.recv()
        if status != "ok":
            raise RuntimeError(value)
        out: dict[str, Any] = value
        return out
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)


def measure(url: str, rate: int, seconds: float, warmup: int = 1000) -> dict[str, float]:
    """p50/p99/p99.9 in ms after `warmup` deliveries, and the publish rate achieved."""
    n = int(rate * seconds)
    setup = pika.BlockingConnection(_params(url))
    ch = setup.channel()
    ch.queue_delete(QUEUE)
    ch.queue_declare(QUEUE)
    try:
        ready = CTX.Event()
        cons = _spawn(consumer, url, n, ready)
        if not ready.wait(30):
            _get(cons, 1)
            raise RuntimeError("pika latency probe: consumer did not start")
        pub = _spawn(publisher, url, rate, n)
        p = _get(pub, seconds + 120)
        r = _get(cons, seconds + 120)
    finally:
        ch.queue_delete(QUEUE)
        setup.close()
    lat = sorted(r["latencies"][min(warmup, n // 2) :])
    if not lat:
        raise RuntimeError("pika latency probe: no samples")

    def pct(q: float) -> float:
        return float(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000)

    return {
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "achieved": float(p["achieved"]),
        "samples": float(len(lat)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=int, default=1000)
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.url, args.rate, args.seconds, args.warmup)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
