"""Record and segment framing: CRC masking, round trips, and that damage is always noticed."""

from __future__ import annotations

import crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.format import (
    FLAG_REWRITTEN,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    HeaderError,
    SegmentHeader,
    decode_record_header,
    decode_segment_header,
    encode_record,
    mask_crc,
    record_crc_ok,
    unmask_crc,
)


def test_crc32c_is_castagnoli() -> None:
    assert crc32c.crc32c(b"123456789") == 0xE3069283  # the standard check value


@given(st.integers(0, 2**32 - 1))
def test_mask_round_trips(crc: int) -> None:
    assert unmask_crc(mask_crc(crc)) == crc


def test_masked_crc_of_zeros_is_not_zero() -> None:
    # A zero-filled tail (a file extended by a crash) must never look like a valid record.
    assert not record_crc_ok(bytes(RECORD_HEADER_SIZE), 0, 0, 0)


@given(st.integers(1, 2**63), st.integers(1, 4), st.binary(max_size=300))
def test_record_round_trip(lsn: int, rtype: int, payload: bytes) -> None:
    data = encode_record(lsn, rtype, payload)
    head = decode_record_header(data, 0)
    assert (head.lsn, head.rtype, head.payload_length) == (lsn, rtype, len(payload))
    assert head.size == len(data)
    assert record_crc_ok(data, 0, head.crc, head.payload_length)
    assert data[RECORD_HEADER_SIZE:] == payload


@given(st.binary(min_size=1, max_size=200), st.data())
def test_any_bit_flip_breaks_the_crc(payload: bytes, data: st.DataObject) -> None:
    record = bytearray(encode_record(7, 2, payload))
    pos = data.draw(st.integers(0, len(record) - 1))
    record[pos] ^= 1 << data.draw(st.integers(0, 7))
    damaged = bytes(record)
    head = decode_record_header(damaged, 0)
    fits = RECORD_HEADER_SIZE + head.payload_length <= len(damaged)
    assert not (fits and record_crc_ok(damaged, 0, head.crc, head.payload_length))


def test_segment_header_round_trip() -> None:
    header = SegmentHeader(42, 1000, FLAG_REWRITTEN, 99, 4096)
    raw = header.encode()
    assert len(raw) == SEGMENT_HEADER_SIZE
    assert decode_segment_header(raw) == header
    assert decode_segment_header(raw).rewritten


@pytest.mark.parametrize("pos", range(SEGMENT_HEADER_SIZE))
def test_segment_header_damage_is_refused(pos: int) -> None:
    raw = bytearray(SegmentHeader(5, 9).encode())
    raw[pos] ^= 0x10
    with pytest.raises(HeaderError):
        decode_segment_header(bytes(raw))


def test_truncated_segment_header_is_refused() -> None:
    with pytest.raises(HeaderError, match="truncated"):
        decode_segment_header(SegmentHeader(5, 9).encode()[:-1])
