"""/api/exchanges: list (every visible vhost, one vhost), one exchange (GET, PUT with
RabbitMQ's 201/204, DELETE with if-unused), publish, and an exchange's bindings as source or
destination. The default exchange is addressed as `amq.default` and listed with the name "".
message_stats are added by the metrics module where it keeps them."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from trimq.broker.exchange import Exchange
from trimq.broker.vhost import DEFAULT_EXCHANGES, VHost
from trimq.errors import AMQPError
from trimq.management.amqp_ops import (
    VHOST_NOT_FOUND,
    http_error,
    json_table,
    permit,
    plain_table,
    vhost_for,
)
from trimq.management.api.bindings import destination_bindings, source_bindings
from trimq.management.api.publish import publish
from trimq.management.context import Context, as_bool
from trimq.management.errors import bad_request, not_authorised, not_found
from trimq.management.lists import respond_list
from trimq.management.message_stats import with_message_stats
from trimq.management.routes import created, endpoint, no_content, route

BUILT_IN = frozenset(["", *(name for name, _type in DEFAULT_EXCHANGES)])


def render_exchange(exchange: Exchange) -> dict[str, Any]:
    shown = {
        "arguments": plain_table(exchange.arguments),
        "auto_delete": exchange.auto_delete,
        "durable": exchange.durable,
        "internal": exchange.internal,
        "name": exchange.name,
        "type": exchange.TYPE,
        "vhost": exchange.vhost,
    }
    if exchange.name in BUILT_IN:
        shown["user_who_performed_action"] = "rmq-internal"
    if exchange.policy is not None:
        shown["policy"] = exchange.policy.name
    return with_message_stats(shown, exchange.stats, "exchange")


def _exchange_name(ctx: Context) -> str:
    name = ctx.params["name"]
    return "" if name == "amq.default" else name


def _exchange(ctx: Context) -> tuple[VHost, Exchange]:
    vhost = vhost_for(ctx)
    exchange = vhost.exchanges.get(_exchange_name(ctx))
    if exchange is None:
        raise not_found()
    return vhost, exchange


def _list(ctx: Context, vhosts: list[VHost]) -> Any:
    return respond_list(
        ctx.request.query_params,
        (x for vhost in vhosts for x in vhost.exchanges.values()),
        render_exchange,
        name=lambda x: x.name,
        keys={"vhost": lambda x: x.vhost},
        default_sort=("vhost", "name"),
    )


@endpoint()
async def list_exchanges(ctx: Context) -> Any:
    return _list(ctx, ctx.visible_vhosts())


@endpoint()
async def list_vhost_exchanges(ctx: Context) -> Any:
    return _list(ctx, [vhost_for(ctx)])


@endpoint()
async def get_exchange(ctx: Context) -> Any:
    exchange = _exchange(ctx)[1]
    return {**render_exchange(exchange), "incoming": [], "outgoing": []}


@endpoint()
async def put_exchange(ctx: Context) -> Response:
    vhost = vhost_for(ctx, missing=VHOST_NOT_FOUND)
    name = _exchange_name(ctx)
    body = await ctx.json()
    if name == "" or (name.startswith("amq.") and name not in vhost.exchanges):
        raise not_authorised("Access refused.")
    permit(ctx, vhost.name, "configure", name)
    type_ = body.get("type", "direct")
    if not isinstance(type_, str):
        raise bad_request(f"unknown exchange type '{type_}'")
    arguments = json_table(body.get("arguments"))
    alternate = arguments.get("alternate-exchange")

    def may_forward(target: str) -> None:
        permit(ctx, vhost.name, "read", name)
        permit(ctx, vhost.name, "write", target)

    try:
        made = vhost.declare_exchange(
            name,
            type_,
            durable=as_bool(body.get("durable")),
            auto_delete=as_bool(body.get("auto_delete")),
            internal=as_bool(body.get("internal")),
            arguments=arguments,
            may_forward=may_forward if alternate is not None else None,
        )[1]
    except AMQPError as exc:
        raise http_error(exc) from None
    return created() if made else no_content()


@endpoint()
async def delete_exchange(ctx: Context) -> Response:
    vhost, exchange = _exchange(ctx)
    if exchange.name in BUILT_IN:
        raise not_authorised("Access refused.")
    permit(ctx, vhost.name, "configure", exchange.name)
    try:
        vhost.delete_exchange(exchange.name, if_unused=as_bool(ctx.query("if-unused")))
    except AMQPError as exc:
        raise http_error(exc) from None
    return no_content()


@endpoint()
async def publish_to_exchange(ctx: Context) -> Any:
    # RabbitMQ refuses a publish into a vhost that does not exist as one not permitted
    vhost = vhost_for(ctx, missing=not_authorised("Access refused."))
    return await publish(ctx, vhost, ctx.params["name"])


@endpoint()
async def bindings_as_source(ctx: Context) -> Any:
    vhost, exchange = _exchange(ctx)
    return source_bindings(vhost, exchange)


@endpoint()
async def bindings_as_destination(ctx: Context) -> Any:
    vhost, exchange = _exchange(ctx)
    return destination_bindings(vhost, exchange)


ROUTES = [
    route("/api/exchanges", GET=list_exchanges),
    route("/api/exchanges/{vhost}", GET=list_vhost_exchanges),
    route(
        "/api/exchanges/{vhost}/{name}",
        GET=get_exchange,
        PUT=put_exchange,
        DELETE=delete_exchange,
    ),
    route("/api/exchanges/{vhost}/{name}/publish", POST=publish_to_exchange),
    route("/api/exchanges/{vhost}/{name}/bindings/source", GET=bindings_as_source),
    route("/api/exchanges/{vhost}/{name}/bindings/destination", GET=bindings_as_destination),
]
