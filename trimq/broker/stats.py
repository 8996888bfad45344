"""Message counters per queue, exchange and channel, the broker's totals, and their rates:
what the management API's `message_stats` and the Prometheus metrics report.

Counting costs an integer increment per event (per batch where the code already batches:
dispatch, acks), and each event is counted on as few objects as possible: a publish on its
channel, exchange and queues, a delivery on its queue (per batch) and channel. A vhost's
counts are the sum of its parts at read time (`vhost_sum`): the publishing side from its
channels, the delivering side from its queues, the routed copies from its exchanges, plus
what the deleted or closed ones counted (`VHost.stats`, added to as they go).

Rates are not kept per event either: a server task calls `sample` on every live counter set
every `SAMPLE_INTERVAL` seconds, as RabbitMQ samples its statistics, and a rate is the change
over the last interval. A counter set that never counted anything keeps no sample at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trimq.broker.vhost import VHost

SAMPLE_INTERVAL = 5.0  # seconds, as RabbitMQ's collect_statistics_interval

# Every counter, in the order `counts()` returns them.
FIELDS = (
    "publish",  # messages published (on a channel or vhost), or enqueued (on a queue)
    "publish_in",  # messages published into an exchange
    "publish_out",  # copies routed out of an exchange (in a vhost) to queues
    "confirm",  # publisher confirms (Basic.Ack) sent
    "received_confirm",  # publishes received on a channel in confirm mode
    "deliver",  # deliveries to consumers with acks
    "deliver_no_ack",  # deliveries to consumers without acks
    "get",  # Basic.Get answered with a message, acks required
    "get_no_ack",  # Basic.Get answered with a message, no ack
    "get_empty",  # Basic.Get answered with Get-Empty
    "ack",  # deliveries acknowledged
    "redeliver",  # deliveries (and gets) of messages flagged redelivered
    "return_unroutable",  # mandatory publishes routed nowhere (returned)
    "drop_unroutable",  # other publishes routed nowhere (dropped)
)

# RabbitMQ reports counters in groups, a group once something in it was counted: the
# publishing side and the delivering side. deliver_get is the sum of the four deliveries.
PUBLISH_GROUP = ("publish", "confirm", "return_unroutable", "drop_unroutable")
DELIVER_GROUP = (
    "get",
    "get_no_ack",
    "deliver",
    "deliver_no_ack",
    "redeliver",
    "ack",
    "deliver_get",
    "get_empty",
)
_DELIVER_PARTS = ("deliver", "deliver_no_ack", "get", "get_no_ack")

# Which counters of a vhost come from which of its parts.
CHANNEL_SIDE = ("publish", "confirm", "received_confirm", "return_unroutable", "drop_unroutable")
QUEUE_SIDE = ("deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty", "ack", "redeliver")
EXCHANGE_SIDE = ("publish_out",)


class MessageStats:
    """One object's counters (plain attributes: `stats.publish += 1`), and the rates of its
    last sampling interval."""

    __slots__ = (*FIELDS, "_last", "_rates")

    def __init__(self) -> None:
        for name in FIELDS:
            setattr(self, name, 0)
        self._last: tuple[int, ...] | None = None  # counts at the last sample
        self._rates: tuple[float, ...] | None = None  # per second over the last interval

    # The counters, declared for type checkers (the slots hold them).
    publish: int
    publish_in: int
    publish_out: int
    confirm: int
    received_confirm: int
    deliver: int
    deliver_no_ack: int
    get: int
    get_no_ack: int
    get_empty: int
    ack: int
    redeliver: int
    return_unroutable: int
    drop_unroutable: int

    def counts(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in FIELDS)

    def sample(self, interval: float) -> None:
        """Take this interval's sample: rates are the change since the previous one (from
        zero for an object sampled the first time: what it counted, it counted since)."""
        last = self._last
        if last is None:
            if not any(getattr(self, name) for name in FIELDS):
                return  # nothing ever counted: nothing kept
            last = (0,) * len(FIELDS)
        now = self.counts()
        if now == last:
            self._rates = None
        else:
            self._rates = tuple((new - old) / interval for new, old in zip(now, last, strict=True))
        self._last = now

    def value(self, name: str) -> int:
        if name == "deliver_get":
            return sum(getattr(self, part) for part in _DELIVER_PARTS)
        return int(getattr(self, name))

    def rate(self, name: str) -> float:
        rates = self._rates
        if rates is None:
            return 0.0
        if name == "deliver_get":
            return sum(rates[FIELDS.index(part)] for part in _DELIVER_PARTS)
        return rates[FIELDS.index(name)]

    def add(self, other: MessageStats, names: tuple[str, ...] = FIELDS) -> None:
        """Add another object's counts (of `names`) and their rates to these: a sum, or the
        history of a deleted object kept by its vhost."""
        for name in names:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        theirs = other._rates
        if theirs is not None:
            rates = list(self._rates or (0.0,) * len(FIELDS))
            for name in names:
                index = FIELDS.index(name)
                rates[index] += theirs[index]
            self._rates = tuple(rates)


def total(stats: Iterable[MessageStats]) -> MessageStats:
    """The sum of several objects' counters and rates."""
    result = MessageStats()
    for item in stats:
        result.add(item)
    return result


class Totals:
    """The broker's own counters, as rabbitmq_prometheus reports them."""

    __slots__ = (
        "auth_failed",
        "auth_succeeded",
        "channels_closed",
        "channels_opened",
        "closed_channels",
        "connections_closed",
        "connections_opened",
        "direct",
        "queues_created",
        "queues_declared",
        "queues_deleted",
        "retired",
    )

    def __init__(self) -> None:
        self.connections_opened = 0
        self.connections_closed = 0
        self.channels_opened = 0
        self.channels_closed = 0
        self.queues_declared = 0  # successful non-passive Queue.Declare, new or not
        self.queues_created = 0
        self.queues_deleted = 0
        self.retired = MessageStats()  # the counts of deleted vhosts
        # Every counter of every closed channel, whatever its vhost, and what the management
        # API's gets counted (RabbitMQ makes them on a channel of its own): with the open
        # channels' counters, the broker's message counters without a walk over its queues
        # (see `channel_totals`).
        self.closed_channels = MessageStats()
        self.direct = MessageStats()
        # Logins by protocol ("amqp091", "http"), as rabbitmq_prometheus's auth_attempts_*.
        self.auth_succeeded: dict[str, int] = {}
        self.auth_failed: dict[str, int] = {}

    def count_login(self, protocol: str, succeeded: bool) -> None:
        """One authentication attempt (with a user name) over `protocol`."""
        counts = self.auth_succeeded if succeeded else self.auth_failed
        counts[protocol] = counts.get(protocol, 0) + 1
        other = self.auth_failed if succeeded else self.auth_succeeded
        other.setdefault(protocol, 0)


def count_unroutable(channel: MessageStats, mandatory: bool) -> None:
    """A published message that reached no queue: returned if mandatory, else dropped."""
    if mandatory:
        channel.return_unroutable += 1
    else:
        channel.drop_unroutable += 1


def retire_channel(
    totals: Totals, vhost: VHost, channel: MessageStats, received_confirm: int
) -> None:
    """A channel closed: its vhost keeps what it counted, or the broker if the vhost is
    gone (`received_confirm`: the publishes it received in confirm mode, its last confirm
    sequence number)."""
    totals.channels_closed += 1
    channel.received_confirm = received_confirm
    (totals.retired if vhost.deleted else vhost.stats).add(channel, CHANNEL_SIDE)
    totals.closed_channels.add(channel)


def channel_totals(totals: Totals, channels: Iterable[MessageStats]) -> MessageStats:
    """The broker's counters of the publishing and the delivering side (all but
    `publish_in` and `publish_out`) from its channels alone: every delivery, get and ack is
    counted on its queue and on its channel alike, so the channels, open (`channels`) and
    closed, hold the same sums as the queues, deleted ones included, without a walk over
    thousands of queues (RabbitMQ's global counters are counted by its channels too)."""
    result = MessageStats()
    result.add(totals.closed_channels, CHANNEL_SIDE + QUEUE_SIDE)
    result.add(totals.direct, CHANNEL_SIDE + QUEUE_SIDE)
    _add_all(result, channels, CHANNEL_SIDE + QUEUE_SIDE)
    return result


def vhost_sum(
    kept: MessageStats,
    queues: Iterable[MessageStats],
    exchanges: Iterable[MessageStats],
    channels: Iterable[MessageStats],
) -> MessageStats:
    """A vhost's counters and rates: what its deleted parts counted (`kept`), its queues'
    deliveries, its exchanges' routed copies and its channels' publishes."""
    result = MessageStats()
    result.add(kept)
    _add_all(result, queues, QUEUE_SIDE)
    _add_all(result, exchanges, EXCHANGE_SIDE)
    _add_all(result, channels, CHANNEL_SIDE)
    return result


def _add_all(result: MessageStats, items: Iterable[MessageStats], names: tuple[str, ...]) -> None:
    """Add many objects' counters of `names` at once (a vhost may have thousands of queues:
    the columns are summed in C, and only the few objects with a rate add rates)."""
    items = list(items)
    if not items:
        return
    get = attrgetter(*names)
    columns = zip(*map(get, items), strict=True) if len(names) > 1 else [list(map(get, items))]
    for name, column in zip(names, columns, strict=True):
        setattr(result, name, getattr(result, name) + sum(column))
    with_rates = [item for item in items if item._rates is not None]
    if with_rates:
        rates = list(result._rates or (0.0,) * len(FIELDS))
        for item in with_rates:
            assert item._rates is not None
            for name in names:
                index = FIELDS.index(name)
                rates[index] += item._rates[index]
        result._rates = tuple(rates)


# -- rendering: the management API's message_stats ----------------------------------------


def _entries(stats: MessageStats, names: Iterable[str]) -> list[tuple[str, Any]]:
    entries: list[tuple[str, Any]] = []
    for name in names:
        entries.append((name, stats.value(name)))
        entries.append((name + "_details", {"rate": round(stats.rate(name), 1)}))
    return entries


def _present(stats: MessageStats, group: tuple[str, ...]) -> bool:
    return any(stats.value(name) for name in group if name != "deliver_get")


def message_stats(stats: MessageStats, kind: str) -> dict[str, Any]:
    """`message_stats` as RabbitMQ 3.10 renders it for `kind` (queue, exchange, channel, vhost
    or overview): each count with `NAME_details: {rate}`; a group of counters appears once
    something in it was counted; queues, exchanges and channels list their keys in
    alphabetical order, vhosts group by group, the overview every key (and disk_reads and
    disk_writes, which trimq does not have: always 0)."""
    names: list[str] = []
    if kind == "exchange":
        names = [n for n in ("publish_in", "publish_out") if getattr(stats, n)]
    elif kind == "overview":
        names = sorted({*PUBLISH_GROUP, *DELIVER_GROUP})
        entries = _entries(stats, names)
        for name in ("disk_reads", "disk_writes"):
            entries.append((name, 0))
            entries.append((name + "_details", {"rate": 0.0}))
        return dict(sorted(entries))
    else:
        publish_group: tuple[str, ...] = ("publish",) if kind == "queue" else PUBLISH_GROUP
        if _present(stats, publish_group):
            names += publish_group
        if kind != "exchange" and _present(stats, DELIVER_GROUP):
            names += DELIVER_GROUP
        if kind != "vhost":
            names.sort()
    return dict(_entries(stats, names))
