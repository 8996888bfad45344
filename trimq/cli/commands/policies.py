"""Policies: set_policy, clear_policy, list_policies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trimq.cli.commands.base import (
    EXIT_SOFTWARE,
    EXIT_UNAVAILABLE,
    Command,
    Context,
    CtlExit,
    Section,
    default_error,
    error_text,
    register,
)
from trimq.cli.commands.rows import print_rows
from trimq.cli.control_client import BrokerError


def run_set_policy(ctx: Context) -> int:
    name, pattern, definition = ctx.args
    request = {
        "vhost": ctx.vhost,
        "name": name,
        "pattern": pattern,
        "definition": definition,
        "priority": int(ctx.opts.get("priority") or 0),
        "apply_to": ctx.opts.get("apply_to") or "all",
    }
    try:
        ctx.call("set_policy", request)
    except BrokerError as exc:  # rabbitmqctl exits 69 when a policy does not validate
        raise CtlExit(EXIT_UNAVAILABLE, error_text(exc.text)) from None
    return ctx.ok()


def set_policy_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    priority = opts.get("priority") or 0
    return [
        f'Setting policy "{args[0]}" for pattern "{args[1]}" to "{args[2]}" with '
        f'priority "{priority}" for vhost "{opts.get("vhost", "/")}" ...'
    ]


register(
    Command(
        "set_policy",
        "set_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] "
        "<name> <pattern> <definition>",
        "Sets or updates a policy",
        Section.POLICIES,
        run_set_policy,
        min_args=3,
        max_args=3,
        switches={"priority": "integer", "apply_to": "string"},
        usage_additional=[
            ("<name>", "Policy name (identifier)"),
            (
                "<pattern>",
                "Regular expression pattern that will be used to match queues, exchanges, etc",
            ),
            ("<definition>", "Policy definition (arguments). Must be a valid JSON document"),
            ("--priority", "Policy priority"),
            (
                "--apply-to",
                "Policy should only apply to queues, exchanges, or all entities (both "
                "of the above)",
            ),
        ],
        banner=set_policy_banner,
    )
)


def run_clear_policy(ctx: Context) -> int:
    try:
        ctx.call("clear_policy", {"vhost": ctx.vhost, "name": ctx.args[0]})
    except BrokerError as exc:
        raise CtlExit(EXIT_SOFTWARE, error_text(exc.text)) from None
    return ctx.ok()


register(
    Command(
        "clear_policy",
        "clear_policy [--vhost <vhost>] <name>",
        "Clears (removes) a policy",
        Section.POLICIES,
        run_clear_policy,
        min_args=1,
        max_args=1,
        usage_additional=[("<name>", "Name of policy to clear (remove)")],
        banner=lambda args, opts: [
            f'Clearing policy "{args[0]}" on vhost "{opts.get("vhost", "/")}" ...'
        ],
    )
)


def run_list_policies(ctx: Context) -> int:
    try:
        rows = ctx.call("list_policies", {"vhost": ctx.vhost})
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    return print_rows(
        ctx,
        rows,
        ["vhost", "name", "pattern", "apply-to", "definition", "priority"],
        whole_list=True,
    )


register(
    Command(
        "list_policies",
        "list_policies [--vhost <vhost>] [--no-table-headers]",
        "Lists all policies in a virtual host",
        Section.POLICIES,
        run_list_policies,
        table=True,
        banner=lambda args, opts: [f'Listing policies for vhost "{opts.get("vhost", "/")}" ...'],
    )
)
