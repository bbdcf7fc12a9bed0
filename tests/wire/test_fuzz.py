"""Hostile input: random bytes and mutations of the reference messages only ever give a Message or
a DecodeError (never another exception, never a hang), a decoded message re-encodes to bytes that
decode to the same message, and decoding time grows linearly with the message.

About 14,000 examples in all (max_examples set per test, so the count does not depend on the
profile); CI runs them derandomized (HYPOTHESIS_PROFILE=ci)."""

from __future__ import annotations

import contextlib
import struct
import time
import timeit
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ikev2.constants import ExchangeType, PayloadType
from ikev2.errors import DecodeError, InvalidSyntax, UnsupportedCriticalPayload
from ikev2.wire import (
    Header,
    Message,
    NotifyPayload,
    UnknownPayload,
    decode_message,
    decode_payloads,
    encode_message,
    encode_payloads,
    validate_payloads,
)
from ikev2.wire.chain import walk_chain

HEX = Path(__file__).resolve().parents[2] / "fixtures" / "captures" / "ikev2-reference.hex"
MESSAGES = [bytes.fromhex(line) for line in HEX.read_text().split()]
PAYLOAD_TYPES = [int(t) for t in PayloadType] + [0, 1, 99, 200, 255]


def check(data: bytes) -> None:
    """The error contract, plus: what decodes re-encodes to an equal message."""
    try:
        message = decode_message(data)
    except DecodeError as error:
        assert isinstance(error.reason, str) and error.reason
        assert 0 <= error.offset <= max(len(data), 28)
        return
    again = decode_message(encode_message(message))
    assert again.payloads == message.payloads
    header = message.header
    with contextlib.suppress(InvalidSyntax, UnsupportedCriticalPayload):
        validate_payloads(header.exchange, header.is_response, message.payloads, inner=False)


def with_length(data: bytes | bytearray) -> bytes:
    fixed = bytearray(data)
    if len(fixed) >= 28:
        struct.pack_into(">I", fixed, 24, len(fixed))
    return bytes(fixed)


@settings(max_examples=2500)
@given(st.binary(max_size=700))
def test_random_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=2500)
@given(st.sampled_from(PAYLOAD_TYPES), st.sampled_from(list(ExchangeType)), st.binary(max_size=600))
def test_valid_header_random_chain(first: int, exchange: int, body: bytes) -> None:
    header = struct.pack(">16sBBBBII", bytes(16), first, 0x20, exchange, 0x08, 0, 28 + len(body))
    check(header + body)


@settings(max_examples=3000)
@given(st.sampled_from(MESSAGES), st.lists(st.integers(min_value=0), min_size=1, max_size=8))
def test_bit_flips(message: bytes, positions: list[int]) -> None:
    data = bytearray(message)
    for position in positions:
        bit = position % (len(data) * 8)
        data[bit // 8] ^= 1 << (bit % 8)
    check(bytes(data))
    check(with_length(data))  # also past the header length check


@settings(max_examples=1500)
@given(st.sampled_from(MESSAGES), st.integers(min_value=0))
def test_truncations(message: bytes, cut: int) -> None:
    data = message[: cut % len(message)]
    check(data)
    check(with_length(data))


@settings(max_examples=1500)
@given(st.sampled_from(MESSAGES), st.integers(min_value=0), st.binary(min_size=1, max_size=40))
def test_inserted_bytes(message: bytes, where: int, extra: bytes) -> None:
    position = where % len(message)
    data = message[:position] + extra + message[position:]
    check(data)
    check(with_length(data))


@settings(max_examples=2000)
@given(
    st.sampled_from(MESSAGES),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=0xFFFF),
)
def test_payload_length_fields(message: bytes, which: int, length: int) -> None:
    """Overwrite one payload's length field (outer chain) with any 16-bit value."""
    slices = walk_chain(message, message[16], 28, len(message), allow_encrypted=True)
    target = slices[which % len(slices)]
    data = bytearray(message)
    struct.pack_into(">H", data, target.start + 2, length)
    check(bytes(data))


@settings(max_examples=1000)
@given(
    st.sampled_from(PAYLOAD_TYPES), st.binary(max_size=600), st.sampled_from([None, True, False])
)
def test_random_inner_chains(first: int, data: bytes, is_response: bool | None) -> None:
    try:
        payloads = decode_payloads(first, data, 28, is_response=is_response)
    except DecodeError as error:
        assert error.offset >= 28
        return
    first_again, chain = encode_payloads(payloads)
    assert decode_payloads(first_again, chain) == payloads


def _notify_message(count: int) -> bytes:
    notifies = tuple(NotifyPayload(16388, data=bytes(20)) for _ in range(count))
    return encode_message(Message(Header(bytes(8), bytes(8), 0, 37, 0x08, 0, 0), notifies))


def _best_time(data: bytes) -> float:
    # CPU time of this process, not wall time: on a busy machine the scheduler's preemptions
    # land on the longer run more often and made a linear decoder look 40x slower
    runs = timeit.repeat(lambda: decode_message(data), number=5, repeat=7, timer=time.process_time)
    return min(runs) / 5


def test_decode_time_is_linear() -> None:
    small, large = _notify_message(214), _notify_message(2140)  # ~6 KB and ~60 KB
    assert 5_900 < len(small) < 6_100 and 59_000 < len(large) < 61_000
    ratio = _best_time(large) / _best_time(small)
    assert ratio < 25, f"10x the payloads took {ratio:.1f}x the time"


def test_many_tiny_unknown_payloads_stay_linear() -> None:
    def chain(count: int) -> bytes:
        unknown = tuple(UnknownPayload(200, False, b"") for _ in range(count))
        return encode_message(Message(Header(bytes(8), bytes(8), 0, 37, 0x08, 0, 0), unknown))

    small, large = chain(1500), chain(15000)  # 4-octet payloads: the most per octet
    assert len(decode_message(large).payloads) == 15000
    ratio = _best_time(large) / _best_time(small)
    assert ratio < 25, f"10x the payloads took {ratio:.1f}x the time"
