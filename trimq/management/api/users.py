"""/api/users (administrators only): list, one user, create or update (201 / 204), delete,
and /api/users/without-permissions. Tags come as a list or a comma-separated string and are
shown as a list, as RabbitMQ 3.10.8 does."""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from starlette.responses import Response

from trimq.broker.auth import HASHING_ALGORITHM, User, hash_password
from trimq.management.api.vhosts import tag_list
from trimq.management.auth import ADMINISTRATOR
from trimq.management.context import Context
from trimq.management.errors import bad_request, not_found
from trimq.management.lists import respond_list
from trimq.management.routes import created, endpoint, no_content, route


def render(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "password_hash": user.password_hash,
        "hashing_algorithm": HASHING_ALGORITHM,
        "tags": list(user.tags),
        "limits": {},
    }


def _user(ctx: Context) -> User:
    user = ctx.broker.users.users.get(ctx.params["user"])
    if user is None:
        raise not_found()
    return user


def _check_hash(value: Any) -> str:
    if not isinstance(value, str):
        raise bad_request("password_hash must be a string")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"password_hash is not base64: {value}") from None
    return value


@endpoint(ADMINISTRATOR)
async def list_users(ctx: Context) -> Any:
    users = ctx.broker.users.users.values()
    return respond_list(ctx.request.query_params, users, render, name=lambda u: u.name)


@endpoint(ADMINISTRATOR)
async def list_without_permissions(ctx: Context) -> Any:
    holders = {user for _, user in ctx.broker.users.permissions}
    users = [u for u in ctx.broker.users.users.values() if u.name not in holders]
    return respond_list(ctx.request.query_params, users, render, name=lambda u: u.name)


@endpoint(ADMINISTRATOR)
async def get_user(ctx: Context) -> Any:
    return render(_user(ctx))


@endpoint(ADMINISTRATOR)
async def put_user(ctx: Context) -> Response:
    body = await ctx.json()
    if "tags" not in body:
        raise bad_request("tags_not_present")
    tags = tag_list(body["tags"])
    password = body.get("password")
    password_hash = body.get("password_hash")
    if password is not None and password_hash is not None:
        raise bad_request("both_password_and_password_hash_are_provided")
    if password is not None and not isinstance(password, str):
        raise bad_request("password must be a string")
    if password_hash is not None:
        password_hash = _check_hash(password_hash)
    name = ctx.params["user"]
    broker = ctx.broker
    existing = broker.users.users.get(name)
    if existing is None:
        if password is None and password_hash is None:
            # as RabbitMQ: a random password nobody knows
            password = base64.b64encode(os.urandom(24)).decode("ascii")
        broker.add_user(name, password, tags, password_hash=password_hash)
        return created()
    # as RabbitMQ: an update without a password or hash clears the password
    existing.password_hash = (
        hash_password(password) if password is not None else password_hash or ""
    )
    broker.set_user_tags(name, tags)  # records the user with its new hash too
    return no_content()


@endpoint(ADMINISTRATOR)
async def delete_user(ctx: Context) -> Response:
    user = _user(ctx)
    ctx.broker.delete_user(user.name)
    return no_content()


ROUTES = [
    route("/api/users", GET=list_users),
    route("/api/users/without-permissions", GET=list_without_permissions),
    route("/api/users/{user}", GET=get_user, PUT=put_user, DELETE=delete_user),
]
