"""`message_stats` in the management API's answers: added to a queue, exchange, channel or
vhost once something was counted on it (RabbitMQ leaves the key out until then)."""

from __future__ import annotations

from typing import Any

from trimq.broker.stats import MessageStats, message_stats


def with_message_stats(answer: dict[str, Any], stats: MessageStats, kind: str) -> dict[str, Any]:
    rendered = message_stats(stats, kind)
    if rendered:
        answer["message_stats"] = rendered
    return answer
