"""The control socket: trimqctl's requests, one JSON line in and one JSON line out.

`listener.py` serves the socket and dispatches each request to the handler registered for
its command (`registry.command`); `arguments.py` checks the request's arguments. Handlers
live in one module per family of commands, named as trimqctl's in trimq/cli/commands/
(users, vhosts, queues...). Every module of this package is imported here, so a new family
is a new module and nothing else. See docs/control-protocol.md for the framing and commands.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module

from trimq.server.control.listener import CONTROL_SOCKET, _dispatch, serve_control
from trimq.server.control.registry import COMMANDS, command

for _module in pkgutil.iter_modules(__path__):
    import_module(f"{__name__}.{_module.name}")

__all__ = ["COMMANDS", "CONTROL_SOCKET", "_dispatch", "command", "serve_control"]
