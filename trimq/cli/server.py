"""`trimq-server`: run the broker in the foreground, or detached (-detached) with a pid file.

Settings come from a TOML file, the environment and these flags (trimq/cli/config.py). Exit
status: 0 after a clean stop, 1 when the broker cannot start (data directory locked, corrupt
log, address in use), 78 for an invalid configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import trio

from storage import StorageError
from storage.fsutil import PRIVATE_UMASK
from trimq import __version__
from trimq.broker.broker import BrokerConfig
from trimq.cli import config
from trimq.cli.daemon import Daemon, daemonize
from trimq.server.app import Service, recover, serve, tune_gc
from trimq.server.datadir import exposure_warning
from trimq.server.notify import Notifier
from trimq.server.state import ServerState
from trimq.server.tls import TLSConfig, TLSConfigError, TLSContexts, build_context

DEFAULT_DATA_DIR = Path(os.environ.get("TRIMQ_DATA_DIR", str(config.DEFAULT_DATA_DIR))).expanduser()
EX_CONFIG = 78
PID_FILE = "trimq.pid"
LOG_FILE = "trimq.log"


def configure_logging(level: str, fmt: str = "auto") -> None:
    """structlog: coloured console lines on a terminal, JSON lines otherwise (to stderr)."""
    processors: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "console" or (fmt == "auto" and sys.stderr.isatty()):
        # A plain traceback: richer formatters print local variables, which may hold a
        # frame's octets (a password, a message body).
        processors.append(
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        )
    else:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trimq-server", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-detached",
        "--detached",
        action="store_true",
        help="run in the background, with a pid file in the data directory",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"TOML configuration file (default: DATA_DIR/trimq.toml, then {config.SYSTEM_CONFIG})",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to listen on (default: every interface, IPv4 and IPv6)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="AMQP port (default 5672; 0: any free port, printed on start)",
    )
    parser.add_argument(
        "--data-dir", default=None, help=f"data directory (default {config.DEFAULT_DATA_DIR})"
    )
    parser.add_argument("--log-level", default=None, choices=config.LOG_LEVELS)
    parser.add_argument("--log-format", default=None, choices=["auto", "console", "json"])
    parser.add_argument(
        "--wal-segment-size",
        type=int,
        default=None,
        help="bytes per write-ahead log segment (default 64 MiB)",
    )
    parser.add_argument(
        "--no-fsync",
        action="store_const",
        const=False,
        default=None,
        dest="wal_fsync",
        help="never fsync the write-ahead log (fast, loses data on power loss)",
    )
    parser.add_argument(
        "--wal-compaction-interval",
        type=float,
        default=None,
        help="seconds between checks whether the log needs compacting",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=None,
        help="seconds a client has to complete the AMQP handshake",
    )
    parser.add_argument(
        "--management-host",
        default=None,
        help="address the management HTTP API listens on (default: every interface)",
    )
    parser.add_argument(
        "--management-port",
        type=int,
        default=None,
        help="management HTTP API port (default 15672; 0: not served)",
    )
    parser.add_argument(
        "--no-management",
        action="store_const",
        const=False,
        default=None,
        dest="management_enabled",
        help="do not serve the management HTTP API",
    )
    parser.add_argument(
        "--prometheus-host",
        default=None,
        help="address the Prometheus metrics listen on (default: every interface)",
    )
    parser.add_argument(
        "--prometheus-port",
        type=int,
        default=None,
        help="Prometheus metrics port (default 15692; 0: not served)",
    )
    parser.add_argument(
        "--no-prometheus",
        action="store_const",
        const=False,
        default=None,
        dest="prometheus_enabled",
        help="do not serve the Prometheus metrics",
    )
    parser.add_argument("--version", action="version", version=f"trimq {__version__}")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> config.Settings:
    overrides: dict[str, Any] = {
        "data_dir": args.data_dir,
        "amqp.host": args.host,
        "amqp.port": args.port,
        "log.level": args.log_level,
        "log.format": args.log_format,
        "wal.segment_size": args.wal_segment_size,
        "wal.fsync": args.wal_fsync,
        "wal.compaction_interval": args.wal_compaction_interval,
        "amqp.handshake_timeout": args.handshake_timeout,
        "management.host": args.management_host,
        "management.port": args.management_port,
        "management.enabled": args.management_enabled,
        "prometheus.host": args.prometheus_host,
        "prometheus.port": args.prometheus_port,
        "prometheus.enabled": args.prometheus_enabled,
    }
    return config.load(args.config, config.environment(), overrides)


def broker_config(settings: config.Settings) -> BrokerConfig:
    return BrokerConfig(
        default_user=settings.default_user,
        default_pass=settings.default_pass,
        default_vhost=settings.default_vhost,
        loopback_users=list(settings.loopback_users),
        channel_max=settings.channel_max,
        frame_max=settings.frame_max,
        heartbeat=settings.heartbeat,
        handshake_timeout=settings.handshake_timeout,
        max_message_size=settings.max_message_size,
        connection_max=settings.connection_max,
        handshake_max=settings.handshake_max,
        channel_unacked_max=settings.channel_unacked_max,
        connection_output_buffer=settings.connection_output_buffer,
        consumer_timeout=settings.consumer_timeout,
        memory_high_watermark=settings.memory_high_watermark,
        memory_high_watermark_absolute=settings.memory_high_watermark_absolute,
        disk_free_limit=settings.disk_free_limit,
        paging_enabled=settings.paging_enabled,
        paging_ratio=settings.paging_ratio,
        paging_budget=settings.paging_budget,
        paging_head_messages=settings.paging_head_messages,
        paging_head_bytes=settings.paging_head_bytes,
        paging_run_bytes=settings.paging_run_bytes,
        auth_mechanisms=list(settings.auth_mechanisms),
        ssl_cert_login_from=settings.ssl_cert_login_from,
    )


def tls_config(settings: config.Settings) -> TLSConfig:
    return TLSConfig(
        port=settings.tls_port,
        certfile=settings.tls_certfile,
        keyfile=settings.tls_keyfile,
        cacertfile=settings.tls_cacertfile,
        password=settings.tls_password,
        verify=settings.tls_verify,
        fail_if_no_peer_cert=settings.tls_fail_if_no_peer_cert,
        versions=list(settings.tls_versions),
        ciphers=settings.tls_ciphers,
    )


def tls_context(settings: config.Settings) -> ssl.SSLContext | None:
    """The AMQPS listener's context, built before the start so that a bad file is a
    configuration error (and the management API's HTTPS files are checked too)."""
    if settings.serves_management and settings.management_certfile is not None:
        check = TLSConfig(
            certfile=settings.management_certfile, keyfile=settings.management_keyfile
        )
        try:
            build_context(check)
        except TLSConfigError as exc:
            raise config.ConfigError(f"management HTTPS: {exc}") from None
    if not settings.tls_port:
        return None
    try:
        return build_context(tls_config(settings))
    except TLSConfigError as exc:
        raise config.ConfigError(f"TLS: {exc}") from None


async def _run(
    settings: config.Settings, daemon: Daemon | None, context: ssl.SSLContext | None = None
) -> None:
    warning = exposure_warning(settings.data_dir)
    if warning is not None:
        structlog.get_logger("trimq.server").warning(
            "data_dir.exposed", path=str(settings.data_dir), message=warning
        )
    notifier = Notifier()
    notifier.notify(f"STATUS=recovering {settings.data_dir}")
    states: list[ServerState] = []
    services: list[Service] = [partial(_keep_state, states)]
    http: list[tuple[str, str, int]] = []
    if settings.serves_management:
        # imported only when used (the HTTP stack costs start-up time), and before recovery:
        # its gc.freeze() then keeps the stack's ~12,000 objects out of the collector's scans
        from trimq.management.app import serve_management  # noqa: PLC0415

        services.append(
            partial(
                _announced,
                http,
                partial(
                    serve_management,
                    host=settings.management_host,
                    port=settings.management_port,
                    certfile=settings.management_certfile,
                    keyfile=settings.management_keyfile,
                ),
            )
        )
    if settings.serves_prometheus:
        from trimq.management.prometheus_app import serve_prometheus  # noqa: PLC0415

        services.append(
            partial(
                _announced,
                http,
                partial(
                    serve_prometheus, host=settings.prometheus_host, port=settings.prometheus_port
                ),
            )
        )
    broker, wal = recover(
        broker_config(settings), settings.data_dir, settings.wal_segment_size, settings.wal_fsync
    )
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(
            partial(
                serve,
                broker,
                settings.host,
                settings.port if settings.plain_listener else None,
                tls=TLSContexts(tls_config(settings), context) if context else None,
                wal=wal,
                data_dir=settings.data_dir,
                handle_signals=True,
                notifier=notifier,
                compaction_interval=settings.wal_compaction_interval,
                services=services,
            )
        )
        # the HTTP listeners first: a reader waiting for "trimq V listening on" has them all
        for protocol, host, port in http:
            shown = f"[{host}]" if ":" in host else host
            scheme = "https" if protocol == "https" else "http"
            label = "management" if protocol in ("http", "https") else protocol.rpartition("/")[2]
            print(
                f"trimq {__version__} {label} listening on {scheme}://{shown}:{port}/", flush=True
            )
        for host, port in states[0].tls_listeners:
            shown = f"[{host}]" if ":" in host else host
            print(f"trimq {__version__} amqps listening on amqps://{shown}:{port}/", flush=True)
        for host, port in addresses:
            print(f"trimq {__version__} listening on {host}:{port}", flush=True)
        if daemon is not None:
            daemon.ready(addresses, states[0].tls_listeners)


async def _keep_state(
    out: list[ServerState],
    state: ServerState,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A service that only hands the server's state to _run (for the TLS listeners)."""
    out.append(state)
    task_status.started([])


async def _announced(
    out: list[tuple[str, str, int]],
    service: Service,
    state: ServerState,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `service`, adding the listeners it reports to `out` (printed once all listen)."""
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(service, state)
        out.extend(bound)
        task_status.started(bound)


def _startup_failure(exc: BaseException) -> BaseException | None:
    """The storage or OS error behind a failed start, looking inside exception groups
    (trio's nurseries wrap what their tasks raise)."""
    if isinstance(exc, (StorageError, OSError)):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _startup_failure(inner)
            if found is not None:
                return found
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = settings_from(args)
        context = tls_context(settings)
    except config.ConfigError as exc:
        print(f"trimq-server: invalid configuration: {exc}", file=sys.stderr)
        return EX_CONFIG
    # Every file and directory trimq-server creates is the owner's only (segments,
    # checkpoints, lock, pid and log files, torn-tail copies), whatever umask it inherits.
    os.umask(PRIVATE_UMASK)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        print(
            f"trimq-server: cannot create data directory {settings.data_dir}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    daemon = None
    if args.detached:
        daemon = daemonize(settings.data_dir / PID_FILE, settings.data_dir / LOG_FILE)
    configure_logging(settings.log_level, settings.log_format)
    tune_gc()
    code = 0
    try:
        trio.run(_run, settings, daemon, context)
    except (StorageError, OSError, BaseExceptionGroup) as exc:
        cause = _startup_failure(exc)
        if cause is None:
            raise
        print(f"trimq-server: {cause}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        pass
    if daemon is not None:
        daemon.finished(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
