"""Clients over TLS (pika, aio-pika, py-amqp) and the EXTERNAL login, as RabbitMQ 3.10 answers.

Checked against RabbitMQ 3.10.8 with TRIMQ_TEST_URL, TRIMQ_TEST_TLS_PORT and
TRIMQ_TEST_TLS_CERTS (a directory made by tls_helpers.make_certs) and, in its rabbitmq.conf:
listeners.ssl.default, ssl_options.{cacertfile,certfile,keyfile} from that directory,
ssl_options.verify = verify_peer, ssl_options.fail_if_no_peer_cert = false,
auth_mechanisms.1..3 = PLAIN, AMQPLAIN, EXTERNAL, ssl_cert_login_from = common_name (plugin
rabbitmq_auth_mechanism_ssl). Without them, a trimq-server with the same settings is started.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import amqp
import pika
import pytest
from conftest import stop_server
from pika.credentials import ExternalCredentials
from pika.exceptions import AMQPConnectionError, ProbableAuthenticationError
from tls_helpers import (
    TLSBroker,
    client_context,
    login_attempt,
    make_certs,
    read_method,
    send_method,
    start_tls_server,
)

REFUSED_EXTERNAL = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. "
    "For details see the broker logfile."
)
BIG = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSBroker]:
    url = os.environ.get("TRIMQ_TEST_URL")
    if url:
        if not os.environ.get("TRIMQ_TEST_TLS_PORT"):
            pytest.skip("TRIMQ_TEST_URL without TRIMQ_TEST_TLS_PORT: no TLS listener")
        parts = urllib.parse.urlparse(url)
        yield TLSBroker(
            parts.hostname or "127.0.0.1",
            int(os.environ["TRIMQ_TEST_TLS_PORT"]),
            parts.port or 5672,
            Path(os.environ["TRIMQ_TEST_TLS_CERTS"]),
        )
        return
    tmp = tmp_path_factory.mktemp("tls")
    make_certs(tmp / "certs")
    broker = start_tls_server(tmp, tmp / "certs", "--no-management")
    yield broker
    assert broker.server is not None
    stop_server(broker.server)


def params(
    broker: TLSBroker, client: str | None = None, **kwargs: object
) -> pika.ConnectionParameters:
    context = client_context(broker.certs, client)
    return pika.ConnectionParameters(
        broker.host,
        broker.port,
        ssl_options=pika.SSLOptions(context, "localhost"),
        **kwargs,
    )


def test_mechanisms_offered(tls_broker: TLSBroker) -> None:
    """EXTERNAL is offered on the TLS listener (with or without a client certificate: one
    without is refused when it tries) and never on the plain one. (RabbitMQ's order of the
    names changes from one start to the next: its registry's; trimq's is fixed.)"""
    plain, _ = login_attempt(tls_broker.host, tls_broker.plain_port, None, "PLAIN", b"\0a\0b")
    assert sorted(plain.split()) == ["AMQPLAIN", "PLAIN"]
    context = client_context(tls_broker.certs, "guest")
    offered, _ = login_attempt(tls_broker.host, tls_broker.port, context, "PLAIN", b"\0a\0b")
    assert sorted(offered.split()) == ["AMQPLAIN", "EXTERNAL", "PLAIN"]
    bare = client_context(tls_broker.certs)
    offered, _ = login_attempt(tls_broker.host, tls_broker.port, bare, "PLAIN", b"\0a\0b")
    assert sorted(offered.split()) == ["AMQPLAIN", "EXTERNAL", "PLAIN"]


def test_external_on_plain_listener_closes_without_a_frame(tls_broker: TLSBroker) -> None:
    _, answer = login_attempt(tls_broker.host, tls_broker.plain_port, None, "EXTERNAL")
    assert answer is None


def test_external_login_with_client_certificate(tls_broker: TLSBroker) -> None:
    with pika.BlockingConnection(
        params(tls_broker, "guest", credentials=ExternalCredentials())
    ) as connection:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"by certificate")
        method, _, body = channel.basic_get(queue, auto_ack=True)
        assert method is not None and body == b"by certificate"


@pytest.mark.parametrize("client", ["nobody", None])
def test_external_refused(tls_broker: TLSBroker, client: str | None) -> None:
    """A certificate naming no user, or none at all: RabbitMQ's 403."""
    context = client_context(tls_broker.certs, client)
    _, answer = login_attempt(tls_broker.host, tls_broker.port, context, "EXTERNAL")
    assert isinstance(answer, pika.spec.Connection.Close)
    assert (answer.reply_code, answer.reply_text) == (403, REFUSED_EXTERNAL)
    with pytest.raises(ProbableAuthenticationError):
        pika.BlockingConnection(params(tls_broker, client, credentials=ExternalCredentials()))


def test_close_ok_arrives_over_tls(tls_broker: TLSBroker) -> None:
    """Connection.Close after a full handshake: the Close-Ok comes before the socket closes
    (on 100 connections closed together, as a client pool does)."""
    context = client_context(tls_broker.certs)
    sockets = []
    for _ in range(100):
        sock = socket.create_connection((tls_broker.host, tls_broker.port), timeout=10)
        tls = context.wrap_socket(sock, server_hostname="localhost")
        sockets.append(tls)
        tls.sendall(b"AMQP\x00\x00\x09\x01")
        assert isinstance(read_method(tls), pika.spec.Connection.Start)
        send_method(tls, 0, pika.spec.Connection.StartOk({}, "PLAIN", b"\0guest\0guest", "en_US"))
        tune = read_method(tls)
        send_method(tls, 0, pika.spec.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        send_method(tls, 0, pika.spec.Connection.Open("/"))
        assert isinstance(read_method(tls), pika.spec.Connection.OpenOk)
        send_method(tls, 1, pika.spec.Channel.Open())
        assert isinstance(read_method(tls), pika.spec.Channel.OpenOk)
    for tls in sockets:
        send_method(tls, 0, pika.spec.Connection.Close(200, "bye", 0, 0))
    try:
        for tls in sockets:
            assert isinstance(read_method(tls), pika.spec.Connection.CloseOk)
    finally:
        for tls in sockets:
            tls.close()


def test_plain_login_over_tls_with_any_client_certificate(tls_broker: TLSBroker) -> None:
    with pika.BlockingConnection(params(tls_broker, "nobody")) as connection:
        assert connection.channel().is_open


def test_untrusted_client_certificate_refused(tls_broker: TLSBroker) -> None:
    """verify_peer: a certificate from another CA fails the TLS handshake."""
    with pytest.raises((AMQPConnectionError, ssl.SSLError)):
        pika.BlockingConnection(params(tls_broker, "other", connection_attempts=1))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_versions(tls_broker: TLSBroker, version: ssl.TLSVersion) -> None:
    """(TLS 1.1, which RabbitMQ 3.10 still accepts by default, is refused by trimq:
    test_tls.py.)"""
    context = client_context(tls_broker.certs, version=version)
    parameters = pika.ConnectionParameters(
        tls_broker.host,
        tls_broker.port,
        ssl_options=pika.SSLOptions(context, "localhost"),
        connection_attempts=1,
    )
    with pika.BlockingConnection(parameters) as connection:
        assert connection.channel().is_open
        transport = connection._impl._transport
        assert transport._sock.version() == version.name.replace("v1_", "v1.")


def test_pika_confirms_and_a_large_message(tls_broker: TLSBroker) -> None:
    big = os.urandom(BIG)
    with pika.BlockingConnection(params(tls_broker)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = channel.queue_declare("", exclusive=True).method.queue
        for index in range(100):
            channel.basic_publish("", queue, str(index).encode())
        channel.basic_publish("", queue, big)
        bodies = []
        for _ in range(101):
            method, _, body = channel.basic_get(queue, auto_ack=True)
            assert method is not None
            bodies.append(body)
        assert bodies[:100] == [str(i).encode() for i in range(100)]
        assert bodies[100] == big


def test_aio_pika_fifty_concurrent_connections(tls_broker: TLSBroker) -> None:
    """50 connections opened at once, each publishing with confirms."""
    asyncio.run(_fifty_connections(tls_broker))


async def _fifty_connections(tls_broker: TLSBroker) -> None:
    context = client_context(tls_broker.certs)
    queue_name = f"tls-fifty-{uuid.uuid4().hex}"

    async def one(index: int) -> None:
        connection = await aio_pika.connect(
            host=tls_broker.host,
            port=tls_broker.port,
            login="guest",
            password="guest",
            ssl=True,
            ssl_context=context,
        )
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.default_exchange.publish(
                aio_pika.Message(f"{index}".encode()), routing_key=queue_name
            )

    setup = await aio_pika.connect(
        host=tls_broker.host,
        port=tls_broker.port,
        login="guest",
        password="guest",
        ssl=True,
        ssl_context=context,
    )
    async with setup:
        channel = await setup.channel()
        queue = await channel.declare_queue(queue_name, auto_delete=False)
        await asyncio.gather(*(one(i) for i in range(50)))
        bodies = set()
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            bodies.add(message.body)
        await queue.delete()
    assert bodies == {str(i).encode() for i in range(50)}


def test_aio_pika_large_message(tls_broker: TLSBroker) -> None:
    asyncio.run(_large_message(tls_broker))


async def _large_message(tls_broker: TLSBroker) -> None:
    big = os.urandom(BIG)
    connection = await aio_pika.connect(
        host=tls_broker.host,
        port=tls_broker.port,
        login="guest",
        password="guest",
        ssl=True,
        ssl_context=client_context(tls_broker.certs),
    )
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(big), routing_key=queue.name)
        message = await queue.get(no_ack=True)
        assert message.body == big


def test_py_amqp_confirms_and_a_large_message(tls_broker: TLSBroker) -> None:
    """py-amqp, kombu's transport, with publisher confirms."""
    big = os.urandom(BIG)
    connection = amqp.Connection(
        f"{tls_broker.host}:{tls_broker.port}",
        userid="guest",
        password="guest",
        # py-amqp would take EXTERNAL, offered first, as it does with RabbitMQ
        login_method="PLAIN",
        ssl={
            "ca_certs": str(tls_broker.certs / "ca.pem"),
            "cert_reqs": ssl.CERT_REQUIRED,
            "server_hostname": "localhost",
        },
        confirm_publish=True,
    )
    connection.connect()
    try:
        channel = connection.channel()
        queue, _, _ = channel.queue_declare("", exclusive=True)
        for body in (b"small", big):
            channel.basic_publish(amqp.Message(body), exchange="", routing_key=queue)
        received = []
        for _ in range(2):
            message = channel.basic_get(queue, no_ack=True)
            assert message is not None
            received.append(message.body)
        assert received == [b"small", big]
    finally:
        connection.close()
