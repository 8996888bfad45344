"""The AMQPS listener's TLS context: built once from the `[tls]` settings, checked with
messages that name the file and the problem, and swapped whole on reload (`trimqctl
reload_tls`, SIGHUP) so new connections get the new certificates and existing ones keep
theirs (each TLS session holds the context it was made with).
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger("trimq.tls")

VERSIONS = {"tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}
EXPIRY_WARNING_DAYS = 30  # a server certificate ending sooner is reported in the log and status


class TLSConfigError(Exception):
    """A TLS setting or file that cannot be used; the message names the file and why."""


@dataclass
class TLSConfig:
    port: int = 0  # 0: no TLS listener
    certfile: Path | None = None
    keyfile: Path | None = None
    cacertfile: Path | None = None
    password: str = ""
    verify: str = "verify_none"  # RabbitMQ's words: verify_none | verify_peer
    fail_if_no_peer_cert: bool = False
    versions: list[str] = field(default_factory=lambda: ["tlsv1.2", "tlsv1.3"])
    ciphers: str = ""  # OpenSSL cipher list for TLS 1.2; empty: OpenSSL's defaults


def _readable(what: str, path: Path | None) -> Path:
    if path is None:
        raise TLSConfigError(f"'tls.{what}' must be set for a TLS listener")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        raise TLSConfigError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise TLSConfigError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise TLSConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    return path


def _key_problem(exc: ssl.SSLError, certfile: Path, keyfile: Path, encrypted: bool) -> str:
    reason = (exc.reason or str(exc)).upper()
    if "MISMATCH" in reason:
        return f"keyfile {keyfile} does not match the certificate in {certfile}"
    if "BAD_DECRYPT" in reason or "BAD PASSWORD" in reason or ("DECRYPT" in reason):
        return f"keyfile {keyfile} cannot be decrypted: wrong 'tls.password'"
    if encrypted and "PEM" in reason:
        return f"keyfile {keyfile} cannot be decrypted: wrong 'tls.password'"
    return f"certfile {certfile} or keyfile {keyfile} cannot be used: {exc.reason or exc}"


def build_context(config: TLSConfig) -> ssl.SSLContext:
    """A server context from `config`, or TLSConfigError naming the file and the problem."""
    certfile = _readable("certfile", config.certfile)
    keyfile = _readable("keyfile", config.keyfile or config.certfile)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = sorted(VERSIONS[v] for v in config.versions)
    context.minimum_version, context.maximum_version = versions[0], versions[-1]
    if config.ciphers:
        try:
            context.set_ciphers(config.ciphers)
        except ssl.SSLError:
            raise TLSConfigError(f"'tls.ciphers' selects no cipher: {config.ciphers!r}") from None
    try:
        context.load_cert_chain(certfile, keyfile, password=config.password.encode)
    except ssl.SSLError as exc:
        encrypted = b"ENCRYPTED" in keyfile.read_bytes()
        raise TLSConfigError(_key_problem(exc, certfile, keyfile, encrypted)) from None
    if config.verify == "verify_peer":
        cacertfile = _readable("cacertfile", config.cacertfile)
        try:
            context.load_verify_locations(cafile=str(cacertfile))
        except ssl.SSLError as exc:
            raise TLSConfigError(
                f"cacertfile {cacertfile} holds no usable certificate: {exc.reason or exc}"
            ) from None
        context.verify_mode = (
            ssl.CERT_REQUIRED if config.fail_if_no_peer_cert else ssl.CERT_OPTIONAL
        )
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def certificate_end(certfile: Path) -> float | None:
    """When the (first) certificate in `certfile` stops being valid, as a Unix time; None if
    it cannot be told (CPython's private decoder is the only standard-library reader)."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    try:
        not_after = decode(os.fspath(certfile))["notAfter"]
        return float(ssl.cert_time_to_seconds(not_after))
    except (OSError, ssl.SSLError, KeyError, ValueError):
        return None


def expiry_warning(certfile: Path, now: float | None = None) -> str | None:
    """A warning if the server certificate has expired or ends within EXPIRY_WARNING_DAYS."""
    end = certificate_end(certfile)
    if end is None:
        return None
    now = time.time() if now is None else now
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))
    if end <= now:
        return f"TLS certificate {certfile} expired on {ends}"
    days = (end - now) / 86400
    if days < EXPIRY_WARNING_DAYS:
        return f"TLS certificate {certfile} expires on {ends}, in {int(days)} days"
    return None


class TLSContexts:
    """The context new TLS connections get, replaced whole by a successful reload."""

    def __init__(self, config: TLSConfig, context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.context = context if context is not None else build_context(config)
        self.loaded_at = time.time()
        self.warn()

    def reload(self) -> str | None:
        """Re-read the files; on error keep the current context and return the message."""
        try:
            context = build_context(self.config)
        except TLSConfigError as exc:
            log.error("tls.reload_failed", error=str(exc))
            return str(exc)
        self.context = context
        self.loaded_at = time.time()
        log.info("tls.reloaded", certfile=str(self.config.certfile))
        self.warn()
        return None

    def warning(self) -> str | None:
        assert self.config.certfile is not None
        return expiry_warning(self.config.certfile)

    def warn(self) -> None:
        warning = self.warning()
        if warning is not None:
            log.warning("tls.certificate_expiry", message=warning)
