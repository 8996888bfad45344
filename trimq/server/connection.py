"""One client connection: handshake, then a reader, a writer and a heartbeat task in one nursery.

The reader receives large chunks and handles every complete frame in them synchronously (a
whole Basic.Publish at once when it can); the writer sends everything buffered with one
gathered send (`Output`). What a frame means in the connection's state is decided by its
`ConnectionMachine` (trimq/amqp/state.py); this module moves the bytes, runs the timers and
acts on the machine's answers. Leaving the nursery for any reason runs
`cleanup()`, which is synchronous so cancellation cannot skip it: unacked messages are requeued,
consumers cancelled and exclusive queues deleted.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import structlog
import trio

from storage import WALFailed
from trimq.amqp import frames, spec
from trimq.amqp.publish import decodable
from trimq.amqp.state import (
    Action,
    ChannelEvent,
    ConnectionEvent,
    ConnectionMachine,
    ConnectionState,
)
from trimq.broker.queue import Queue
from trimq.errors import CONNECTION_FORCED, INTERNAL_ERROR, AMQPError, ConnectionError
from trimq.server.channel import Channel
from trimq.server.handshake import PeerGone, handshake, is_loopback
from trimq.server.output import Output
from trimq.server.resources import Resources
from trimq.server.tls_peer import TLSDetails
from trimq.server.tls_peer import details as tls_details

if TYPE_CHECKING:
    from storage import WAL
    from trimq.broker.broker import Broker
    from trimq.broker.vhost import VHost

log = structlog.get_logger("trimq.connection")

RECEIVE_SIZE = 256 * 1024
CLOSE_TIMEOUT = 3.0  # how long we wait for Close-Ok after sending Connection.Close
# As RabbitMQ: a handshake error before Tune-Ok closes the socket this long after, without a
# frame, so that a client not yet trusted cannot retry fast.
SILENT_CLOSE_DELAY = 3.0
__all__ = ["PeerGone", "ServerConnection", "is_loopback"]
RUNNING, CLOSING, CLOSED = ConnectionState.RUNNING, ConnectionState.CLOSING, ConnectionState.CLOSED

_connection_numbers = itertools.count(1)


@dataclass
class TrafficStats:
    """Bytes and socket operations in each direction, for list_connections."""

    recv_oct: int = 0
    recv_cnt: int = 0
    send_oct: int = 0
    send_cnt: int = 0


class Pause(Enum):
    """Why the reader is not reading (heartbeat silence then proves nothing)."""

    NONE = "reading"
    BLOCKED = "blocked"  # a resource alarm holds back a publisher
    FLOW = "flow"  # the replies the writer has not taken exceed output_limit


class ServerConnection:
    def __init__(
        self,
        stream: trio.abc.Stream,
        broker: Broker,
        peer: tuple[str, int],
        wal: WAL | None = None,
        local: tuple[str, int] = ("", 0),
        resources: Resources | None = None,
    ) -> None:
        self.stream = stream
        self.broker = broker
        self.number = next(_connection_numbers)
        self.local = local
        self.connected_at = time.time()
        self.stats = TrafficStats()
        self.auth_mechanism = ""
        self.wal = wal  # the write-ahead log, when the broker keeps durable state
        self._after_durable: tuple[int, Callable[[], None]] | None = None
        self.peer = peer
        config = broker.config
        # Until Tune-Ok, frames over the protocol's minimum frame_max are refused (RabbitMQ).
        self.frames = frames.FrameBuffer(frame_max=spec.FRAME_MIN_SIZE)
        self.frame_max = config.frame_max
        self.heartbeat = config.heartbeat
        self.resources = resources if resources is not None else Resources()
        self.out = Output()
        self.output_limit = config.connection_output_buffer
        self.replies = 0  # bytes of replies put in `out` since the writer last took it
        self.deliveries_paused = False  # a consumer was refused for a full output buffer
        self.publisher = False  # has published: an alarm blocks it
        self.pause = Pause.NONE
        self._paused_scope: trio.CancelScope | None = None  # either pause: Close cancels it
        self._drained = trio.Event()  # the writer took the output: a paused reader goes on
        self._wake = trio.Event()
        self._sending = False  # the writer is in the middle of a send
        self.channels: dict[int, Channel] = {}
        self.proto = ConnectionMachine(self.channels, config.channel_max)
        self.exclusive_queues: list[Queue] = []
        self._nursery: trio.Nursery | None = None
        self.client_properties: dict[str, Any] = {}
        self.username = ""
        self.vhost: VHost = None  # type: ignore[assignment]  # set by Connection.Open
        self.last_received = trio.current_time()
        self.last_sent = trio.current_time()
        self._reader_scope = trio.CancelScope()
        self._unauthenticated = False  # counted in resources.handshakes
        # the TLS session's details once its handshake is done; None on the plain listener
        self.tls: TLSDetails | None = None

    @property
    def channel_max(self) -> int:
        return self.proto.channel_max

    @property
    def opened(self) -> bool:
        """It passed the handshake (so it is counted, and listed)."""
        return self.proto.opened

    @property
    def closing(self) -> bool:
        """We sent Connection.Close and wait for the Close-Ok."""
        return self.proto.state is CLOSING

    @property
    def finished(self) -> bool:
        """Nothing more will be read."""
        return self.proto.state is CLOSED

    # -- output -------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        """Queue a reply (anything but a delivery): replies count towards pausing the reader."""
        self.out += data
        self.replies += len(data)
        self._wake.set()

    def write_delivery(self, data: bytes | memoryview) -> None:
        """Queue a delivery: deliveries are bounded by `output_full`, not by the reader."""
        self.out += data
        self._wake.set()

    def output_full(self) -> bool:
        """Whether deliveries must wait for the writer: a client that reads slowly (or not at
        all) holds at most about twice the limit of the broker's memory, not the queue."""
        if self.out.size < self.output_limit:
            return False
        self.deliveries_paused = True
        return True

    def over_output_limit(self) -> bool:
        """Whether the reader must stop until the writer has taken the output: every reply
        (Get-Ok, returns, confirms, method replies) answers input, so not reading bounds
        them all. Deliveries do not count: they stop by themselves (`output_full`), and a
        consumer's acks (or a publish it is still sending) must go on being read. A closing
        connection is read on, for the Close-Ok."""
        return self.replies >= self.output_limit and self.proto.state is RUNNING

    def _resume_deliveries(self) -> None:
        self.deliveries_paused = False
        for channel in list(self.channels.values()):
            channel.dispatch_consumed_queues()

    async def _writer(self) -> None:
        stream = self.stream
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self.out:
                    data, self.out = self.out, Output()
                    self.replies = 0
                    self._drained.set()
                    self._sending = True
                    await data.send_to(stream)
                    self._sending = False
                    self.last_sent = trio.current_time()
                    self.stats.send_oct += len(data)
                    self.stats.send_cnt += 1
                    if self.deliveries_paused and len(self.out) < self.output_limit:
                        self._resume_deliveries()
                if self.proto.state is CLOSED:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._sending = False
            self.out.clear()
            self.proto.event(ConnectionEvent.GONE)
            self._reader_scope.cancel()  # the peer is gone: stop reading too

    async def send_now(self, data: bytes) -> None:
        """Send during the handshake, before the writer task runs."""
        await self.stream.send_all(data)
        self.last_sent = trio.current_time()
        self.stats.send_oct += len(data)
        self.stats.send_cnt += 1

    # -- lifecycle ----------------------------------------------------------------------

    async def serve(self) -> None:
        """Handshake, then serve until the connection ends; the socket is closed on the way
        out. A socket over the limit of those not yet authenticated is closed at once."""
        if not self.resources.start_handshake():
            await trio.aclose_forcefully(self.stream)
            return
        self._unauthenticated = True
        try:
            with trio.move_on_after(self.broker.config.handshake_timeout) as timeout:
                if isinstance(self.stream, trio.SSLStream) and not await self._tls_handshake():
                    return
                opened = await handshake(self)
            if timeout.cancelled_caught:
                log.info("connection.handshake_timeout", peer=self.peer)
                return
            if not opened:
                if self.proto.state is ConnectionState.REFUSED:
                    await self._linger()
                return
            self.resources.connections += 1
            self.broker.totals.connections_opened += 1
            log.info("connection.opened", peer=self.peer, user=self.username, vhost=self.vhost.name)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                if self.heartbeat:
                    nursery.start_soon(self._heartbeat)
                with self._reader_scope:
                    await self._reader()
                self.proto.event(ConnectionEvent.GONE)
                self._wake.set()
                with trio.move_on_after(CLOSE_TIMEOUT):
                    # `out` and what the writer is still sending (a TLS stream's send
                    # awaits the encrypted write; cancelling it would lose the Close-Ok)
                    while (self.out or self._sending) and not nursery.cancel_scope.cancel_called:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        except (PeerGone, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except AMQPError as error:  # during the handshake
            log.info("connection.error", peer=self.peer, code=error.code, text=error.log_text)
            await self._refuse(error)
        finally:
            self.proto.event(ConnectionEvent.GONE)
            self.authenticated()
            self.cleanup()
            if self.vhost is not None:
                self.vhost.connections -= 1
            await trio.aclose_forcefully(self.stream)
            if self.opened:
                self.resources.connections -= 1
                self.broker.totals.connections_closed += 1
                log.info("connection.closed", peer=self.peer, user=self.username)

    async def _tls_handshake(self) -> bool:
        """The TLS handshake (it counts against the handshake timeout); False if it failed:
        no certificate when one is required, an untrusted one, a refused version."""
        assert isinstance(self.stream, trio.SSLStream)
        try:
            await self.stream.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            cause = exc.__cause__
            log.info("connection.tls_handshake_failed", peer=self.peer, error=str(cause or exc))
            return False
        self.tls = tls_details(self.stream)
        return True

    def authenticated(self) -> None:
        """No longer counted among the sockets not yet authenticated."""
        if self._unauthenticated:
            self._unauthenticated = False
            self.resources.end_handshake()

    async def _refuse(self, error: AMQPError) -> None:
        """A handshake error, as RabbitMQ: after Tune-Ok, Connection.Close and up to 3 s for
        the Close-Ok; before it, no frame at all and the socket closed 3 s later."""
        try:
            if self.proto.tuned:
                self.proto.event(ConnectionEvent.REFUSE)
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self.send_now(
                        frames.method_frame(
                            0,
                            spec.ConnectionClose(
                                error.code, error.text, error.class_id, error.method_id
                            ),
                        )
                    )
                await self._linger()
            else:
                await trio.sleep(SILENT_CLOSE_DELAY)
        except (PeerGone, trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _linger(self) -> None:
        """After refusing a connection with Connection.Close (or refusing a login): for up to
        CLOSE_TIMEOUT, answer a Connection.Close and end at the client's Close-Ok, ignoring
        anything else, as RabbitMQ's closed state does."""
        proto = self.proto
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                while proto.state is ConnectionState.REFUSED:
                    frame = self.frames.next_frame()
                    if frame is None:
                        await self.receive()
                    elif proto.receive(frame) is Action.CLOSE_OK:
                        await self.send_now(frames.method_frame(0, spec.ConnectionCloseOk()))
            except (AMQPError, PeerGone, trio.BrokenResourceError, trio.ClosedResourceError):
                return

    def cleanup(self) -> None:
        """Requeue, cancel consumers, drop exclusive queues. Synchronous by design."""
        for channel in list(self.channels.values()):
            channel.cleanup()
            channel.proto.event(ChannelEvent.GONE)
            channel.closed.set()
        self.channels.clear()
        for queue in self.exclusive_queues:
            if not queue.deleted:
                self.broker_delete_queue(queue)
        self.exclusive_queues.clear()

    def broker_delete_queue(self, queue: Queue) -> int:
        vhost = self.broker.vhosts.get(queue.vhost)
        if vhost is None or queue.deleted:
            return 0
        return vhost.delete_queue(queue)

    def capability(self, name: str) -> bool:
        caps = self.client_properties.get("capabilities")
        return isinstance(caps, dict) and bool(caps.get(name))

    # -- input ---------------------------------------------------------------------------

    async def receive(self) -> None:
        try:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise PeerGone from exc
        if not data:
            raise PeerGone
        self.last_received = trio.current_time()
        self.stats.recv_oct += len(data)
        self.stats.recv_cnt += 1
        self.resources.received(len(data))
        self.frames.feed(data)

    # -- after the handshake ------------------------------------------------------------

    async def _reader(self) -> None:
        """Handle every buffered frame, then wait for more bytes (or for the fsync a deferred
        reply needs). Frames that arrived with the handshake are handled first."""
        proto = self.proto
        while proto.state is not CLOSED:
            try:
                self._handle_buffered()
            except ConnectionError as error:
                self.start_close(error)
            except AMQPError as error:  # a soft error outside any channel: treat as hard
                self.start_close(
                    ConnectionError(error.code, error.detail, log_detail=error.log_detail)
                )
            except Exception:  # a bug: keep the broker up, tell the client, log it
                log.exception("connection.internal_error", peer=self.peer)
                self.start_close(ConnectionError(INTERNAL_ERROR, "internal error"))
            if proto.state is CLOSED:
                return
            if self._after_durable is not None:
                await self._wait_durable()
                continue
            if self.over_output_limit():
                await self._wait_output_taken()
                continue
            if self.publisher and self.resources.alarms and proto.state is RUNNING:
                await self._stay_blocked()
                continue
            try:
                await self.receive()
            except PeerGone:
                proto.event(ConnectionEvent.GONE)
                return

    def _handle_buffered(self) -> None:
        """Handle the complete frames received; a whole Basic.Publish at once when its channel
        is ready for one (the general path sees any other frame, and any error)."""
        buffer = self.frames
        channels = self.channels
        proto = self.proto
        max_body = self.broker.config.max_message_size
        limit = self.output_limit
        while (state := proto.state) is not CLOSED:
            if self.replies >= limit and state is RUNNING:
                return  # the reader waits for the writer first (over_output_limit)
            publish = buffer.next_publish(max_body)
            if publish is not None:
                channel = channels.get(publish.channel)
                if channel is not None and channel.takes_publish and state is RUNNING:
                    if publish.body is not None:
                        channel.handle_publish(publish)
                        continue
                    if decodable(publish.arguments, publish.properties):
                        return  # its body is still arriving
                buffer.unread_publish()
            frame = buffer.next_frame()
            if frame is None:
                return
            self.handle_frame(frame)
            if self._after_durable is not None:
                return  # later frames wait until the deferred reply has gone out

    async def _stay_blocked(self) -> None:
        """An alarm is on and this connection publishes: stop reading it until the alarm
        clears (or the connection closes), telling clients that asked for it."""
        reason = self.resources.reason
        told = self.capability("connection.blocked")
        if told:
            self.write(frames.method_frame(0, spec.ConnectionBlocked(reason)))
        log.info("connection.blocked", peer=self.peer, reason=reason)
        self.pause = Pause.BLOCKED
        try:
            with trio.CancelScope() as self._paused_scope:
                await self.resources.wait_clear()
        finally:
            self.pause = Pause.NONE
            self._paused_scope = None
            self.last_received = trio.current_time()  # heartbeats were not read meanwhile
        if told and self.proto.state is RUNNING:
            self.write(frames.method_frame(0, spec.ConnectionUnblocked()))
        log.info("connection.unblocked", peer=self.peer)

    async def _wait_output_taken(self) -> None:
        """The replies not yet taken by the writer are over the limit: stop reading until it
        takes them (TCP then holds the client back). The client is not dropped, and
        heartbeats are not expected meanwhile: its frames are not being read."""
        self.pause = Pause.FLOW
        try:
            with trio.CancelScope() as self._paused_scope:
                while self.over_output_limit():
                    self._drained = trio.Event()
                    await self._drained.wait()
        finally:
            self.pause = Pause.NONE
            self._paused_scope = None
            self.last_received = trio.current_time()

    def after_durable(self, lsn: int, reply: Callable[[], None]) -> None:
        """Run `reply` once `lsn` is fsynced; frames after this one wait, keeping replies in
        order (used by Tx.Commit: one wait per commit, never per message)."""
        if lsn and self.wal is not None and lsn > self.wal.durable_lsn:
            self._after_durable = (lsn, reply)
        else:
            reply()

    async def _wait_durable(self) -> None:
        assert self._after_durable is not None and self.wal is not None
        lsn, reply = self._after_durable
        self._after_durable = None
        try:
            await self.wal.wait_durable(lsn)
        except WALFailed as exc:
            self.wal_failed(exc)
            return
        reply()

    def wal_failed(self, exc: BaseException) -> None:
        """Nothing more can be made durable: close with 541 so nothing is confirmed."""
        log.error("wal.failed", peer=self.peer, error=str(exc))
        self.start_close(
            ConnectionError(INTERNAL_ERROR, "the write-ahead log has failed; see the broker log")
        )

    def start_close(self, error: AMQPError) -> None:
        """A hard error or a server shutdown: send Connection.Close, wait briefly for Close-Ok.
        A connection already ending (the client closed it) gets nothing more: its writer may
        be gone, and a frame left in the buffer would hold the final flush for its timeout."""
        if self.proto.event(ConnectionEvent.SERVER_CLOSE) is CLOSED:
            return
        if error.code != CONNECTION_FORCED:
            log.info("connection.error", peer=self.peer, code=error.code, text=error.log_text)
        if self._paused_scope is not None:  # read again, for the Close-Ok
            self._paused_scope.cancel()
        self.cleanup()
        self.write(
            frames.method_frame(
                0, spec.ConnectionClose(error.code, error.text, error.class_id, error.method_id)
            )
        )
        self._reader_scope.deadline = trio.current_time() + CLOSE_TIMEOUT

    def handle_frame(self, frame: frames.Frame) -> None:
        """One frame, through the state machine; an open channel's go to it directly."""
        proto = self.proto
        if frame.channel and proto.state is RUNNING and frame.type != frames.HEARTBEAT:
            channel = self.channels.get(frame.channel)
            if channel is not None:
                channel.handle_frame(frame)
                return
        action = proto.receive(frame)
        if action is Action.IGNORE:
            return
        if action is Action.TO_CHANNEL:
            self.channels[frame.channel].handle_frame(frame)
        elif action is Action.OPEN_CHANNEL:
            self._open_channel(frame.channel)
        elif action is Action.CLOSE:
            self.cleanup()
            self.write(frames.method_frame(0, spec.ConnectionCloseOk()))
        elif action is Action.CLOSE_OK:
            self.write(frames.method_frame(0, spec.ConnectionCloseOk()))
        elif action is Action.UPDATE_SECRET_OK:
            self.write(frames.method_frame(0, spec.ConnectionUpdateSecretOk()))

    def _open_channel(self, number: int) -> None:
        channel = Channel(self, number)
        self.channels[number] = channel
        assert self._nursery is not None
        self._nursery.start_soon(channel.run)
        channel.write_method(spec.ChannelOpenOk(b""))

    def drop_channel(self, channel: Channel) -> None:
        """The channel is closed: its number may be reused."""
        self.channels.pop(channel.number, None)

    # -- heartbeats ---------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = self.heartbeat
        while True:
            await trio.sleep(interval / 2)
            now = trio.current_time()
            paused = self.pause is not Pause.NONE  # not reading: silence proves nothing
            if now - self.last_received > interval * 2 and not paused:
                log.warning("connection.heartbeat_timeout", peer=self.peer, timeout=interval)
                self.proto.event(ConnectionEvent.GONE)
                self._reader_scope.cancel()
                return
            if now - self.last_sent >= interval / 2:
                self.write(frames.HEARTBEAT_FRAME)

    @property
    def name(self) -> str:
        """RabbitMQ's connection name: "peer_host:peer_port -> host:port"."""
        return f"{self.peer[0]}:{self.peer[1]} -> {self.local[0]}:{self.local[1]}"

    def force_close(
        self, detail: str = "broker forced connection closure with reason 'shutdown'"
    ) -> None:
        """Shutdown, an operator's close_connection, a deleted vhost: 320 to the client."""
        self.start_close(ConnectionError(CONNECTION_FORCED, detail))
