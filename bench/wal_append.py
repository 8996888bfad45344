"""WAL throughput and recovery time: append N persistent 100-byte MESSAGE records to one
durable queue through the group committer, then reopen the log (full replay, and replay from
the checkpoint written on close).

    .venv/bin/python bench/wal_append.py [--count 1000000] [--no-fsync] [--dir DIR]

Appenders run as --publishers tasks that each wait for durability every --window records,
as publishers with confirms do.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import WAL, RecordType


async def append_all(
    directory: Path, count: int, publishers: int, window: int, fsync: bool
) -> tuple[float, int]:
    wal = WAL(directory, fsync=fsync)
    wal.open()
    body = b"x" * 100
    properties = b"\x10\x00\x02"  # delivery_mode=2, as pika encodes it
    next_id = iter(range(1, count + 1))
    per_task = count // publishers
    async with trio.open_nursery() as nursery:
        await nursery.start(wal.run_committer)
        wal.append(
            RecordType.DEFINE, {"kind": "queue", "key": ["/", "bench"], "value": {"durable": True}}
        )

        async def publisher() -> None:
            for done in range(1, per_task + 1):
                lsn = wal.append(
                    RecordType.MESSAGE,
                    {
                        "id": next(next_id),
                        "exchange": "",
                        "routing_key": "bench",
                        "properties": properties,
                        "body": body,
                        "queues": [["/", "bench"]],
                    },
                )
                if done % window == 0:
                    await wal.wait_durable(lsn)
            await wal.wait_durable(wal.last_lsn)

        started = time.perf_counter()
        async with trio.open_nursery() as group:
            for _ in range(publishers):
                group.start_soon(publisher)
        elapsed = time.perf_counter() - started
        batches = wal.stats()["commit_batches"]
        await wal.close(checkpoint=False)
    return elapsed, batches


async def reopen(directory: Path, checkpoint: bool) -> tuple[float, int, int]:
    started = time.perf_counter()
    wal = WAL(directory)
    state = wal.open()
    elapsed = time.perf_counter() - started
    messages = sum(len(q) for q in state.queues.values())
    closing = time.perf_counter()
    await wal.close(checkpoint=checkpoint)
    return elapsed, messages, int((time.perf_counter() - closing) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument(
        "--window",
        type=int,
        default=1000,
        help="records a publisher appends between durability waits",
    )
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--dir", type=Path, help="data directory (default: a temporary one)")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="trimq-wal-bench-"))
    try:
        elapsed, batches = trio.run(
            append_all, directory, args.count, args.publishers, args.window, not args.no_fsync
        )
        size = sum(p.stat().st_size for p in (directory / "wal").glob("*.seg"))
        print(
            f"append: {args.count} records in {elapsed:.2f} s = "
            f"{args.count / elapsed:,.0f} records/s, {batches} fsync batches, "
            f"{size / 2**20:.0f} MiB (fsync={'off' if args.no_fsync else 'on'})"
        )
        full, messages, ckpt_ms = trio.run(reopen, directory, True)
        print(
            f"replay: {messages} messages recovered in {full:.2f} s (full replay; "
            f"checkpoint written on close in {ckpt_ms} ms)"
        )
        fast, messages, _ = trio.run(reopen, directory, False)
        print(f"replay: {messages} messages recovered in {fast:.2f} s (from the checkpoint)")
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
