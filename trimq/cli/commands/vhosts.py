"""Virtual hosts: add_vhost, delete_vhost, list_vhosts."""

from __future__ import annotations

from functools import partial
from typing import Any

from trimq.admin_errors import ErrorKind
from trimq.cli.commands.base import (
    EXIT_DATAERR,
    Command,
    Context,
    CtlExit,
    Section,
    default_error,
    register,
)
from trimq.cli.commands.rows import info_list_command, run_info_list
from trimq.cli.control_client import BrokerError
from trimq.info_items import VHOST_ITEMS


def run_add_vhost(ctx: Context) -> int:
    request: dict[str, Any] = {"vhost": ctx.args[0]}
    if "description" in ctx.opts:
        request["description"] = ctx.opts["description"]
    if "tags" in ctx.opts:
        request["tags"] = [t.strip() for t in str(ctx.opts["tags"]).split(",") if t.strip()]
    if "default_queue_type" in ctx.opts:
        request["default_queue_type"] = ctx.opts["default_queue_type"]
    try:
        ctx.call("add_vhost", request)
    except BrokerError as exc:
        # rabbitmqctl: adding an existing vhost succeeds quietly
        if exc.kind is not ErrorKind.EXISTS:
            raise default_error(ctx, exc) from None
    return ctx.ok()


register(
    Command(
        "add_vhost",
        'add_vhost <vhost> [--description <description> --tags "<tag1>,<tag2>,<...>" '
        "--default-queue-type <quorum|classic|stream>]",
        "Creates a virtual host",
        Section.VIRTUAL_HOSTS,
        run_add_vhost,
        min_args=1,
        max_args=1,
        switches={"description": "string", "tags": "string", "default_queue_type": "string"},
        aliases={"d": "description"},
        usage_additional=[
            ("<vhost>", "Virtual host name"),
            ("--description <description>", "Virtual host description"),
            ("--tags <tags>", "Command separated list of tags"),
            (
                "--default-queue-type <quorum|classic|stream>",
                "Queue type to use if no type is explicitly provided by the client",
            ),
        ],
        banner=lambda args, opts: [f'Adding vhost "{args[0]}" ...'],
    )
)


def run_delete_vhost(ctx: Context) -> int:
    vhost = ctx.args[0]
    try:
        ctx.call("delete_vhost", {"vhost": vhost})
    except BrokerError as exc:
        if exc.kind is ErrorKind.VHOST_NOT_FOUND:
            raise CtlExit(EXIT_DATAERR, f"Virtual host '{vhost}' does not exist") from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


register(
    Command(
        "delete_vhost",
        "delete_vhost <vhost>",
        "Deletes a virtual host",
        Section.VIRTUAL_HOSTS,
        run_delete_vhost,
        min_args=1,
        max_args=1,
        usage_additional=[("<vhost>", "Name of the virtual host to delete.")],
        banner=lambda args, opts: [f'Deleting vhost "{args[0]}" ...'],
    )
)


register(
    info_list_command(
        "list_vhosts",
        "list_vhosts [--no-table-headers] [<column> ...]",
        "Lists virtual hosts",
        VHOST_ITEMS,
        ["name"],
        partial(run_info_list, drop_missing=True),
        section=Section.ACCESS_CONTROL,
        banner=lambda args, opts: ["Listing vhosts ..."],
    )
)
