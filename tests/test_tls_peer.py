"""What a TLS session shows, in RabbitMQ's formats (trimq/server/tls_peer.py), and the server
certificate's expiry warning (trimq/server/tls.py): pure functions, no broker."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import trustme

from trimq.server.tls import expiry_warning
from trimq.server.tls_peer import cipher_parts, details, info_fields, login_name, rfc4514


@pytest.mark.parametrize(
    ("openssl", "expected"),
    [
        ("TLS_AES_256_GCM_SHA384", ("any", "aes_256_gcm", "aead")),
        ("TLS_CHACHA20_POLY1305_SHA256", ("any", "chacha20_poly1305", "aead")),
        # RabbitMQ 3.10 showed ecdhe_ecdsa / aes_256_gcm / aead for this TLS 1.2 suite
        ("ECDHE-ECDSA-AES256-GCM-SHA384", ("ecdhe_ecdsa", "aes_256_gcm", "aead")),
        ("ECDHE-RSA-AES128-GCM-SHA256", ("ecdhe_rsa", "aes_128_gcm", "aead")),
        ("ECDHE-RSA-CHACHA20-POLY1305", ("ecdhe_rsa", "chacha20_poly1305", "aead")),
        ("ECDHE-RSA-AES256-SHA384", ("ecdhe_rsa", "aes_256_cbc", "sha384")),
        ("AES128-SHA", ("rsa", "aes_128_cbc", "sha")),
    ],
)
def test_cipher_names(openssl: str, expected: tuple[str, str, str]) -> None:
    assert cipher_parts(openssl) == expected


def test_rfc4514_last_element_first_and_escaped() -> None:
    subject = (
        (("countryName", "GB"),),
        (("organizationName", "Acme, Ltd"),),
        (("organizationalUnitName", "#ops"),),
        (("commonName", "alice"), ("userId", "a+1")),
    )
    assert rfc4514(subject) == "CN=alice+UID=a\\+1,OU=\\#ops,O=Acme\\, Ltd,C=GB"


class Session:
    def __init__(self, cert: dict[str, object]) -> None:
        self.cert = cert

    def version(self) -> str:
        return "TLSv1.2"

    def cipher(self) -> tuple[str, str, int]:
        return ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLSv1.2", 256)

    def getpeercert(self) -> dict[str, object]:
        return self.cert


def test_details_and_login_names() -> None:
    session = Session(
        {
            "subject": ((("organizationName", "trimq"),), (("commonName", "bob"),)),
            "issuer": ((("organizationName", "trimq CA"),),),
            "notBefore": "Jan  1 00:00:00 2026 GMT",
            "notAfter": "Jan  1 00:00:00 2027 GMT",
        }
    )
    tls = details(session)
    assert tls.protocol == "tlsv1.2"
    assert (tls.subject, tls.issuer) == ("CN=bob,O=trimq", "O=trimq CA")
    assert tls.validity == "2026-01-01T00:00:00Z - 2027-01-01T00:00:00Z"
    assert login_name(tls, "distinguished_name") == "CN=bob,O=trimq"
    assert login_name(tls, "common_name") == "bob"
    without = details(Session({}))
    assert login_name(without, "common_name") is None
    assert info_fields(without, "")["peer_cert_subject"] == ""
    assert info_fields(None, None) == {
        "ssl": False,
        "ssl_protocol": None,
        "ssl_key_exchange": None,
        "ssl_cipher": None,
        "ssl_hash": None,
        "peer_cert_subject": None,
        "peer_cert_issuer": None,
        "peer_cert_validity": None,
    }


def test_expiry_warnings(tmp_path: Path) -> None:
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    cases = {
        "expired": now - datetime.timedelta(days=1),
        "soon": now + datetime.timedelta(days=10, hours=1),
        "later": now + datetime.timedelta(days=400),
    }
    warnings = {}
    for name, end in cases.items():
        cert = ca.issue_cert(
            "localhost", not_before=now - datetime.timedelta(days=30), not_after=end
        )
        path = tmp_path / f"{name}.pem"
        cert.cert_chain_pems[0].write_to_path(str(path))
        warnings[name] = expiry_warning(path)
    assert warnings["expired"] is not None and " expired on " in warnings["expired"]
    assert warnings["soon"] is not None and warnings["soon"].endswith("in 10 days")
    assert warnings["later"] is None
