"""The soak workload and its measurements (tests/test_soak.py runs them).

Client threads repeat cycles of a short-lived client: open a connection, declare an auto-delete
exchange and an exclusive queue, bind them, publish with confirms, consume with acks, move one
persistent message through a shared durable queue, and go away (closing politely, closing with
deliveries unacked, or dropping the socket without a word). Between rounds the threads pause and
the broker is sampled idle, where a leak cannot hide behind the connections in flight.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
from amqp_raw import RawClient
from pika import spec
from pika_helpers import collector, pump

DURABLE_QUEUE = "soak.durable"
MESSAGES = 8  # per cycle, through the cycle's own exchange and queue
BODY = b"soak" * 64
PERSISTENT = pika.BasicProperties(delivery_mode=2, content_type="application/octet-stream")
TRANSIENT = pika.BasicProperties(content_type="text/plain", headers={"cycle": "soak"})
WAIT = 15.0  # seconds any one step may take before the cycle counts as failed
MAX_ERRORS = 20  # kept for the report; the test fails on the first anyway


def control(data_dir: Path, command: str, **args: Any) -> Any:
    """One request on the broker's control socket (docs/control-protocol.md)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(data_dir / "trimq.sock"))
        sock.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the control connection")
            reply += chunk
    answer = json.loads(reply)
    if not answer["ok"]:
        raise RuntimeError(f"{command}: {answer}")
    return answer["result"]


def rss(pid: int) -> int:
    """The process's resident set in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def second_half(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points after the run's midpoint in time (the first half is warm-up)."""
    if not points:
        return []
    middle = (points[0][0] + points[-1][0]) / 2
    return [p for p in points if p[0] >= middle]


@dataclass
class Totals:
    """What the clients did, counted under a lock (several threads add to it)."""

    cycles: int = 0
    confirmed: int = 0
    consumed: int = 0
    durable_confirmed: int = 0
    durable_acked: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def error(self, text: str) -> None:
        with self.lock:
            if len(self.errors) < MAX_ERRORS:
                self.errors.append(text)


class Gate:
    """Lets the client threads run cycles while open; `pause` closes it and waits until no
    cycle is in progress."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = False
        self._stopped = False
        self._busy = 0

    def enter(self) -> bool:
        """Wait for the gate to open; False once stopped."""
        with self._cond:
            while not self._open and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return False
            self._busy += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._open = False
            while self._busy:
                self._cond.wait()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._open = False
            self._cond.notify_all()
            while self._busy:
                self._cond.wait()


def pika_cycle(params: pika.ConnectionParameters, name: str, style: int, totals: Totals) -> None:
    """One client's life: `style` 0 closes politely, 1 also closes a channel early and
    deletes its exchange itself, 2 closes with half its deliveries unacked."""
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.exchange_declare(name, "fanout", auto_delete=True)
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, name)
        for _ in range(MESSAGES):
            ch.basic_publish(name, "", BODY, TRANSIENT)  # returns once confirmed
        ch.basic_publish("", DURABLE_QUEUE, BODY, PERSISTENT)
        totals.add(confirmed=MESSAGES, durable_confirmed=1)
        received: list[Any] = []
        ch.basic_qos(prefetch_count=MESSAGES)
        tag = ch.basic_consume(queue, collector(received))
        if not pump(conn, lambda: len(received) >= MESSAGES, WAIT):
            raise AssertionError(f"{name}: {len(received)} of {MESSAGES} deliveries")
        keep = MESSAGES // 2 if style == 2 else MESSAGES
        for method, _, _ in received[:keep]:
            ch.basic_ack(method.delivery_tag)
        totals.add(consumed=len(received))
        got, _, _ = ch.basic_get(DURABLE_QUEUE)
        if got is not None:
            ch.basic_ack(got.delivery_tag)
            totals.add(durable_acked=1)
        if style == 1:
            ch.basic_cancel(tag)
            ch.close()
            other = conn.channel()
            other.exchange_delete(name)
            temporary = other.queue_declare("", auto_delete=True).method.queue
            other.basic_cancel(other.basic_consume(temporary, lambda *a: None))
    finally:
        if conn.is_open:
            conn.close()


def raw_cycle(host: str, port: int, name: str, totals: Totals) -> None:
    """A client that publishes with confirms and then drops its socket without a Close."""
    client = RawClient(host, port, timeout=WAIT)
    try:
        client.open_channel(1)
        client.rpc(1, spec.Confirm.Select(), spec.Confirm.SelectOk)
        client.rpc(
            1,
            spec.Exchange.Declare(exchange=name, type="fanout", auto_delete=True),
            spec.Exchange.DeclareOk,
        )
        queue = client.rpc(1, spec.Queue.Declare(exclusive=True), spec.Queue.DeclareOk).queue
        client.rpc(1, spec.Queue.Bind(queue=queue, exchange=name), spec.Queue.BindOk)
        for _ in range(MESSAGES):
            client.publish(1, name, "", BODY)
        acked = 0
        while acked < MESSAGES:
            ack = client.expect(1, spec.Basic.Ack)
            acked = ack.delivery_tag if ack.multiple else acked + 1
        client.send_method(1, spec.Basic.Consume(queue=queue))  # deliveries left unread
        totals.add(confirmed=MESSAGES)
    finally:
        client.sock.close()


def worker(
    params: pika.ConnectionParameters,
    number: int,
    gate: Gate,
    totals: Totals,
    stop_on_error: Callable[[], None],
) -> None:
    """Run cycles while the gate is open; the 4th of every 4 drops its socket."""
    n = 0
    while gate.enter():
        name = f"soak.x.{number}.{n}"
        try:
            if n % 4 == 3:
                raw_cycle(params.host, params.port, name, totals)
            else:
                pika_cycle(params, name, n % 4, totals)
            totals.add(cycles=1)
        except Exception as exc:
            totals.error(f"{name}: {type(exc).__name__}: {exc}")
            stop_on_error()
        finally:
            gate.leave()
        n += 1


@dataclass
class Sample:
    """The broker process at one moment; idle samples also count its objects."""

    t: float
    rss: int
    fds: int
    tasks: int
    cycles: int
    gc_objects: int = 0
    blocks: int = 0
    own_objects: dict[str, int] = field(default_factory=dict)  # trimq's types only


def sample(pid: int, data_dir: Path, started: float, cycles: int) -> Sample:
    status = control(data_dir, "status")
    return Sample(
        round(time.monotonic() - started, 3), rss(pid), descriptors(pid), status["tasks"], cycles
    )


def drain(params: pika.ConnectionParameters, totals: Totals) -> None:
    """Take and ack what the cycles left in the durable queue, so that an idle broker holds
    the same objects every time."""
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        while True:
            got, _, _ = ch.basic_get(DURABLE_QUEUE)
            if got is None:
                break
            ch.basic_ack(got.delivery_tag)
            totals.add(durable_acked=1)
    finally:
        conn.close()


def quiet_descriptors(pid: int) -> int:
    """The descriptor count once it stops moving (two looks 20 ms apart agree): the broker
    closes its side of a control request just after answering it."""
    count = descriptors(pid)
    while True:
        time.sleep(0.02)
        again = descriptors(pid)
        if again == count:
            return count
        count = again


def idle_sample(
    pid: int,
    data_dir: Path,
    started: float,
    cycles: int,
    baseline: Sample | None,
    timeout: float = 15.0,
) -> Sample:
    """The broker once every client has gone: no connection left and the task and descriptor
    counts back at `baseline` (or, without one, unchanged over two looks); after `timeout`,
    whatever they are. Then its objects, after a full collection."""
    previous: Sample | None = None
    deadline = time.monotonic() + timeout
    while True:
        status = control(data_dir, "status")
        current = Sample(
            round(time.monotonic() - started, 3),
            rss(pid),
            quiet_descriptors(pid),
            status["tasks"],
            cycles,
        )
        reference = baseline or previous
        if (
            status["connections"] == 0
            and reference is not None
            and (current.tasks, current.fds) == (reference.tasks, reference.fds)
        ):
            break
        if time.monotonic() > deadline:
            break
        previous = current
        time.sleep(0.1)
    objects = control(data_dir, "object_counts")
    current.gc_objects = objects["gc_objects"]
    current.blocks = objects["allocated_blocks"]
    current.own_objects = {
        name: count for name, count in objects["types"].items() if name.startswith("trimq.")
    }
    return current
