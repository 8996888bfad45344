"""trimqctl's commands, one module per command or small family of commands; importing a
module registers its commands in `base.COMMANDS`. Every module of this package is imported
here, so a new family is a new module and nothing else.

The order of registration is the order of `COMMANDS`, which decides between equally close
suggestions for a mistyped command name: the modules of `ORDER` first, in that order, then
any other module by name.
"""

import pkgutil
from importlib import import_module

from trimq.cli.commands.base import COMMANDS, Command

ORDER = (
    "help",
    "node",
    "users",
    "vhosts",
    "vhost_limits",
    "permissions",
    "listings",
    "policies",
    "queues",
    "connections",
    "definitions",
    "messages",
)
MODULES = (
    *ORDER,
    *sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ORDER),
)

for _module in MODULES:
    import_module(f"{__name__}.{_module}")

__all__ = ["COMMANDS", "MODULES", "Command"]
