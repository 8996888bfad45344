"""The control commands by name: each handler registers itself with `@command(name)`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from trimq.server.state import ServerState


class AfterReply(NamedTuple):
    """A handler's result plus an action that runs once the reply has been sent: `stop` must
    answer before the shutdown it starts closes the control socket."""

    result: Any
    action: Callable[[], None]


# A handler gets the request's `args` object (JSON) and returns the reply's `result` (JSON).
Handler = Callable[[ServerState, dict[str, Any]], Awaitable[Any]]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if name in COMMANDS:
            raise ValueError(f"control command {name!r} registered twice")
        COMMANDS[name] = handler
        return handler

    return register
