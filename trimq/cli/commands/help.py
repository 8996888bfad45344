"""help: the list of commands by section, one command's usage, and the command rabbitmqctl
suggests for a mistyped name."""

from __future__ import annotations

from trimq.cli.commands.base import (
    COMMANDS,
    EXIT_OK,
    EXIT_USAGE,
    Command,
    Context,
    CtlExit,
    Section,
    command_usage,
    error_text,
    register,
    stream_is_tty,
)
from trimq.cli.control_client import TOOL
from trimq.cli.output import bright


def all_usage(tty: bool) -> str:
    return (
        f"\n{bright('Usage', tty)}\n\n{TOOL} [--node <node>] [--timeout <timeout>] "
        "[--longnames] [--quiet] <command> [<command options>]"
        "\n\nAvailable commands:\n"
        + commands_description(tty)
        + f"Use '{TOOL} help <command>' to learn more about a specific command"
    )


def commands_description(tty: bool) -> str:
    pad = max(len(name) for name in COMMANDS)
    parts = []
    for section in Section:
        names = sorted(c.name for c in COMMANDS.values() if c.section == section)
        if not names:
            continue
        parts.append(f"\n{bright(section.value, tty)}:\n\n")
        for name in names:
            parts.append(f"   {name.ljust(pad)}  {COMMANDS[name].description}\n")
    return "".join(parts) + "\n"


def jaro_distance(a: str, b: str) -> float:
    """Elixir's String.jaro_distance."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(len(a), len(b)) // 2 - 1
    a_matched = [False] * len(a)
    b_matched = [False] * len(b)
    matches = 0
    for i, ca in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not b_matched[j] and b[j] == ca:
                a_matched[i] = b_matched[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    a_chars = [c for c, m in zip(a, a_matched, strict=True) if m]
    b_chars = [c for c, m in zip(b, b_matched, strict=True) if m]
    transpositions = sum(x != y for x, y in zip(a_chars, b_chars, strict=True)) / 2
    return (matches / len(a) + matches / len(b) + (matches - transpositions) / matches) / 3


def suggest_command(typed: str) -> str | None:
    """The closest command name; on a tie, the one registered first."""
    best = max(COMMANDS, key=lambda name: jaro_distance(name, typed))
    return best if jaro_distance(best, typed) >= 0.77 else None


def run_help(ctx: Context) -> int:
    tty = stream_is_tty(ctx.out)
    if ctx.args:
        name = ctx.args[0]
        command = COMMANDS.get(name)
        if command is None:
            suggestion = suggest_command(name)
            if suggestion:
                raise CtlExit(
                    EXIT_USAGE,
                    error_text(f"\nCommand '{name}' not found. \nDid you mean '{suggestion}'? \n"),
                )
            raise CtlExit(EXIT_USAGE, error_text(f"\nCommand '{name}' not found."))
        ctx.print(command_usage(command, tty))
        return EXIT_OK
    if ctx.opts.get("list_commands"):
        ctx.print(commands_description(tty))
    else:
        ctx.print(all_usage(tty))
    return EXIT_OK


register(
    Command(
        "help",
        "help (<command> | [--list-commands])",
        "Displays usage information for a command",
        Section.HELP,
        run_help,
        max_args=1,
        switches={"list_commands": "boolean"},
        usage_additional=[("--list-commands", "only output a list of discovered commands")],
        needs_node=False,
        standalone=True,
    )
)
