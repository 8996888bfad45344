"""The rate sampler: every SAMPLE_INTERVAL seconds each live counter set (vhosts, queues,
exchanges, channels) takes a sample, so `message_stats` can report RabbitMQ's
`_details.rate` without any per-message cost. One task, no thread."""

from __future__ import annotations

from collections.abc import Iterator

import trio

from trimq.broker.stats import SAMPLE_INTERVAL, MessageStats
from trimq.server.state import ServerState


def live_stats(state: ServerState) -> Iterator[MessageStats]:
    """Every counter set the server holds now."""
    yield state.broker.totals.retired
    for vhost in state.broker.vhosts.values():
        yield vhost.stats
        for queue in vhost.queues.values():
            yield queue.stats
        for exchange in vhost.exchanges.values():
            yield exchange.stats
    for connection in state.connections:
        for channel in connection.channels.values():
            yield channel.stats


async def sample_rates(state: ServerState, interval: float = SAMPLE_INTERVAL) -> None:
    """Sample every counter set each `interval`, dividing by the time that really passed."""
    last = trio.current_time()
    while True:
        await trio.sleep_until(last + interval)
        now = trio.current_time()
        elapsed, last = now - last, now
        for stats in live_stats(state):  # no await: nothing changes meanwhile
            stats.sample(elapsed)
