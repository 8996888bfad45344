"""/api/policies[/{vhost}[/{name}]]: lists for every management user (the vhosts it may see);
one policy, set (201 / 204) and clear for policymakers with access to the vhost. Validation
is the broker's (the same texts as trimqctl set_policy), HTML-escaped as RabbitMQ's API
sends them."""

from __future__ import annotations

import html
from typing import Any

from starlette.responses import Response

from trimq.broker.broker import AdminError
from trimq.broker.policy import Policy
from trimq.management.auth import POLICYMAKER
from trimq.management.context import Context, as_int
from trimq.management.errors import ApiError, bad_request, not_authorised, not_found
from trimq.management.lists import respond_list
from trimq.management.routes import created, endpoint, no_content, route

OBJECT_REFUSED = "User not authorised to access object"


def render(policy: Policy) -> dict[str, Any]:
    return {
        "vhost": policy.vhost,
        "name": policy.name,
        "pattern": policy.pattern,
        "apply-to": policy.apply_to,
        "definition": dict(policy.definition),
        "priority": policy.priority,
    }


def _answer(ctx: Context, policies: list[Policy]) -> Any:
    return respond_list(
        ctx.request.query_params,
        policies,
        render,
        name=lambda p: p.name,
        keys={"vhost": lambda p: p.vhost},
        default_sort=("vhost", "name"),
    )


@endpoint()
async def list_policies(ctx: Context) -> Any:
    return _answer(ctx, [p for v in ctx.visible_vhosts() for p in v.policies.values()])


@endpoint()
async def vhost_policies(ctx: Context) -> Any:
    return _answer(ctx, list(ctx.accessible_vhost().policies.values()))


@endpoint(POLICYMAKER)
async def get_policy(ctx: Context) -> Any:
    vhost = ctx.accessible_vhost(OBJECT_REFUSED)
    policy = vhost.policies.get(ctx.params["name"])
    if policy is None:
        raise not_found()
    return render(policy)


@endpoint(POLICYMAKER)
async def put_policy(ctx: Context) -> Response:
    vhost_name = ctx.params["vhost"]
    if vhost_name not in ctx.broker.vhosts:
        raise ApiError(404, "not_found", "vhost_not_found")
    if not ctx.may_see(vhost_name):
        raise not_authorised(OBJECT_REFUSED)
    body = await ctx.json()
    for key in ("pattern", "definition"):
        if key not in body:
            raise bad_request(f"[{{key_missing,{key}}}]")
    pattern = body["pattern"]
    if not isinstance(pattern, str):
        raise bad_request("Validation failed\n\npattern should be a string\n")
    apply_to = body.get("apply-to", "all")
    if not isinstance(apply_to, str):
        raise bad_request("Validation failed\n\napply-to should be a string\n")
    priority = as_int(body.get("priority", 0), "priority")
    name = ctx.params["name"]
    exists = name in ctx.broker.vhosts[vhost_name].policies
    try:
        ctx.broker.set_policy(vhost_name, name, pattern, body["definition"], priority, apply_to)
    except AdminError as exc:
        raise bad_request(html.escape(exc.message, quote=False).rstrip("\n") + "\n") from None
    return no_content() if exists else created()


@endpoint(POLICYMAKER)
async def delete_policy(ctx: Context) -> Response:
    vhost = ctx.accessible_vhost(OBJECT_REFUSED)
    if ctx.params["name"] not in vhost.policies:
        raise not_found()
    ctx.broker.clear_policy(vhost.name, ctx.params["name"])
    return no_content()


ROUTES = [
    route("/api/policies", GET=list_policies),
    route("/api/policies/{vhost}", GET=vhost_policies),
    route("/api/policies/{vhost}/{name}", GET=get_policy, PUT=put_policy, DELETE=delete_policy),
]
