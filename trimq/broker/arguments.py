"""Queue arguments (x-...): one table says, for each, how a declaration is checked (with
RabbitMQ's "invalid arg" texts), whether a redeclaration must repeat it, which policy key gives
it from outside, and which `QueueSettings` attribute it sets. Declaration and equivalence checks
(vhost.py), policy validation (policy.py) and the settings the queue runs on all read it, so
they cannot drift apart.

Values arrive typed-decoded as TypedValue(type letter, value); the error detail is what RabbitMQ
prints with Erlang's ~p, such as `{value_negative,-1}` or `"expected integer, got longstr"`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from trimq.amqp.codec import STR_ENCODING, STR_ERRORS, TYPE_NAMES, TypedValue
from trimq.errors import PRECONDITION_FAILED, ChannelError

Arguments = Mapping[str, TypedValue]
# A declaration check: RabbitMQ's error detail for a value (given all the arguments), or None.
Check = Callable[[TypedValue, Arguments], str | None]

INTEGER_LETTERS = frozenset("bBsuIil")
MAX_EXPIRY = 315360000000  # ten years in milliseconds: RabbitMQ's largest TTL
MAX_PRIORITY = 255


class Overflow(StrEnum):
    """What a full queue (x-max-length, x-max-length-bytes) does with one more message."""

    DROP_HEAD = "drop-head"  # drop (or dead-letter) the oldest
    REJECT_PUBLISH = "reject-publish"  # refuse the new one (nack under confirms)
    REJECT_PUBLISH_DLX = "reject-publish-dlx"  # refuse it and dead-letter it


OVERFLOW_MODES = tuple(mode.value for mode in Overflow)
QUEUE_MODES = ("default", "lazy")
QUEUE_VERSIONS = (1, 2)


# -- the settings a queue runs on ---------------------------------------------------------------


@dataclass(frozen=True)
class QueueSettings:
    """A queue's effective settings, read once from its arguments and policy into plain
    attributes, so the publish and deliver paths test None rather than parse."""

    message_ttl: int | None = None  # ms
    expires: int | None = None  # ms of disuse before the queue is deleted
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: Overflow = Overflow.DROP_HEAD
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_priority: int = 0
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    queue_mode: str = "default"  # "lazy": everything beyond the head window is paged out
    bounded: bool = field(init=False)  # a maximum length or size applies

    def __post_init__(self) -> None:
        object.__setattr__(self, "overflow", Overflow(self.overflow))  # given as its text
        # an attribute, not a property: every publish tests it
        object.__setattr__(
            self, "bounded", self.max_length is not None or self.max_length_bytes is not None
        )


# -- declaration checks, with RabbitMQ's texts ----------------------------------------------------


def _type_name(letter: str) -> str:
    return TYPE_NAMES.get(letter, letter)


# the escapes Erlang's ~p writes in a printable string
_ESCAPES = {
    0x22: '\\"',
    0x5C: "\\\\",
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    0x0B: "\\v",
    0x08: "\\b",
    0x0C: "\\f",
    0x1B: "\\e",
}


def _erlang_string(text: str) -> str:
    """A text as RabbitMQ prints a formatted message with ~p: its bytes quoted (with escapes)
    when Erlang finds them printable as Latin-1, else the list of byte values."""
    data = text.encode(STR_ENCODING, STR_ERRORS)
    if all(32 <= b < 127 or b >= 160 or b in _ESCAPES for b in data):
        quoted = b"".join(_ESCAPES[b].encode() if b in _ESCAPES else bytes((b,)) for b in data)
        return '"' + quoted.decode(STR_ENCODING, STR_ERRORS) + '"'
    return "[" + ",".join(str(b) for b in data) + "]"


def _int(value: TypedValue) -> str | None:
    letter, _ = value
    if letter not in INTEGER_LETTERS:
        return f'"expected integer, got {_type_name(letter)}"'
    return None


def _non_negative(value: TypedValue, _args: Arguments) -> str | None:
    error = _int(value)
    if error is None and value[1] < 0:
        return f"{{value_negative,{value[1]}}}"
    return error


def _expiry(number: int) -> str | None:
    if number < 0:
        return f"{{value_negative,{number}}}"
    if number > MAX_EXPIRY:
        return f"{{value_too_large,{number}}}"
    return None


def parse_expiration(text: str) -> tuple[int | None, str | None]:
    """A per-message expiration as RabbitMQ reads it (Erlang's string:to_integer): an
    optional sign and digits, nothing after them; returns (milliseconds, None) or
    (None, error detail)."""
    digits = text[1:] if text[:1] in "+-" and text[:1] else text
    count = len(digits) - len(digits.lstrip("0123456789"))
    if count == 0:
        return None, "no_integer"
    if count < len(digits):
        return None, f'{{leftover_string,"{digits[count:]}"}}'
    number = int(text[: len(text) - len(digits) + count])
    error = _expiry(number)
    return (None, error) if error else (number, None)


def _expires(value: TypedValue, _args: Arguments) -> str | None:
    error = _int(value)
    if error is None:
        return f"{{value_zero,{value[1]}}}" if value[1] == 0 else _expiry(value[1])
    return error


def _message_ttl(value: TypedValue, _args: Arguments) -> str | None:
    return _int(value) or _expiry(value[1])


def _max_priority(value: TypedValue, args: Arguments) -> str | None:
    error = _non_negative(value, args)
    if error is None and value[1] > MAX_PRIORITY:
        return f"{{max_value_exceeded,{value[1]}}}"
    return error


def _longstr(value: TypedValue) -> str | None:
    letter, _ = value
    if letter != "S":
        return f"{{unacceptable_type,{_type_name(letter)}}}"
    return None


class TypeMismatch(Exception):
    """RabbitMQ words some wrong argument types as 'invalid type ... for arg ...'."""


def _dlx(value: TypedValue, _args: Arguments) -> str | None:
    if value[0] != "S":
        raise TypeMismatch(_type_name(value[0]))
    return None


def _dlx_routing_key(value: TypedValue, args: Arguments) -> str | None:
    error = _longstr(value)
    if error is None and "x-dead-letter-exchange" not in args:
        return "routing_key_but_no_dlx_defined"
    return error


def _overflow(value: TypedValue, _args: Arguments) -> str | None:
    error = _longstr(value)
    if error is None and value[1] not in OVERFLOW_MODES:
        return "invalid_overflow"
    return error


def _queue_mode(value: TypedValue, _args: Arguments) -> str | None:
    error = _longstr(value)
    if error is None and value[1] not in QUEUE_MODES:
        return _erlang_string(f"unsupported queue mode '{value[1]}'")
    return error


def _queue_version(value: TypedValue, args: Arguments) -> str | None:
    error = _non_negative(value, args)
    if error is None and value[1] not in QUEUE_VERSIONS:
        return _erlang_string(f"unsupported queue version '{value[1]}'")
    return error


def _bool(value: TypedValue, _args: Arguments) -> str | None:
    letter, _ = value
    if letter != "t":
        return f"{{unacceptable_type,{_type_name(letter)}}}"
    return None


def _queue_type(value: TypedValue, _args: Arguments) -> str | None:
    error = _longstr(value)
    if error is None and value[1] not in ("classic", "quorum", "stream"):
        return _erlang_string(f"unsupported queue type '{value[1]}'")
    if error is None and value[1] != "classic":  # RabbitMQ's other types: not here
        return f'{{unsupported_queue_type,<<"{value[1]}">>}}'
    return error


# -- tests of policy definition values (policy.py words the refusal) ----------------------------


def _integer_from(least: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: not isinstance(v, bool) and v in choices


# -- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyKey:
    """How a policy definition names an argument, and how RabbitMQ checks the value there:
    `valid(value)`, else "<value> is not <noun>". Without `valid`, policy.py checks the key
    itself (as RabbitMQ, which has a validator of its own for it). `lower_wins`: where both the
    queue's argument and the policy give a value, the lower applies (RabbitMQ's res_min);
    otherwise the argument wins."""

    key: str
    valid: Callable[[Any], bool] | None = None
    noun: str = ""
    lower_wins: bool = False


@dataclass(frozen=True)
class QueueArgument:
    """One queue argument, as the broker treats it everywhere."""

    name: str
    # the declaration check; None: any value is accepted
    check: Check | None
    # the QueueSettings attribute it sets; None: accepted (and checked) but no effect yet
    setting: str | None = None
    # a redeclaration giving another value (or leaving it out) is refused as inequivalent;
    # integers compare by value whatever their width, everything else by type and value
    compared: bool = True
    # the value a missing argument counts as when a redeclaration is compared
    absent: TypedValue | None = None
    # the policy key that may give it, and how its value combines with the queue's own
    policy: PolicyKey | None = None

    @property
    def policy_applies(self) -> bool:
        """A policy may change what the queue does (not just be accepted with this key)."""
        return self.policy is not None and self.setting is not None


# In RabbitMQ's order: the first argument that fails its check, or differs on redeclaration,
# is the one reported.
QUEUE_ARGUMENTS: tuple[QueueArgument, ...] = (
    QueueArgument(
        "x-expires",
        _expires,
        "expires",
        policy=PolicyKey("expires", _integer_from(1), "a valid queue expiry", lower_wins=True),
    ),
    QueueArgument(
        "x-message-ttl",
        _message_ttl,
        "message_ttl",
        policy=PolicyKey("message-ttl", _integer_from(0), "a valid message TTL", lower_wins=True),
    ),
    QueueArgument(
        "x-dead-letter-exchange",
        _dlx,
        "dead_letter_exchange",
        policy=PolicyKey("dead-letter-exchange", _string, "a valid dead letter exchange name"),
    ),
    QueueArgument(
        "x-dead-letter-routing-key",
        _dlx_routing_key,
        "dead_letter_routing_key",
        policy=PolicyKey("dead-letter-routing-key", _string, "a valid dead letter routing key"),
    ),
    QueueArgument(
        "x-max-length",
        _non_negative,
        "max_length",
        policy=PolicyKey("max-length", _integer_from(0), "a valid maximum length", lower_wins=True),
    ),
    QueueArgument(
        "x-max-length-bytes",
        _non_negative,
        "max_length_bytes",
        policy=PolicyKey(
            "max-length-bytes", _integer_from(0), "a valid maximum length in bytes", lower_wins=True
        ),
    ),
    # quorum-queue limits: refused at declaration (OTHER_QUEUE_TYPE_ARGUMENTS) but a policy
    # may name them, as in RabbitMQ
    QueueArgument(
        "x-max-in-memory-length",
        _non_negative,
        policy=PolicyKey(
            "max-in-memory-length", _integer_from(0), "a valid maximum memory in bytes"
        ),
    ),
    QueueArgument(
        "x-max-in-memory-bytes",
        _non_negative,
        policy=PolicyKey(
            "max-in-memory-bytes", _integer_from(0), "a valid maximum memory in bytes"
        ),
    ),
    # fixed at declaration (the ready list depends on it): no policy key
    QueueArgument("x-max-priority", _max_priority, "max_priority"),
    QueueArgument(
        "x-overflow",
        _overflow,
        "overflow",
        policy=PolicyKey("overflow", _one_of(*OVERFLOW_MODES), "a valid overflow value"),
    ),
    # "lazy": paged out beyond the head window at once (trimq/server/pager.py)
    QueueArgument(
        "x-queue-mode",
        _queue_mode,
        "queue_mode",
        policy=PolicyKey("queue-mode", _one_of(*QUEUE_MODES), "a valid queue-mode value"),
    ),
    # RabbitMQ's on-disk index format: accepted and checked, nothing to choose here
    QueueArgument(
        "x-queue-version",
        _queue_version,
        policy=PolicyKey("queue-version", _one_of(*QUEUE_VERSIONS), "a valid queue-version value"),
    ),
    QueueArgument("x-single-active-consumer", _bool, "single_active_consumer"),
    QueueArgument("x-queue-type", _queue_type, absent=TypedValue("S", "classic")),
    # mirroring: RabbitMQ compares it but checks no value at declaration
    QueueArgument("x-queue-master-locator", None, policy=PolicyKey("queue-master-locator")),
    # quorum queues' and streams' (refused at declaration), a policy key all the same
    QueueArgument(
        "x-queue-leader-locator",
        None,
        policy=PolicyKey(
            "queue-leader-locator",
            _one_of("client-local", "balanced", "random", "least-leaders"),
            "a valid queue leader locator value",
        ),
    ),
    # RabbitMQ has it on quorum queues only; trimq on every queue
    QueueArgument(
        "x-delivery-limit",
        _non_negative,
        "delivery_limit",
        policy=PolicyKey("delivery-limit", _integer_from(0), "a valid delivery limit"),
    ),
)

QUEUE_ARGUMENT = {argument.name: argument for argument in QUEUE_ARGUMENTS}
# Arguments of RabbitMQ's quorum queues and streams that its classic queues refuse, after the
# other checks and in the client's order, whatever the value. (x-delivery-limit is also
# quorum-only there; trimq gives it to every queue.)
OTHER_QUEUE_TYPE_ARGUMENTS = frozenset(
    {
        "x-dead-letter-strategy",
        "x-initial-cluster-size",
        "x-max-age",
        "x-max-in-memory-bytes",
        "x-max-in-memory-length",
        "x-queue-leader-locator",
        "x-quorum-initial-group-size",
        "x-stream-max-segment-size-bytes",
    }
)
# compared on redeclaration, in RabbitMQ's order
COMPARED_QUEUE_ARGUMENTS = tuple(a.name for a in QUEUE_ARGUMENTS if a.compared)
# what a missing argument counts as in that comparison
ABSENT_VALUES = {a.name: a.absent for a in QUEUE_ARGUMENTS if a.absent is not None}
# (QueueSettings attribute, argument, policy key or None, lower wins) for the arguments that do
# something
_SETTING_SOURCES = tuple(
    (
        a.setting,
        a.name,
        a.policy.key if a.policy else None,
        a.policy.lower_wins if a.policy else False,
    )
    for a in QUEUE_ARGUMENTS
    if a.setting is not None
)


# -- readers --------------------------------------------------------------------------------------


def validate_queue_arguments(what: str, arguments: Arguments) -> None:
    """Raise RabbitMQ's 406 "invalid arg" for the first argument that fails its check, then
    for the first one only RabbitMQ's other queue types take."""
    for argument in QUEUE_ARGUMENTS:
        if argument.name not in OTHER_QUEUE_TYPE_ARGUMENTS:
            validate_queue_argument(what, argument.name, arguments)
    for name in arguments:
        if name in OTHER_QUEUE_TYPE_ARGUMENTS:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"invalid arg '{name}' for {what} of queue type rabbit_classic_queue",
            )


def validate_queue_argument(what: str, name: str, arguments: Arguments) -> None:
    """Check one argument (if given) as `validate_queue_arguments` does."""
    value = arguments.get(name)
    check = QUEUE_ARGUMENT[name].check
    if value is None or check is None:
        return
    try:
        error = check(value, arguments)
    except TypeMismatch as mismatch:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid type '{mismatch}' for arg '{name}' in {what}",
        ) from None
    if error is not None:
        raise ChannelError(PRECONDITION_FAILED, f"invalid arg '{name}' for {what}: {error}")


def queue_settings(
    arguments: Arguments, definition: Mapping[str, Any] | None = None
) -> QueueSettings:
    """Settings from a queue's (already validated) arguments and the definition of the policy
    that applies to it (already validated): where both give a value, the lower applies for
    the keys marked `lower_wins` (expires, message-ttl, max-length, max-length-bytes, as
    RabbitMQ 3.10) and the argument wins for the others."""
    values: dict[str, Any] = {}
    policy = definition or {}
    for setting, name, policy_key, lower_wins in _SETTING_SOURCES:
        typed = arguments.get(name)
        from_policy = policy.get(policy_key) if policy_key is not None else None
        if typed is None:
            if from_policy is not None:
                values[setting] = from_policy
        elif from_policy is not None and lower_wins:
            values[setting] = min(typed[1], from_policy)
        else:
            values[setting] = typed[1]
    return QueueSettings(**values)
