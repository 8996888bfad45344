"""Queues larger than memory: a backlog several times the memory watermark, no consumer, then a
full drain, against trimq and RabbitMQ 3.10 side by side (the scenario of issue 14).

    .venv/bin/python bench/paging.py                       # 1,200 MB of 16 KiB persistent
    .venv/bin/python bench/paging.py --transient --mb 600  # delivery mode 1
    .venv/bin/python bench/paging.py --brokers trimq

Each broker starts on a fresh data directory with its memory high watermark at `--watermark`
(trimq: TRIMQ_RESOURCES_MEMORY_HIGH_WATERMARK_ABSOLUTE; RabbitMQ: vm_memory_high_watermark.absolute
in its rabbitmq.conf). One publisher with confirms (window 1000) publishes into a durable queue
until `--mb` were confirmed or no confirm came for `--stall` seconds (the publisher is blocked:
memory alarm); then one consumer (prefetch 1000, acks) drains what was accepted. The broker's
RSS is sampled every 0.2 s. Prints, per broker: MB accepted, publish MB/s and msg/s, peak RSS
during the publish, RSS at its end, drain msg/s, and whether the publisher was blocked.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pika import spec  # noqa: E402

import amqp_client as ac  # noqa: E402
import loadgen as lg  # noqa: E402
import run as br  # noqa: E402

QUEUE = "bench.paging"


def free_port() -> int:
    """A free port under 45536 (RabbitMQ's distribution port is 20000 above it)."""
    for port in random.sample(range(30000, 45000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class Sampler:
    """The peak RSS of a process, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, lg.rss_kib(self.pid))
            except OSError:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def scenario(
    broker: br.Broker, mb: int, size: int, persistent: bool, stall: float
) -> dict[str, Any]:
    pid = broker.pid()
    control = ac.connect_channel(broker.url)
    control.queue_declare(1, QUEUE, durable=True)
    count = mb * 1_000_000 // size
    publisher_client = ac.connect_channel(broker.url)
    assert publisher_client.sock is not None
    publisher_client.sock.settimeout(stall)
    publisher = ac.Publisher(
        publisher_client,
        1,
        "",
        QUEUE,
        b"p" * size,
        spec.BasicProperties(delivery_mode=2 if persistent else 1),
        confirm=True,
        window=1000,
    )
    sampler = Sampler(pid)
    blocked = False
    started = time.monotonic()
    try:
        while publisher.published < count:
            publisher.publish(min(1000, count - publisher.published))
    except (TimeoutError, OSError, ac.BrokerError):
        blocked = True
    accepted = publisher.tracker.settled
    elapsed = time.monotonic() - started - (stall if blocked else 0.0)
    peak = sampler.stop()
    end_rss = lg.rss_kib(pid)
    publisher_client.abort()
    _, ready, _ = control.queue_declare(1, QUEUE, durable=True, passive=True)
    consumer_client = ac.connect_channel(broker.url)
    consumer = ac.Consumer(consumer_client, 1, QUEUE, prefetch=1000)
    consumer.run(ready, idle_timeout=60)
    drain = ready / max(1e-9, consumer.last_time - consumer.first_time)
    consumer_client.close()
    control.queue_delete(1, QUEUE)
    control.close()
    return {
        "accepted MB": round(accepted * size / 1e6, 1),
        "publish MB/s": round(accepted * size / 1e6 / max(elapsed, 1e-9), 1),
        "publish msg/s": round(accepted / max(elapsed, 1e-9)),
        "publisher blocked": blocked,
        "peak RSS MB": round(peak * 1024 / 1e6, 1),
        "RSS at end of publish MB": round(end_rss * 1024 / 1e6, 1),
        "drained messages": ready,
        "drain msg/s": round(drain),
    }


class Trimq(br.Trimq):
    """trimq-server from this checkout (PYTHONPATH as given) with the watermark set."""

    def __init__(self, port: int, workdir: Path, watermark: str) -> None:
        super().__init__(port, workdir, rev="worktree")
        self.watermark = watermark

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        env["TRIMQ_RESOURCES_MEMORY_HIGH_WATERMARK_ABSOLUTE"] = self.watermark
        return cmd, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="trimq,rabbitmq")
    parser.add_argument("--mb", type=int, default=1200)
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--watermark", default="400MB")
    parser.add_argument("--transient", action="store_true")
    parser.add_argument("--stall", type=float, default=20.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/trimq-bench-paging"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name in args.brokers.split(","):
        broker: br.Broker
        if name == "trimq":
            broker = Trimq(free_port(), args.workdir, args.watermark)
        else:
            rabbit = br.RabbitMQ(free_port(), args.workdir)
            (rabbit.base / "rabbitmq.conf").write_text(
                f"vm_memory_high_watermark.absolute = {args.watermark}\n"
            )
            broker = rabbit
        broker.start()
        try:
            broker.wait_up()
            br.log(f"{name}: publishing {args.mb} MB")
            results[name] = scenario(broker, args.mb, args.size, not args.transient, args.stall)
            br.log(f"{name}: {json.dumps(results[name])}")
        finally:
            broker.stop("clean")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
