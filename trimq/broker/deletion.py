"""The rule of a conditional queue deletion (if_unused, if_empty), in one place.

AMQP's Queue.Delete and trimqctl's delete_queue both apply it; each words a refusal its own
way (RabbitMQ's 406 "... in use" / "... not empty", rabbitmqctl's "... is not empty"), so the
rule raises a typed error and leaves the words to them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trimq.broker.queue import Queue


class Refusal(StrEnum):
    IN_USE = "in use"  # if_unused, and the queue has consumers
    NOT_EMPTY = "not empty"  # if_empty, and the queue holds ready messages


class DeletionRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


def check_deletable(queue: Queue, if_unused: bool, if_empty: bool) -> None:
    """Raise DeletionRefused when the conditions given forbid deleting `queue` now."""
    if if_unused and queue.consumers:
        raise DeletionRefused(Refusal.IN_USE)
    if if_empty and queue.ready:
        raise DeletionRefused(Refusal.NOT_EMPTY)
