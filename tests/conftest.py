"""Shared fixtures: a live trimq-server subprocess that tests reach over TCP with real clients.

Set TRIMQ_TEST_URL (for example amqp://guest:guest@127.0.0.1:5690/%2F) to run the same tests
against another broker, such as a private RabbitMQ node, to check that the expectations match;
TRIMQ_TEST_MANAGEMENT_URL (http://127.0.0.1:15690) does the same for the management HTTP API,
TRIMQ_TEST_PROMETHEUS_URL (http://127.0.0.1:15710) for the Prometheus endpoint.

Every trimq-server the tests start (here or in a test of its own) serves the management API and
the Prometheus metrics on free ports of 127.0.0.1 (the environment below), so parallel servers
never collide.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest

LISTENING = re.compile(rb"^trimq \S+ listening on .*:(\d+)")
MANAGEMENT_LISTENING = re.compile(rb"^trimq \S+ management listening on http://.*:(\d+)/")
PROMETHEUS_LISTENING = re.compile(rb"^trimq \S+ prometheus listening on http://.*:(\d+)/")

# Servers a test starts by hand serve no HTTP (port 0 turns a listener off); start_server gives
# each of its servers free ports of 127.0.0.1 for both.
os.environ.setdefault("TRIMQ_MANAGEMENT_HOST", "127.0.0.1")
os.environ.setdefault("TRIMQ_MANAGEMENT_PORT", "0")
os.environ.setdefault("TRIMQ_PROMETHEUS_HOST", "127.0.0.1")
os.environ.setdefault("TRIMQ_PROMETHEUS_PORT", "0")


def free_port() -> int:
    """A port of 127.0.0.1 free now (the kernel does not hand it out again at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _http_ports(extra: tuple[str, ...]) -> list[str]:
    """--management-port/--prometheus-port with free ports, unless the test chose its own."""
    flags = []
    for name in ("management", "prometheus"):
        if not any(arg in (f"--{name}-port", f"--no-{name}") for arg in extra):
            flags += [f"--{name}-port", str(free_port())]
    return flags


@dataclass
class Broker:
    """Where a broker under test listens, and (for a subprocess) how to control it."""

    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    data_dir: Path | None = None
    management_port: int | None = None  # None: not served (or not known)
    prometheus_port: int | None = None  # likewise

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/%2F"

    def params(self, **kwargs: object) -> pika.ConnectionParameters:
        kwargs.setdefault("connection_attempts", 3)
        kwargs.setdefault("retry_delay", 0.2)
        return pika.ConnectionParameters(host=self.host, port=self.port, **kwargs)  # type: ignore[arg-type]

    def connect(self, **kwargs: object) -> pika.BlockingConnection:
        return pika.BlockingConnection(self.params(**kwargs))


def durable_dead_letter_target(channel: Any) -> None:
    """A durable fanout exchange "dlx" routing to a durable queue "dead"."""
    channel.exchange_declare("dlx", "fanout", durable=True)
    channel.queue_declare("dead", durable=True)
    channel.queue_bind("dead", "dlx")


def start_server(
    data_dir: Path, *extra: str, port: int = 0, timeout: float = 20.0, log_path: Path | None = None
) -> Broker:
    """Start `trimq-server` as a subprocess on `port` (0: any free one) and wait until it listens.

    Its JSON log lines (stderr) go to `log_path` when given, else to the test's stderr.
    """
    cmd = [
        sys.executable,
        "-m",
        "trimq.cli.server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        os.environ.get("TRIMQ_TEST_LOG_LEVEL", "info"),
        *_http_ports(extra),
        *extra,
    ]
    log_file = Path(log_path).open("wb") if log_path is not None else None  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file)
    if log_file is not None:
        log_file.close()  # the child holds its own descriptor
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    management_port = prometheus_port = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"trimq-server exited with {proc.wait()} before listening")
        management = MANAGEMENT_LISTENING.search(line)
        if management:  # printed before the AMQP listeners
            management_port = int(management.group(1))
        prometheus = PROMETHEUS_LISTENING.search(line)
        if prometheus:
            prometheus_port = int(prometheus.group(1))
        match = LISTENING.search(line)
        if match:
            return Broker(
                "127.0.0.1", int(match.group(1)), proc, data_dir, management_port, prometheus_port
            )
    proc.kill()
    raise RuntimeError("trimq-server did not report a listening port in time")


def stop_server(broker: Broker, timeout: float = 10.0) -> int:
    """Stop a subprocess broker with SIGTERM; return its exit status."""
    assert broker.process is not None
    broker.process.terminate()
    try:
        return broker.process.wait(timeout)
    except subprocess.TimeoutExpired:
        broker.process.kill()
        broker.process.wait()
        raise


# Test files whose expectations are RabbitMQ's behaviour, checked against RabbitMQ 3.10 with
# TRIMQ_TEST_URL (and TRIMQ_TEST_MANAGEMENT_URL / TRIMQ_TEST_PROMETHEUS_URL for HTTP): they
# carry the marker `rabbitmq_reference`, and `make test-rabbitmq` (which CI runs) runs them
# against a private RabbitMQ node. A file joins the list once it passes there.
RABBITMQ_REFERENCE = frozenset(
    {
        "test_async_pika.py",
        "test_management_admin_clients.py",
        "test_basic.py",
        "test_celery_kombu.py",
        "test_confirms_tx.py",
        "test_connection.py",
        "test_direct_reply_to.py",
        "test_dispatch.py",
        "test_examples.py",
        "test_exchanges.py",
        "test_protocol_errors.py",
        "test_queue_features.py",
        "test_queues.py",
        "test_topic.py",
        "test_vhost_limits.py",
        "test_consumer_timeout.py",
        "test_permissions.py",
        "test_prometheus.py",
        "test_prometheus_detailed.py",
        "test_management_message_stats.py",
        "test_management_api.py",
        "test_management_admin.py",
        "test_management_queues.py",
        "test_management_queue_figures.py",
        "test_ctl_topic_permissions.py",
        "test_ctl_queue_figures.py",
        "test_management_exchanges.py",
        "test_management_connections.py",
        "test_management_clients.py",
        "test_management_access.py",
        "test_tls_clients.py",
        "test_management_definitions_upload.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in RABBITMQ_REFERENCE:
            item.add_marker(pytest.mark.rabbitmq_reference)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the whole session: trimq by default, or the one TRIMQ_TEST_URL names."""
    url = os.environ.get("TRIMQ_TEST_URL")
    if url:
        parts = urllib.parse.urlparse(url)
        yield Broker(parts.hostname or "127.0.0.1", parts.port or 5672)
        return
    server = start_server(tmp_path_factory.mktemp("trimq-data"))
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def management_url(broker: Broker) -> str:
    """The management API's base URL: TRIMQ_TEST_MANAGEMENT_URL's, or the session trimq's."""
    url = os.environ.get("TRIMQ_TEST_MANAGEMENT_URL")
    if url:
        return url.rstrip("/")
    if broker.management_port is None:
        pytest.skip("TRIMQ_TEST_URL without TRIMQ_TEST_MANAGEMENT_URL: no management API")
    return f"http://{broker.host}:{broker.management_port}"


@pytest.fixture(scope="session")
def prometheus_url(broker: Broker) -> str:
    """The Prometheus endpoint's base URL: TRIMQ_TEST_PROMETHEUS_URL's, or the session trimq's."""
    url = os.environ.get("TRIMQ_TEST_PROMETHEUS_URL")
    if url:
        return url.rstrip("/")
    if broker.prometheus_port is None:
        pytest.skip("TRIMQ_TEST_URL without TRIMQ_TEST_PROMETHEUS_URL: no Prometheus endpoint")
    return f"http://{broker.host}:{broker.prometheus_port}"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Broker]:
    """A trimq-server of the test's own, on a fresh data directory (trimq-only tests)."""
    server = start_server(tmp_path / "data")
    yield server
    if server.process is not None and server.process.poll() is None:
        stop_server(server)


@pytest.fixture
def connection(broker: Broker) -> Iterator[pika.BlockingConnection]:
    conn = broker.connect()
    yield conn
    if conn.is_open:
        conn.close()


@pytest.fixture
def channel(
    connection: pika.BlockingConnection,
) -> pika.adapters.blocking_connection.BlockingChannel:
    return connection.channel()


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, so tests sharing one broker never collide."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:120] + f".{os.getpid()}"
