"""trimq's own TLS behaviour: configuration errors, fail_if_no_peer_cert, the handshake timeout,
TLS 1.1 refused, certificates reloaded (reload_tls, SIGHUP), expiry warnings, the TLS
listener in status, TLS details in list_connections and the management API, HTTPS for the
management API, and the distinguished-name login."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import requests
from conftest import stop_server
from ctl_helpers import ctl
from pika.credentials import ExternalCredentials
from tls_helpers import (
    TLSBroker,
    client_context,
    free_port,
    make_certs,
    start_tls_server,
    tls_config,
    wait_closed,
)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")), reason="trimq-only: starts its own trimq-server"
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    make_certs(directory)
    return directory


@pytest.fixture
def tls_broker(tmp_path: Path, certs: Path) -> Iterator[TLSBroker]:
    broker = start_tls_server(tmp_path, certs)
    yield broker
    assert broker.server is not None
    stop_server(broker.server)


def pika_params(
    broker: TLSBroker, context: ssl.SSLContext, **kwargs: object
) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        broker.host, broker.port, ssl_options=pika.SSLOptions(context, "localhost"), **kwargs
    )


def handshake(broker: TLSBroker, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS connection whose handshake is done (in TLS 1.3 a refused client certificate
    shows on the first read, so read: the server speaks only after the AMQP header)."""
    sock = socket.create_connection((broker.host, broker.port), timeout=10)
    tls = context.wrap_socket(sock, server_hostname="localhost")
    tls.sendall(b"AMQP\x00\x00\x09\x01")
    if not tls.recv(7):  # Connection.Start's frame header
        tls.close()
        raise ConnectionResetError("closed after the TLS handshake")
    return tls


# -- configuration ----------------------------------------------------------------------------


def start_failure(tmp_path: Path, config: str, *env: tuple[str, str]) -> tuple[int, str]:
    (tmp_path / "trimq.toml").write_text(config)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRIMQ_")}
    environ.update(env)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trimq.cli.server",
            "--config",
            str(tmp_path / "trimq.toml"),
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=environ,
        check=False,
    )
    return result.returncode, result.stderr


def test_missing_certificate_file(tmp_path: Path, certs: Path) -> None:
    config = tls_config(certs, free_port()).replace(
        str(certs / "server_cert.pem"), str(tmp_path / "missing.pem")
    )
    code, stderr = start_failure(tmp_path, config)
    assert code == 78
    assert f"certfile {tmp_path / 'missing.pem'} does not exist" in stderr


def test_directory_instead_of_key_file(tmp_path: Path, certs: Path) -> None:
    config = tls_config(certs, free_port()).replace(str(certs / "server_key.pem"), str(tmp_path))
    code, stderr = start_failure(tmp_path, config)
    assert code == 78
    assert f"keyfile {tmp_path} is a directory" in stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_file(tmp_path: Path, certs: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes((certs / "server_key.pem").read_bytes())
    key.chmod(0)
    config = tls_config(certs, free_port()).replace(str(certs / "server_key.pem"), str(key))
    code, stderr = start_failure(tmp_path, config)
    assert code == 78
    assert f"keyfile {key} cannot be read: Permission denied" in stderr


def test_key_not_matching_the_certificate(tmp_path: Path, certs: Path) -> None:
    config = tls_config(certs, free_port()).replace(
        str(certs / "server_key.pem"), str(certs / "guest_key.pem")
    )
    code, stderr = start_failure(tmp_path, config)
    assert code == 78
    assert (
        f"keyfile {certs / 'guest_key.pem'} does not match the certificate in "
        f"{certs / 'server_cert.pem'}" in stderr
    )


def encrypted_key(certs: Path, target: Path, password: bytes) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    key = serialization.load_pem_private_key((certs / "server_key.pem").read_bytes(), None)
    target.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    )


def test_wrong_key_password(tmp_path: Path, certs: Path) -> None:
    key = tmp_path / "encrypted.pem"
    encrypted_key(certs, key, b"right")
    config = tls_config(certs, free_port(), tls__keyfile=str(key), tls__password="pa55-w0rd")
    code, stderr = start_failure(tmp_path, config)
    assert code == 78
    assert f"keyfile {key} cannot be decrypted: wrong 'tls.password'" in stderr
    assert "pa55-w0rd" not in stderr  # never the password


def test_encrypted_key_with_its_password(tmp_path: Path, certs: Path) -> None:
    key = tmp_path / "encrypted.pem"
    encrypted_key(certs, key, b"s3cret")
    broker = start_tls_server(
        tmp_path, certs, "--no-management", tls__keyfile=str(key), tls__password="s3cret"
    )
    try:
        with pika.BlockingConnection(pika_params(broker, client_context(certs))) as connection:
            assert connection.channel().is_open
    finally:
        assert broker.server is not None
        stop_server(broker.server)


@pytest.mark.parametrize("version", ["tlsv1.1", "tlsv1"])
def test_old_versions_refused_in_configuration(tmp_path: Path, certs: Path, version: str) -> None:
    code, stderr = start_failure(tmp_path, tls_config(certs, free_port(), tls__versions=[version]))
    assert code == 78
    assert f"'tls.versions': {version} is not supported" in stderr


def test_environment_names(tmp_path: Path, certs: Path) -> None:
    code, stderr = start_failure(
        tmp_path,
        "",
        ("TRIMQ_TLS_PORT", str(free_port())),
        ("TRIMQ_TLS_CERTFILE", str(tmp_path / "nothing.pem")),
        ("TRIMQ_TLS_VERIFY", "verify_peer"),
        ("TRIMQ_TLS_CACERTFILE", str(certs / "ca.pem")),
    )
    assert code == 78
    assert f"certfile {tmp_path / 'nothing.pem'} does not exist" in stderr
    code, stderr = start_failure(tmp_path, "", ("TRIMQ_TLS_PORT", str(free_port())))
    assert code == 78
    assert "'tls.certfile' must be set for a TLS listener (port from TRIMQ_TLS_PORT)" in stderr
    code, stderr = start_failure(tmp_path, "", ("TRIMQ_AUTH_MECHANISMS", "PLAIN,KERBEROS"))
    assert code == 78
    assert "'auth.mechanisms' must be a list of some of PLAIN, AMQPLAIN, EXTERNAL" in stderr
    code, stderr = start_failure(
        tmp_path,
        tls_config(certs, free_port(), tls__ciphers="NO-SUCH-CIPHER"),
    )
    assert code == 78
    assert "'tls.ciphers' selects no cipher: 'NO-SUCH-CIPHER'" in stderr
    code, stderr = start_failure(tmp_path, "[tls]\npassword = 123456\n")
    assert code == 78
    assert "'tls.password' must be a string" in stderr and "123456" not in stderr
    code, stderr = start_failure(tmp_path, "", ("TRIMQ_TLS_FAIL_IF_NO_PEER_CERT", "maybe"))
    assert code == 78
    assert "TRIMQ_TLS_FAIL_IF_NO_PEER_CERT" in stderr


# -- the listener -----------------------------------------------------------------------------


def test_tls_1_1_refused(tls_broker: TLSBroker, certs: Path) -> None:
    context = client_context(certs, version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ssl.SSLError):
        handshake(tls_broker, context)


def test_fail_if_no_peer_cert(tmp_path: Path, certs: Path) -> None:
    broker = start_tls_server(tmp_path, certs, "--no-management", tls__fail_if_no_peer_cert=True)
    try:
        for refused in (client_context(certs), client_context(certs, "other")):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                handshake(broker, refused).close()
        handshake(broker, client_context(certs, "guest")).close()
    finally:
        assert broker.server is not None
        stop_server(broker.server)


def test_unfinished_tls_handshake_dropped_at_handshake_timeout(tmp_path: Path, certs: Path) -> None:
    broker = start_tls_server(tmp_path, certs, "--no-management", "--handshake-timeout", "0.5")
    try:
        with socket.create_connection((broker.host, broker.port)) as silent:
            assert wait_closed(silent, 10) < 5
        with socket.create_connection((broker.host, broker.port)) as partial:
            partial.sendall(b"\x16\x03\x01\x00\x10")  # a ClientHello record that never ends
            assert wait_closed(partial, 10) < 5
    finally:
        assert broker.server is not None
        stop_server(broker.server)


def test_plain_listener_off_beside_tls(tmp_path: Path, certs: Path) -> None:
    tls_port = free_port()
    (tmp_path / "trimq.toml").write_text(tls_config(certs, tls_port))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trimq.cli.server",
            "--config",
            str(tmp_path / "trimq.toml"),
            "--data-dir",
            str(tmp_path / "data"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-management",
            "--no-prometheus",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"trimq 0.1.0 amqps listening on amqps://127.0.0.1:{tls_port}/"
        broker = TLSBroker("127.0.0.1", tls_port, 0, certs)
        with pika.BlockingConnection(pika_params(broker, client_context(certs))) as connection:
            assert connection.channel().is_open
        status = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "trimq.cli.ctl",
                    "--data-dir",
                    str(tmp_path / "data"),
                    "status",
                    "--formatter",
                    "json",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert [(lst["port"], lst["protocol"]) for lst in status["listeners"]] == [
            (tls_port, "amqp/ssl")
        ]
    finally:
        proc.terminate()
        proc.wait(10)


def test_status_lists_the_tls_listener(tls_broker: TLSBroker) -> None:
    assert tls_broker.server is not None
    code, out, _ = ctl(tls_broker.server, "status")
    assert code == 0
    assert (
        f"Interface: 127.0.0.1, port: {tls_broker.port}, protocol: amqp/ssl, "
        "purpose: AMQP 0-9-1 over TLS" in out
    )
    assert f"Interface: 127.0.0.1, port: {tls_broker.plain_port}, protocol: amqp, " in "\n".join(
        out
    )


def test_expiring_certificate_warned(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    ca = make_certs(certs)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5)
    server = ca.issue_cert("localhost", "127.0.0.1", not_after=soon)
    server.cert_chain_pems[0].write_to_path(str(certs / "server_cert.pem"))
    server.private_key_pem.write_to_path(str(certs / "server_key.pem"))
    log = tmp_path / "log"
    broker = start_tls_server(tmp_path, certs, "--no-management", log_path=log)
    try:
        assert broker.server is not None
        _, out, _ = ctl(broker.server, "status")
        warning = [line for line in out if line.startswith("Warning: TLS certificate")]
        assert len(warning) == 1
        assert str(certs / "server_cert.pem") in warning[0] and "in 4 days" in warning[0]
        assert '"event": "tls.certificate_expiry"' in log.read_text()
    finally:
        assert broker.server is not None
        stop_server(broker.server)


# -- reload -----------------------------------------------------------------------------------


def test_reload_picks_up_a_new_certificate(tmp_path: Path) -> None:
    certs, renewed = tmp_path / "certs", tmp_path / "renewed"
    make_certs(certs)
    make_certs(renewed)  # another CA: each verifies only its own server certificate
    broker = start_tls_server(tmp_path, certs, "--no-management")
    server = broker.server
    assert server is not None and server.process is not None
    original = {n: (certs / n).read_bytes() for n in ("server_cert.pem", "server_key.pem")}
    old = pika.BlockingConnection(pika_params(broker, client_context(certs)))
    try:
        for name in original:
            (certs / name).write_bytes((renewed / name).read_bytes())
        code, out, _ = ctl(server, "reload_tls")
        assert code == 0, out
        handshake(broker, client_context(renewed)).close()
        with pytest.raises(ssl.SSLError):
            handshake(broker, client_context(certs))
        # a bad new file: the current context stays, the error is the answer
        (certs / "server_key.pem").write_bytes(original["server_key.pem"])
        code, _, err = ctl(server, "reload_tls")
        assert code == 70
        assert any(
            f"keyfile {certs / 'server_key.pem'} does not match the certificate" in line
            for line in err
        ), err
        handshake(broker, client_context(renewed)).close()
        # SIGHUP reloads too
        (certs / "server_cert.pem").write_bytes(original["server_cert.pem"])
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            try:
                handshake(broker, client_context(certs)).close()
                break
            except ssl.SSLError:
                assert time.monotonic() < deadline, "SIGHUP did not reload"
                time.sleep(0.05)
        # the connection made before all this still works, with its first session
        channel = old.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"still here")
        assert channel.basic_get(queue, auto_ack=True)[2] == b"still here"
    finally:
        old.close()
        stop_server(server)


# -- what connections show ---------------------------------------------------------------------


def test_connection_tls_details(tls_broker: TLSBroker, certs: Path) -> None:
    assert tls_broker.server is not None
    context = client_context(certs, "guest", version=ssl.TLSVersion.TLSv1_3)
    with pika.BlockingConnection(
        pika_params(tls_broker, context, credentials=ExternalCredentials())
    ) as connection:
        connection.channel()
        items = [
            "auth_mechanism",
            "user",
            "ssl",
            "ssl_protocol",
            "ssl_cipher",
            "peer_cert_subject",
            "peer_cert_issuer",
            "peer_cert_validity",
        ]
        code, out, _ = ctl(tls_broker.server, "list_connections", *items, "--formatter", "json")
        assert code == 0
        (row,) = json.loads("\n".join(out))
        subject = (
            subprocess.run(
                [
                    "openssl",
                    "x509",
                    "-in",
                    str(certs / "guest_cert.pem"),
                    "-noout",
                    "-subject",
                    "-nameopt",
                    "RFC2253",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .removeprefix("subject=")
        )
        assert row["auth_mechanism"] == "EXTERNAL" and row["user"] == "guest"
        assert row["ssl"] is True and row["ssl_protocol"] == "tlsv1.3"
        assert row["ssl_cipher"] in ("aes_256_gcm", "aes_128_gcm", "chacha20_poly1305")
        assert row["peer_cert_subject"] == subject
        assert row["peer_cert_subject"].startswith("CN=guest,OU=")
        assert row["peer_cert_issuer"].startswith("OU=Testing CA #")
        assert row["peer_cert_validity"] == '2000-01-01T00:00:00Z - {generalTime,"30000101000000Z"}'
        assert tls_broker.server.management_port is not None
        api = requests.get(
            f"http://127.0.0.1:{tls_broker.server.management_port}/api/connections",
            auth=("guest", "guest"),
            timeout=10,
        ).json()
        (shown,) = [c for c in api if c["ssl"]]
        for item in items:
            assert shown[item] == row[item], item
        overview = requests.get(
            f"http://127.0.0.1:{tls_broker.server.management_port}/api/overview",
            auth=("guest", "guest"),
            timeout=10,
        ).json()
        assert {"protocol": "amqp/ssl", "port": tls_broker.port} in [
            {"protocol": lst["protocol"], "port": lst["port"]} for lst in overview["listeners"]
        ]


def test_plain_connection_has_no_tls_details(tls_broker: TLSBroker) -> None:
    assert tls_broker.server is not None
    with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", tls_broker.plain_port)):
        code, out, _ = ctl(
            tls_broker.server, "list_connections", "ssl", "ssl_protocol", "peer_cert_subject"
        )
    assert code == 0
    assert out[-1] == "false\t\t"


def test_distinguished_name_login(tmp_path: Path, certs: Path) -> None:
    broker = start_tls_server(
        tmp_path, certs, "--no-management", auth__ssl_cert_login_from="distinguished_name"
    )
    try:
        assert broker.server is not None
        subject = (
            subprocess.run(
                [
                    "openssl",
                    "x509",
                    "-in",
                    str(certs / "nobody_cert.pem"),
                    "-noout",
                    "-subject",
                    "-nameopt",
                    "RFC2253",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .removeprefix("subject=")
        )
        assert ctl(broker.server, "add_user", subject, "unused")[0] == 0
        assert ctl(broker.server, "set_permissions", "-p", "/", subject, ".*", ".*", ".*")[0] == 0
        params = pika_params(
            broker, client_context(certs, "nobody"), credentials=ExternalCredentials()
        )
        with pika.BlockingConnection(params) as connection:
            assert connection.channel().is_open
        # the common name alone is no user in this mode
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(
                pika_params(
                    broker, client_context(certs, "guest"), credentials=ExternalCredentials()
                )
            )
    finally:
        assert broker.server is not None
        stop_server(broker.server)


def test_management_over_https(tmp_path: Path, certs: Path) -> None:
    port = free_port()
    broker = start_tls_server(
        tmp_path,
        certs,
        "--management-port",
        str(port),
        management__certfile=str(certs / "server_cert.pem"),
        management__keyfile=str(certs / "server_key.pem"),
    )
    try:
        answer = requests.get(
            f"https://localhost:{port}/api/overview",
            auth=("guest", "guest"),
            verify=str(certs / "ca.pem"),
            timeout=10,
        )
        assert answer.status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://localhost:{port}/api/overview", timeout=10)
    finally:
        assert broker.server is not None
        stop_server(broker.server)


def test_management_https_needs_both_files(tmp_path: Path, certs: Path) -> None:
    code, stderr = start_failure(
        tmp_path, f'[management]\ncertfile = "{certs / "server_cert.pem"}"\n'
    )
    assert code == 78
    assert "'management.certfile' and 'management.keyfile' must be set together" in stderr


def test_detached_with_only_a_tls_listener(tmp_path: Path, certs: Path) -> None:
    tls_port = free_port()
    (tmp_path / "trimq.toml").write_text(tls_config(certs, tls_port))
    data = tmp_path / "data"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRIMQ_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trimq.cli.server",
            "-detached",
            "--config",
            str(tmp_path / "trimq.toml"),
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-management",
            "--no-prometheus",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    try:
        assert result.returncode == 0, result.stderr
        assert f"detached, listening on 127.0.0.1:{tls_port} (TLS)" in result.stdout
        assert result.stdout.count("listening on") == 1
    finally:
        subprocess.run(
            [sys.executable, "-m", "trimq.cli.ctl", "--data-dir", str(data), "stop"],
            capture_output=True,
            timeout=60,
            env=environ,
            check=False,
        )
