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


class InitProbe(NamedTuple):
    """What the RFC 7296 §2.6 COOKIE check needs of an initial IKE_SA_INIT request."""

    spi_i: bytes
    nonce: bytes  # Ni, the Nonce payload's data
    cookie_first: bool  # the first payload is a COOKIE notify (where §2.6 puts it)


_IKE_SA_INIT: Final = 34  # ExchangeType.IKE_SA_INIT (constants.py); §3.1 flags below
_FLAGS_MASK: Final = 0x38  # Initiator 0x08, Version 0x10, Response 0x20
_NOTIFY_COOKIE: Final = struct.pack(">H", 16390)  # NotifyType.COOKIE


def probe_init_request(data: bytes) -> InitProbe | None:
    """An initial IKE_SA_INIT request (SPIr zero, Initiator set, Response clear) read just far
    enough for a responder under attack to demand a COOKIE without decoding it (§2.6): SPIi, Ni
    and whether a COOKIE notify comes first. None for anything else or anything malformed: the
    full decoder then decides what to answer."""
    if len(data) < HEADER_LENGTH or data[18] != _IKE_SA_INIT or data[19] & _FLAGS_MASK != 0x08:
        return None
    if data[8:16] != bytes(8) or data[17] >> 4 != SUPPORTED_MAJOR_VERSION:
        return None
    if int.from_bytes(data[24:28]) != len(data):
        return None
    # the chain walk of walk_chain, without building slices: only Ni and the first payload
    next_type, offset, end = data[16], HEADER_LENGTH, len(data)
    nonce: bytes | None = None
    cookie = next_type == PayloadType.NOTIFY and data[offset + 6 : offset + 8] == _NOTIFY_COOKIE
    unpack = GENERIC.unpack_from
    while next_type != PayloadType.NONE:
        if offset + GENERIC_LENGTH > end or next_type in ENCRYPTED_TYPES:
            return None
        following, _flags, length = unpack(data, offset)
        if length < GENERIC_LENGTH or offset + length > end:
            return None
        if next_type == PayloadType.NONCE:
            nonce = data[offset + GENERIC_LENGTH : offset + length]
        offset += length
        next_type = following
    if offset != end or nonce is None:
        return None
    return InitProbe(data[:8], nonce, cookie)
