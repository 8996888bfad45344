"""Users: add_user, delete_user, change_password, clear_password, authenticate_user,
set_user_tags, list_users."""

from __future__ import annotations

from typing import Any

from trimq.admin_errors import ErrorKind
from trimq.cli.commands.base import (
    EXIT_DATAERR,
    EXIT_NOUSER,
    EXIT_OK,
    EXIT_SOFTWARE,
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
from trimq.cli.control_client import TOOL, BrokerError
from trimq.cli.output import json_encode

ADD_USER_DONE = (
    "Done. Don't forget to grant the user permissions to some virtual hosts! "
    f"See '{TOOL} help set_permissions' to learn more."
)


def read_password(ctx: Context) -> str | None:
    if not ctx.quiet:
        ctx.print("Password: ")
        ctx.out.flush()
    line = ctx.stdin.readline()
    password = line.strip()
    return password or None


def _password(ctx: Context, missing_code: int) -> str:
    """The second argument, else a line read from standard input."""
    if len(ctx.args) > 1:
        return ctx.args[1]
    password = read_password(ctx)
    if password is None:
        raise CtlExit(missing_code, error_text("Password is not provided via argument or stdin"))
    return password


def _user_command(ctx: Context, request: dict[str, Any]) -> int:
    """delete_user, change_password, set_user_tags: a missing user is 67."""
    user = ctx.args[0]
    try:
        ctx.call(ctx.command.name, request)
    except BrokerError as exc:
        if exc.kind is ErrorKind.USER_NOT_FOUND:
            if ctx.json:
                raise ctx.json_error(f"User {user} does not exists") from None
            raise CtlExit(EXIT_NOUSER, error_text(f'User "{user}" does not exist')) from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


def validate_add_user(ctx: Context) -> CtlExit | None:
    if len(ctx.args) == 2 and ctx.args[0] == "":
        return ctx.usage_error("Bad argument: user cannot be an empty string", EXIT_DATAERR)
    return None


def run_add_user(ctx: Context) -> int:
    user = ctx.args[0]
    password = _password(ctx, EXIT_DATAERR)
    try:
        ctx.call("add_user", {"user": user, "password": password})
    except BrokerError as exc:
        if exc.kind is ErrorKind.EXISTS:
            if ctx.json:
                raise ctx.json_error(f"User {user} already exists") from None
            raise CtlExit(EXIT_SOFTWARE, error_text(f'User "{user}" already exists')) from None
        raise default_error(ctx, exc) from None
    if ctx.json:
        ctx.print(json_encode({"message": ADD_USER_DONE, "node": ctx.node, "status": "ok"}))
    elif not ctx.quiet:
        ctx.print(ADD_USER_DONE)
    return EXIT_OK


register(
    Command(
        "add_user",
        "add_user <username> <password>",
        "Creates a new user in the internal database. This user will have no permissions for any "
        "virtual hosts by default.",
        Section.USERS,
        run_add_user,
        min_args=1,
        max_args=2,
        usage_additional=[
            ("<username>", "Self-explanatory"),
            (
                "<password>",
                "Password this user will authenticate with. Use a blank string to "
                "disable password-based authentication.",
            ),
        ],
        validate=validate_add_user,
        banner=lambda args, opts: [f'Adding user "{args[0]}" ...'],
    )
)


def run_delete_user(ctx: Context) -> int:
    return _user_command(ctx, {"user": ctx.args[0]})


register(
    Command(
        "delete_user",
        "delete_user <username>",
        "Removes a user from the internal database. Has no effect on users provided by external "
        "backends such as LDAP",
        Section.USERS,
        run_delete_user,
        min_args=1,
        max_args=1,
        usage_additional=[("<username>", "Name of the user to delete.")],
        banner=lambda args, opts: [f'Deleting user "{args[0]}" ...'],
    )
)


def run_change_password(ctx: Context) -> int:
    password = _password(ctx, EXIT_SOFTWARE)
    return _user_command(ctx, {"user": ctx.args[0], "password": password})


register(
    Command(
        "change_password",
        "change_password <username> <password>",
        "Changes the user password",
        Section.USERS,
        run_change_password,
        min_args=1,
        max_args=2,
        usage_additional=[
            ("<username>", "Name of the user whose password should be changed"),
            ("<password>", "New password to set"),
        ],
        banner=lambda args, opts: [f'Changing password for user "{args[0]}" ...'],
    )
)


def run_clear_password(ctx: Context) -> int:
    user = ctx.args[0]
    try:
        ctx.call("clear_password", {"user": user})
    except BrokerError as exc:
        if exc.kind is ErrorKind.USER_NOT_FOUND:
            raise CtlExit(EXIT_UNAVAILABLE, error_text(f'{{:no_such_user, "{user}"}}')) from None
        raise default_error(ctx, exc) from None
    return ctx.ok()


register(
    Command(
        "clear_password",
        "clear_password <username>",
        "Clears (resets) password and disables password login for a user",
        Section.USERS,
        run_clear_password,
        min_args=1,
        max_args=1,
        usage_additional=[("<username>", "Name of the user whose password should be cleared")],
        banner=lambda args, opts: [f'Clearing password for user "{args[0]}" ...'],
    )
)


def run_authenticate_user(ctx: Context) -> int:
    user = ctx.args[0]
    password = _password(ctx, EXIT_SOFTWARE)
    try:
        ctx.call("authenticate_user", {"user": user, "password": password})
    except BrokerError as exc:
        if exc.kind in (ErrorKind.AUTH_FAILED, ErrorKind.USER_NOT_FOUND):
            detail = (
                exc.text
                if exc.kind is ErrorKind.AUTH_FAILED and exc.text
                else f"user '{user}' - invalid credentials"
            )
            raise CtlExit(
                EXIT_DATAERR, error_text(f'Error: failed to authenticate user "{user}"\n{detail}')
            ) from None
        raise default_error(ctx, exc) from None
    return ctx.message("Success")


register(
    Command(
        "authenticate_user",
        "authenticate_user <username> <password>",
        "Attempts to authenticate a user. Exits with a non-zero code if authentication fails.",
        Section.USERS,
        run_authenticate_user,
        min_args=1,
        max_args=2,
        usage_additional=[
            ("<username>", "Username to use"),
            ("<password>", "Password to use. Can be entered via stdin in interactive mode."),
        ],
        banner=lambda args, opts: [f'Authenticating user "{args[0]}" ...'],
    )
)


def run_set_user_tags(ctx: Context) -> int:
    return _user_command(ctx, {"user": ctx.args[0], "tags": ctx.args[1:]})


register(
    Command(
        "set_user_tags",
        "set_user_tags <username> <tag> [...]",
        "Sets user tags",
        Section.USERS,
        run_set_user_tags,
        min_args=1,
        max_args=None,
        usage_additional=[
            ("<username>", "Self-explanatory"),
            ("<tags>", "Space separated list of tags"),
        ],
        banner=lambda args, opts: [
            f'Setting tags for user "{args[0]}" to [{", ".join(args[1:])}] ...'
        ],
    )
)


def run_list_users(ctx: Context) -> int:
    try:
        rows = ctx.call("list_users", {})
    except BrokerError as exc:
        raise default_error(ctx, exc) from None
    return print_rows(ctx, rows, ["user", "tags"])


register(
    Command(
        "list_users",
        "list_users [--no-table-headers]",
        "List user names and tags",
        Section.USERS,
        run_list_users,
        table=True,
        has_timeout=True,
        default_timeout=LIST_TIMEOUT_MS,
        switches={"timeout": "integer"},
        banner=lambda args, opts: ["Listing users ..."],
    )
)
