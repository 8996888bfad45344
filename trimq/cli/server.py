"""`trimq-server`: run the broker in the foreground."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from functools import partial
from pathlib import Path

import structlog
import trio

from storage import StorageError
from trimq import __version__
from trimq.broker.broker import BrokerConfig
from trimq.server.app import recover, serve

DEFAULT_DATA_DIR = Path(os.environ.get("TRIMQ_DATA_DIR", "~/.local/share/trimq")).expanduser()


def configure_logging(level: str) -> None:
    """structlog: coloured console lines on a terminal, JSON lines otherwise (to stderr)."""
    processors: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if sys.stderr.isatty():
        processors.append(structlog.dev.ConsoleRenderer())
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
    parser = argparse.ArgumentParser(prog="trimq-server", description=__doc__)
    parser.add_argument("--host", default=None,
                        help="address to listen on (default: every interface, IPv4 and IPv6)")
    parser.add_argument("--port", type=int, default=5672,
                        help="AMQP port (0: any free port, printed on start)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"data directory (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error", "critical"])
    parser.add_argument("--wal-segment-size", type=int, default=64 * 2**20,
                        help="bytes per write-ahead log segment (default 64 MiB)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="never fsync the write-ahead log (fast, loses data on power loss)")
    parser.add_argument("--wal-compaction-interval", type=float, default=5.0,
                        help="seconds between checks whether the log needs compacting")
    parser.add_argument("--handshake-timeout", type=float, default=10.0,
                        help="seconds a client has to complete the AMQP handshake")
    parser.add_argument("--version", action="version", version=f"trimq {__version__}")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    config = BrokerConfig(handshake_timeout=args.handshake_timeout)
    broker, wal = recover(config, args.data_dir, args.wal_segment_size, not args.no_fsync)
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(
            partial(serve, broker, args.host, args.port, wal=wal, handle_signals=True,
                    compaction_interval=args.wal_compaction_interval)
        )
        for host, port in addresses:
            print(f"trimq {__version__} listening on {host}:{port}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        trio.run(_run, args)
    except StorageError as exc:
        print(f"trimq-server: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"trimq-server: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
