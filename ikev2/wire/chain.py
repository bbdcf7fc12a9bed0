"""The IKE header and the Next Payload chain in plain struct: the code that trusts nothing.

RFC 7296 §3.1 (header), §3.2 (generic payload header and chaining), §3.14 (SK is the last payload),
RFC 7383 §2.5 (SKF). Every length is bounds-checked here before any payload slice is handed to a
construct parser; a walk costs O(number of payloads) and every payload is at least 4 octets long,
so decoding time is linear in the datagram length.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ..constants import IKE_VERSION, PayloadType
from ..errors import DecodeError
from .payloads import Header

HEADER: Final = struct.Struct(">8s8sBBBBII")
HEADER_LENGTH: Final = HEADER.size  # 28
GENERIC: Final = struct.Struct(">BBH")
GENERIC_LENGTH: Final = GENERIC.size  # 4
SKF_FRAGMENT: Final = struct.Struct(">HH")
CRITICAL: Final = 0x80
SUPPORTED_MAJOR_VERSION: Final = IKE_VERSION >> 4

# The two payloads that end the outer chain: their Next Payload names the first inner payload.
ENCRYPTED_TYPES: Final = frozenset({int(PayloadType.SK), int(PayloadType.SKF)})


class UnsupportedVersion(DecodeError):
    """The header's major version is not 2 (RFC 7296 §2.5): the engine may answer
    INVALID_MAJOR_VERSION. `header` is the header as read, `major_version` the version seen."""

    def __init__(self, header: Header) -> None:
        super().__init__(f"unsupported IKE major version {header.version >> 4}", 17)
        self.header = header
        self.major_version = header.version >> 4


class PayloadSlice(NamedTuple):
    """Where one payload sits: [start, end) includes its generic payload header."""

    payload_type: int
    critical: bool
    start: int
    end: int


def decode_header(data: bytes) -> Header:
    """RFC 7296 §3.1: the 28-octet header; checks the version and that Length is the datagram's."""
    if len(data) < HEADER_LENGTH:
        raise DecodeError(
            f"message of {len(data)} octets is shorter than the {HEADER_LENGTH}-octet IKE header",
            len(data),
        )
    spi_i, spi_r, next_payload, version, exchange, flags, message_id, length = HEADER.unpack_from(
        data
    )
    header = Header(spi_i, spi_r, next_payload, exchange, flags, message_id, length, version)
    if version >> 4 != SUPPORTED_MAJOR_VERSION:
        raise UnsupportedVersion(header)
    if length != len(data):
        # §3.1 Length is the total length of the message; trailing octets are not ours to ignore.
        raise DecodeError(f"header length {length} != datagram length {len(data)}", 24)
    return header


def encode_header(header: Header, next_payload: int, length: int) -> bytes:
    return HEADER.pack(
        header.spi_i,
        header.spi_r,
        next_payload,
        header.version,
        header.exchange,
        header.flags,
        header.message_id,
        length,
    )


def walk_chain(
    data: bytes, first_type: int, start: int, end: int, *, allow_encrypted: bool
) -> list[PayloadSlice]:
    """Follow the Next Payload chain of data[start:end] from first_type.

    The chain must end exactly at `end`: with Next Payload NONE, or (when allow_encrypted) at an
    SK or SKF payload, which RFC 7296 §3.14 and RFC 7383 §2.5 require to be the last one.
    """
    slices: list[PayloadSlice] = []
    next_type = first_type
    offset = start
    while next_type != PayloadType.NONE:
        if offset + GENERIC_LENGTH > end:
            raise DecodeError(
                f"payload {_name(next_type)} header truncated: {end - offset} octets left", offset
            )
        following, flags, length = GENERIC.unpack_from(data, offset)
        if length < GENERIC_LENGTH:
            raise DecodeError(f"payload {_name(next_type)} length {length} < 4", offset + 2)
        if offset + length > end:
            raise DecodeError(
                f"payload {_name(next_type)} length {length} overruns the message by "
                f"{offset + length - end} octets",
                offset + 2,
            )
        slices.append(PayloadSlice(next_type, bool(flags & CRITICAL), offset, offset + length))
        offset += length
        if next_type in ENCRYPTED_TYPES:
            if not allow_encrypted:
                raise DecodeError(f"{_name(next_type)} payload inside an encrypted payload", offset)
            if offset != end:
                raise DecodeError(
                    f"{_name(next_type)} must be the last payload; {end - offset} octets follow",
                    offset,
                )
            return slices
        next_type = following
    if offset != end:
        raise DecodeError(f"{end - offset} trailing octets after the last payload", offset)
    return slices


def sk_associated_data(
    header: Header,
    inner_next_payload: int,
    body_length: int,
    fragment: tuple[int, int] | None = None,
) -> bytes:
    """The octets from the start of the IKE header to the end of the SK (or SKF) payload header,
    for a message whose only payload is that SK/SKF carrying body_length octets.

    That is the AEAD associated data (RFC 5282 §5.1) and the start of what the ICV covers
    (RFC 7296 §3.14); for SKF it includes Fragment Number and Total Fragments (RFC 7383 §2.5.3).
    The header's Next Payload and Length are those of the final message.
    """
    if fragment is None:
        payload_length = GENERIC_LENGTH + body_length
        payload_header = GENERIC.pack(inner_next_payload, 0, payload_length)
        outer_type = PayloadType.SK
    else:
        payload_length = GENERIC_LENGTH + SKF_FRAGMENT.size + body_length
        payload_header = GENERIC.pack(inner_next_payload, 0, payload_length) + SKF_FRAGMENT.pack(
            *fragment
        )
        outer_type = PayloadType.SKF
    total = HEADER_LENGTH + payload_length
    return encode_header(header, outer_type, total) + payload_header


def _name(payload_type: int) -> str:
    try:
        return PayloadType(payload_type).name
    except ValueError:
        return f"type {payload_type}"
