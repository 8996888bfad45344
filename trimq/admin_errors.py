"""Why an administrative request failed, shared by the model, the control socket and trimqctl.

`ErrorKind` values are the control protocol's `kind` field (docs/control-protocol.md); they,
not the error text, decide trimqctl's exit code, so nothing matches on the wording.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    USAGE = "usage"  # the request itself is wrong (rabbitmqctl's usage error, 64)
    AUTH_FAILED = "auth_failed"
    USER_NOT_FOUND = "user_not_found"
    VHOST_NOT_FOUND = "vhost_not_found"
    NOT_FOUND = "not_found"
    EXISTS = "exists"
    IN_USE = "in_use"  # a queue deleted with if_unused has consumers
    NOT_EMPTY = "not_empty"  # a queue deleted with if_empty has messages
    ERROR = "error"  # refused for another reason the text gives
    INTERNAL = "internal"  # a bug in the broker while handling it: not the user's mistake

    @classmethod
    def parse(cls, text: str) -> ErrorKind:
        """The kind a reply names; one this version does not know is a plain ERROR."""
        try:
            return cls(text)
        except ValueError:
            return cls.ERROR


class AdminError(Exception):
    """An administrative request that cannot be done: its kind and the text rabbitmqctl
    would print after `Error:`."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
