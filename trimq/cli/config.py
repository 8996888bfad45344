"""trimq-server's configuration: a TOML file, overridden by environment variables, overridden by
command-line flags. Every key is checked at start; a bad one is refused with its name.

    data_dir = "/var/lib/trimq"
    [amqp]   host, port, heartbeat, frame_max, channel_max, handshake_timeout
    [auth]   default_user, default_pass, default_vhost, loopback_users
    [log]    level, format ("auto": console on a terminal, JSON otherwise; "console"; "json")
    [wal]    segment_size, fsync, compaction_interval
    [limits] connection_max, handshake_max, max_message_size, channel_unacked_max,
             connection_output_buffer, consumer_timeout (milliseconds; 0 disables)
    [resources] memory_high_watermark (fraction of RAM), memory_high_watermark_absolute,
             disk_free_limit, memory_high_watermark_paging_ratio (ready message bodies in
             memory are paged to disk above the watermark times this; default 0.5)
    [paging] enabled (false: every queue stays in memory), budget (bytes of ready bodies
             in memory, instead of the ratio; 0: the ratio),
             head_messages, head_bytes (what each queue keeps in memory at its head),
             run_bytes (how much one page write takes)
    [management] enabled, host, port (the HTTP API; port 0 or enabled = false: not served),
             certfile, keyfile (both set: the API is served over HTTPS)
    [prometheus] enabled, host, port (/metrics; port 0 or enabled = false: not served)
    [tls]    port (the AMQPS listener; 0, the default: none), certfile, keyfile, cacertfile,
             password (of an encrypted key), verify ("verify_none" | "verify_peer"),
             fail_if_no_peer_cert, versions (default ["tlsv1.2", "tlsv1.3"]), ciphers
    [auth]   mechanisms (default ["PLAIN", "AMQPLAIN"]; "EXTERNAL" logs in with the TLS client
             certificate), ssl_cert_login_from ("distinguished_name" | "common_name")

`amqp.port = 0` means any free port, except beside a TLS listener, where it turns the plain
listener off.

Sizes are bytes, or strings with RabbitMQ's units: "50MB" (10^6), "2GiB" or "2G" (2^30).

The environment variable for a key is TRIMQ_<SECTION>_<KEY> (TRIMQ_AMQP_PORT, TRIMQ_WAL_FSYNC),
or TRIMQ_DATA_DIR. Without --config the file is DATA_DIR/trimq.toml, else /etc/trimq/trimq.toml,
if either exists.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path("~/.local/share/trimq")
SYSTEM_CONFIG = Path("/etc/trimq/trimq.toml")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(Exception):
    """A configuration value that cannot be used; the message names the key."""


@dataclass
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    host: str | None = None  # None: every interface, IPv4 and IPv6
    port: int = 5672
    heartbeat: int = 60
    frame_max: int = 131072
    channel_max: int = 2047
    handshake_timeout: float = 10.0
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    loopback_users: list[str] = field(default_factory=lambda: ["guest"])
    log_level: str = "info"
    log_format: str = "auto"
    wal_segment_size: int = 64 * 2**20
    wal_fsync: bool = True
    wal_compaction_interval: float = 5.0
    connection_max: int = 0
    handshake_max: int = 1000
    max_message_size: int = 128 * 2**20
    channel_unacked_max: int = 0
    connection_output_buffer: int = 4 * 2**20
    consumer_timeout: int = 1_800_000
    memory_high_watermark: float = 0.4
    memory_high_watermark_absolute: int = 0
    disk_free_limit: int = 50_000_000
    paging_enabled: bool = True
    paging_ratio: float = 0.5
    paging_budget: int = 0
    paging_head_messages: int = 2000
    paging_head_bytes: int = 8 * 2**20
    paging_run_bytes: int = 4 * 2**20
    management_enabled: bool = True
    management_host: str | None = None  # None: every interface, IPv4 and IPv6
    management_port: int = 15672
    prometheus_enabled: bool = True
    prometheus_host: str | None = None  # None: every interface, IPv4 and IPv6
    prometheus_port: int = 15692
    management_certfile: Path | None = None
    management_keyfile: Path | None = None
    auth_mechanisms: list[str] = field(default_factory=lambda: ["PLAIN", "AMQPLAIN"])
    ssl_cert_login_from: str = "distinguished_name"
    tls_port: int = 0
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_cacertfile: Path | None = None
    tls_password: str = ""
    tls_verify: str = "verify_none"
    tls_fail_if_no_peer_cert: bool = False
    tls_versions: list[str] = field(default_factory=lambda: ["tlsv1.2", "tlsv1.3"])
    tls_ciphers: str = ""
    config_file: Path | None = None

    @property
    def serves_management(self) -> bool:
        """Whether the management listener runs: `port = 0` turns it off, as `enabled = false`."""
        return self.management_enabled and self.management_port != 0

    @property
    def serves_prometheus(self) -> bool:
        """Whether the Prometheus listener runs: `port = 0` turns it off, as `enabled = false`."""
        return self.prometheus_enabled and self.prometheus_port != 0

    @property
    def plain_listener(self) -> bool:
        """Whether the plain AMQP listener runs: `amqp.port = 0` turns it off beside TLS."""
        return self.port != 0 or self.tls_port == 0


def _int(low: int, high: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"'{key}' must be an integer from {low} to {high}, not {value!r}")
        return value

    return check


def _number(low: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if isinstance(value, bool) or number < low:
            raise ConfigError(f"'{key}' must be a number of at least {low}, not {value!r}")
        return number

    return check


_UNITS = {
    "": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "k": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tib": 1024**4,
}


def parse_size(text: str) -> int | None:
    """Bytes from "1048576", "50MB" (10^6) or "2GiB"/"2G" (2^30); None if it is not one."""
    text = text.strip().lower()
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = text[len(digits) :].strip()
    if digits.isdigit() and unit in _UNITS:
        return int(digits) * _UNITS[unit]
    return None


def _size(low: int, high: int) -> Callable[[str, Any], int]:
    """Bytes, as an integer or a string with a unit ("50MB", "1GiB")."""

    def check(key: str, value: Any) -> int:
        number: Any = value
        if isinstance(value, str):
            number = parse_size(value)
        if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
            raise ConfigError(
                f"'{key}' must be a size from {low} to {high} bytes (such as "
                f'1048576, "50MB" or "2GiB"), not {value!r}'
            )
        return number

    return check


def _fraction(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not 0 < number <= 1:
        raise ConfigError(f"'{key}' must be a fraction above 0 and at most 1, not {value!r}")
    return number


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    if not isinstance(value, bool):
        raise ConfigError(f"'{key}' must be true or false, not {value!r}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"'{key}' must be a string, not {value!r}")
    return value


def _secret(key: str, value: Any) -> str:
    """A password: a string, never repeated in the error (it may be the secret itself)."""
    if not isinstance(value, str):
        raise ConfigError(f"'{key}' must be a string")
    return value


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"'{key}' must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    return check


def _names(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"'{key}' must be a list of user names, not {value!r}")
    return value


def _host(key: str, value: Any) -> str | None:
    text = _text(key, value)
    return None if text in ("", "*") else text


def _path(key: str, value: Any) -> Path:
    return Path(_text(key, value)).expanduser()


def _list_of(*choices: str) -> Callable[[str, Any], list[str]]:
    """A non-empty list of some of `choices` (or a comma-separated string of them)."""

    def check(key: str, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v in choices for v in value)
        ):
            raise ConfigError(
                f"'{key}' must be a list of some of {', '.join(choices)}, not {value!r}"
            )
        return list(dict.fromkeys(value))

    return check


def _versions(key: str, value: Any) -> list[str]:
    """TLS versions, RabbitMQ's names; 1.0 and 1.1 are refused as unsafe."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        for version in value:
            if version in ("tlsv1", "tlsv1.0", "tlsv1.1", "sslv3"):
                raise ConfigError(
                    f"'{key}': {version} is not supported (unsafe); use tlsv1.2 and tlsv1.3"
                )
    return _list_of("tlsv1.2", "tlsv1.3")(key, value)


# TOML key -> (Settings attribute, check)
KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "data_dir": ("data_dir", _path),
    "amqp.host": ("host", _host),
    "amqp.port": ("port", _int(0, 65535)),
    "amqp.heartbeat": ("heartbeat", _int(0, 65535)),
    "amqp.frame_max": ("frame_max", _int(4096, 2**31 - 1)),
    "amqp.channel_max": ("channel_max", _int(1, 65535)),
    "amqp.handshake_timeout": ("handshake_timeout", _number(0.1)),
    "auth.default_user": ("default_user", _text),
    "auth.default_pass": ("default_pass", _text),
    "auth.default_vhost": ("default_vhost", _text),
    "auth.loopback_users": ("loopback_users", _names),
    "log.level": ("log_level", _choice(*LOG_LEVELS)),
    "log.format": ("log_format", _choice("auto", "console", "json")),
    "wal.segment_size": ("wal_segment_size", _int(4096, 2**40)),
    "wal.fsync": ("wal_fsync", _bool),
    "wal.compaction_interval": ("wal_compaction_interval", _number(0.01)),
    "limits.connection_max": ("connection_max", _int(0, 2**31 - 1)),
    "limits.handshake_max": ("handshake_max", _int(0, 2**31 - 1)),
    "limits.max_message_size": ("max_message_size", _size(1, 512 * 2**20)),
    "limits.channel_unacked_max": ("channel_unacked_max", _int(0, 2**31 - 1)),
    "limits.connection_output_buffer": ("connection_output_buffer", _size(4096, 2**40)),
    "limits.consumer_timeout": ("consumer_timeout", _int(0, 2**31 - 1)),
    "resources.memory_high_watermark": ("memory_high_watermark", _fraction),
    "resources.memory_high_watermark_absolute": ("memory_high_watermark_absolute", _size(0, 2**50)),
    "resources.disk_free_limit": ("disk_free_limit", _size(0, 2**60)),
    "resources.memory_high_watermark_paging_ratio": ("paging_ratio", _fraction),
    "paging.enabled": ("paging_enabled", _bool),
    "paging.budget": ("paging_budget", _size(0, 2**50)),
    "paging.head_messages": ("paging_head_messages", _int(1, 2**31 - 1)),
    "paging.head_bytes": ("paging_head_bytes", _size(1, 2**40)),
    "paging.run_bytes": ("paging_run_bytes", _size(1, 2**40)),
    "management.enabled": ("management_enabled", _bool),
    "management.host": ("management_host", _host),
    "management.port": ("management_port", _int(0, 65535)),
    "prometheus.enabled": ("prometheus_enabled", _bool),
    "prometheus.host": ("prometheus_host", _host),
    "prometheus.port": ("prometheus_port", _int(0, 65535)),
    "management.certfile": ("management_certfile", _path),
    "management.keyfile": ("management_keyfile", _path),
    "auth.mechanisms": ("auth_mechanisms", _list_of("PLAIN", "AMQPLAIN", "EXTERNAL")),
    "auth.ssl_cert_login_from": (
        "ssl_cert_login_from",
        _choice("distinguished_name", "common_name"),
    ),
    "tls.port": ("tls_port", _int(0, 65535)),
    "tls.certfile": ("tls_certfile", _path),
    "tls.keyfile": ("tls_keyfile", _path),
    "tls.cacertfile": ("tls_cacertfile", _path),
    "tls.password": ("tls_password", _secret),
    "tls.verify": ("tls_verify", _choice("verify_none", "verify_peer")),
    "tls.fail_if_no_peer_cert": ("tls_fail_if_no_peer_cert", _bool),
    "tls.versions": ("tls_versions", _versions),
    "tls.ciphers": ("tls_ciphers", _text),
}


def env_name(key: str) -> str:
    return "TRIMQ_" + key.replace(".", "_").upper()


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def load(
    config_file: Path | None,
    environ: Mapping[str, str],
    overrides: dict[str, Any],
) -> Settings:
    """Settings from the file, then the environment, then `overrides` (flags, by TOML key)."""
    settings = Settings()
    data_dir_hint = _path(
        "data_dir",
        overrides.get("data_dir") or environ.get("TRIMQ_DATA_DIR") or str(DEFAULT_DATA_DIR),
    )
    if config_file is None:
        for candidate in (data_dir_hint / "trimq.toml", SYSTEM_CONFIG):
            if candidate.is_file():
                config_file = candidate
                break
    values: dict[str, tuple[str, Any]] = {}
    if config_file is not None:
        try:
            document = tomllib.loads(config_file.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {config_file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file} is not valid TOML: {exc}") from exc
        for key, value in _flatten(document).items():
            if key not in KEYS:
                raise ConfigError(f"unknown key '{key}' in {config_file}")
            values[key] = (f"'{key}' in {config_file}", value)
        settings.config_file = config_file
    for key in KEYS:
        if env_name(key) in environ:
            values[key] = (env_name(key), environ[env_name(key)])
    for key, value in overrides.items():
        if value is not None:
            flag = key if key.startswith(("management.", "prometheus.")) else key.split(".")[-1]
            values[key] = (f"--{flag.replace('.', '-').replace('_', '-')}", value)
    for key, (source, value) in values.items():
        attribute, check = KEYS[key]
        try:
            setattr(settings, attribute, check(key, value))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from {source})") from None
    settings.data_dir = settings.data_dir.expanduser()
    _check_together(settings, values)
    return settings


def _check_together(settings: Settings, values: dict[str, tuple[str, Any]]) -> None:
    """What one key cannot say alone: files a TLS listener needs, HTTPS needs both files."""

    def source(key: str) -> str:
        return values[key][0] if key in values else f"'{key}'"

    if settings.tls_port:
        if settings.tls_certfile is None:
            raise ConfigError(
                f"'tls.certfile' must be set for a TLS listener (port from {source('tls.port')})"
            )
        if settings.tls_verify == "verify_peer" and settings.tls_cacertfile is None:
            raise ConfigError(
                f"'tls.cacertfile' must be set when 'tls.verify' is verify_peer "
                f"({source('tls.verify')})"
            )
        if settings.port and settings.port == settings.tls_port:
            raise ConfigError(f"'tls.port' and 'amqp.port' are both {settings.port}")
    if (settings.management_certfile is None) != (settings.management_keyfile is None):
        raise ConfigError("'management.certfile' and 'management.keyfile' must be set together")


def environment() -> Mapping[str, str]:
    return os.environ
