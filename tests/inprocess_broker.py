"""A broker in the test's own process (trio in a thread), for tests that make its disk fail
under it by monkeypatching storage or paging functions: a subprocess could not be patched."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pika
import trio
from ctl_helpers import control_reply

from trimq.broker.broker import BrokerConfig
from trimq.server.app import recover, serve


class BrokerThread:
    """`recover` + `serve` on 127.0.0.1 (a free port) in a daemon thread. `serve_options`
    go to serve() (compaction_interval=...); `data_dir` is also given to serve, so the
    control socket exists unless `control` is False."""

    def __init__(
        self,
        data_dir: Path,
        config: BrokerConfig | None = None,
        *,
        segment_size: int = 1 << 20,
        sync: bool = True,
        control: bool = True,
        **serve_options: Any,
    ) -> None:
        self.data_dir = data_dir
        self.config = config or BrokerConfig()
        self.segment_size = segment_size
        self.sync = sync
        self.serve_options = dict(serve_options)
        if control:
            self.serve_options["data_dir"] = data_dir
        self.port = 0
        self.ready = threading.Event()
        self.cancel: trio.CancelScope | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        broker, wal = recover(self.config, self.data_dir, self.segment_size, self.sync)
        self.token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self.cancel:
            async with trio.open_nursery() as nursery:
                addresses = await nursery.start(
                    lambda task_status: serve(
                        broker,
                        "127.0.0.1",
                        0,
                        wal=wal,
                        task_status=task_status,
                        **self.serve_options,
                    )
                )
                self.port = addresses[0][1]
                self.ready.set()

    def start(self) -> BrokerThread:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def connect(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port))

    def stop(self) -> None:
        """A clean stop (`trimqctl stop`): the log is flushed, checkpointed and unlocked."""
        assert control_reply(self.data_dir, "stop")["ok"]
        self.thread.join(10)
        assert not self.thread.is_alive()

    def cancel_now(self) -> None:
        """Cancel the server's task tree from outside (for a broker without a control
        socket, or one whose log has failed)."""
        assert self.token is not None and self.cancel is not None
        trio.from_thread.run_sync(self.cancel.cancel, trio_token=self.token)
        self.thread.join(10)
