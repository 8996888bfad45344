"""Connection and channel life cycle: handshake, negotiation, heartbeats, authentication, vhosts.

Every expectation here was checked against RabbitMQ 3.10.8 (see conftest.py's TRIMQ_TEST_URL).
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pytest
from amqp_wire import (
    CONNECTION_CLOSE_OK,
    CONNECTION_OPEN,
    CONNECTION_START,
    CONNECTION_TUNE,
    CONNECTION_TUNE_OK,
    FRAME_HEARTBEAT,
    PROTOCOL_HEADER,
    PeerClosed,
    WireConnection,
    longstr,
    shortstr,
    table,
)
from conftest import Broker
from pika.adapters.select_connection import SelectConnection
from pika_helpers import pump

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}

LOGIN_REFUSED = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism {}. "
    "For details see the broker logfile."
)


def wire(broker: Broker, timeout: float = 5.0) -> WireConnection:
    return WireConnection(broker.host, broker.port, timeout=timeout)


def start_ok_with_capabilities(conn: WireConnection, mechanism: str, response: bytes) -> None:
    """StartOk advertising authentication_failure_close, as pika and the Java client do."""
    props = table({"product": "amqp_wire", "capabilities": {"authentication_failure_close": True}})
    conn.send_method(
        0, (10, 11), props + shortstr(mechanism) + longstr(response) + shortstr("en_US")
    )


def amqplain_response(login: str, password: str) -> bytes:
    # AMQPLAIN's response is a field table without its leading length
    return table({"LOGIN": login, "PASSWORD": password})[4:]


# --------------------------------------------------------------------------- handshake


def test_server_properties(connection: pika.BlockingConnection) -> None:
    props = connection._impl.server_properties
    assert props["capabilities"] == CAPABILITIES
    for key in ("product", "version", "platform", "cluster_name"):
        value = props[key]
        assert isinstance(value, str) and value, key


def test_connection_start_on_the_wire(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.start()  # asserts version 0-9
        assert conn.server_properties["capabilities"] == CAPABILITIES
        assert isinstance(conn.server_properties["product"], str)
        # RabbitMQ 3.10 sends "AMQPLAIN PLAIN"; the order carries no meaning
        assert sorted(conn.mechanisms.split()) == [b"AMQPLAIN", b"PLAIN"]
        assert conn.locales == b"en_US"


def test_tune_defaults_on_the_wire(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.start()
        conn.start_ok()
        frame = conn.read_method()
        assert frame.class_method == CONNECTION_TUNE
        args = frame.args()
        assert (args.short(), args.long(), args.short()) == (2047, 131072, 60)


def test_negotiated_defaults(connection: pika.BlockingConnection) -> None:
    params = connection._impl.params
    assert (params.frame_max, params.channel_max, params.heartbeat) == (131072, 2047, 60)


def test_client_lowers_tuning(broker: Broker) -> None:
    conn = broker.connect(frame_max=8192, channel_max=64, heartbeat=15)
    try:
        params = conn._impl.params
        assert (params.frame_max, params.channel_max, params.heartbeat) == (8192, 64, 15)
        ch = conn.channel()
        # a body larger than frame_max is split into several frames and arrives whole
        q = ch.queue_declare("", exclusive=True).method.queue
        body = bytes(range(256)) * 100
        ch.basic_publish("", q, body)
        method, _, got = ch.basic_get(q, auto_ack=True)
        assert method is not None and got == body
    finally:
        conn.close()


def test_heartbeat_disabled_by_client(broker: Broker) -> None:
    conn = broker.connect(heartbeat=0)
    try:
        assert conn._impl.params.heartbeat == 0
        assert conn.channel().is_open
    finally:
        conn.close()


def test_full_handshake_on_the_wire(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.handshake(channel_max=10, frame_max=4096)
        conn.open_channel(1)
        conn.open_channel(10)
        conn.send_method(0, (10, 50), struct.pack(">H", 200) + shortstr("bye") + b"\0\0\0\0")
        frame = conn.read_method()
        assert frame.class_method == CONNECTION_CLOSE_OK
        # the peer that sent Connection.Close closes the socket; RabbitMQ leaves it to us


def test_channel_max_is_enforced(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.handshake(channel_max=2)
        conn.open_channel(1)
        conn.open_channel(2)
        conn.send_method(3, (20, 10), shortstr(""))
        close = conn.expect_connection_close()
        assert close.fields == (
            530,
            "NOT_ALLOWED - number of channels opened (2) has reached the negotiated "
            "channel_max (2)",
            0,
            0,
        )


# --------------------------------------------------------------------------- heartbeats


def silent_peer(broker: Broker) -> threading.Event:
    """A raw client that negotiates a 1 s heartbeat and then sends nothing. The event is set
    once the server has dropped it: proof that the server's heartbeat timeout has run for
    every connection opened before it (the event stays unset if it is never dropped)."""
    conn = wire(broker, timeout=10).handshake(heartbeat=1)
    dropped = threading.Event()

    def watch() -> None:
        with conn:
            try:
                conn.read_until_closed(timeout=10)
            except TimeoutError:
                return
            dropped.set()

    threading.Thread(target=watch, daemon=True).start()
    return dropped


def test_heartbeats_keep_idle_connection_alive(broker: Broker) -> None:
    """An idle pika connection, whose only traffic is heartbeats, outlives a silent peer that
    connected after it."""
    conn = broker.connect(heartbeat=1)
    try:
        assert conn._impl.params.heartbeat == 1
        ch = conn.channel()
        dropped = silent_peer(broker)
        # pika sends and answers heartbeats while processing events
        assert pump(conn, dropped.is_set, timeout=8), "the silent peer was never dropped"
        assert conn.is_open
        assert ch.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")
    finally:
        conn.close()


def test_server_sends_heartbeats(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.handshake(heartbeat=1)
        started = time.monotonic()
        frame = conn.read_frame(timeout=3)
        assert frame.type == FRAME_HEARTBEAT
        assert frame.channel == 0 and frame.payload == b""
        assert time.monotonic() - started < 2.5


def test_silent_client_is_disconnected(broker: Broker) -> None:
    """A client that negotiates heartbeats and then says nothing is dropped."""
    with wire(broker) as conn:
        conn.handshake(heartbeat=1)
        started = time.monotonic()
        data = conn.read_until_closed(timeout=4.5)
        assert 1.5 < time.monotonic() - started < 4.5  # two to three intervals
        # nothing but heartbeat frames before the socket is closed
        assert len(data) % 8 == 0
        assert data == bytes([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xCE]) * (len(data) // 8)


def test_client_heartbeats_keep_raw_connection_alive(broker: Broker) -> None:
    """A client that sends nothing but heartbeats is kept: it outlives a silent peer that
    connected after it (a server that counted only other frames would drop it first)."""
    with wire(broker) as conn:
        conn.handshake(heartbeat=1)
        dropped = silent_peer(broker)
        deadline = time.monotonic() + 8
        while not dropped.wait(0.5) and time.monotonic() < deadline:  # every half interval
            conn.send(bytes([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xCE]))
        assert dropped.is_set(), "the silent peer was never dropped"
        conn.open_channel(1)


# --------------------------------------------------------------------------- authentication


def test_bad_password_pika(broker: Broker) -> None:
    params = broker.params(
        credentials=pika.PlainCredentials("guest", "wrong"), connection_attempts=1
    )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        pika.BlockingConnection(params)
    assert f"(403) '{LOGIN_REFUSED.format('PLAIN')}'" in str(info.value)


def test_unknown_user_pika(broker: Broker) -> None:
    params = broker.params(
        credentials=pika.PlainCredentials("nosuchuser", "guest"), connection_attempts=1
    )
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        pika.BlockingConnection(params)
    assert f"(403) '{LOGIN_REFUSED.format('PLAIN')}'" in str(info.value)


def test_bad_password_on_the_wire(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.start()
        start_ok_with_capabilities(conn, "PLAIN", b"\0guest\0wrong")
        close = conn.expect_connection_close()
        assert close.fields == (403, LOGIN_REFUSED.format("PLAIN"), 0, 0)


def test_amqplain_login(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.start()
        conn.start_ok(mechanism="AMQPLAIN", response=amqplain_response("guest", "guest"))
        conn.tune()
        conn.open()
        conn.open_channel(1)


def test_amqplain_bad_password(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.start()
        start_ok_with_capabilities(conn, "AMQPLAIN", amqplain_response("guest", "nope"))
        close = conn.expect_connection_close()
        assert close.fields == (403, LOGIN_REFUSED.format("AMQPLAIN"), 0, 0)


def test_unknown_mechanism_closes_silently(broker: Broker) -> None:
    """RabbitMQ sends no Connection.Close during the handshake for this; it waits a moment
    (3 s in RabbitMQ) and closes the socket."""
    with wire(broker) as conn:
        conn.start()
        conn.start_ok(mechanism="NOSUCH")
        assert conn.read_until_closed(timeout=4.5) == b""


def test_unknown_vhost_pika(broker: Broker) -> None:
    params = pika.ConnectionParameters(
        host=broker.host, port=broker.port, virtual_host="nosuch", connection_attempts=1
    )
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        pika.BlockingConnection(params)
    assert "(530) 'NOT_ALLOWED - vhost nosuch not found'" in str(info.value)


def test_unknown_vhost_on_the_wire(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.start()
        conn.start_ok()
        conn.tune()
        conn.send_method(0, CONNECTION_OPEN, shortstr("nosuch") + shortstr("") + b"\0")
        close = conn.expect_connection_close()
        assert close.fields == (530, "NOT_ALLOWED - vhost nosuch not found", 10, 40)


def test_open_before_start_ok_closes_silently(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.start()
        conn.send_method(0, CONNECTION_OPEN, shortstr("/") + shortstr("") + b"\0")
        assert conn.read_until_closed(timeout=4.5) == b""


def test_frame_max_below_minimum_closes_silently(broker: Broker) -> None:
    """TuneOk with frame_max < 4096: RabbitMQ logs it and closes without a Connection.Close."""
    with wire(broker) as conn:
        conn.start()
        conn.start_ok()
        assert conn.read_method().class_method == CONNECTION_TUNE
        conn.send_method(0, CONNECTION_TUNE_OK, struct.pack(">HIH", 0, 1000, 0))
        conn.send_method(0, CONNECTION_OPEN, shortstr("/") + shortstr("") + b"\0")
        assert conn.read_until_closed(timeout=4.5) == b""


def test_second_connection_open_is_rejected(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.handshake()
        conn.send_method(0, CONNECTION_OPEN, shortstr("/") + shortstr("") + b"\0")
        close = conn.expect_connection_close()
        assert close.fields == (
            504,
            "CHANNEL_ERROR - unexpected method in connection state running",
            10,
            40,
        )


def test_protocol_header_answer_for_other_versions(broker: Broker) -> None:
    for header in (b"AMQP\x00\x01\x00\x00", b"AMQP\x00\x00\x0a\x00", b"AMQP\x01\x01\x00\x0a"):
        with wire(broker) as conn:
            conn.send(header)
            assert conn.read_until_closed() == PROTOCOL_HEADER


def test_valid_header_gets_connection_start(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.send(PROTOCOL_HEADER)
        assert conn.read_method().class_method == CONNECTION_START


# --------------------------------------------------------------------------- channels


def test_channel_open_close(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert ch.is_open and ch.channel_number == 1
    ch.close()
    assert ch.is_closed
    assert connection.is_open


def test_reopen_closed_channel_number(connection: pika.BlockingConnection, unique: str) -> None:
    ch = connection.channel(channel_number=7)
    ch.queue_declare(unique, exclusive=True)
    ch.close()
    again = connection.channel(channel_number=7)
    assert again.channel_number == 7
    # the exclusive queue belongs to the connection, not the channel
    assert again.queue_declare(unique, passive=True).method.queue == unique


def test_reopen_channel_closed_by_broker(connection: pika.BlockingConnection, unique: str) -> None:
    ch = connection.channel(channel_number=3)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(unique, passive=True)
    assert info.value.reply_code == 404
    assert info.value.reply_text == f"NOT_FOUND - no queue '{unique}' in vhost '/'"
    assert ch.is_closed and connection.is_open
    again = connection.channel(channel_number=3)
    assert again.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")


def test_many_channels(connection: pika.BlockingConnection) -> None:
    channels = [connection.channel() for _ in range(200)]
    assert sorted(ch.channel_number for ch in channels) == list(range(1, 201))
    for ch in channels[::7]:
        ch.basic_qos(prefetch_count=3)
    for ch in channels:
        ch.close()
    assert connection.is_open
    assert connection.channel().channel_number == 1


def test_channel_numbers_up_to_channel_max(broker: Broker) -> None:
    with wire(broker) as conn:
        conn.handshake()
        conn.open_channel(2047)
        conn.open_channel(1)


def test_channel_flow_active(channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
    assert channel.flow(True) is True


def test_channel_flow_inactive_not_implemented(
    connection: pika.BlockingConnection, channel: pika.adapters.blocking_connection.BlockingChannel
) -> None:
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        channel.flow(False)
    assert info.value.reply_code == 540
    assert info.value.reply_text == "NOT_IMPLEMENTED - active=false"
    assert connection.is_closed


def test_update_secret(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    connection.update_secret("guest", "refresh")
    assert connection.is_open and ch.is_open
    ch.basic_qos(prefetch_count=1)


def test_client_close_is_acknowledged(broker: Broker) -> None:
    conn = broker.connect()
    ch = conn.channel()
    conn.close(reply_code=200, reply_text="Normal shutdown")
    assert conn.is_closed and ch.is_closed


def test_connection_survives_other_connections_closing(broker: Broker) -> None:
    first = broker.connect()
    try:
        for _ in range(5):
            other = broker.connect()
            other.channel()
            other.close()
        assert first.channel().is_open
    finally:
        first.close()


# --------------------------------------------------------------------------- SelectConnection


def run_select(
    broker: Broker,
    on_open: Callable[[SelectConnection, dict[str, Any]], None],
    timeout: float = 5.0,
    **params: Any,
) -> dict[str, Any]:
    """Run a SelectConnection until the callbacks call `conn.close()` (or the timeout)."""
    state: dict[str, Any] = {"events": []}

    def on_open_ok(conn: SelectConnection) -> None:
        state["events"].append("open")
        on_open(conn, state)

    def on_open_error(conn: SelectConnection, err: BaseException) -> None:
        state["open_error"] = err
        conn.ioloop.stop()

    def on_closed(conn: SelectConnection, reason: BaseException) -> None:
        state["events"].append("closed")
        state["close_reason"] = reason
        conn.ioloop.stop()

    conn = SelectConnection(
        broker.params(**params),
        on_open_callback=on_open_ok,
        on_open_error_callback=on_open_error,
        on_close_callback=on_closed,
    )

    def on_timeout() -> None:
        state["timed_out"] = True
        conn.ioloop.stop()

    conn.ioloop.call_later(timeout, on_timeout)
    conn.ioloop.start()
    if "timed_out" in state and conn.is_open:
        conn.close()
        conn.ioloop.start()
    return state


def test_select_connection_channel_round_trip(broker: Broker, unique: str) -> None:
    def on_open(conn: SelectConnection, state: dict[str, Any]) -> None:
        def on_channel(ch: pika.channel.Channel) -> None:
            state["events"].append(f"channel {ch.channel_number}")
            ch.add_on_close_callback(lambda _ch, reason: state["events"].append("channel closed"))
            ch.queue_declare(unique, exclusive=True, callback=on_declared)

        def on_declared(frame: pika.frame.Method) -> None:
            state["declare_ok"] = frame.method
            frame_ch = conn._channels[frame.channel_number]
            frame_ch.close()
            conn.close()

        conn.channel(on_open_callback=on_channel)

    state = run_select(broker, on_open)
    assert "timed_out" not in state
    assert state["events"] == ["open", "channel 1", "channel closed", "closed"]
    ok = state["declare_ok"]
    assert (ok.queue, ok.message_count, ok.consumer_count) == (unique, 0, 0)
    assert isinstance(state["close_reason"], pika.exceptions.ConnectionClosedByClient)


def test_select_connection_channel_error_then_reopen(broker: Broker, unique: str) -> None:
    def on_open(conn: SelectConnection, state: dict[str, Any]) -> None:
        def on_channel(ch: pika.channel.Channel) -> None:
            ch.add_on_close_callback(on_channel_closed)
            ch.exchange_declare(unique, passive=True)

        def on_channel_closed(ch: pika.channel.Channel, reason: BaseException) -> None:
            state["channel_reason"] = reason
            # pika forgets the channel only after its close callbacks have run
            conn.ioloop.call_later(
                0,
                lambda: conn.channel(
                    channel_number=ch.channel_number, on_open_callback=on_reopened
                ),
            )

        def on_reopened(ch: pika.channel.Channel) -> None:
            state["reopened"] = ch.channel_number
            conn.close()

        conn.channel(on_open_callback=on_channel)

    state = run_select(broker, on_open)
    assert "timed_out" not in state
    reason = state["channel_reason"]
    assert isinstance(reason, pika.exceptions.ChannelClosedByBroker)
    assert (reason.reply_code, reason.reply_text) == (
        404,
        f"NOT_FOUND - no exchange '{unique}' in vhost '/'",
    )
    assert state["reopened"] == 1


def test_select_connection_bad_password(broker: Broker) -> None:
    state = run_select(
        broker,
        lambda conn, state: conn.close(),
        credentials=pika.PlainCredentials("guest", "bad"),
        connection_attempts=1,
    )
    err = state["open_error"]
    assert isinstance(err, pika.exceptions.ProbableAuthenticationError)
    assert LOGIN_REFUSED.format("PLAIN") in str(err)


def test_raw_socket_eof_without_close(broker: Broker) -> None:
    """A client that just drops the TCP connection does not disturb the server."""
    with wire(broker) as conn:
        conn.handshake()
        conn.open_channel(1)
    with wire(broker) as conn:
        conn.handshake()
        conn.open_channel(1)
    with pytest.raises((PeerClosed, TimeoutError)), wire(broker, timeout=0.3) as conn:
        conn.read_frame()  # nothing is sent before the protocol header
