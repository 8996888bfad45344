"""A virtual host: its exchanges, queues and bindings, the rules for declaring them, and routing.

Every refusal raises `ChannelError` with RabbitMQ's code and text, so clients see what they would
see from RabbitMQ.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

from trimq.amqp.codec import TYPE_NAMES, TypedTable, TypedValue, typed_to_plain
from trimq.broker.arguments import (
    ABSENT_VALUES,
    COMPARED_QUEUE_ARGUMENTS,
    INTEGER_LETTERS,
    validate_queue_argument,
    validate_queue_arguments,
)
from trimq.broker.exchange import EXCHANGE_TYPES, Binding, Exchange
from trimq.broker.journal import Journal
from trimq.broker.limits import in_force
from trimq.broker.message import Message
from trimq.broker.policy import Policy, effective
from trimq.broker.queue import Queue
from trimq.broker.records import BindingDef, ExchangeDef, QueueDef
from trimq.broker.stats import EXCHANGE_SIDE, QUEUE_SIDE, MessageStats, Totals
from trimq.broker.timers import Timers
from trimq.errors import (
    ACCESS_REFUSED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    ChannelError,
)

DEFAULT_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)

# Exchange arguments RabbitMQ compares on redeclare; others are stored but not compared. (Queue
# arguments: the table in arguments.py.)
CHECKED_EXCHANGE_ARGS = ("alternate-exchange",)


def generated_name(prefix: str) -> str:
    """RabbitMQ-style server-generated names: prefix + 22 url-safe base64 characters."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).decode()[:22]


def _render(value: TypedValue) -> str:
    """An argument value as RabbitMQ prints it in an inequivalence text."""
    letter, inner = value
    if letter == "t":
        return "true" if inner else "false"
    if letter in ("F", "A"):
        return repr(typed_to_plain(value))
    return str(inner)


def _equivalent(a: TypedValue, b: TypedValue) -> bool:
    if a[0] in INTEGER_LETTERS and b[0] in INTEGER_LETTERS:
        return bool(a[1] == b[1])
    return bool(typed_to_plain(a) == typed_to_plain(b))


def _bool(value: bool) -> str:
    return "true" if value else "false"


class VHost:
    def __init__(
        self,
        name: str,
        journal: Journal | None = None,
        timers: Timers | None = None,
        totals: Totals | None = None,
    ) -> None:
        self.name = name
        # What its deleted queues and exchanges and closed channels counted: its message_stats
        # are these plus what the live ones count (stats.vhost_stats).
        self.stats = MessageStats()
        self.totals = totals or Totals()  # the broker's (queues declared, created, deleted)
        self.journal = journal  # where durable definitions are recorded (None: memory only)
        self.timers = timers  # message and queue expiry (None: never fires)
        self.description = ""
        self.tags: list[str] = []
        self.deleted = False
        self.limits: dict[str, int] | None = None  # set_vhost_limits (None: never set)
        self.connections = 0  # open AMQP connections, for max-connections
        self.policies: dict[str, Policy] = {}
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        self.default_exchange = EXCHANGE_TYPES["direct"]("", name, durable=True)
        self.exchanges[""] = self.default_exchange
        for xname, xtype in DEFAULT_EXCHANGES:
            self.exchanges[xname] = EXCHANGE_TYPES[xtype](xname, name, durable=True)

    def __repr__(self) -> str:
        return f"<VHost {self.name!r}>"

    # -- lookups ------------------------------------------------------------------------

    def describe(self, kind: str, name: str) -> str:
        return f"{kind} '{name}' in vhost '{self.name}'"

    def get_exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{self.name}'")
        return exchange

    def get_queue(self, name: str, owner: object | None = None) -> Queue:
        """Look up a queue and check exclusive ownership for the asking connection."""
        queue = self.queues.get(name)
        if queue is None:
            raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{self.name}'")
        self.check_exclusive(queue, owner)
        queue.touch()
        return queue

    def check_exclusive(self, queue: Queue, owner: object | None) -> None:
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise self.locked(queue.name)

    def locked(self, name: str) -> ChannelError:
        return ChannelError(
            RESOURCE_LOCKED,
            f"cannot obtain exclusive access to locked {self.describe('queue', name)}. "
            "It could be originally declared on another connection or the exclusive property"
            " value does not match that of the original declaration.",
        )

    # -- limits -------------------------------------------------------------------------

    def connection_limit_reached(self) -> int | None:
        """The max-connections limit if one more connection would exceed it, else None."""
        limit = in_force(self.limits, "max-connections")
        return limit if limit is not None and self.connections >= limit else None

    def check_queue_limit(self, name: str) -> None:
        """max-queues: a new queue is refused once the vhost holds that many (all kinds)."""
        limit = in_force(self.limits, "max-queues")
        if limit is not None and len(self.queues) >= limit:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"cannot declare queue '{name}': queue "
                f"limit in vhost '{self.name}' ({limit}) "
                "is reached",
            )

    # -- exchanges ----------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type_: str,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: TypedTable | None = None,
        may_forward: Callable[[str], None] | None = None,
    ) -> tuple[Exchange, bool]:
        """Declare (or check) an exchange; returns it and whether it was created.
        `may_forward(name)` may refuse (ChannelError) the alternate exchange of a new one."""
        if not passive and type_ not in EXCHANGE_TYPES:
            raise ChannelError(PRECONDITION_FAILED, f"unknown exchange type '{type_}'")
        if name == "":
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        existing = self.exchanges.get(name)
        if passive:
            if existing is None:
                raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{self.name}'")
            return existing, False
        if name.startswith("amq.") and existing is None:
            raise ChannelError(
                ACCESS_REFUSED, f"exchange name '{name}' contains reserved prefix 'amq.*'"
            )
        cls = EXCHANGE_TYPES[type_]
        arguments = arguments or {}
        if existing is not None:
            what = self.describe("exchange", name)
            for field, received, current in (
                ("type", type_, existing.TYPE),
                ("durable", _bool(durable), _bool(existing.durable)),
                ("auto_delete", _bool(auto_delete), _bool(existing.auto_delete)),
                ("internal", _bool(internal), _bool(existing.internal)),
            ):
                if received != current:
                    raise ChannelError(
                        PRECONDITION_FAILED,
                        f"inequivalent arg '{field}' for {what}: "
                        f"received '{received}' but current is '{current}'",
                    )
            self.check_arguments(what, CHECKED_EXCHANGE_ARGS, arguments, existing.arguments)
            return existing, False
        alternate = arguments.get("alternate-exchange")
        if alternate is not None:
            if alternate[0] != "S":
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"invalid type '{TYPE_NAMES[alternate[0]]}' for arg 'alternate-exchange' "
                    f"in {self.describe('exchange', name)}",
                )
            if may_forward is not None:
                may_forward(alternate[1])
        exchange = cls(name, self.name, durable, auto_delete, internal, arguments)
        self.add_exchange(exchange)
        return exchange, True

    def add_exchange(self, exchange: Exchange, loading: bool = False) -> None:
        """Register a new exchange; a durable one is journaled. `loading`: it comes from
        storage (recovery), so it is not journaled again and gets its policy once all are
        loaded (apply_policies)."""
        self.exchanges[exchange.name] = exchange
        if loading:
            return
        exchange.apply_policy(effective(self.policies, "exchanges", exchange.name))
        self._journal_exchange(exchange, present=True)

    def delete_exchange(self, name: str, if_unused: bool = False) -> Exchange | None:
        if name == "":
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        if name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED,
                f"deletion of system exchange '{name}' in vhost '{self.name}' not allowed",
            )
        exchange = self.exchanges.get(name)
        if exchange is None:
            return None  # RabbitMQ: deleting a missing exchange succeeds
        if if_unused and exchange.bindings:
            raise ChannelError(PRECONDITION_FAILED, f"{self.describe('exchange', name)} in use")
        self._remove_exchange(exchange)
        return exchange

    def _remove_exchange(self, exchange: Exchange) -> None:
        """Remove an exchange with its bindings both ways, and then every auto-delete
        exchange that this leaves without bindings (a chain goes link by link)."""
        pending = [exchange]
        while pending:
            current = pending.pop()
            if current.deleted:
                continue
            current.deleted = True
            self.exchanges.pop(current.name, None)
            self.stats.add(current.stats, EXCHANGE_SIDE)
            for binding in list(current.bindings.values()):
                current.remove_binding(binding)
                self._journal_binding(current, binding, present=False)
            self._journal_exchange(current, present=False)
            pending += self._unbind_destination(current)

    def _unbind_destination(self, destination: Queue | Exchange) -> list[Exchange]:
        """Remove the bindings to a queue or exchange being deleted; returns the auto-delete
        sources left without bindings. As RabbitMQ, only a source whose own last binding goes
        is auto-deleted: never a destination, never an exchange elsewhere in the vhost."""
        sources: dict[int, Exchange] = {}
        for source, binding in list(destination.bound_by.values()):
            source.remove_binding(binding)
            self._journal_binding(source, binding, present=False)
            sources[id(source)] = source
        return [x for x in sources.values() if self._unused_auto_delete(x)]

    @staticmethod
    def _unused_auto_delete(exchange: Exchange) -> bool:
        return exchange.auto_delete and not exchange.bindings and not exchange.deleted

    # -- queues -------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        owner: object,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: TypedTable | None = None,
        server_named: bool = False,
        enforce_limit: bool = True,
        may_forward: Callable[[str], None] | None = None,
    ) -> tuple[Queue, bool]:
        """Declare (or check) a queue for connection `owner`; returns it and whether created.
        `server_named`: `name` was generated for an empty one (so its amq. prefix is ours).
        `enforce_limit`: refuse a new queue over max-queues (a definitions import checks the
        limit for the whole document beforehand, as RabbitMQ).
        `may_forward(name)` may refuse (ChannelError) the dead-letter exchange of a new one."""
        if passive:
            return self.get_queue(name, owner), False
        if not name:
            name = generated_name("amq.gen-")
        elif name.startswith("amq.") and not server_named:
            raise ChannelError(
                ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'"
            )
        arguments = arguments or {}
        durable = durable and not exclusive  # as RabbitMQ: an exclusive queue is never durable
        what = self.describe("queue", name)
        existing = self.queues.get(name)
        if existing is not None:
            # RabbitMQ checks ownership first: an exclusive flag that differs is a lock error.
            if existing.exclusive_owner is not (owner if exclusive else None):
                raise self.locked(name)
            for field, received, current in (
                ("durable", durable, existing.durable),
                ("auto_delete", auto_delete, existing.auto_delete),
            ):
                if received != current:
                    raise ChannelError(
                        PRECONDITION_FAILED,
                        f"inequivalent arg '{field}' for {what}: "
                        f"received '{_bool(received)}' but current is '{_bool(current)}'",
                    )
            self.check_arguments(what, COMPARED_QUEUE_ARGUMENTS, arguments, existing.arguments)
            existing.touch()
            self.totals.queues_declared += 1
            return existing, False
        if enforce_limit:  # as RabbitMQ, before the arguments are looked at
            self.check_queue_limit(name)
        dead_letter_exchange = arguments.get("x-dead-letter-exchange")
        if dead_letter_exchange is not None:  # as RabbitMQ: its type, then who may use it
            validate_queue_argument(what, "x-dead-letter-exchange", arguments)
            if may_forward is not None:
                may_forward(dead_letter_exchange[1])
        validate_queue_arguments(what, arguments)
        queue = Queue(
            name, self.name, durable, owner if exclusive else None, auto_delete, arguments
        )
        self.add_queue(queue)
        self.totals.queues_declared += 1
        return queue, True

    def add_queue(self, queue: Queue, loading: bool = False) -> None:
        """Register a new queue; a durable, non-exclusive one is journaled. `loading`: it
        comes from storage (recovery), so it is not journaled again and gets its policy once
        all are loaded (apply_policies)."""
        self.queues[queue.name] = queue
        queue.attach(self, self.timers)
        if not loading:
            self.totals.queues_created += 1
            queue.apply_policy(effective(self.policies, "queues", queue.name))
        if self.journal is not None and queue.durable and not queue.exclusive:
            queue.journal = self.journal
            if not loading:
                self.journal.put(
                    QueueDef(self.name, queue.name, queue.auto_delete, queue.arguments)
                )

    @staticmethod
    def check_arguments(
        what: str, names: tuple[str, ...], received: TypedTable, current: TypedTable
    ) -> None:
        """Refuse a redeclaration that differs in one of the arguments `names` (in order)."""
        for arg in names:
            new, old = received.get(arg), current.get(arg)
            if new is None and old is None:
                continue
            default = ABSENT_VALUES.get(arg)
            if default is not None and (new or default) == (old or default):
                continue
            if new is None:
                assert old is not None
                detail = (
                    f"received none but current is the value '{_render(old)}' "
                    f"of type '{TYPE_NAMES[old[0]]}'"
                )
            elif old is None:
                detail = (
                    f"received the value '{_render(new)}' of type '{TYPE_NAMES[new[0]]}' "
                    "but current is none"
                )
            elif _equivalent(new, old):
                continue
            else:
                detail = f"received '{_render(new)}' but current is '{_render(old)}'"
            raise ChannelError(
                PRECONDITION_FAILED, f"inequivalent arg '{arg}' for {what}: {detail}"
            )

    def delete_queue(self, queue: Queue) -> int:
        """Remove a queue and its bindings; returns how many ready messages it held."""
        count = queue.message_count
        queue.deleted = True
        self.queues.pop(queue.name, None)
        self.totals.queues_deleted += 1
        self.stats.add(queue.stats, QUEUE_SIDE)
        if queue.journal is not None:
            queue.journal.drop(QueueDef.KIND, QueueDef.make_key(self.name, queue.name))
        for source in self._unbind_destination(queue):
            self._remove_exchange(source)
        queue.ready.clear()
        queue.ready.close_pages()
        for consumer in list(queue.consumers):
            queue.remove_consumer(consumer)
            consumer.sink.consumer_cancelled(consumer)
        return count

    # -- bindings -----------------------------------------------------------------------

    def bind(
        self,
        source: Exchange,
        destination: Queue | Exchange,
        routing_key: str,
        arguments: TypedTable,
        loading: bool = False,
    ) -> None:
        """Bind (nothing changes if the binding exists). `loading`: it comes from storage
        (recovery): neither checked nor journaled again."""
        binding = Binding(source.name, destination, routing_key, arguments)
        if not loading and binding.key not in source.bindings:
            source.validate_binding(arguments)
        if source.add_binding(binding) and not loading:
            self._journal_binding(source, binding, present=True)

    def unbind(
        self,
        source: Exchange,
        destination: Queue | Exchange,
        routing_key: str,
        arguments: TypedTable,
    ) -> None:
        binding = Binding(source.name, destination, routing_key, arguments)
        if source.remove_binding(binding):  # unbinding nothing deletes nothing, as RabbitMQ
            self._journal_binding(source, binding, present=False)
            if self._unused_auto_delete(source):
                self._remove_exchange(source)

    # -- journal ------------------------------------------------------------------------

    def _journal_exchange(self, exchange: Exchange, present: bool) -> None:
        if self.journal is None or not exchange.durable:
            return
        if present:
            self.journal.put(
                ExchangeDef(
                    self.name,
                    exchange.name,
                    exchange.TYPE,
                    exchange.auto_delete,
                    exchange.internal,
                    exchange.arguments,
                )
            )
        else:
            self.journal.drop(ExchangeDef.KIND, ExchangeDef.make_key(self.name, exchange.name))

    def _journal_binding(self, source: Exchange, binding: Binding, present: bool) -> None:
        """A binding is durable when both ends are (an exclusive queue never is)."""
        dest = binding.destination
        if (
            self.journal is None
            or not source.durable
            or not dest.durable
            or (isinstance(dest, Queue) and dest.exclusive)
        ):
            return
        record = BindingDef(
            self.name,
            source.name,
            "queue" if isinstance(dest, Queue) else "exchange",
            dest.name,
            binding.routing_key,
            binding.arguments,
        )
        if present:
            self.journal.put(record)
        else:
            self.journal.drop(record.KIND, record.key())

    def check_bindable(self, name: str) -> None:
        if name == "":
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")

    # -- policies -----------------------------------------------------------------------

    def apply_policies(self) -> None:
        """Give every queue and exchange the policy that now applies to it."""
        for queue in list(self.queues.values()):
            queue.apply_policy(effective(self.policies, "queues", queue.name))
        for exchange in self.exchanges.values():
            exchange.apply_policy(effective(self.policies, "exchanges", exchange.name))

    # -- publishing ---------------------------------------------------------------------

    def publish(self, message: Message, queues: list[Queue]) -> tuple[int, bool]:
        """Enqueue a routed message. A persistent one that reached durable queues is journaled
        once, before any queue can deliver it. Returns that record's LSN (0: nothing to wait
        for before confirming) and whether a queue refused it (x-overflow reject-publish)."""
        lsn = 0
        if message.persistent and self.journal is not None:
            durable = [q for q in queues if q.journal is not None]
            if durable:
                lsn = self.journal.message(message, durable)
        refused = False
        for queue in queues:
            if not queue.enqueue(message):
                refused = True
                if queue.journal is not None and message.id:
                    queue.journal.settle(queue, [message.id])
        return lsn, refused

    # -- routing ------------------------------------------------------------------------

    def route(self, exchange: Exchange, routing_key: str, message: Message) -> list[Queue]:
        """The queues `message` reaches when published to `exchange` with `routing_key`:
        through exchange-to-exchange bindings once each, for its routing key and the CC and
        BCC headers' keys, and through alternate exchanges when an exchange routes it
        nowhere."""
        headers = message.properties.headers
        if exchange is self.default_exchange and not headers:
            queue = self.queues.get(routing_key)
            if queue is None:
                return []
            exchange.stats.publish_out += 1
            return [queue]
        keys = [routing_key]
        if headers:
            for name in ("CC", "BCC"):
                extra = headers.get(name)
                if isinstance(extra, list):
                    keys += [k for k in extra if isinstance(k, str)]
        queues: dict[int, Queue] = {}
        seen = {id(exchange)}
        pending = [exchange]
        while pending:
            current = pending.pop()
            found = False
            for key in keys:
                if current is self.default_exchange:
                    queue = self.queues.get(key)
                    if queue is not None:
                        queues[id(queue)] = queue
                        found = True
                    continue
                for dest in current.route(key, message):
                    found = True
                    if isinstance(dest, Queue):
                        queues[id(dest)] = dest
                    elif id(dest) not in seen:
                        seen.add(id(dest))
                        pending.append(dest)
            if not found:
                alternate = current.alternate_exchange
                target = self.exchanges.get(alternate) if alternate is not None else None
                if target is not None and id(target) not in seen:
                    seen.add(id(target))
                    pending.append(target)
        if queues:
            exchange.stats.publish_out += len(queues)
        return list(queues.values())
