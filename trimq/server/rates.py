"""Message counters as the server sees them: every live counter set, sampled every
SAMPLE_INTERVAL seconds so that `message_stats` can report RabbitMQ's `_details.rate` without
any per-message cost (one task, no thread), and the sums over a vhost or the whole broker,
which include the channels only the server knows. The same task notes which channels
delivered, for their idle_since."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import trio

from trimq.broker.stats import SAMPLE_INTERVAL, MessageStats, total, vhost_sum
from trimq.server.state import ServerState

if TYPE_CHECKING:
    from trimq.broker.vhost import VHost
    from trimq.server.channel import Channel

IDLE_AFTER = 1.0  # seconds without a frame before a channel counts as idle


def channels(state: ServerState) -> Iterator[Channel]:
    for connection in state.connections:
        yield from connection.channels.values()


def channel_stats(channel: Channel) -> MessageStats:
    """A channel's counters (with the publishes it received in confirm mode)."""
    stats = channel.stats
    stats.received_confirm = channel.confirm_seq
    return stats


def live_stats(state: ServerState) -> Iterator[MessageStats]:
    """Every counter set of a live object (what deleted ones counted is kept without rates:
    their rates end with them)."""
    for vhost in state.broker.vhosts.values():
        for queue in vhost.queues.values():
            yield queue.counters()
        for exchange in vhost.exchanges.values():
            yield exchange.stats
    for channel in channels(state):
        yield channel.stats


def vhost_stats(state: ServerState, vhost: VHost) -> MessageStats:
    """A vhost's message counters and rates."""
    return vhost_sum(
        vhost.stats,
        (q.stats for q in vhost.queues.values()),
        (x.stats for x in vhost.exchanges.values()),
        (channel_stats(c) for c in channels(state) if c.vhost is vhost),
    )


def overview_stats(state: ServerState) -> MessageStats:
    """The whole broker's message counters and rates (deleted vhosts included)."""
    broker = state.broker
    by_vhost: dict[int, list[MessageStats]] = {id(v): [] for v in broker.vhosts.values()}
    for channel in channels(state):
        by_vhost.setdefault(id(channel.vhost), []).append(channel_stats(channel))
    parts = [broker.totals.retired]
    for vhost in broker.vhosts.values():
        parts.append(
            vhost_sum(
                vhost.stats,
                (q.stats for q in vhost.queues.values()),
                (x.stats for x in vhost.exchanges.values()),
                by_vhost[id(vhost)],
            )
        )
    return total(parts)


def sample_all(state: ServerState, elapsed: float) -> None:
    """One sample of every live counter set (a function of its own, so that nothing of a
    closed channel or deleted queue stays referenced until the next sample)."""
    for stats in live_stats(state):  # no await: nothing changes meanwhile
        stats.sample(elapsed)


def sample_activity(state: ServerState, now: float) -> None:
    """A channel that delivered since the last sample was active now (deliveries only set
    a flag; frames in set the channel's time themselves)."""
    for channel in channels(state):
        if channel.delivered:
            channel.delivered = False
            channel.active_at = now


def idle_for(channel: Channel, now: float) -> float | None:
    """How long the channel has been idle (trio's clock), None while it is active: it handled
    a frame in the last IDLE_AFTER seconds or delivered since the last sample. RabbitMQ's
    channels likewise show idle_since once idle for a moment (when their process hibernates).
    """
    idle = now - channel.active_at
    return None if channel.delivered or idle < IDLE_AFTER else idle


async def sample_rates(state: ServerState, interval: float = SAMPLE_INTERVAL) -> None:
    """Sample every counter set each `interval`, dividing by the time that really passed."""
    last = trio.current_time()
    while True:
        await trio.sleep_until(last + interval)
        now = trio.current_time()
        sample_all(state, now - last)
        sample_activity(state, now)
        state.rate_samples += 1
        last = now
