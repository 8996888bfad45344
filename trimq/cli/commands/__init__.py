"""trimqctl's commands, one module per command or small family of commands; importing a
module registers its commands in `base.COMMANDS`.

`MODULES` is the one place the modules are listed. Their order is the order of `COMMANDS`,
which decides between equally close suggestions for a mistyped command name: append new
modules at the end.
"""

from importlib import import_module

from trimq.cli.commands.base import COMMANDS, Command

MODULES = (
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

for _module in MODULES:
    import_module(f"{__name__}.{_module}")

__all__ = ["COMMANDS", "MODULES", "Command"]
