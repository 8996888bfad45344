"""serve() cancelled by its caller (not through its own stop path) still closes the log:
the write-ahead log's lock is released and a checkpoint written, so the same process can open
the data directory again. In-process, as an embedding program or a test runs the broker."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
import trio

from trimq.broker.broker import BrokerConfig
from trimq.server.app import recover, serve

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TRIMQ_TEST_URL")),
    reason="trimq-only: runs the broker in-process on its own log",
)


async def test_cancelled_serve_closes_the_log_with_a_checkpoint(tmp_path: Path) -> None:
    broker, wal = recover(BrokerConfig(), tmp_path, 1 << 20, True)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, broker, "127.0.0.1", 0, wal=wal))
        broker.add_vhost("kept")
        appended = wal.last_lsn
        nursery.cancel_scope.cancel()
    assert appended > 0

    again, wal2 = recover(BrokerConfig(), tmp_path, 1 << 20, True)  # WALLocked if still held
    try:
        assert "kept" in again.vhosts
        assert wal2.checkpoint_lsn == appended
    finally:
        await wal2.close()
