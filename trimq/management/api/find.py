"""GET /api/vhosts/{vhost}/find?message_id=...&correlation_id=...: where a message is in a
vhost's queues (trimq's own: which queue, which position, ready or unacked and by whom, and
the x-death history of a dead-lettered copy), nothing taken."""

from __future__ import annotations

from typing import Any

from trimq.management.amqp_ops import vhost_for
from trimq.management.context import Context
from trimq.management.errors import bad_request
from trimq.management.routes import endpoint, route
from trimq.server.peeking import find_messages


@endpoint()
async def find(ctx: Context) -> Any:
    vhost = vhost_for(ctx)
    message_id = ctx.query("message_id")
    correlation_id = ctx.query("correlation_id")
    if message_id is None and correlation_id is None:
        raise bad_request("give message_id or correlation_id")
    found = await find_messages(ctx.state, vhost, message_id, correlation_id)
    readable = {
        name
        for name in {f["queue"] for f in found}
        if ctx.broker.users.allowed(vhost.name, ctx.user.name, "read", name)
    }
    return [f for f in found if f["queue"] in readable]


ROUTES = [route("/api/vhosts/{vhost}/find", GET=find)]
