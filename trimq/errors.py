"""Errors that end in a Channel.Close or Connection.Close with RabbitMQ's reply code and text.

Pure code raises them; the channel and connection boundaries (trimq/server/) turn them into
close frames and a log line. The text given is the detail after RabbitMQ's `NAME - ` prefix.
"""

from __future__ import annotations

REPLY_NAMES = {
    200: "OK",
    311: "CONTENT_TOO_LARGE",
    312: "NO_ROUTE",
    313: "NO_CONSUMERS",
    320: "CONNECTION_FORCED",
    402: "INVALID_PATH",
    403: "ACCESS_REFUSED",
    404: "NOT_FOUND",
    405: "RESOURCE_LOCKED",
    406: "PRECONDITION_FAILED",
    501: "FRAME_ERROR",
    502: "SYNTAX_ERROR",
    503: "COMMAND_INVALID",
    504: "CHANNEL_ERROR",
    505: "UNEXPECTED_FRAME",
    506: "RESOURCE_ERROR",
    530: "NOT_ALLOWED",
    540: "NOT_IMPLEMENTED",
    541: "INTERNAL_ERROR",
}

ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
CONNECTION_FORCED = 320
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541


def reply_text(code: int, detail: str) -> str:
    """RabbitMQ's reply text: `NAME - detail` (or `NAME` alone), cut to fit a shortstr."""
    name = REPLY_NAMES.get(code, "UNKNOWN")
    text = f"{name} - {detail}" if detail else name
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) > 255:  # as RabbitMQ: cut to 252 bytes and mark the cut
        text = raw[:252].decode("utf-8", "surrogateescape") + "..."
    return text


class AMQPError(Exception):
    """A protocol-visible error: a reply code, RabbitMQ's detail text, and the method at fault.

    A detail that echoes the client's octets (RabbitMQ's texts do: they are the client's own
    data) comes with `log_detail`, the same text without them: a frame can hold a password
    or a message body, which must never reach the log. Logs use `log_text`, and str() of the
    error is the log form too, so that a traceback cannot carry the octets either.
    """

    def __init__(
        self,
        code: int,
        detail: str,
        class_id: int = 0,
        method_id: int = 0,
        log_detail: str | None = None,
    ) -> None:
        self.log_detail = detail if log_detail is None else log_detail
        super().__init__(self.log_detail)
        self.code = code
        self.detail = detail
        self.class_id = class_id
        self.method_id = method_id

    @property
    def text(self) -> str:
        """The reply text sent to the client."""
        return reply_text(self.code, self.detail)

    @property
    def log_text(self) -> str:
        """The reply text as logged: no octet of the client's frames."""
        return reply_text(self.code, self.log_detail)


class ChannelError(AMQPError):
    """Closes only the channel (soft error)."""


class ConnectionError(AMQPError):
    """Closes the whole connection (hard error)."""


class FrameError(ConnectionError):
    """The peer sent bytes that are not a valid frame (501 FRAME_ERROR)."""

    def __init__(self, detail: str, log_detail: str | None = None) -> None:
        super().__init__(FRAME_ERROR, detail, log_detail=log_detail)


class SyntaxFrameError(ConnectionError):
    """A frame whose method or content header could not be decoded (502 SYNTAX_ERROR)."""

    def __init__(self, detail: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(SYNTAX_ERROR, detail, class_id, method_id)
