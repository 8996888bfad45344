"""Resource alarms: memory above its high watermark, free disk space below its limit.

As in RabbitMQ, an alarm blocks publishers, not consumers: a connection that has published
stops being read (once the frames already received are handled) and is told with
Connection.Blocked, while deliveries and acks on other connections go on draining the queues.
When every alarm has cleared, blocked connections are read again and told Connection.Unblocked.

Memory is the process's resident set size (what RabbitMQ measures on Linux too), read from
/proc every tick and after every few megabytes received, so a fast publisher overshoots the
watermark by little. CPython and malloc keep freed memory for reuse, so while the memory alarm
is on the monitor hands free heap pages back (malloc_trim) before it measures again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import trio

if TYPE_CHECKING:
    from trimq.broker.broker import BrokerConfig

log = structlog.get_logger("trimq.resources")

TICK = 0.1  # seconds between memory checks
DISK_EVERY = 10  # disk checks every this many ticks
CHECK_AFTER_BYTES = 4 * 1024 * 1024  # received by all connections since the last check
TRIM_INTERVAL = 1.0  # at most one malloc_trim a second while the memory alarm is on
REASONS = {"memory": "low on memory", "disk": "low on disk"}
REFUSAL_LOG_INTERVAL = 1.0  # at most one log line a second about refused handshakes


def resident_bytes() -> int | None:
    """This process's resident set size, or None where /proc is missing."""
    try:
        with Path("/proc/self/statm").open("rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def free_disk_bytes(path: Path) -> int | None:
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def handshake_limit(configured: int) -> int:
    """The limit on sockets not yet authenticated that is in force: the configured one (0: no
    limit), but at most half the process's open-file limit, so that they can never take
    every descriptor."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return configured
    if soft == resource.RLIM_INFINITY or not configured:
        return configured
    cap = max(1, soft // 2)
    if configured > cap:
        log.warning(
            "resources.handshake_max_lowered",
            configured=configured,
            limit=cap,
            open_files_limit=soft,
        )
        return cap
    return configured


def _malloc_trim() -> Callable[[], None]:
    """glibc's malloc_trim(0), which returns free heap pages to the system; a no-op elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        libc_trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        libc_trim = None

    def trim() -> None:
        if libc_trim is not None:
            libc_trim(0)

    return trim


class Resources:
    """The broker's alarms and the limits that raise them; `run` is the monitoring task."""

    def __init__(
        self,
        memory_high_watermark: float = 0.4,
        memory_high_watermark_absolute: int = 0,
        disk_free_limit: int = 50_000_000,
        data_dir: Path | None = None,
        handshake_max: int = 0,
        *,
        measure_memory: Callable[[], int | None] = resident_bytes,
        measure_disk: Callable[[Path], int | None] = free_disk_bytes,
    ) -> None:
        self.memory_high_watermark = memory_high_watermark
        self.memory_high_watermark_absolute = memory_high_watermark_absolute
        self.disk_free_limit = disk_free_limit
        self.data_dir = data_dir
        self._measure_memory = measure_memory
        self._measure_disk = measure_disk
        self._trim = _malloc_trim()
        self._last_trim = 0.0
        self.alarms: set[str] = set()
        self.connections = 0  # open (past the handshake), for the connection limit
        self.handshake_max = handshake_max  # sockets not yet authenticated, at most (0: any)
        self.handshakes = 0  # sockets not yet authenticated
        self._refused_handshakes = 0  # since the last log line about them
        self._last_refusal_log = -REFUSAL_LOG_INTERVAL
        self.memory_used: int | None = None
        self.paging_failed = False  # a page write failed (trimq/server/pager.py): disk alarm
        self.disk_free: int | None = None
        self._changed = trio.Event()
        self._received = 0

    @classmethod
    def for_broker(cls, config: BrokerConfig, data_dir: Path | None) -> Resources:
        return cls(
            config.memory_high_watermark,
            config.memory_high_watermark_absolute,
            config.disk_free_limit,
            data_dir,
            handshake_limit(config.handshake_max),
        )

    @property
    def memory_limit(self) -> int:
        if self.memory_high_watermark_absolute:
            return self.memory_high_watermark_absolute
        return int(total_memory() * self.memory_high_watermark)

    @property
    def reason(self) -> str:
        """Connection.Blocked's reason, RabbitMQ's words."""
        return " & ".join(REASONS[a] for a in sorted(self.alarms))

    def _set(self, alarm: str, on: bool) -> None:
        if on == (alarm in self.alarms):
            return
        if on:
            self.alarms.add(alarm)
            log.warning(
                "resources.alarm_set",
                alarm=alarm,
                memory_used=self.memory_used,
                memory_limit=self.memory_limit,
                disk_free=self.disk_free,
                disk_free_limit=self.disk_free_limit,
            )
        else:
            self.alarms.discard(alarm)
            log.info(
                "resources.alarm_cleared",
                alarm=alarm,
                memory_used=self.memory_used,
                disk_free=self.disk_free,
            )
        self._changed.set()
        self._changed = trio.Event()

    def check_memory(self) -> None:
        used = self._measure_memory()
        if used is None:
            return
        if used >= self.memory_limit and "memory" in self.alarms:
            now = time.monotonic()
            if now - self._last_trim >= TRIM_INTERVAL:  # freed memory may still be held
                self._last_trim = now
                self._trim()
                used = self._measure_memory() or used
        self.memory_used = used
        self._set("memory", used >= self.memory_limit)

    def trim(self) -> None:
        """Hand free heap pages back to the system (malloc_trim; safe in a worker thread):
        after paging freed many bodies, so the RSS the alarm compares shows it."""
        self._trim()

    def check_disk(self) -> None:
        if self.data_dir is None:
            return
        free = self._measure_disk(self.data_dir)
        if free is None:
            return
        self.disk_free = free
        self._set("disk", free < self.disk_free_limit or self.paging_failed)

    def set_paging_failed(self, failed: bool) -> None:
        """A page write failed (a full disk: publishers must wait), or one succeeded again."""
        self.paging_failed = failed
        low = self.disk_free is not None and self.disk_free < self.disk_free_limit
        self._set("disk", failed or low)

    def start_handshake(self) -> bool:
        """Count a new socket until it authenticates; False (close it at once) when as many
        as handshake_max are already waiting, logged at most once a second."""
        if self.handshake_max and self.handshakes >= self.handshake_max:
            self._refused_handshakes += 1
            now = time.monotonic()
            if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL:
                log.warning(
                    "connection.handshake_limit_reached",
                    limit=self.handshake_max,
                    refused=self._refused_handshakes,
                )
                self._last_refusal_log = now
                self._refused_handshakes = 0
            return False
        self.handshakes += 1
        return True

    def end_handshake(self) -> None:
        self.handshakes -= 1

    def received(self, size: int) -> None:
        """A connection read `size` bytes: check memory now and then between ticks."""
        self._received += size
        if self._received >= CHECK_AFTER_BYTES:
            self._received = 0
            self.check_memory()

    async def wait_clear(self) -> None:
        """Until no alarm is on."""
        while self.alarms:
            await self._changed.wait()

    async def run(self) -> None:
        ticks = 0
        while True:
            self.check_memory()
            if ticks % DISK_EVERY == 0:
                self.check_disk()
            ticks += 1
            await trio.sleep(TICK)

    def status(self) -> dict[str, object]:
        """For `trimqctl status`: the alarms, memory and free disk space."""
        return {
            "alarms": sorted(self.alarms),
            "memory": {
                "used": self.memory_used,
                "limit": self.memory_limit,
                "watermark": self.memory_high_watermark,
                "watermark_absolute": self.memory_high_watermark_absolute,
            },
            "disk": {"free": self.disk_free, "limit": self.disk_free_limit},
        }

    def set_memory_high_watermark(self, fraction: float = 0.0, absolute: int = 0) -> None:
        """An operator's change (`trimqctl set_vm_memory_high_watermark`), until restart."""
        if absolute:
            self.memory_high_watermark_absolute = absolute
        else:
            self.memory_high_watermark = fraction
            self.memory_high_watermark_absolute = 0
        self.check_memory()

    def set_disk_free_limit(self, limit: int) -> None:
        self.disk_free_limit = limit
        self.check_disk()
