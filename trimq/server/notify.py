"""systemd's sd_notify protocol spoken directly over $NOTIFY_SOCKET (no libsystemd needed).

READY=1 goes out only once recovery is done and the listeners are up; STATUS= lines say what
the broker is doing; STOPPING=1 starts a clean shutdown; WATCHDOG=1 pings every half of
$WATCHDOG_USEC when systemd's WatchdogSec= asks for them. Without $NOTIFY_SOCKET all of this
does nothing.
"""

from __future__ import annotations

import os
import socket

import structlog
import trio

log = structlog.get_logger("trimq.notify")


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        watchdog_pid = env.get("WATCHDOG_PID")
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = (
            int(usec) / 2_000_000
            if usec.isdigit()
            and int(usec) > 0
            and (watchdog_pid is None or watchdog_pid == str(os.getpid()))
            else 0.0
        )
        self._failed = False

    def notify(self, *lines: str) -> None:
        if not self.address:
            return
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:  # say it once, not on every watchdog ping
                log.warning("notify.failed", socket=self.address, error=str(exc))
                self._failed = True

    async def watchdog(self) -> None:
        if not self.watchdog_interval:
            return
        while True:
            self.notify("WATCHDOG=1")
            await trio.sleep(self.watchdog_interval)
