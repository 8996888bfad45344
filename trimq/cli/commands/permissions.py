"""Permissions: set_permissions, clear_permissions, list_permissions, list_user_permissions,
and their topic_permissions counterparts (one topic exchange per entry)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trimq.admin_errors import ErrorKind
from trimq.cli.commands.base import (
    EXIT_DATAERR,
    EXIT_NOUSER,
    EXIT_UNAVAILABLE,
    LIST_TIMEOUT_MS,
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


def _permissions_command(ctx: Context, request: dict[str, Any]) -> int:
    user = ctx.args[0]
    try:
        ctx.call(ctx.command.name, request)
    except BrokerError as exc:
        if exc.kind is ErrorKind.USER_NOT_FOUND:
            if ctx.json:
                raise ctx.json_error(f"User {user} does not exist") from None
            raise CtlExit(EXIT_NOUSER, error_text(f"User {user} does not exist")) from None
        if exc.kind is ErrorKind.VHOST_NOT_FOUND:
            text = f"Virtual host {ctx.vhost} does not exist"
            if ctx.json:
                raise ctx.json_error(text) from None
            raise CtlExit(EXIT_UNAVAILABLE, error_text(text)) from None
        if exc.kind is ErrorKind.ERROR:  # an expression that cannot be used: rabbitmqctl exits 69
            raise CtlExit(EXIT_UNAVAILABLE, error_text(exc.text)) from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


def run_set_permissions(ctx: Context) -> int:
    user, configure, write, read = ctx.args
    return _permissions_command(
        ctx,
        {"vhost": ctx.vhost, "user": user, "configure": configure, "write": write, "read": read},
    )


register(
    Command(
        "set_permissions",
        "set_permissions [--vhost <vhost>] <username> <conf> <write> <read>",
        "Sets user permissions for a vhost",
        Section.ACCESS_CONTROL,
        run_set_permissions,
        min_args=4,
        max_args=4,
        usage_additional=[
            ("<username>", "Self-explanatory"),
            ("<conf>", "Configuration permission pattern"),
            ("<write>", "Write permission pattern"),
            ("<read>", "Read permission pattern"),
        ],
        banner=lambda args, opts: [
            f'Setting permissions for user "{args[0]}" in vhost "{opts.get("vhost", "/")}" ...'
        ],
    )
)


def run_clear_permissions(ctx: Context) -> int:
    return _permissions_command(ctx, {"vhost": ctx.vhost, "user": ctx.args[0]})


register(
    Command(
        "clear_permissions",
        "clear_permissions [--vhost <vhost>] <username>",
        "Revokes user permissions for a vhost",
        Section.ACCESS_CONTROL,
        run_clear_permissions,
        min_args=1,
        max_args=1,
        usage_additional=[("<username>", "Name of the user whose permissions should be revoked")],
        banner=lambda args, opts: [
            f'Clearing permissions for user "{args[0]}" in vhost "{opts.get("vhost", "/")}" ...'
        ],
    )
)


def run_list_permissions(ctx: Context) -> int:
    try:
        rows = ctx.call("list_permissions", {"vhost": ctx.vhost})
    except BrokerError as exc:
        if exc.kind is ErrorKind.VHOST_NOT_FOUND:
            raise CtlExit(EXIT_DATAERR, f"Virtual host '{ctx.vhost}' does not exist") from None
        raise default_error(ctx, exc) from None
    return print_rows(ctx, rows, ["user", "configure", "write", "read"], whole_list=True)


register(
    Command(
        "list_permissions",
        "list_permissions [--vhost <vhost>] [--no-table-headers]",
        "Lists user permissions in a virtual host",
        Section.ACCESS_CONTROL,
        run_list_permissions,
        table=True,
        has_timeout=True,
        default_timeout=LIST_TIMEOUT_MS,
        switches={"timeout": "integer"},
        banner=lambda args, opts: [f'Listing permissions for vhost "{opts.get("vhost", "/")}" ...'],
    )
)


def run_list_user_permissions(ctx: Context) -> int:
    user = ctx.args[0]
    try:
        rows = ctx.call("list_user_permissions", {"user": user})
    except BrokerError as exc:
        if exc.kind is ErrorKind.USER_NOT_FOUND:
            raise CtlExit(EXIT_UNAVAILABLE, error_text(f'{{:no_such_user, "{user}"}}')) from None
        raise default_error(ctx, exc) from None
    return print_rows(ctx, rows, ["vhost", "configure", "write", "read"], whole_list=True)


register(
    Command(
        "list_user_permissions",
        "list_user_permissions [--no-table-headers] <username>",
        "Lists permissions of a user across all virtual hosts",
        Section.ACCESS_CONTROL,
        run_list_user_permissions,
        min_args=1,
        max_args=1,
        table=True,
        has_timeout=True,
        default_timeout=LIST_TIMEOUT_MS,
        switches={"timeout": "integer"},
        aliases={"t": "timeout"},
        usage_additional=[("<username>", "Name of the user")],
        banner=lambda args, opts: [f'Listing permissions for user "{args[0]}" ...'],
    )
)


# -- topic permissions ----------------------------------------------------------------------------


def run_set_topic_permissions(ctx: Context) -> int:
    user, exchange, write, read = ctx.args
    return _permissions_command(
        ctx,
        {"vhost": ctx.vhost, "user": user, "exchange": exchange, "write": write, "read": read},
    )


register(
    Command(
        "set_topic_permissions",
        "set_topic_permissions [--vhost <vhost>] <username> <exchange> <write> <read>",
        "Sets user topic permissions for an exchange",
        Section.ACCESS_CONTROL,
        run_set_topic_permissions,
        min_args=4,
        max_args=4,
        usage_additional=[
            ("<username>", "Self-explanatory"),
            ("<exchange>", "Topic exchange to set the permissions for"),
            ("<write>", "Write permission pattern"),
            ("<read>", "Read permission pattern"),
        ],
        banner=lambda args, opts: [
            f'Setting topic permissions on "{args[1]}" for user "{args[0]}" in vhost '
            f'"{opts.get("vhost", "/")}" ...'
        ],
    )
)


def run_clear_topic_permissions(ctx: Context) -> int:
    request = {"vhost": ctx.vhost, "user": ctx.args[0]}
    if len(ctx.args) > 1:
        request["exchange"] = ctx.args[1]
    return _permissions_command(ctx, request)


def _clear_topic_banner(args: Sequence[str], opts: Mapping[str, Any]) -> list[str]:
    where = f'in vhost "{opts.get("vhost", "/")}" ...'
    if len(args) > 1:
        return [f'Clearing topic permissions on "{args[1]}" for user "{args[0]}" {where}']
    return [f'Clearing topic permissions for user "{args[0]}" {where}']


register(
    Command(
        "clear_topic_permissions",
        "clear_topic_permissions [--vhost <vhost>] <username> [<exchange>]",
        "Clears user topic permissions for a vhost or exchange",
        Section.ACCESS_CONTROL,
        run_clear_topic_permissions,
        min_args=1,
        max_args=2,
        usage_additional=[
            ("<username>", "Name of the user whose topic permissions should be revoked"),
            ("<exchange>", "Exchange the permissions are for"),
        ],
        banner=_clear_topic_banner,
    )
)


def run_list_topic_permissions(ctx: Context) -> int:
    try:
        rows = ctx.call("list_topic_permissions", {"vhost": ctx.vhost})
    except BrokerError as exc:
        if exc.kind is ErrorKind.VHOST_NOT_FOUND:
            raise CtlExit(EXIT_DATAERR, f"Virtual host '{ctx.vhost}' does not exist") from None
        raise default_error(ctx, exc) from None
    return print_rows(ctx, rows, ["user", "exchange", "write", "read"], whole_list=True)


register(
    Command(
        "list_topic_permissions",
        "list_topic_permissions [--vhost <vhost>] [--no-table-headers]",
        "Lists topic permissions in a virtual host",
        Section.ACCESS_CONTROL,
        run_list_topic_permissions,
        table=True,
        has_timeout=True,
        default_timeout=LIST_TIMEOUT_MS,
        switches={"timeout": "integer"},
        banner=lambda args, opts: [
            f'Listing topic permissions for vhost "{opts.get("vhost", "/")}" ...'
        ],
    )
)


def run_list_user_topic_permissions(ctx: Context) -> int:
    user = ctx.args[0]
    try:
        rows = ctx.call("list_user_topic_permissions", {"user": user})
    except BrokerError as exc:
        if exc.kind is ErrorKind.USER_NOT_FOUND:
            raise CtlExit(EXIT_UNAVAILABLE, error_text(f'{{:no_such_user, "{user}"}}')) from None
        raise default_error(ctx, exc) from None
    return print_rows(
        ctx, rows, ["vhost", "exchange", "write", "read"], header=False, whole_list=True
    )


register(
    Command(
        "list_user_topic_permissions",
        "list_user_topic_permissions [--no-table-headers] <username>",
        "Lists user topic permissions",
        Section.ACCESS_CONTROL,
        run_list_user_topic_permissions,
        min_args=1,
        max_args=1,
        table=True,
        has_timeout=True,
        default_timeout=LIST_TIMEOUT_MS,
        switches={"timeout": "integer"},
        aliases={"t": "timeout"},
        usage_additional=[("<username>", "Name of the user")],
        banner=lambda args, opts: [f'Listing topic permissions for user "{args[0]}" ...'],
    )
)
