"""What a connection shows of its TLS session (list_connections, the management API) and the
user name EXTERNAL takes from the client certificate, in RabbitMQ's formats: protocol
"tlsv1.3", cipher "aes_256_gcm", subjects and issuers as RFC 4514 strings (last RDN first),
validity as "2026-01-01T00:00:00Z - 2027-01-01T00:00:00Z".
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any, Protocol

# OpenSSL's long attribute names (as ssl.getpeercert() gives them) -> RFC 4514 short names
SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
    "emailAddress": "EMAILADDRESS",
    "serialNumber": "SERIALNUMBER",
    "title": "T",
    "givenName": "GN",
    "surname": "SN",
    "initials": "INITIALS",
    "pseudonym": "PSEUDONYM",
}
_KEY_EXCHANGE = {"ECDHE", "DHE", "ECDH", "DH", "ECDSA", "RSA", "PSK"}


class TLSSession(Protocol):
    """What trio.SSLStream (and ssl.SSLObject) answer about a finished handshake."""

    def version(self) -> str | None: ...
    def cipher(self) -> tuple[str, str, int] | None: ...
    def getpeercert(self) -> Any: ...


@dataclass(frozen=True)
class TLSDetails:
    protocol: str  # "tlsv1.3"
    cipher: str  # "aes_256_gcm"
    key_exchange: str  # "ecdhe_rsa"; "any" for TLS 1.3
    hash: str  # "aead", "sha384"
    subject: str | None = None  # the verified client certificate's, RFC 4514
    issuer: str | None = None
    validity: str | None = None
    common_name: str | None = None


def _escape(value: str) -> str:
    escaped = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def rfc4514(name: Any) -> str:
    """getpeercert()'s subject or issuer (RDNs in certificate order) as RFC 4514 text."""
    rdns = []
    for rdn in name:
        rdns.append("+".join(f"{SHORT_NAMES.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(reversed(rdns))


def _time(text: str) -> str:
    """A validity bound as RabbitMQ shows it: ISO 8601 for UTCTime (years to 2049); from
    2050 certificates carry a GeneralizedTime, which RabbitMQ prints as Erlang's tuple."""
    moment = time.gmtime(ssl.cert_time_to_seconds(text))
    if moment.tm_year >= 2050:
        return '{generalTime,"' + time.strftime("%Y%m%d%H%M%SZ", moment) + '"}'
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)


def cipher_parts(openssl_name: str) -> tuple[str, str, str]:
    """(key exchange, cipher, hash) in Erlang's names from OpenSSL's cipher suite name."""
    if openssl_name.startswith("TLS_"):  # TLS 1.3: TLS_AES_256_GCM_SHA384
        body = openssl_name[4:].rsplit("_", 1)[0]
        return "any", body.lower(), "aead"
    tokens = openssl_name.split("-")
    exchange = []
    while tokens and tokens[0] in _KEY_EXCHANGE:
        exchange.append(tokens.pop(0).lower())
    rest = tokens or ["unknown"]
    algorithm = rest[0].lower()
    for size in ("128", "256"):
        algorithm = algorithm.replace("aes" + size, f"aes_{size}")
    if "POLY1305" in rest:
        return "_".join(exchange) or "rsa", "chacha20_poly1305", "aead"
    if "GCM" in rest or "CCM" in rest:
        mode = "gcm" if "GCM" in rest else "ccm"
        return "_".join(exchange) or "rsa", f"{algorithm}_{mode}", "aead"
    digest = rest[-1].lower() if len(rest) > 1 else "unknown"
    return "_".join(exchange) or "rsa", f"{algorithm}_cbc", digest


def details(session: TLSSession) -> TLSDetails:
    """The TLS details of a connection whose handshake has finished."""
    protocol = (session.version() or "").lower()
    cipher = session.cipher()
    key_exchange, algorithm, digest = cipher_parts(cipher[0] if cipher else "")
    cert = session.getpeercert() or {}
    if not cert:  # none presented (or not asked for: verify_none)
        return TLSDetails(protocol, algorithm, key_exchange, digest)
    common_names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return TLSDetails(
        protocol,
        algorithm,
        key_exchange,
        digest,
        subject=rfc4514(cert.get("subject", ())),
        issuer=rfc4514(cert.get("issuer", ())),
        validity=f"{_time(cert['notBefore'])} - {_time(cert['notAfter'])}",
        common_name=common_names[-1] if common_names else None,
    )


def login_name(tls: TLSDetails | None, login_from: str) -> str | None:
    """The user name EXTERNAL takes from the client certificate (None: no certificate)."""
    if tls is None or tls.subject is None:
        return None
    if login_from == "common_name":
        return tls.common_name
    return tls.subject


def info_fields(tls: TLSDetails | None, missing: str | None) -> dict[str, Any]:
    """The ssl* and peer_cert_* info items (what rabbitmqctl and the management API show);
    `missing` stands for what a connection does not have ("" for rabbitmqctl, None in JSON)."""
    if tls is None:
        return {
            "ssl": False,
            **dict.fromkeys(
                ("ssl_protocol", "ssl_key_exchange", "ssl_cipher", "ssl_hash"), missing
            ),
            **dict.fromkeys(
                ("peer_cert_subject", "peer_cert_issuer", "peer_cert_validity"), missing
            ),
        }
    return {
        "ssl": True,
        "ssl_protocol": tls.protocol,
        "ssl_key_exchange": tls.key_exchange,
        "ssl_cipher": tls.cipher,
        "ssl_hash": tls.hash,
        "peer_cert_subject": tls.subject if tls.subject is not None else missing,
        "peer_cert_issuer": tls.issuer if tls.issuer is not None else missing,
        "peer_cert_validity": tls.validity if tls.validity is not None else missing,
    }
