"""POST /api/queues/{vhost}/{name}/get: take up to `count` messages as Basic.Get would, then
ack, reject or requeue them all as `ackmode` says (RabbitMQ's four modes), answering each
with RabbitMQ's fields. Requeued messages go back to their places, flagged redelivered, as
RabbitMQ's get does (peek is the way to look without that)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from trimq.broker.peek import entry_json
from trimq.broker.queue import Queue
from trimq.broker.stats import MessageStats
from trimq.management.errors import ApiError, bad_request

ACKMODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")
MAX_GET = 100_000


class TermReason(ApiError):
    """A 400 whose reason RabbitMQ sends as an Erlang tuple: a JSON list
    (["not_integer", "x"])."""

    def __init__(self, *reason: str) -> None:
        super().__init__(400, "bad_request", repr(reason))
        self.term = list(reason)

    def response(self) -> Response:
        return JSONResponse({"error": self.error, "reason": self.term}, self.status)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise TermReason("not_integer", str(value).lower())
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise TermReason("not_integer", str(value))


def _required(body: dict[str, Any], key: str) -> Any:
    if key not in body:
        raise bad_request(f"[{{key_missing,{key}}}]")
    return body[key]


def get_messages(
    queue: Queue, body: dict[str, Any], counters: MessageStats | None = None
) -> list[dict[str, Any]]:
    """The messages a POST .../get takes (`counters`: the channel counters its gets count
    on, as RabbitMQ makes them on a channel of its own)."""
    count = min(_integer(_required(body, "count")), MAX_GET)
    ackmode = _required(body, "ackmode")
    encoding = _required(body, "encoding")
    if ackmode not in ACKMODES:
        raise bad_request(f"Unsupported ackmode. Please use one of {', '.join(ACKMODES)}.")
    if encoding not in ("auto", "base64"):
        raise bad_request("Unsupported encoding. Please use auto or base64.")
    truncate = body.get("truncate")
    limit = _integer(truncate) if truncate not in (None, "") else None
    taken = []
    answers = []
    no_ack = ackmode == "ack_requeue_false"
    for _ in range(count):
        entry = queue.get(no_ack, counters)
        if entry is None:
            break
        taken.append(entry)
        answer = entry_json(entry, encoding, limit)
        answer["message_count"] = len(queue.ready)
        answers.append(answer)
    if taken and not no_ack:
        if ackmode == "reject_requeue_false":
            queue.reject(taken)
        else:
            queue.requeue(taken)
    return [_ordered(a) for a in answers]


def _ordered(answer: dict[str, Any]) -> dict[str, Any]:
    """RabbitMQ's field order: message_count after routing_key."""
    order = (
        "payload_bytes",
        "redelivered",
        "exchange",
        "routing_key",
        "message_count",
        "properties",
        "payload",
        "payload_encoding",
    )
    return {key: answer[key] for key in order}
