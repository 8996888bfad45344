"""Bytes on disk: segment headers and record framing, each protected by a masked CRC32C.

The CRC is masked as LevelDB does (rotate and add a constant) so that a CRC computed over data
that itself contains CRCs, or over runs of zeros, does not look valid by accident.

Segment header (48 bytes, little endian):
    magic "TRIMQWAL" | version u16 | flags u16 | base LSN u64 | next message id u64 |
    end LSN u64 | sealed size u64 | crc u32
Record (17-byte header, then the payload):
    crc u32 | payload length u32 | LSN u64 | record type u8 | payload
The record CRC covers everything after itself: length, LSN, type and payload.

Batch mark (format version 2): a record of type BATCH_MARK that opens every write the
committer makes to a segment (one group-commit batch, or its part in one segment). Its LSN is
the batch's first LSN; it takes no LSN of its own (the records after it carry that one), and
its 16-byte payload is:
    last LSN of the batch u64 | durable LSN u64
where the durable LSN is the highest LSN the committer knew to be on disk (fsynced and so
possibly confirmed) when it wrote the batch. A later batch mark therefore proves that every
record up to its durable LSN had been made durable: damage there is corruption, whereas
damage that no later mark vouches for lies in the last write, which a crash can tear.

Version 1 segments (written before batch marks) hold no marks; version 2 is written, both are
read. An older binary refuses a version 2 segment ("unsupported segment format version 2").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c

FORMAT_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})
BATCHED_VERSION = 2  # the first version whose appended segments carry batch marks
SEGMENT_MAGIC = b"TRIMQWAL"

# The segment's LSNs may skip: records were removed from it (compaction or repair).
FLAG_REWRITTEN = 0x0001
KNOWN_FLAGS = FLAG_REWRITTEN

_SEGMENT_HEADER = struct.Struct("<8sHHQQQQI")
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size  # 48

_RECORD_HEADER = struct.Struct("<IIQB")
RECORD_HEADER_SIZE = _RECORD_HEADER.size  # 17
_RECORD_TAIL = struct.Struct("<IQB")  # what the record CRC covers ahead of the payload

# No record is larger than this; a length field above it is damage, not a huge record.
MAX_PAYLOAD = 1 << 30

MASK_DELTA = 0xA282EAD8


def mask_crc(crc: int) -> int:
    """LevelDB's mask: rotate right by 15 bits and add a constant."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Inverse of mask_crc."""
    rot = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def checksum(data: bytes | memoryview) -> int:
    """Masked CRC32C of `data`."""
    return mask_crc(crc32c.crc32c(data))


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """What a segment says about itself.

    base_lsn names the file: no record in it has a lower LSN, and in a segment that was never
    rewritten the first record has exactly this LSN. next_message_id is the message id counter
    when the segment was started, so the counter survives compaction deleting the records
    that carried the highest ids.

    A rewritten segment (compaction, repair) is immutable and says more: end_lsn, the last LSN
    its span covers (the next segment starts right after it), and sealed_size, its exact file
    size. With those, and with a plain sealed segment's last record being the LSN just below
    the next segment's base, a lost segment or a cut at a record boundary is still noticed.
    """

    base_lsn: int
    next_message_id: int = 1
    flags: int = 0
    end_lsn: int = 0
    sealed_size: int = 0
    version: int = FORMAT_VERSION

    @property
    def rewritten(self) -> bool:
        return bool(self.flags & FLAG_REWRITTEN)

    @property
    def batched(self) -> bool:
        """Whether every write appended to this segment begins with a batch mark."""
        return self.version >= BATCHED_VERSION and not self.rewritten

    def encode(self) -> bytes:
        head = _SEGMENT_HEADER.pack(
            SEGMENT_MAGIC,
            self.version,
            self.flags,
            self.base_lsn,
            self.next_message_id,
            self.end_lsn,
            self.sealed_size,
            0,
        )[:-4]
        return head + struct.pack("<I", checksum(head))


class HeaderError(ValueError):
    """A segment header that cannot be trusted (the reason is the message)."""


def decode_segment_header(data: bytes | memoryview) -> SegmentHeader:
    """Parse and check a segment header; raises HeaderError saying what is wrong."""
    if len(data) < SEGMENT_HEADER_SIZE:
        raise HeaderError(f"segment header truncated ({len(data)} of {SEGMENT_HEADER_SIZE} bytes)")
    magic, version, flags, base, next_id, end, sealed, crc = _SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        raise HeaderError("bad segment magic")
    if crc != checksum(data[: SEGMENT_HEADER_SIZE - 4]):
        raise HeaderError("segment header CRC mismatch")
    if version not in READABLE_VERSIONS:
        raise HeaderError(f"unsupported segment format version {version}")
    if flags & ~KNOWN_FLAGS:
        raise HeaderError(f"unknown segment flags {flags:#x}")
    if base < 1:
        raise HeaderError("segment base LSN is 0")
    return SegmentHeader(base, next_id, flags, end, sealed, version)


def rewritten_header(
    base_lsn: int, next_message_id: int, end_lsn: int, record_bytes: int
) -> SegmentHeader:
    """The header of a segment rewritten to hold `record_bytes` bytes of records."""
    return SegmentHeader(
        base_lsn, next_message_id, FLAG_REWRITTEN, end_lsn, SEGMENT_HEADER_SIZE + record_bytes
    )


_CRC = struct.Struct("<I")


def encode_record(lsn: int, rtype: int, payload: bytes) -> bytes:
    """Frame one record: header with CRC, then the payload (once per record appended: the
    mask is computed inline and the parts joined with one copy)."""
    tail = _RECORD_TAIL.pack(len(payload), lsn, rtype)
    crc = crc32c.crc32c(payload, crc32c.crc32c(tail))
    crc = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF  # mask_crc
    return b"".join((_CRC.pack(crc), tail, payload))


@dataclass(frozen=True, slots=True)
class RecordHeader:
    """A parsed record header; payload_length excludes the header itself."""

    crc: int
    payload_length: int
    lsn: int
    rtype: int

    @property
    def size(self) -> int:
        return RECORD_HEADER_SIZE + self.payload_length


def decode_record_header(data: bytes | memoryview, offset: int) -> RecordHeader:
    """Parse the header at `offset` (the caller checks that 17 bytes are there)."""
    return RecordHeader(*_RECORD_HEADER.unpack_from(data, offset))


# Fast path for scanning: (crc, length, lsn, type) without building an object.
unpack_record_header = _RECORD_HEADER.unpack_from


def record_crc_ok(data: bytes | memoryview, offset: int, crc: int, payload_length: int) -> bool:
    """Whether the record at `offset` (whose header says crc and payload_length, and which the
    caller checked lies within data) matches its CRC."""
    end = offset + RECORD_HEADER_SIZE + payload_length
    return crc == mask_crc(crc32c.crc32c(memoryview(data)[offset + 4 : end]))


BATCH_MARK = 5  # the record type of a batch mark (not a storage record: see the top)
_MARK = struct.Struct("<QQ")
MARK_SIZE = RECORD_HEADER_SIZE + _MARK.size  # 33


def encode_batch_mark(first_lsn: int, last_lsn: int, durable_lsn: int) -> bytes:
    """The mark that opens a write of the records first_lsn..last_lsn."""
    return encode_record(first_lsn, BATCH_MARK, _MARK.pack(last_lsn, durable_lsn))


def decode_batch_mark(first_lsn: int, payload: bytes | memoryview) -> tuple[int, int] | None:
    """(last LSN, durable LSN) of a batch mark whose CRC is right, or None when its content
    cannot be (a batch ends before it starts, or calls its own records durable)."""
    if len(payload) != _MARK.size:
        return None
    last, durable = _MARK.unpack(payload)
    if last < first_lsn or durable >= first_lsn:
        return None
    return last, durable
