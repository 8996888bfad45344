"""A minimal raw-socket AMQP 0-9-1 client for benchmarks.

The load generator must cost as little CPU as possible, since it shares the machine with the
broker it measures. So: methods are encoded with pika's `pika.spec` / `pika.frame` only at
set-up time; a message is encoded once into its method + header + body frames and published by
sending many copies of those bytes with one `sendall`; incoming data is handled by scanning
frame headers (type, channel, size) and looking only at the few bytes that matter (the
class/method id of a method frame, a delivery tag when an ack is due, the first 8 bytes of a
body when measuring latency). Nothing is decoded per message.

The client takes an AMQP URL (amqp://user:password@host:port/vhost), so the same code runs
against trimq and RabbitMQ.
"""

from __future__ import annotations

import select
import selectors
import socket
import ssl
import struct
import time
from typing import Any
from urllib.parse import unquote, urlparse

import pika.frame
from pika import spec
from pika.exceptions import InvalidFrameError

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = b"\xce"
_HDR = struct.Struct(">BHI")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")

# class-id << 16 | method-id, as the first 4 bytes of a method frame's payload
BASIC_DELIVER = 60 << 16 | 60
BASIC_ACK = 60 << 16 | 80
BASIC_NACK = 60 << 16 | 120
BASIC_RETURN = 60 << 16 | 50
BASIC_CANCEL = 60 << 16 | 30
CHANNEL_CLOSE = 20 << 16 | 40
CONNECTION_CLOSE = 10 << 16 | 50
CONNECTION_BLOCKED = 10 << 16 | 60
CONNECTION_UNBLOCKED = 10 << 16 | 61

RECV_SIZE = 1 << 20


class BrokerError(Exception):
    """The broker closed the channel or the connection, or sent something unexpected."""


def parse_url(url: str) -> dict[str, Any]:
    u = urlparse(url)
    if u.scheme not in ("amqp", "amqps"):
        raise ValueError(f"only amqp:// and amqps:// URLs are supported, not {url!r}")
    vhost = unquote(u.path[1:]) if len(u.path) > 1 else "/"
    return {
        "tls": u.scheme == "amqps",
        "host": u.hostname or "127.0.0.1",
        "port": u.port or (5671 if u.scheme == "amqps" else 5672),
        "user": unquote(u.username or "guest"),
        "password": unquote(u.password or "guest"),
        "vhost": vhost,
    }


def method_frame(channel: int, method: Any) -> bytes:
    frame: bytes = pika.frame.Method(channel, method).marshal()
    return frame


def encode_message(
    channel: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: spec.BasicProperties | None = None,
    frame_max: int = 131072,
) -> bytes:
    """The frames of one Basic.Publish with its content, ready to be sent as many times as
    wanted."""
    out = [
        method_frame(channel, spec.Basic.Publish(exchange=exchange, routing_key=routing_key)),
        pika.frame.Header(channel, len(body), properties or spec.BasicProperties()).marshal(),
    ]
    step = frame_max - 8
    for i in range(0, len(body), step):
        out.append(pika.frame.Body(channel, body[i : i + step]).marshal())
    return b"".join(out)


def ack_frame(channel: int, delivery_tag: int, multiple: bool = True) -> bytes:
    payload = struct.pack(">HHQB", 60, 80, delivery_tag, 1 if multiple else 0)
    return _HDR.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END


def describe_close(payload: bytes | memoryview) -> str:
    """reply code and text of a Channel.Close / Connection.Close payload."""
    try:
        (code,) = struct.unpack_from(">H", payload, 4)
        n = payload[6]
        text = bytes(payload[7 : 7 + n]).decode(errors="replace")
        return f"{code} {text}"
    except Exception:
        return repr(bytes(payload[:64]))


class Client:
    """One AMQP connection over a blocking socket."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        frame_max: int = 131072,
        product: str = "trimq-bench",
        connect: bool = True,
    ) -> None:
        self.params = parse_url(url)
        self.timeout = timeout
        self.frame_max = frame_max
        self.product = product
        self.buf = b""
        self.server_properties: dict[str, Any] = {}
        self.sock: socket.socket | None = None
        if connect:
            self.connect()

    # -- handshake, done step by step so that many connections can be opened in lockstep ------
    def start_connect(self) -> None:
        self.sock = socket.create_connection(
            (self.params["host"], self.params["port"]), timeout=self.timeout
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.params["tls"]:
            # amqps: the broker's certificate is not checked (the bench measures the channel)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.sock = context.wrap_socket(self.sock, server_hostname=self.params["host"])
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")

    def handshake_start(self) -> None:
        start = self.expect(0, spec.Connection.Start)
        self.server_properties = start.server_properties
        response = f"\0{self.params['user']}\0{self.params['password']}".encode()
        self.send_method(
            0,
            spec.Connection.StartOk(
                client_properties={
                    "product": self.product,
                    "capabilities": {
                        "publisher_confirms": True,
                        "basic.nack": True,
                        "consumer_cancel_notify": True,
                        "connection.blocked": True,
                    },
                },
                mechanism="PLAIN",
                response=response,
                locale="en_US",
            ),
        )

    def handshake_tune(self, open_channel: int = 0) -> None:
        tune = self.expect(0, spec.Connection.Tune)
        if tune.frame_max:
            self.frame_max = min(self.frame_max, tune.frame_max)
        data = method_frame(
            0,
            spec.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=self.frame_max, heartbeat=0
            ),
        )
        data += method_frame(0, spec.Connection.Open(virtual_host=self.params["vhost"]))
        if open_channel:
            data += method_frame(open_channel, spec.Channel.Open())
        self.send(data)

    def handshake_open(self, open_channel: int = 0) -> None:
        self.expect(0, spec.Connection.OpenOk)
        if open_channel:
            self.expect(open_channel, spec.Channel.OpenOk)

    def connect(self) -> None:
        self.start_connect()
        self.handshake_start()
        self.handshake_tune()
        self.handshake_open()

    # -- framing for set-up ---------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def send_method(self, channel: int, method: Any) -> None:
        self.send(method_frame(channel, method))

    def _recv(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(RECV_SIZE)
        if not data:
            raise BrokerError("connection closed by the broker")
        self.buf += data

    def read_frame(self) -> Any:
        while True:
            if len(self.buf) >= 7:
                try:
                    consumed, frame = pika.frame.decode_frame(self.buf)
                except InvalidFrameError as exc:
                    raise BrokerError(f"bad frame from broker: {exc}") from exc
                if frame is not None:
                    self.buf = self.buf[consumed:]
                    return frame
            self._recv()

    def expect(self, channel: int, method_cls: type) -> Any:
        """Read frames until `method_cls` arrives on `channel`; raise on a Close."""
        while True:
            frame = self.read_frame()
            if isinstance(frame, pika.frame.Method):
                m = frame.method
                if isinstance(m, spec.Connection.Close):
                    self.send_method(0, spec.Connection.CloseOk())
                    raise BrokerError(f"connection closed: {m.reply_code} {m.reply_text}")
                if isinstance(m, spec.Channel.Close):
                    self.send_method(frame.channel_number, spec.Channel.CloseOk())
                    raise BrokerError(
                        f"channel {frame.channel_number} closed: {m.reply_code} {m.reply_text}"
                    )
                if frame.channel_number == channel and isinstance(m, method_cls):
                    return m
            # anything else (heartbeats, stray acks, content) is ignored during set-up

    def rpc(self, channel: int, method: Any, reply_cls: type) -> Any:
        self.send_method(channel, method)
        return self.expect(channel, reply_cls)

    # -- set-up methods -------------------------------------------------------------------------
    def channel_open(self, channel: int = 1) -> None:
        self.rpc(channel, spec.Channel.Open(), spec.Channel.OpenOk)

    def exchange_declare(
        self,
        channel: int,
        exchange: str,
        exchange_type: str = "direct",
        durable: bool = False,
        auto_delete: bool = False,
    ) -> None:
        self.rpc(
            channel,
            spec.Exchange.Declare(
                exchange=exchange, type=exchange_type, durable=durable, auto_delete=auto_delete
            ),
            spec.Exchange.DeclareOk,
        )

    def exchange_delete(self, channel: int, exchange: str) -> None:
        self.rpc(channel, spec.Exchange.Delete(exchange=exchange), spec.Exchange.DeleteOk)

    def queue_declare(
        self,
        channel: int,
        queue: str = "",
        *,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        passive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> tuple[str, int, int]:
        ok = self.rpc(
            channel,
            spec.Queue.Declare(
                queue=queue,
                passive=passive,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=arguments or {},
            ),
            spec.Queue.DeclareOk,
        )
        return ok.queue, ok.message_count, ok.consumer_count

    def queue_bind(self, channel: int, queue: str, exchange: str, routing_key: str = "") -> None:
        self.rpc(
            channel,
            spec.Queue.Bind(queue=queue, exchange=exchange, routing_key=routing_key),
            spec.Queue.BindOk,
        )

    def queue_delete(self, channel: int, queue: str) -> int:
        ok = self.rpc(channel, spec.Queue.Delete(queue=queue), spec.Queue.DeleteOk)
        return int(ok.message_count)

    def queue_purge(self, channel: int, queue: str) -> int:
        ok = self.rpc(channel, spec.Queue.Purge(queue=queue), spec.Queue.PurgeOk)
        return int(ok.message_count)

    def basic_qos(self, channel: int, prefetch_count: int) -> None:
        self.rpc(channel, spec.Basic.Qos(prefetch_count=prefetch_count), spec.Basic.QosOk)

    def confirm_select(self, channel: int) -> None:
        self.rpc(channel, spec.Confirm.Select(), spec.Confirm.SelectOk)

    def basic_consume(
        self, channel: int, queue: str, no_ack: bool = False, consumer_tag: str = ""
    ) -> str:
        ok = self.rpc(
            channel,
            spec.Basic.Consume(queue=queue, no_ack=no_ack, consumer_tag=consumer_tag),
            spec.Basic.ConsumeOk,
        )
        return str(ok.consumer_tag)

    def close(self) -> None:
        """Connection.Close and wait for Close-Ok (so everything sent before was handled)."""
        if self.sock is None:
            return
        try:
            self.send_method(
                0, spec.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)
            )
            while True:
                frame = self.read_frame()
                if isinstance(frame, pika.frame.Method) and isinstance(
                    frame.method, (spec.Connection.CloseOk, spec.Connection.Close)
                ):
                    break
        except (OSError, BrokerError):
            pass
        finally:
            self.sock.close()
            self.sock = None

    def abort(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def connect_channel(url: str, channel: int = 1, **kw: Any) -> Client:
    c = Client(url, **kw)
    c.channel_open(channel)
    return c


# -- publishing ---------------------------------------------------------------------------------
class ConfirmTracker:
    """Counts publisher confirms (Basic.Ack / Basic.Nack, single or multiple) by scanning the
    frames a publishing connection receives."""

    def __init__(self) -> None:
        self.upto = 0  # every tag <= upto is settled
        self.singles: set[int] = set()  # settled tags above upto
        self.acked = 0
        self.nacked = 0
        self.blocked = 0

    @property
    def settled(self) -> int:
        return self.acked + self.nacked

    def _settle(self, tag: int, multiple: bool, ack: bool) -> None:
        if multiple:
            if tag <= self.upto:
                return
            n = tag - self.upto
            if self.singles:
                inside = {t for t in self.singles if t <= tag}
                n -= len(inside)
                self.singles -= inside
            self.upto = tag
        else:
            if tag <= self.upto or tag in self.singles:
                return
            n = 1
            if tag == self.upto + 1:
                self.upto = tag
                while self.upto + 1 in self.singles:
                    self.upto += 1
                    self.singles.discard(self.upto)
            else:
                self.singles.add(tag)
        if ack:
            self.acked += n
        else:
            self.nacked += n

    def feed(self, buf: bytes) -> int:
        """Handle the complete frames in `buf`; returns how many bytes were used."""
        pos, end = 0, len(buf)
        unpack_hdr, unpack_u32, unpack_u64 = _HDR.unpack_from, _U32.unpack_from, _U64.unpack_from
        while end - pos >= 8:
            ftype, _ch, size = unpack_hdr(buf, pos)
            fend = pos + 8 + size
            if fend > end:
                break
            if ftype == FRAME_METHOD:
                (cm,) = unpack_u32(buf, pos + 7)
                if cm in (BASIC_ACK, BASIC_NACK):
                    (tag,) = unpack_u64(buf, pos + 11)
                    self._settle(tag, bool(buf[pos + 19] & 1), cm == BASIC_ACK)
                elif cm in (CHANNEL_CLOSE, CONNECTION_CLOSE):
                    raise BrokerError(
                        f"{'channel' if cm == CHANNEL_CLOSE else 'connection'} "
                        f"closed by the broker: "
                        f"{describe_close(buf[pos + 7 : fend - 1])}"
                    )
                elif cm == CONNECTION_BLOCKED:
                    self.blocked += 1
                elif cm == BASIC_RETURN:
                    pass
            pos = fend
        return pos


class Publisher:
    """Publishes copies of one pre-encoded message on an open channel."""

    def __init__(
        self,
        client: Client,
        channel: int,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.BasicProperties | None = None,
        *,
        confirm: bool = False,
        window: int = 1000,
        batch: int = 1000,
        max_batch_bytes: int = 1 << 20,
    ) -> None:
        self.client = client
        self.channel = channel
        self.message = encode_message(
            channel, exchange, routing_key, body, properties, client.frame_max
        )
        batch = min(batch, max(1, max_batch_bytes // len(self.message)))
        self.batch = max(1, min(batch, window) if confirm else batch)
        self.batch_bytes = self.message * self.batch
        self.confirm = confirm
        self.window = window
        self.tracker = ConfirmTracker()
        self.published = 0
        if confirm:
            client.confirm_select(channel)

    def _read_confirms(self, block: bool) -> None:
        sock = self.client.sock
        assert sock is not None
        try:
            if isinstance(sock, ssl.SSLSocket):  # no MSG_DONTWAIT on TLS: look first
                if not block and not sock.pending() and not select.select([sock], [], [], 0)[0]:
                    return
                data = sock.recv(RECV_SIZE)
            else:
                data = sock.recv(RECV_SIZE, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not data:
            raise BrokerError("connection closed by the broker")
        buf = self.client.buf + data if self.client.buf else data
        used = self.tracker.feed(buf)
        self.client.buf = buf[used:]

    def publish(self, n: int) -> None:
        """Publish n messages; with confirms, keep at most `window` unconfirmed and return once
        all n are confirmed."""
        sock = self.client.sock
        assert sock is not None
        sendall = sock.sendall
        if not self.confirm:
            left = n
            while left >= self.batch:
                sendall(self.batch_bytes)
                left -= self.batch
            if left:
                sendall(self.message * left)
            self.published += n
            return
        target = self.published + n
        low = max(1, min(self.window // 4, self.batch))
        tracker = self.tracker
        while self.published < target:
            room = min(
                self.window - (self.published - tracker.settled),
                target - self.published,
                self.batch,
            )
            if room >= low or (room > 0 and self.published + room == target):
                sendall(self.batch_bytes if room == self.batch else self.message * room)
                self.published += room
                self._read_confirms(block=False)
            else:
                self._read_confirms(block=True)
        self.wait_confirms()

    def wait_confirms(self) -> None:
        while self.tracker.settled < self.published:
            self._read_confirms(block=True)


class TimestampPublisher:
    """Publishes messages whose body starts with the send time (time.monotonic() as a double),
    at a fixed rate. The frames are pre-encoded; only the 8 timestamp bytes change."""

    def __init__(
        self,
        client: Client,
        channel: int,
        exchange: str,
        routing_key: str,
        body_size: int = 16,
        properties: spec.BasicProperties | None = None,
    ) -> None:
        body_size = max(8, body_size)
        self.client = client
        template = encode_message(
            channel, exchange, routing_key, b"\0" * body_size, properties, client.frame_max
        )
        body_at = len(template) - 1 - body_size  # the body frame is last (one frame, small body)
        self.prefix = template[:body_at]
        self.suffix = template[body_at + 8 :]
        self.published = 0

    def run(self, rate: float, count: int, tick: float = 0.001) -> float:
        """Publish `count` messages at `rate` msg/s (checking the clock every `tick` s and
        sending what is due, each with the current time); returns the achieved rate."""
        sock = self.client.sock
        assert sock is not None
        prefix, suffix, pack = self.prefix, self.suffix, _F64.pack
        now = time.monotonic
        start = now()
        sent = 0
        while sent < count:
            t = now()
            due = min(int((t - start) * rate), count) - sent
            if due > 0:
                one = prefix + pack(now()) + suffix
                sock.sendall(one * due if due > 1 else one)
                sent += due
            time.sleep(tick)
        self.published += sent
        return sent / (now() - start)


# -- consuming ----------------------------------------------------------------------------------
class Consumer:
    """Counts deliveries on one consumer channel by scanning frame headers, and acks with
    multiple=true every `ack_every` deliveries (at the end of a received chunk)."""

    def __init__(
        self,
        client: Client,
        channel: int,
        queue: str,
        *,
        prefetch: int = 1000,
        ack_every: int | None = None,
        no_ack: bool = False,
        latency: bool = False,
    ) -> None:
        self.client = client
        self.channel = channel
        self.no_ack = no_ack
        self.ack_every = ack_every or max(1, prefetch // 4)
        self.latency = latency
        self.latencies: list[float] = []
        self.count = 0
        self.body_bytes = 0
        self.redelivered = 0
        self.last_tag = 0
        self.acked_tag = 0
        self.first_time = 0.0
        self.last_time = 0.0
        if prefetch:
            client.basic_qos(channel, prefetch)
        self.consumer_tag = client.basic_consume(channel, queue, no_ack=no_ack)
        self._ctag_len = len(self.consumer_tag.encode())
        self._buf = bytearray(RECV_SIZE + 4 * 131072 + 64)
        self._filled = 0

    def _scan(self, buf: bytearray, end: int, t: float) -> int:
        """Handle complete frames in buf[:end]; returns the offset of the first incomplete one."""
        pos = 0
        unpack_hdr, unpack_u32 = _HDR.unpack_from, _U32.unpack_from
        count = self.count
        last_deliver = -1
        want_ts = False
        body = 0
        lat = self.latencies if self.latency else None
        while end - pos >= 8:
            ftype, _ch, size = unpack_hdr(buf, pos)
            fend = pos + 8 + size
            if fend > end:
                break
            if ftype == FRAME_BODY:
                body += size
                if want_ts:
                    lat.append(t - _F64.unpack_from(buf, pos + 7)[0])  # type: ignore[union-attr]
                    want_ts = False
            elif ftype == FRAME_METHOD:
                (cm,) = unpack_u32(buf, pos + 7)
                if cm == BASIC_DELIVER:
                    count += 1
                    last_deliver = pos
                    want_ts = lat is not None
                elif cm in (CHANNEL_CLOSE, CONNECTION_CLOSE):
                    raise BrokerError(
                        f"{'channel' if cm == CHANNEL_CLOSE else 'connection'} "
                        f"closed by the broker: "
                        f"{describe_close(bytes(buf[pos + 7 : fend - 1]))}"
                    )
                elif cm == BASIC_CANCEL:
                    raise BrokerError("consumer cancelled by the broker")
            pos = fend
        self.count = count
        self.body_bytes += body
        if last_deliver >= 0:
            off = last_deliver + 11 + 1 + self._ctag_len
            (self.last_tag,) = _U64.unpack_from(buf, off)
            if buf[off + 8] & 1:
                self.redelivered += 1
        return pos

    def _take_setup_leftover(self) -> None:
        """Deliveries can arrive together with Consume-Ok: move them to the scan buffer."""
        if self.client.buf:
            pending = self.client.buf
            self.client.buf = b""
            self._buf[: len(pending)] = pending
            self._filled = len(pending)
            t = time.monotonic()
            if self.count == 0:
                self.first_time = t
            used = self._scan(self._buf, self._filled, t)
            self._buf[: self._filled - used] = self._buf[used : self._filled]
            self._filled -= used

    def step(self) -> None:
        """One recv (blocking, or up to the socket's timeout), then scan and maybe ack."""
        sock = self.client.sock
        assert sock is not None
        buf = self._buf
        try:
            n = sock.recv_into(memoryview(buf)[self._filled :])
        except TimeoutError:
            raise BrokerError(
                f"no delivery for {sock.gettimeout()} s after {self.count} deliveries"
            ) from None
        if not n:
            raise BrokerError(f"connection closed by the broker after {self.count} deliveries")
        t = time.monotonic()
        if self.count == 0:
            self.first_time = t
        end = self._filled + n
        used = self._scan(buf, end, t)
        if used < end:
            buf[: end - used] = buf[used:end]
        self._filled = end - used
        self.last_time = t
        if not self.no_ack and self.last_tag - self.acked_tag >= self.ack_every:
            sock.sendall(ack_frame(self.channel, self.last_tag))
            self.acked_tag = self.last_tag

    def run(self, expected: int, idle_timeout: float = 30.0) -> None:
        """Consume until `expected` deliveries arrived in total (raises BrokerError after
        idle_timeout s without data)."""
        assert self.client.sock is not None
        self.client.sock.settimeout(idle_timeout)
        self._take_setup_leftover()
        while self.count < expected:
            self.step()
        self.ack_all()

    def ack_all(self) -> None:
        if not self.no_ack and self.last_tag > self.acked_tag:
            self.client.send(ack_frame(self.channel, self.last_tag))
            self.acked_tag = self.last_tag


def consume_many(consumers: list[Consumer], expected_each: int, idle_timeout: float = 30.0) -> None:
    """Drive several consumers (one connection each) from one process with a selector."""
    sel = selectors.DefaultSelector()
    for c in consumers:
        assert c.client.sock is not None
        c.client.sock.settimeout(None)
        c._take_setup_leftover()
        if c.count < expected_each:
            sel.register(c.client.sock, selectors.EVENT_READ, c)
    left = len(sel.get_map())
    while left:
        events = sel.select(idle_timeout)
        if not events:
            counts = [c.count for c in consumers]
            raise BrokerError(
                f"no delivery for {idle_timeout} s; counts {counts} of {expected_each} each"
            )
        for key, _ in events:
            c = key.data
            c.step()
            if c.count >= expected_each:
                sel.unregister(key.fileobj)
                c.ack_all()
                left -= 1
    sel.close()
