"""A connection's output (trimq.server.output): small and large pieces come out in the order
written, over a socket (gathered, with partial sends) and over any other stream."""

from __future__ import annotations

import trio
import trio.testing

from trimq.server.output import KEEP_SIZE, Output


def pieces() -> list[bytes | memoryview]:
    body = bytes(range(256)) * 4096  # 1 MiB
    view = memoryview(body)
    out: list[bytes | memoryview] = []
    for i in range(40):
        out += [b"head%d" % i, view[i * 20000 : i * 20000 + KEEP_SIZE + i], b"\xce"]
    return [*out, body, b"tail"]


def test_length_counts_every_piece_and_clear_empties() -> None:
    output = Output()
    for piece in pieces():
        output += piece
    assert len(output) == sum(map(len, pieces()))
    output.clear()
    assert not output


async def test_a_socket_receives_the_pieces_in_order() -> None:
    a, b = trio.socket.socketpair()
    sender, receiver = trio.SocketStream(a), trio.SocketStream(b)
    output = Output()
    for piece in pieces():
        output += piece
    expected = b"".join(pieces())
    received = bytearray()

    async def receive() -> None:
        while len(received) < len(expected):
            received.extend(await receiver.receive_some(7919))  # slowly: partial sends

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await output.send_to(sender)
    assert received == expected
    await sender.aclose()
    await receiver.aclose()


async def test_other_streams_receive_the_pieces_in_order() -> None:
    sender, receiver = trio.testing.memory_stream_pair()
    output = Output()
    for piece in pieces():
        output += piece
    expected = b"".join(pieces())
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(output.send_to, sender)
        while len(received) < len(expected):
            received.extend(await receiver.receive_some())
    assert received == expected
