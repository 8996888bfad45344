"""A connection's bytes waiting to be sent, gathered so that large message bodies are never
copied on their way out.

Small writes (frames, frame headers) are appended to one bytearray; a large piece (a body, or
a body frame's slice of it) is kept by reference. The writer sends all pieces with one
sendmsg() per batch (scatter/gather), so a 256 KiB body is copied only by the kernel. Appending
large pieces to a single bytearray instead would copy each of them at least once, and again
every time the bytearray grows (by 1/8 at a time).
"""

from __future__ import annotations

import errno

import trio

KEEP_SIZE = 16384  # pieces from this size on are kept, not copied
IOV_MAX = 1024  # buffers per sendmsg() (Linux's limit)

Piece = bytes | bytearray | memoryview


class Output:
    __slots__ = ("_parts", "_tail", "size")

    def __init__(self) -> None:
        self._parts: list[Piece] = []
        self._tail = bytearray()
        self.size = 0  # bytes held (len() too; the attribute is cheaper on the hot path)

    def __iadd__(self, data: Piece) -> Output:
        if len(data) >= KEEP_SIZE:
            if self._tail:
                self._parts.append(self._tail)
                self._tail = bytearray()
            self._parts.append(data)
        else:
            self._tail += data
        self.size += len(data)
        return self

    def __len__(self) -> int:
        return self.size

    def clear(self) -> None:
        self._parts = []
        self._tail = bytearray()
        self.size = 0

    async def send_to(self, stream: trio.abc.SendStream) -> None:
        """Send everything, in order (raises what `send_all` raises)."""
        parts = self._parts
        if self._tail:
            parts = [*parts, self._tail]
        if len(parts) == 1:
            await stream.send_all(parts[0])
        elif isinstance(stream, trio.SocketStream):
            await _send_gathered(stream, parts)
        else:
            for part in parts:
                await stream.send_all(part)


async def _send_gathered(stream: trio.SocketStream, parts: list[Piece]) -> None:
    sock = stream.socket
    try:
        while parts:
            sent = await sock.sendmsg(parts[:IOV_MAX])
            done = 0
            while done < len(parts) and sent >= len(parts[done]):
                sent -= len(parts[done])
                done += 1
            parts = parts[done:]
            if sent:
                parts[0] = memoryview(parts[0])[sent:]
    except OSError as exc:  # as SocketStream.send_all reports them
        if exc.errno == errno.EBADF:
            raise trio.ClosedResourceError("socket was already closed") from None
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
