"""Per-channel command assembly: a content-bearing method, then its header, then body frames.

`ContentAssembler.feed(frame)` returns a complete `Command` or None while content is still
arriving. Frames out of that order are connection errors (505 UNEXPECTED_FRAME), as in RabbitMQ.
"""

from __future__ import annotations

from trimq.amqp import frames, spec
from trimq.errors import PRECONDITION_FAILED, UNEXPECTED_FRAME, ChannelError, ConnectionError


class Command:
    """A method with its content, if it carries one."""

    __slots__ = ("body", "method", "properties", "properties_raw")

    def __init__(
        self,
        method: spec.Method,
        properties: spec.BasicProperties | None = None,
        properties_raw: bytes = b"",
        body: bytes = b"",
    ) -> None:
        self.method = method
        self.properties = properties
        self.properties_raw = properties_raw
        self.body = body


class ContentAssembler:
    __slots__ = ("_header", "_method", "_parts", "_received", "max_body_size")

    def __init__(self, max_body_size: int = 128 * 1024 * 1024) -> None:
        self._method: spec.Method | None = None
        self._header: frames.ContentHeader | None = None
        self._parts: list[bytes] = []
        self._received = 0
        self.max_body_size = max_body_size

    @property
    def expecting_content(self) -> bool:
        return self._method is not None

    def feed(self, frame: frames.Frame) -> Command | None:
        kind = frame.type
        if kind == frames.METHOD:
            if self._header is not None:
                raise self._unexpected("expected content body, got non content body frame instead")
            if self._method is not None:
                raise self._unexpected(
                    f"expected content header for class {self._method.CLASS_ID}, "
                    f"got non content header frame instead"
                )
            method = frames.decode_method(frame.payload)
            if method.HAS_CONTENT:
                self._method = method
                return None
            return Command(method)
        if self._method is None:
            raise ConnectionError(
                UNEXPECTED_FRAME, "expected method frame, got non method frame instead"
            )
        if kind == frames.HEADER:
            if self._header is not None:
                raise self._unexpected("expected content body, got non content body frame instead")
            header = frames.decode_content_header(frame.payload)
            if header.class_id != self._method.CLASS_ID:
                raise self._unexpected(
                    f"expected content header for class {self._method.CLASS_ID}, "
                    f"got one for class {header.class_id} instead"
                )
            if header.body_size > self.max_body_size:
                method = self._method
                self.reset()
                raise ChannelError(  # as RabbitMQ: the channel closes, blaming the publish
                    PRECONDITION_FAILED,
                    f"message size {header.body_size} is larger than configured max size "
                    f"{self.max_body_size}",
                    method.CLASS_ID,
                    method.METHOD_ID,
                )
            self._header = header
            if header.body_size == 0:
                return self._complete(b"")
            return None
        if kind == frames.BODY:
            if self._header is None:
                raise self._unexpected(
                    f"expected content header for class {self._method.CLASS_ID}, "
                    f"got non content header frame instead"
                )
            self._received += len(frame.payload)
            if self._received > self._header.body_size:
                # As RabbitMQ: an overshooting body never completes; the next frame that is
                # not a body is the error. Keep nothing of it meanwhile.
                self._parts = []
                return None
            if self._received == self._header.body_size:
                if not self._parts:
                    return self._complete(frame.payload)
                self._parts.append(frame.payload)
                return self._complete(b"".join(self._parts))
            self._parts.append(frame.payload)
            return None
        raise self._unexpected(f"unexpected frame type {kind} on a channel")

    def _complete(self, body: bytes) -> Command:
        assert self._method is not None and self._header is not None
        command = Command(self._method, self._header.properties, self._header.properties_raw, body)
        self.reset()
        return command

    def reset(self) -> None:
        """Forget a partly received content (the channel closed)."""
        self._method = None
        self._header = None
        self._parts = []
        self._received = 0

    def _unexpected(self, detail: str) -> ConnectionError:
        method = self._method
        error = ConnectionError(UNEXPECTED_FRAME, detail)
        if method is not None:
            error.class_id, error.method_id = method.CLASS_ID, method.METHOD_ID
        return error

    @property
    def announced_size(self) -> int | None:
        return self._header.body_size if self._header is not None else None
