"""Publisher confirms against the real fsync of a running trimq-server: a confirm never goes out
before the fsync that covers its message, and with fsync failing the publisher gets 541, never
an ack.

A kill -9 keeps the page cache, so crash tests alone would pass with fsync turned off. Here the
broker runs with the test-only fsync hook (storage/fsync_hook.py, TRIMQ_TEST_FSYNC_DIR), which
lets the test hold each fsync of the log, watch it complete, or make it fail with EIO.

trimq-only: it starts its own trimq-server with that hook.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from amqp_raw import FRAME_BODY, FRAME_HEADER, FRAME_METHOD, RawClient
from conftest import Broker, start_server, stop_server
from pika import spec
from pika_helpers import wait_until

from storage.fsync_hook import ENV

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: holds and fails its own broker's fsyncs",
)

PERSISTENT = spec.BasicProperties(delivery_mode=2)


class Fsyncs:
    """The hook's directory as the test sees it (see storage/fsync_hook.py)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def done(self) -> int:
        """How many fsyncs have completed."""
        path = self.directory / "fsynced"
        return len(path.read_text().split()) if path.exists() else 0

    def allow(self, upto: int | None) -> None:
        """Let fsyncs up to number `upto` run (None: all of them)."""
        path = self.directory / "allow"
        if upto is None:
            path.unlink(missing_ok=True)
            return
        tmp = self.directory / "allow.tmp"
        tmp.write_text(f"{upto}\n")
        tmp.replace(path)

    def blocked(self) -> int:
        """The number of the last fsync that had to wait (0: none yet)."""
        path = self.directory / "blocked"
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text.isdigit() else 0

    def wait_blocked(self, number: int) -> None:
        """Wait until fsync `number` is held: its batch is written and waits for the disk."""
        assert wait_until(lambda: self.blocked() == number, timeout=10), (
            f"fsync {number} was never reached (last held: {self.blocked()})"
        )

    def fail(self) -> None:
        (self.directory / "fail").touch()


Start = Callable[..., tuple[Broker, Fsyncs]]


@pytest.fixture
def hooked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Start]:
    """Starts trimq-servers with the fsync hook on (each with its own hook directory)."""
    started: list[Broker] = []

    def start(*extra: str) -> tuple[Broker, Fsyncs]:
        root = tmp_path / f"node{len(started)}"
        hook = root / "fsync-hook"
        hook.mkdir(parents=True)
        monkeypatch.setenv(ENV, str(hook))
        started.append(start_server(root / "data", *extra, log_path=root / "server.log"))
        return started[-1], Fsyncs(hook)

    yield start
    for server in started:
        if server.process is not None and server.process.poll() is None:
            stop_server(server)


def confirming_client(server: Broker) -> RawClient:
    """A raw client with channel 1 in confirm mode and the durable queue "q" declared."""
    raw = RawClient(server.host, server.port)
    raw.open_channel(1)
    raw.rpc(1, spec.Queue.Declare(queue="q", durable=True), spec.Queue.DeclareOk)
    raw.rpc(1, spec.Confirm.Select(), spec.Confirm.SelectOk)
    return raw


def publish(raw: RawClient, *bodies: bytes) -> None:
    """Persistent publishes to "q" on channel 1, sent with one write."""
    frames = []
    for body in bodies:
        method = spec.Basic.Publish(exchange="", routing_key="q")
        header = struct.pack(">HHQ", spec.Basic.INDEX, 0, len(body)) + b"".join(PERSISTENT.encode())
        for frame_type, payload in (
            (FRAME_METHOD, struct.pack(">I", method.INDEX) + b"".join(method.encode())),
            (FRAME_HEADER, header),
            (FRAME_BODY, body),
        ):
            frames.append(struct.pack(">BHI", frame_type, 1, len(payload)) + payload + b"\xce")
    raw.sock.sendall(b"".join(frames))


def ready_in_q(raw: RawClient) -> int:
    """A round trip on channel 1 (the publishes before it are routed and enqueued); RawClient
    fails if anything else, such as a Basic.Ack, arrives before the reply."""
    return raw.rpc(
        1, spec.Queue.Declare(queue="q", passive=True), spec.Queue.DeclareOk
    ).message_count


def acked_upto(raw: RawClient, last: int) -> list[tuple[int, bool]]:
    """Read Basic.Acks on channel 1 until one covers `last`; their (tag, multiple)."""
    acks: list[tuple[int, bool]] = []
    while not acks or acks[-1][0] < last:
        ack = raw.expect(1, spec.Basic.Ack)
        acks.append((ack.delivery_tag, ack.multiple))
    return acks


def test_a_confirm_waits_for_the_fsync_that_covers_it(hooked: Start) -> None:
    server, fsyncs = hooked()
    with confirming_client(server) as raw:
        before = fsyncs.done()
        fsyncs.allow(before)  # hold every fsync from now on

        publish(raw, b"a")  # batch 1: "a"
        fsyncs.wait_blocked(before + 1)
        assert ready_in_q(raw) == 1  # routed, written, not fsynced: not confirmed
        publish(raw, b"b", b"c")  # batch 2, waiting behind batch 1's fsync
        assert ready_in_q(raw) == 3  # still no confirm for anything

        fsyncs.allow(before + 1)  # batch 1's fsync completes; batch 2's is held
        assert raw.expect(1, spec.Basic.Ack).delivery_tag == 1  # "a" only, not "b" or "c"
        assert fsyncs.done() == before + 1
        fsyncs.wait_blocked(before + 2)
        assert ready_in_q(raw) == 3  # no confirm for "b" and "c" meanwhile

        fsyncs.allow(None)
        assert acked_upto(raw, 3) == [(3, True)]
        assert fsyncs.done() == before + 2


def test_without_fsync_nothing_waits_for_the_disk(hooked: Start) -> None:
    """--no-fsync (documented as losing confirmed messages on power loss) confirms at once:
    the hook is never reached, so the test above would fail against it."""
    server, fsyncs = hooked("--no-fsync")
    with confirming_client(server) as raw:
        fsyncs.allow(0)
        publish(raw, b"a", b"b")
        assert acked_upto(raw, 2)[-1] == (2, True)
        assert (fsyncs.blocked(), fsyncs.done()) == (0, 0)


def expect_541(raw: RawClient) -> list[type]:
    """Read until Connection.Close, which must be 541 INTERNAL_ERROR, and answer it; return
    the methods received before it."""
    before: list[type] = []
    while True:
        command = raw.read_command()
        if isinstance(command.method, spec.Connection.Close):
            break
        before.append(type(command.method))
    assert command.method.reply_code == 541, command.method
    assert command.method.reply_text.startswith("INTERNAL_ERROR - ")
    raw.send_method(0, spec.Connection.CloseOk())
    return before


def test_a_failed_fsync_is_never_confirmed(hooked: Start) -> None:
    server, fsyncs = hooked()
    first, second = confirming_client(server), confirming_client(server)
    try:
        before = fsyncs.done()
        fsyncs.allow(before)
        publish(first, b"a")
        fsyncs.wait_blocked(before + 1)  # "a" is written, its fsync held
        publish(second, b"b")  # waits behind it
        assert ready_in_q(second) == 2
        fsyncs.fail()
        fsyncs.allow(None)  # the held fsync now fails with EIO
        for raw in (first, second):
            assert spec.Basic.Ack not in expect_541(raw)
        assert fsyncs.done() == before

        # the log stays failed: later persistent publishes are refused, nothing is fsynced
        with confirming_client(server) as third:
            publish(third, b"c")
            assert spec.Basic.Ack not in expect_541(third)
        assert fsyncs.done() == before
        # transient work goes on
        with RawClient(server.host, server.port) as fourth:
            fourth.open_channel(1)
            fourth.rpc(1, spec.Queue.Declare(queue="t"), spec.Queue.DeclareOk)
            fourth.publish(1, "", "t", b"transient")
            got = fourth.rpc(1, spec.Basic.Get(queue="t", no_ack=True), spec.Basic.GetOk)
            assert got.message_count == 0
    finally:
        first.sock.close()
        second.sock.close()
