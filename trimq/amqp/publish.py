"""Decoding what every Basic.Publish carries, its arguments and its content properties, through
small caches: a publisher sends the same exchange, routing key and properties over and over, so
a dict lookup on the encoded bytes replaces most of the decoding.

Both functions return None for input they cannot decode; the caller then takes the general
path (`frames.decode_method`, `frames.decode_content_header`), which raises RabbitMQ's error.
Cached values are shared between messages and must never be mutated (the broker copies
properties before changing them).
"""

from __future__ import annotations

import struct

from trimq.amqp import spec
from trimq.amqp.codec import TypedTable, decode_table_typed
from trimq.errors import SyntaxFrameError

CACHE_LIMIT = 4096  # entries per cache; a full cache starts again (keys may never repeat)
CACHED_SIZE = 512  # longer encodings are decoded every time, not kept

# Publish arguments after the method ids: (exchange, routing key, mandatory, immediate,
# exchange and routing key as encoded, which a delivery of the message re-sends).
PublishArgs = tuple[str, str, bool, bool, bytes]

_args_cache: dict[bytes, PublishArgs] = {}
_properties_cache: dict[bytes, tuple[spec.BasicProperties, bytes]] = {}


def publish_args(data: bytes) -> PublishArgs | None:
    """Basic.Publish's arguments from `data` (the method payload after class and method id)."""
    cached = _args_cache.get(data)
    if cached is not None:
        return cached
    size = len(data)
    if size < 5:
        return None
    exchange_end = 3 + data[2]
    if exchange_end >= size:
        return None
    key_end = exchange_end + 1 + data[exchange_end]
    if key_end + 1 != size:  # truncated, or extra octets after the bits
        return None
    bits = data[key_end]
    args = (
        data[3:exchange_end].decode("utf-8", "surrogateescape"),
        data[exchange_end + 1 : key_end].decode("utf-8", "surrogateescape"),
        bool(bits & 1),
        bool(bits & 2),
        data[2:key_end],
    )
    if size <= CACHED_SIZE:
        if len(_args_cache) >= CACHE_LIMIT:
            _args_cache.clear()
        _args_cache[data] = args
    return args


def content_properties(data: bytes) -> tuple[spec.BasicProperties, bytes] | None:
    """The properties and their encoding (what a delivery re-sends) from `data`, the content
    header payload after class, weight and body size."""
    cached = _properties_cache.get(data)
    if cached is not None:
        return cached
    try:
        properties, end = spec.BasicProperties.decode(data, 0)
    except (SyntaxFrameError, struct.error, IndexError, ValueError):
        return None
    decoded = (properties, data[:end] if end != len(data) else data)
    if len(data) <= CACHED_SIZE:
        if len(_properties_cache) >= CACHE_LIMIT:
            _properties_cache.clear()
        _properties_cache[data] = decoded
    return decoded


def clear_caches() -> None:
    """Forget every cached decoding (for leak hunting: what remains is what something holds)."""
    _args_cache.clear()
    _properties_cache.clear()


def decodable(arguments: bytes, properties: bytes) -> bool:
    """Whether a publish's arguments and properties decode: only then may the rest of it be
    waited for (the general path reports an undecodable one as soon as it arrives)."""
    return publish_args(arguments) is not None and content_properties(properties) is not None


def typed_headers(properties: bytes) -> TypedTable | None:
    """The headers of encoded content properties (as `content_properties` keeps them),
    typed-decoded, type letters kept: what a headers exchange compares."""
    (flags,) = struct.unpack_from(">H", properties, 0)
    if not flags & 0x2000:
        return None
    pos = 2
    while properties[pos - 1] & 1:  # continuation flag words
        pos += 2
    if flags & 0x8000:  # content-type
        pos += 1 + properties[pos]
    if flags & 0x4000:  # content-encoding
        pos += 1 + properties[pos]
    return decode_table_typed(properties, pos)[0]
