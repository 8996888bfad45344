"""One client connection: handshake, then a reader, a writer and a heartbeat task in one nursery.

The reader receives large chunks and handles every complete frame in them synchronously (a
whole Basic.Publish at once when it can); the writer sends everything buffered with one
gathered send (`Output`). Leaving the nursery for any reason runs
`cleanup()`, which is synchronous so cancellation cannot skip it: unacked messages are requeued,
consumers cancelled and exclusive queues deleted.
"""

from __future__ import annotations

import ipaddress
import itertools
import platform
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
import trio

from storage import WALFailed
from trimq import __version__
from trimq.amqp import frames, spec
from trimq.amqp.codec import decode_table
from trimq.amqp.publish import decodable
from trimq.broker.queue import Queue
from trimq.errors import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    SYNTAX_ERROR,
    AMQPError,
    ConnectionError,
    reply_text,
)
from trimq.server.channel import Channel
from trimq.server.output import Output
from trimq.server.resources import Resources

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
CAPABILITIES = (
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
)


def _text(value: Any) -> str | None:
    """An AMQPLAIN field as text (a string or byte array), else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return None


def is_loopback(host: str) -> bool:
    """RabbitMQ's rule for loopback_users: 127.0.0.0/8, ::1, and 127.x mapped into IPv6
    (::ffff:127.0.0.1, as a dual-stack socket reports an IPv4 peer)."""
    try:
        address = ipaddress.ip_address(host.split("%", maxsplit=1)[0])
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


_connection_numbers = itertools.count(1)


@dataclass
class TrafficStats:
    """Bytes and socket operations in each direction, for list_connections."""

    recv_oct: int = 0
    recv_cnt: int = 0
    send_oct: int = 0
    send_cnt: int = 0


class PeerGone(Exception):
    """The client closed or reset the socket."""


def server_properties() -> dict[str, Any]:
    return {
        "product": "trimq",
        "version": __version__,
        "platform": f"Python {platform.python_version()} / trio",
        "cluster_name": f"trimq@{socket.gethostname()}",
        "copyright": "trimq contributors",
        "information": "Licensed under the MIT licence",
        "capabilities": dict.fromkeys(CAPABILITIES, True),
    }


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
        self.channel_max = config.channel_max
        self.heartbeat = config.heartbeat
        self.resources = resources if resources is not None else Resources()
        self.out = Output()
        self.output_limit = config.connection_output_buffer
        self.replies = 0  # bytes of replies put in `out` since the writer last took it
        self.deliveries_paused = False  # a consumer was refused for a full output buffer
        self.publisher = False  # has published: an alarm blocks it
        self.blocked = False  # not read because of an alarm
        self.flow = False  # not read while the replies it has not taken exceed output_limit
        self._paused_scope: trio.CancelScope | None = None  # either pause: Close cancels it
        self._drained = trio.Event()  # the writer took the output: a paused reader goes on
        self._wake = trio.Event()
        self.channels: dict[int, Channel] = {}
        self.exclusive_queues: list[Queue] = []
        self._nursery: trio.Nursery | None = None
        self.client_properties: dict[str, Any] = {}
        self.username = ""
        self.vhost: VHost = None  # type: ignore[assignment]  # set by Connection.Open
        self.tuned = False  # Tune-Ok accepted: errors from here on get a Connection.Close
        self.opened = False
        self.closing = False  # we sent Connection.Close
        self.finished = False  # nothing more will be read
        self.last_received = trio.current_time()
        self.last_sent = trio.current_time()
        self._reader_scope = trio.CancelScope()
        self._unauthenticated = False  # counted in resources.handshakes
        self.login_refused = False

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
        return self.replies >= self.output_limit and not self.closing

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
                    await data.send_to(stream)
                    self.last_sent = trio.current_time()
                    self.stats.send_oct += len(data)
                    self.stats.send_cnt += 1
                    if self.deliveries_paused and len(self.out) < self.output_limit:
                        self._resume_deliveries()
                if self.finished:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.out.clear()
            self.finished = True
            self._reader_scope.cancel()  # the peer is gone: stop reading too

    async def _send_now(self, data: bytes) -> None:
        """Send during the handshake, before the writer task runs."""
        await self.stream.send_all(data)
        self.last_sent = trio.current_time()

    # -- lifecycle ----------------------------------------------------------------------

    async def serve(self) -> None:
        """Handshake, then serve until the connection ends; the socket is closed on the way
        out. A socket over the limit of those not yet authenticated is closed at once."""
        if not self.resources.start_handshake():
            await trio.aclose_forcefully(self.stream)
            return
        self._unauthenticated = True
        try:
            with trio.move_on_after(self.broker.config.handshake_timeout) as handshake:
                opened = await self._handshake()
            if handshake.cancelled_caught:
                log.info("connection.handshake_timeout", peer=self.peer)
                return
            if not opened:
                if self.login_refused:
                    await self._linger()
                return
            self.opened = True
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
                self.finished = True
                self._wake.set()
                with trio.move_on_after(CLOSE_TIMEOUT):
                    while self.out and not nursery.cancel_scope.cancel_called:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        except (PeerGone, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except AMQPError as error:  # during the handshake
            log.info("connection.error", peer=self.peer, code=error.code, text=error.log_text)
            await self._refuse(error)
        finally:
            self._authenticated()
            self.cleanup()
            if self.vhost is not None:
                self.vhost.connections -= 1
            await trio.aclose_forcefully(self.stream)
            if self.opened:
                self.resources.connections -= 1
                self.broker.totals.connections_closed += 1
                log.info("connection.closed", peer=self.peer, user=self.username)

    def _authenticated(self) -> None:
        """No longer counted among the sockets not yet authenticated."""
        if self._unauthenticated:
            self._unauthenticated = False
            self.resources.end_handshake()

    async def _refuse(self, error: AMQPError) -> None:
        """A handshake error, as RabbitMQ: after Tune-Ok, Connection.Close and up to 3 s for
        the Close-Ok; before it, no frame at all and the socket closed 3 s later."""
        try:
            if self.tuned:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self._send_now(
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
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                while True:
                    frame = self.frames.next_frame()
                    if frame is None:
                        await self._receive()
                        continue
                    if frame.type != frames.METHOD or frame.channel:
                        continue
                    try:
                        method = frames.decode_method(frame.payload)
                    except AMQPError:
                        continue
                    if type(method) is spec.ConnectionCloseOk:
                        return
                    if type(method) is spec.ConnectionClose:
                        await self._send_now(frames.method_frame(0, spec.ConnectionCloseOk()))
            except (AMQPError, PeerGone, trio.BrokenResourceError, trio.ClosedResourceError):
                return

    def cleanup(self) -> None:
        """Requeue, cancel consumers, drop exclusive queues. Synchronous by design."""
        for channel in list(self.channels.values()):
            channel.cleanup()
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

    # -- handshake ----------------------------------------------------------------------

    async def _receive(self) -> None:
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

    async def _next_method(self, expected: type[spec.Method]) -> Any:
        while True:
            frame = self.frames.next_frame()
            if frame is None:
                await self._receive()
                continue
            if frame.type == frames.HEARTBEAT:
                continue
            if frame.type != frames.METHOD or frame.channel != 0:
                raise ConnectionError(
                    COMMAND_INVALID,
                    f"expected '{expected.NAME}', got a frame of type "
                    f"{frame.type} on channel {frame.channel}",
                )
            method = frames.decode_method(frame.payload)
            if type(method) is spec.ConnectionClose:
                await self._send_now(frames.method_frame(0, spec.ConnectionCloseOk()))
                raise PeerGone
            if type(method) is not expected:
                raise ConnectionError(
                    COMMAND_INVALID,
                    f"expected '{expected.NAME}', got '{method.NAME}'",
                    method.CLASS_ID,
                    method.METHOD_ID,
                )
            return method

    async def _handshake(self) -> bool:
        while (header := self.frames.take(8)) is None:
            await self._receive()
        if header != spec.PROTOCOL_HEADER:
            log.info("connection.bad_protocol_header", peer=self.peer, header=repr(header))
            await self._send_now(spec.PROTOCOL_HEADER)
            return False
        await self._send_now(
            frames.method_frame(
                0,
                spec.ConnectionStart(
                    0,
                    9,
                    server_properties(),
                    b"AMQPLAIN PLAIN",
                    b"en_US",
                ),
            )
        )
        start_ok: spec.ConnectionStartOk = await self._next_method(spec.ConnectionStartOk)
        self.client_properties = start_ok.client_properties
        self.auth_mechanism = start_ok.mechanism
        if not await self._authenticate(start_ok):
            return False
        await self._send_now(
            frames.method_frame(
                0,
                spec.ConnectionTune(
                    self.channel_max,
                    self.frame_max,
                    self.heartbeat,
                ),
            )
        )
        tune_ok: spec.ConnectionTuneOk = await self._next_method(spec.ConnectionTuneOk)
        self._apply_tune(tune_ok)
        self.tuned = True
        open_: spec.ConnectionOpen = await self._next_method(spec.ConnectionOpen)
        vhost = self.broker.vhosts.get(open_.virtual_host)
        if vhost is None:
            raise ConnectionError(
                NOT_ALLOWED,
                f"vhost {open_.virtual_host} not found",
                open_.CLASS_ID,
                open_.METHOD_ID,
            )
        vhost_limit = vhost.connection_limit_reached()  # as RabbitMQ, before permissions
        if vhost_limit is not None:
            raise ConnectionError(
                NOT_ALLOWED,
                f"access to vhost '{vhost.name}' refused for user "
                f"'{self.username}': connection limit ({vhost_limit}) is reached",
                open_.CLASS_ID,
                open_.METHOD_ID,
            )
        if self.broker.users.permission(vhost.name, self.username) is None:
            log.warning(
                "connection.vhost_refused", peer=self.peer, user=self.username, vhost=vhost.name
            )
            raise ConnectionError(
                NOT_ALLOWED,
                f"access to vhost '{vhost.name}' refused for user '{self.username}'",
                open_.CLASS_ID,
                open_.METHOD_ID,
            )
        limit = self.broker.config.connection_max
        if limit and self.resources.connections >= limit:
            log.warning("connection.limit_reached", peer=self.peer, limit=limit)
            raise ConnectionError(
                NOT_ALLOWED,
                f"connection refused: node connection limit ({limit}) is reached",
                open_.CLASS_ID,
                open_.METHOD_ID,
            )
        self.vhost = vhost
        vhost.connections += 1  # counted at once: no other handshake can pass the check first
        await self._send_now(frames.method_frame(0, spec.ConnectionOpenOk("")))
        return True

    def _credentials(self, start_ok: spec.ConnectionStartOk) -> tuple[str, str | None]:
        """The user name and password (None: not a string, so refused). A response that does
        not parse closes the connection without a frame, as RabbitMQ; the error names
        neither the response nor any of its octets (it holds the password)."""
        mechanism = start_ok.mechanism
        response = start_ok.response
        if mechanism == "PLAIN":
            # As RabbitMQ: NUL, user name, NUL, password; no authorisation identity.
            parts = response.split(b"\x00")
            if len(parts) != 3 or parts[0]:
                raise ConnectionError(SYNTAX_ERROR, "PLAIN response is malformed")
            return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
        if mechanism == "AMQPLAIN":
            # A field table without its length prefix, as py-amqp and RabbitMQ have it.
            try:
                table, _ = decode_table(len(response).to_bytes(4, "big") + response, 0)
            except (AMQPError, struct.error, IndexError, ValueError, OverflowError):
                raise ConnectionError(SYNTAX_ERROR, "AMQPLAIN response is malformed") from None
            if "LOGIN" not in table or "PASSWORD" not in table:
                raise ConnectionError(
                    SYNTAX_ERROR, "AMQPLAIN response is missing LOGIN or PASSWORD"
                )
            login, password = _text(table["LOGIN"]), _text(table["PASSWORD"])
            if login is None or password is None:  # not strings: refused, as RabbitMQ
                return login or "", None
            return login, password
        raise ConnectionError(
            COMMAND_INVALID,
            f"unknown authentication mechanism '{mechanism}'",
            start_ok.CLASS_ID,
            start_ok.METHOD_ID,
        )

    async def _authenticate(self, start_ok: spec.ConnectionStartOk) -> bool:
        """Check the credentials; a refused login gets RabbitMQ's 403 Connection.Close (if the
        client has the authentication_failure_close capability) and the socket is kept up
        to 3 s for its Close-Ok (`serve`), as RabbitMQ does."""
        name, password = self._credentials(start_ok)
        user = self.broker.users.authenticate(name, password) if password is not None else None
        if (
            user is not None
            and name in self.broker.config.loopback_users
            and not (is_loopback(self.peer[0]))
        ):
            log.warning(
                "connection.auth_failed",
                peer=self.peer,
                user=name,
                mechanism=start_ok.mechanism,
                reason=f"user '{name}' can only connect via localhost",
            )
            user = None
        elif user is None:
            log.warning(
                "connection.auth_failed",
                peer=self.peer,
                user=name,
                mechanism=start_ok.mechanism,
                reason="invalid credentials",
            )
        if user is not None:
            self.username = user.name
            self._authenticated()
            return True
        if self.capability("authentication_failure_close"):
            text = reply_text(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {start_ok.mechanism}. "
                "For details see the broker logfile.",
            )
            await self._send_now(
                frames.method_frame(0, spec.ConnectionClose(ACCESS_REFUSED, text, 0, 0))
            )
        self.login_refused = True
        return False

    def _apply_tune(self, tune_ok: spec.ConnectionTuneOk) -> None:
        config = self.broker.config
        frame_max = tune_ok.frame_max or config.frame_max
        if frame_max < spec.FRAME_MIN_SIZE:
            raise ConnectionError(
                NOT_ALLOWED, f"frame_max={frame_max} < {spec.FRAME_MIN_SIZE} min size"
            )
        if frame_max > config.frame_max:
            raise ConnectionError(
                NOT_ALLOWED, f"frame_max={frame_max} > {config.frame_max} max size"
            )
        channel_max = tune_ok.channel_max or config.channel_max
        if channel_max > config.channel_max:
            raise ConnectionError(
                NOT_ALLOWED, f"channel_max={channel_max} > {config.channel_max} max size"
            )
        self.frame_max = frame_max
        self.frames.frame_max = frame_max
        self.channel_max = channel_max
        self.heartbeat = tune_ok.heartbeat

    # -- after the handshake ------------------------------------------------------------

    async def _reader(self) -> None:
        """Handle every buffered frame, then wait for more bytes (or for the fsync a deferred
        reply needs). Frames that arrived with the handshake are handled first."""
        while not self.finished:
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
            if self.finished:
                return
            if self._after_durable is not None:
                await self._wait_durable()
                continue
            if self.over_output_limit():
                await self._wait_output_taken()
                continue
            if self.publisher and self.resources.alarms and not self.closing:
                await self._stay_blocked()
                continue
            try:
                await self._receive()
            except PeerGone:
                self.finished = True
                return

    def _handle_buffered(self) -> None:
        """Handle the complete frames received; a whole Basic.Publish at once when its channel
        is ready for one (the general path sees any other frame, and any error)."""
        buffer = self.frames
        channels = self.channels
        max_body = self.broker.config.max_message_size
        limit = self.output_limit
        while not self.finished:
            if self.replies >= limit and not self.closing:
                return  # the reader waits for the writer first (over_output_limit)
            publish = buffer.next_publish(max_body)
            if publish is not None:
                channel = channels.get(publish.channel)
                if channel is not None and channel.takes_publish and not self.closing:
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
        self.blocked = True
        try:
            with trio.CancelScope() as self._paused_scope:
                await self.resources.wait_clear()
        finally:
            self.blocked = False
            self._paused_scope = None
            self.last_received = trio.current_time()  # heartbeats were not read meanwhile
        if told and not self.closing:
            self.write(frames.method_frame(0, spec.ConnectionUnblocked()))
        log.info("connection.unblocked", peer=self.peer)

    async def _wait_output_taken(self) -> None:
        """The replies not yet taken by the writer are over the limit: stop reading until it
        takes them (TCP then holds the client back). The client is not dropped, and
        heartbeats are not expected meanwhile: its frames are not being read."""
        self.flow = True
        try:
            with trio.CancelScope() as self._paused_scope:
                while self.over_output_limit():
                    self._drained = trio.Event()
                    await self._drained.wait()
        finally:
            self.flow = False
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
        if self.closing or self.finished:
            self.finished = True
            return
        if error.code != CONNECTION_FORCED:
            log.info("connection.error", peer=self.peer, code=error.code, text=error.log_text)
        self.closing = True
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
        channel_number = frame.channel
        if self.closing:
            self._handle_while_closing(frame)
            return
        if channel_number:
            if frame.type == frames.HEARTBEAT:
                raise frames.unexpected_frame(frame.type, b"")
            channel = self.channels.get(channel_number)
            if channel is not None:
                channel.handle_frame(frame)
            else:
                self._open_channel(frame)
            return
        if frame.type == frames.HEARTBEAT:
            return
        if frame.type != frames.METHOD:
            raise frames.unexpected_frame(frame.type, frame.payload)
        method = frames.decode_method(frame.payload)
        kind = type(method)
        if kind is spec.ConnectionClose:
            self.cleanup()
            self.write(frames.method_frame(0, spec.ConnectionCloseOk()))
            self.finished = True
        elif kind is spec.ConnectionUpdateSecret:
            self.write(frames.method_frame(0, spec.ConnectionUpdateSecretOk()))
        elif kind in (spec.ConnectionBlocked, spec.ConnectionUnblocked):
            pass
        else:
            raise ConnectionError(
                CHANNEL_ERROR,
                "unexpected method in connection state running",
                method.CLASS_ID,
                method.METHOD_ID,
            )

    def _handle_while_closing(self, frame: frames.Frame) -> None:
        if frame.channel or frame.type != frames.METHOD:
            return
        method = frames.decode_method(frame.payload)
        if type(method) is spec.ConnectionClose:
            self.write(frames.method_frame(0, spec.ConnectionCloseOk()))
            self.finished = True
        elif type(method) is spec.ConnectionCloseOk:
            self.finished = True

    def _open_channel(self, frame: frames.Frame) -> None:
        number = frame.channel
        if frame.type != frames.METHOD:
            raise ConnectionError(CHANNEL_ERROR, "expected 'channel.open'")
        method = frames.decode_method(frame.payload)
        if type(method) is not spec.ChannelOpen:
            raise ConnectionError(
                CHANNEL_ERROR, "expected 'channel.open'", method.CLASS_ID, method.METHOD_ID
            )
        if len(self.channels) >= self.channel_max:
            raise ConnectionError(
                NOT_ALLOWED,
                f"number of channels opened ({len(self.channels)}) has reached "
                f"the negotiated channel_max ({self.channel_max})",
            )
        channel = Channel(self, number)
        self.channels[number] = channel
        assert self._nursery is not None
        self._nursery.start_soon(channel.run)
        channel.write_method(spec.ChannelOpenOk(b""))

    def close_channel(self, channel: Channel, reply: bool) -> None:
        """The client closed the channel: clean up and confirm."""
        channel.cleanup()
        self.channels.pop(channel.number, None)
        channel.closed.set()
        if reply:
            channel.write_method(spec.ChannelCloseOk())

    def forget_channel(self, channel: Channel) -> None:
        """Close-Ok arrived for a channel we closed: its number may be reused."""
        self.channels.pop(channel.number, None)
        channel.closed.set()

    # -- heartbeats ---------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = self.heartbeat
        while True:
            await trio.sleep(interval / 2)
            now = trio.current_time()
            paused = self.blocked or self.flow  # we are not reading: silence proves nothing
            if now - self.last_received > interval * 2 and not paused:
                log.warning("connection.heartbeat_timeout", peer=self.peer, timeout=interval)
                self.finished = True
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
