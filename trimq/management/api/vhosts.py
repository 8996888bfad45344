"""/api/vhosts: list (the vhosts the user may see), and, for administrators, one vhost, create
(201; the creator gets full permissions in it) or update (204), and delete (its connections
are closed first), as RabbitMQ does."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from trimq.broker.vhost import VHost
from trimq.management.auth import ADMINISTRATOR
from trimq.management.context import Context, as_bool
from trimq.management.errors import bad_request
from trimq.management.lists import respond_list
from trimq.management.message_stats import with_message_stats
from trimq.management.routes import created, endpoint, no_content, route
from trimq.server.info import NODE
from trimq.server.rates import vhost_stats
from trimq.server.state import ServerState, close_connections


def render(vhost: VHost, state: ServerState | None = None) -> dict[str, Any]:
    """A vhost as RabbitMQ shows it (with its message_stats when `state` is given)."""
    answer = {
        "name": vhost.name,
        "description": vhost.description,
        "tags": list(vhost.tags),
        "default_queue_type": "undefined",
        "metadata": {"description": vhost.description, "tags": list(vhost.tags)},
        "tracing": False,
        "cluster_state": {NODE: "running"},
    }
    ready = unacked = 0
    for queue in vhost.queues.values():
        ready += len(queue.ready)
        unacked += queue.unacked
    answer["messages"] = ready + unacked
    answer["messages_ready"] = ready
    answer["messages_unacknowledged"] = unacked
    if state is not None:
        with_message_stats(answer, vhost_stats(state, vhost), "vhost")
    return answer


def tag_list(value: Any) -> list[str]:
    """Tags as a list, or as a comma-separated string (rabbitmqadmin, older clients)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    raise bad_request(f"tags: {value!r} is not a list of tags")


@endpoint()
async def list_vhosts(ctx: Context) -> Any:
    return respond_list(
        ctx.request.query_params,
        ctx.visible_vhosts(),
        lambda v: render(v, ctx.state),
        name=lambda v: v.name,
    )


@endpoint(ADMINISTRATOR)
async def get_vhost(ctx: Context) -> Any:
    return render(ctx.vhost(), ctx.state)


@endpoint(ADMINISTRATOR)
async def put_vhost(ctx: Context) -> Response:
    body = await ctx.json()
    name = ctx.params["vhost"]
    description = body.get("description", "")
    if not isinstance(description, str):
        raise bad_request("description must be a string")
    tags = tag_list(body.get("tags"))
    as_bool(body.get("tracing"))  # accepted and checked; trimq does not trace
    if name in ctx.broker.vhosts:
        ctx.broker.update_vhost(name, description, tags)
        return no_content()
    ctx.broker.add_vhost(name, description, tags)
    # as RabbitMQ: whoever creates a vhost over the API gets full permissions in it
    ctx.broker.set_permissions(name, ctx.user.name, ".*", ".*", ".*")
    return created()


@endpoint(ADMINISTRATOR)
async def delete_vhost(ctx: Context) -> Response:
    name = ctx.vhost().name
    inside = [c for c in ctx.state.connections if c.opened and c.vhost.name == name]
    await close_connections(inside, f"vhost '{name}' is deleted")
    if name in ctx.broker.vhosts:
        ctx.broker.delete_vhost(name)
    return no_content()


ROUTES = [
    route("/api/vhosts", GET=list_vhosts),
    route("/api/vhosts/{vhost}", GET=get_vhost, PUT=put_vhost, DELETE=delete_vhost),
]
