"""The broker process: listeners, the connection tasks, and clean shutdown on a signal.

`serve()` reports its listeners through `task_status.started(...)`, so a caller (or a test) can
`await nursery.start(serve, ...)` and learn the ports it bound.
"""

from __future__ import annotations

import errno
import gc
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog
import trio

from storage import WAL, WALClosed, WALFailed
from storage.recovery import gc_paused
from trimq.broker.broker import Broker, BrokerConfig
from trimq.broker.journal import Journal
from trimq.broker.recovery import restore
from trimq.server.connection import ServerConnection
from trimq.server.consumer_timeout import watch_consumer_timeouts
from trimq.server.control import CONTROL_SOCKET, serve_control
from trimq.server.notify import Notifier
from trimq.server.pager import Pager
from trimq.server.rates import sample_rates
from trimq.server.resources import Resources
from trimq.server.state import ServerState, close_connections
from trimq.server.tls import TLSContexts

log = structlog.get_logger("trimq.server")

ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
COMPACTION_CHECK_INTERVAL = 5.0  # seconds between looks at the log's dead bytes
COMPACTION_RETRY_MAX = 600.0  # the longest pause before retrying a failed compaction


SHUTDOWN_TEXT = "broker forced connection closure with reason 'shutdown'"

# The cyclic collector's thresholds for the broker process. Messages form no reference cycles
# but each one allocates several objects, so with Python's default (a young collection every
# 700 allocations) messages in flight are scanned again and again, and queued ones are moved
# through every generation: ~10% of the CPU at 100k msg/s. Rarer young collections let most
# messages die before one; cycles (tasks, exceptions) are still collected within seconds.
GC_THRESHOLDS = (20_000, 10, 10)

# A task serving something more beside AMQP (the management HTTP API): started with the
# server's state once the AMQP listeners are open, it reports started with its listeners,
# [(protocol, host, port)], and is cancelled with the other tasks on shutdown. app.py only
# runs it: the layers above trimq/server (trimq/management) provide it, so nothing here
# imports them.
Service = Callable[..., Awaitable[None]]


def tune_gc() -> None:
    """Set the broker process's collector thresholds (see GC_THRESHOLDS)."""
    gc.set_threshold(*GC_THRESHOLDS)


def recover(
    config: BrokerConfig,
    data_dir: Path,
    segment_size: int,
    fsync: bool,
) -> tuple[Broker, WAL]:
    """Open the write-ahead log in `data_dir` and rebuild the broker from it."""
    started = time.monotonic()
    last_report = [started]

    def progress(records: int, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last_report[0] >= 3:
            last_report[0] = now
            log.info("wal.recovering", records=records, bytes_done=done, bytes_total=total)

    wal = WAL(data_dir, segment_size=segment_size, fsync=fsync)
    skipped: list[str] = []
    # Recovery builds millions of long-lived objects and no reference cycles: the cyclic
    # collector would only rescan the growing heap, again and again (it made restore() 2.5x
    # slower). Once they are built, gc.freeze() keeps them out of its sight for good.
    with gc_paused():
        state = wal.open(progress=progress)
        journal = Journal(wal.append, state.next_message_id, flush_soon=wal.flush_soon)
        wal.coalesce(journal.flush)
        broker = Broker(config, journal, bootstrap=False)
        queues, messages = restore(broker, state, skipped)
        gc.freeze()
    for reason in skipped:
        log.warning("wal.definition_skipped", reason=reason)
    elapsed = time.monotonic() - started
    if state.broken_copy:
        log.warning(
            "wal.torn_tail",
            dropped_bytes=state.dropped_tail_bytes,
            dropped_records=state.dropped_tail_records,
            segment=state.torn_segment,
            offset=state.torn_offset,
            copy=state.broken_copy,
            message=f"cut a torn tail of {state.dropped_tail_bytes} bytes (at least "
            f"{state.dropped_tail_records} records, none of them confirmed) "
            f"from {state.torn_segment} at offset {state.torn_offset}; the "
            f"bytes are kept in {state.broken_copy}",
        )
    log.info(
        "wal.recovered",
        queues=queues,
        messages=messages,
        seconds=round(elapsed, 3),
        message=f"recovered {queues} queues, {messages} messages in {elapsed:.3f} s",
    )
    return broker, wal


async def open_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """Bind `host` (None: every interface, IPv4 and IPv6, as RabbitMQ) on `port`.

    With port 0 the first listener picks a free port and the others bind the same one.
    """
    if host not in (None, "", "*"):
        return await trio.open_tcp_listeners(port, host=host)
    listeners = await trio.open_tcp_listeners(port, host="0.0.0.0")
    chosen = listeners[0].socket.getsockname()[1]
    if socket.has_ipv6:
        try:
            listeners += await trio.open_tcp_listeners(chosen, host="::")
        except OSError as exc:
            log.info("server.ipv6_unavailable", error=str(exc))
    return listeners


async def _handle(state: ServerState, stream: trio.SocketStream, tls: bool = False) -> None:
    try:
        peer = stream.socket.getpeername()[:2]
        local = stream.socket.getsockname()[:2]
        stream.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        await trio.aclose_forcefully(stream)
        return
    served: trio.abc.Stream = stream
    if tls and state.tls is not None:
        # the context of the moment: a reload changes new connections only
        served = trio.SSLStream(stream, state.tls.context, server_side=True)
    connection = ServerConnection(
        served, state.broker, (peer[0], peer[1]), state.wal, (local[0], local[1]), state.resources
    )
    state.connections.add(connection)
    try:
        await connection.serve()
    except Exception:  # a bug in one connection must never take the broker down
        log.exception("connection.crashed", peer=connection.peer)
    finally:
        state.connections.discard(connection)


async def _accept_loop(
    state: ServerState, listener: trio.SocketListener, nursery: trio.Nursery, tls: bool = False
) -> None:
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno in ACCEPT_RETRY_ERRNOS:
                log.error("server.accept_failed", error=str(exc))
                await trio.sleep(0.1)
                continue
            raise
        nursery.start_soon(_handle, state, stream, tls)


async def _stopper(state: ServerState, nursery: trio.Nursery) -> None:
    """Waits for a stop request, then closes every client and ends the serving nursery."""
    await state.stop_requested.wait()
    state.stopping = True
    state.notifier.notify("STOPPING=1", "STATUS=stopping")
    log.info("server.stopping", connections=len(state.connections))
    await close_connections(list(state.connections), SHUTDOWN_TEXT)
    nursery.cancel_scope.cancel()


def compaction_due(stats: dict[str, int], segment_size: int) -> bool:
    """Compact once the dead bytes outweigh the live ones and fill at least a segment."""
    dead = stats["dead_bytes"] - stats["active_segment_bytes"]
    return stats["segments"] > 1 and dead >= max(segment_size, stats["live_bytes"])


def compaction_pause(interval: float, failures: int) -> float:
    """Seconds until the next look: the check interval, doubled for each failure in a row
    (up to COMPACTION_RETRY_MAX, or the interval itself if that is longer)."""
    if not failures:
        return interval
    return min(interval * 2.0**failures, max(interval, COMPACTION_RETRY_MAX))


async def _compactor(wal: WAL, segment_size: int, interval: float) -> None:
    """Online compaction with the same code as `trimq-wal compact`, when enough is dead.

    A compaction that fails (a full disk, an I/O error, a damaged sealed segment) leaves the
    log consistent and usable (WAL.compact_online): it is logged and tried again later, after
    a pause that doubles with each failure in a row, up to COMPACTION_RETRY_MAX. Only a
    failed log (nothing can be written any more) ends the task."""
    failures = 0
    while True:
        await trio.sleep(compaction_pause(interval, failures))
        stats = wal.stats()
        if not compaction_due(stats, segment_size):
            continue
        started = time.monotonic()
        try:
            result = await wal.compact_online()
        except WALFailed as exc:
            log.error("wal.compaction_failed", error=str(exc), retry=False)
            return
        except WALClosed:
            return  # shutting down
        except Exception as exc:  # the broker goes on serving whatever went wrong here
            failures += 1
            log.error(
                "wal.compaction_failed",
                error=str(exc),
                error_type=type(exc).__name__,
                failures=failures,
                retry_in=compaction_pause(interval, failures),
            )
            continue
        failures = 0
        after = wal.stats()
        log.info(
            "wal.compacted",
            seconds=round(time.monotonic() - started, 3),
            bytes_before=stats["total_bytes"],
            bytes_after=after["total_bytes"],
            deleted=len(result.deleted),
            rewritten=len(result.rewritten),
        )


async def _timer_task(broker: Broker) -> None:
    """Fires the model's deadlines (message TTLs, x-expires) on time: sleeps until the next
    one, or until a queue schedules an earlier one."""
    timers = broker.timers
    while True:
        wake = trio.Event()
        timers.on_earlier = wake.set
        deadline = timers.next_deadline()
        if deadline is None:
            await wake.wait()
        else:
            with trio.move_on_at(trio.current_time() + deadline - timers.clock()):
                await wake.wait()
        for error in timers.run_due():
            log.error("timer.failed", error=str(error))


async def _signal_watcher(state: ServerState) -> None:
    """SIGINT and SIGTERM stop the server; SIGHUP re-reads the TLS certificates."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("server.signal", signal=signal.Signals(signum).name)
            if signum == signal.SIGHUP:
                if state.tls is not None:
                    state.tls.reload()
                continue
            state.request_stop()


async def serve(
    broker: Broker,
    host: str | None = None,
    port: int | None = 5672,
    *,
    tls: TLSContexts | None = None,
    wal: WAL | None = None,
    data_dir: Path | None = None,
    compaction_interval: float = COMPACTION_CHECK_INTERVAL,
    handle_signals: bool = False,
    notifier: Notifier | None = None,
    services: Sequence[Service] = (),
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `broker` (recovered from `wal`, when it keeps durable state) until cancelled,
    signalled or asked to stop over the control socket in `data_dir`; the log is flushed and
    checkpointed on the way out. Each of `services` is started as
    `await nursery.start(service, state)` after the AMQP listeners. `port` None: no plain
    listener; with `tls`, an AMQPS listener on its port too (0: any free port), reported
    in `state.tls_listeners`."""
    state = ServerState(
        broker,
        wal,
        data_dir=data_dir,
        notifier=notifier or Notifier(),
        resources=Resources.for_broker(broker.config, data_dir),
        tls=tls,
    )
    wal_closing = False
    try:
        async with trio.open_nursery() as outer:
            if wal is not None:
                await outer.start(wal.run_committer)
                outer.start_soon(_compactor, wal, wal.segment_size, compaction_interval)
            listeners = await open_listeners(host, port) if port is not None else []
            state.listeners = [
                (h, p) for h, p in (lst.socket.getsockname()[:2] for lst in listeners)
            ]
            tls_listeners = await open_listeners(host, tls.config.port) if tls else []
            state.tls_listeners = [
                (h, p) for h, p in (lst.socket.getsockname()[:2] for lst in tls_listeners)
            ]
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(_accept_loop, state, listener, nursery)
                for listener in tls_listeners:
                    nursery.start_soon(_accept_loop, state, listener, nursery, True)
                if data_dir is not None:
                    await nursery.start(serve_control, state, data_dir / CONTROL_SOCKET)
                if handle_signals:
                    nursery.start_soon(_signal_watcher, state)
                nursery.start_soon(_stopper, state, nursery)
                nursery.start_soon(_timer_task, broker)
                nursery.start_soon(sample_rates, state)
                if broker.config.consumer_timeout:
                    nursery.start_soon(
                        watch_consumer_timeouts, state.connections, broker.config.consumer_timeout
                    )
                nursery.start_soon(state.resources.run)
                if data_dir is not None and broker.config.paging_enabled:
                    nursery.start_soon(Pager(broker, state.resources, data_dir).run)
                nursery.start_soon(state.notifier.watchdog)
                for service in services:
                    state.service_listeners += await nursery.start(service, state)
                log.info(
                    "server.listening",
                    addresses=[f"{h}:{p}" for h, p in state.listeners],
                    tls_addresses=[f"{h}:{p}" for h, p in state.tls_listeners],
                )
                state.notifier.notify(
                    "READY=1",
                    "STATUS=accepting AMQP connections on "
                    + ", ".join(
                        [f"{h}:{p}" for h, p in state.listeners]
                        + [f"{h}:{p} (TLS)" for h, p in state.tls_listeners]
                    ),
                )
                task_status.started(state.listeners)
            if wal is not None:
                wal_closing = True
                with trio.CancelScope(shield=True):
                    await wal.close(checkpoint=True)
                log.info("wal.closed")
            outer.cancel_scope.cancel()
    finally:
        if wal is not None and not wal_closing:
            await _close_abandoned(wal)
        log.info("server.stopped")


async def _close_abandoned(wal: WAL) -> None:
    """Close the log when serve() ends another way than its stop path (cancelled by its
    caller, or a task failed): otherwise its lock would stay held for the rest of the process.
    What goes wrong here is logged, so the reason serve() ended is what propagates."""
    with trio.CancelScope(shield=True):
        try:
            await wal.close(checkpoint=True)
        except Exception as exc:
            log.error("wal.close_failed", error=str(exc), error_type=type(exc).__name__)
            return
    log.info("wal.closed")
