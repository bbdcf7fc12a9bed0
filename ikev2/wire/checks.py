"""The checks construct does not do: bounds of nested substructures (walked in plain struct before
a construct parser sees them) and the field rules of RFC 7296 §3 (applied after parsing).

Every failure is a DecodeError naming the field and carrying the absolute offset of the problem.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ..constants import KeId, PayloadType, ProtocolId, TsType
from ..errors import DecodeError

_U8_U8_U16: Final = struct.Struct(">BBH")
_U16_U16: Final = struct.Struct(">HH")
_PROPOSAL_FIXED: Final = struct.Struct(">BBHBBBB")

# Smallest length of each payload, generic header included (the fixed part of its figure).
MIN_PAYLOAD_LENGTH: Final[dict[int, int]] = {
    PayloadType.SA: 4 + 8,  # at least one proposal (§3.3)
    PayloadType.KE: 8,
    PayloadType.IDi: 8,
    PayloadType.IDr: 8,
    PayloadType.CERT: 5,
    PayloadType.CERTREQ: 5,
    PayloadType.AUTH: 8,
    PayloadType.NONCE: 4,
    PayloadType.NOTIFY: 8,
    PayloadType.DELETE: 8,
    PayloadType.VENDOR: 4,
    PayloadType.TSi: 8,
    PayloadType.TSr: 8,
    PayloadType.SK: 4,
    PayloadType.CP: 8,
    PayloadType.EAP: 4,
    PayloadType.SKF: 8,
}

# §3.3.1: "8 for IKE, 4 for ESP and AH"; 0 for IKE in IKE_SA_INIT (SPIs are in the header).
PROPOSAL_SPI_SIZES: Final[dict[int, frozenset[int]]] = {
    ProtocolId.IKE: frozenset({0, 8}),
    ProtocolId.AH: frozenset({4}),
    ProtocolId.ESP: frozenset({4}),
}
# §3.10: the SPI is empty unless the notification concerns an existing SA of that protocol.
NOTIFY_SPI_SIZES: Final[dict[int, frozenset[int]]] = {
    ProtocolId.NONE: frozenset({0}),
    ProtocolId.IKE: frozenset({0, 8}),
    ProtocolId.AH: frozenset({0, 4}),
    ProtocolId.ESP: frozenset({0, 4}),
}
# §3.11: "Zero for IKE (SPI is in message header) or four for AH and ESP."
DELETE_SPI_SIZE: Final[dict[int, int]] = {
    ProtocolId.IKE: 0,
    ProtocolId.AH: 4,
    ProtocolId.ESP: 4,
}
# §3.13.1: selector lengths of the address-range types.
TS_LENGTH: Final[dict[int, int]] = {TsType.IPV4_ADDR_RANGE: 16, TsType.IPV6_ADDR_RANGE: 40}
TS_ADDRESS_SIZE: Final[dict[int, int]] = {TsType.IPV4_ADDR_RANGE: 4, TsType.IPV6_ADDR_RANGE: 16}

# §3.9: "The size of the Nonce Data MUST be between 16 and 256 octets, inclusive."
NONCE_MIN: Final = 16
NONCE_MAX: Final = 256

# Key Exchange Data length per method, as (request, response) — they differ only for ML-KEM,
# where the request carries the encapsulation key and the response the ciphertext.
# MODP: the prime's length (RFC 7296 §3.4; RFC 3526; RFC 5114 §2.1-2.3).
# ECP: x | y, each the field size (RFC 5903 §7: 64/96/132; RFC 5114 for 25/26; RFC 6954 for
# brainpool). Curve25519/448: RFC 8031 §3.1 (32/56). GOST: RFC 9385 §3 (64/128).
# ML-KEM: FIPS 203 §8 Table 3 (ek 800/1184/1568, ct 768/1088/1568), draft-ietf-ipsecme-ikev2-mlkem.
KE_DATA_LENGTH: Final[dict[int, tuple[int, int]]] = {
    KeId.MODP768: (96, 96),
    KeId.MODP1024: (128, 128),
    KeId.MODP1536: (192, 192),
    KeId.MODP2048: (256, 256),
    KeId.MODP3072: (384, 384),
    KeId.MODP4096: (512, 512),
    KeId.MODP6144: (768, 768),
    KeId.MODP8192: (1024, 1024),
    KeId.MODP1024_160: (128, 128),
    KeId.MODP2048_224: (256, 256),
    KeId.MODP2048_256: (256, 256),
    KeId.ECP256: (64, 64),
    KeId.ECP384: (96, 96),
    KeId.ECP521: (132, 132),
    KeId.ECP192: (48, 48),
    KeId.ECP224: (56, 56),
    KeId.BRAINPOOL224: (56, 56),
    KeId.BRAINPOOL256: (64, 64),
    KeId.BRAINPOOL384: (96, 96),
    KeId.BRAINPOOL512: (128, 128),
    KeId.CURVE25519: (32, 32),
    KeId.CURVE448: (56, 56),
    KeId.GOST3410_2012_256: (64, 64),
    KeId.GOST3410_2012_512: (128, 128),
    KeId.ML_KEM_512: (800, 768),
    KeId.ML_KEM_768: (1184, 1088),
    KeId.ML_KEM_1024: (1568, 1568),
}

_LAST_PROPOSAL, _MORE_PROPOSALS = 0, 2  # §3.3.1 Last Substruc
_LAST_TRANSFORM, _MORE_TRANSFORMS = 0, 3  # §3.3.2 Last Substruc
_ATTRIBUTE_FORMAT_TV = 0x8000  # §3.3.5 AF bit


class Span(NamedTuple):
    start: int
    end: int


class ProposalSpans(NamedTuple):
    """A proposal's extent and, per transform, the extents of its attributes."""

    span: Span
    attributes: tuple[tuple[Span, ...], ...]


def check_min_length(payload_type: int, start: int, end: int) -> None:
    minimum = MIN_PAYLOAD_LENGTH.get(payload_type, 4)
    if end - start < minimum:
        raise DecodeError(
            f"{PayloadType(payload_type).name} payload length {end - start} < {minimum}", start + 2
        )


def proposal_spans(data: bytes, start: int, end: int) -> list[ProposalSpans]:
    """Walk the proposals of an SA payload body data[start:end] (RFC 7296 §3.3.1-§3.3.5)."""
    proposals: list[ProposalSpans] = []
    offset = start
    last = _MORE_PROPOSALS
    previous_number = 0
    while last == _MORE_PROPOSALS:
        if offset + _PROPOSAL_FIXED.size > end:
            raise DecodeError("proposal header truncated", offset)
        last, _, length, number, protocol, spi_size, num_transforms = _PROPOSAL_FIXED.unpack_from(
            data, offset
        )
        if last not in (_LAST_PROPOSAL, _MORE_PROPOSALS):
            raise DecodeError(f"proposal Last Substruc {last} is neither 0 nor 2", offset)
        if length < _PROPOSAL_FIXED.size + spi_size or offset + length > end:
            raise DecodeError(f"proposal length {length} out of bounds", offset + 2)
        # §3.3.1: the first proposal is number 1 and each next one is one more; a response
        # carries the one accepted proposal with the number it had in the request.
        if number == 0:
            raise DecodeError("proposal number 0", offset + 4)
        if previous_number and number != previous_number + 1:
            raise DecodeError(f"proposal number {number} follows {previous_number}", offset + 4)
        if previous_number == 0 and last == _MORE_PROPOSALS and number != 1:
            raise DecodeError(f"first of several proposals has number {number}, not 1", offset + 4)
        allowed = PROPOSAL_SPI_SIZES.get(protocol)
        if allowed is not None and spi_size not in allowed:
            raise DecodeError(
                f"SPI size {spi_size} invalid for protocol {ProtocolId(protocol).name} proposal",
                offset + 6,
            )
        transforms_start = offset + _PROPOSAL_FIXED.size + spi_size
        attributes = _transform_spans(data, transforms_start, offset + length, num_transforms)
        proposals.append(ProposalSpans(Span(offset, offset + length), attributes))
        previous_number = number
        offset += length
    if offset != end:
        raise DecodeError(f"{end - offset} octets after the last proposal", offset)
    return proposals


def _transform_spans(data: bytes, start: int, end: int, count: int) -> tuple[tuple[Span, ...], ...]:
    transforms: list[tuple[Span, ...]] = []
    offset = start
    for index in range(count):
        if offset + 8 > end:
            raise DecodeError(f"transform {index + 1} of {count} truncated", offset)
        last, _, length = _U8_U8_U16.unpack_from(data, offset)
        expected_last = _LAST_TRANSFORM if index == count - 1 else _MORE_TRANSFORMS
        if last != expected_last:
            raise DecodeError(
                f"transform {index + 1} of {count} has Last Substruc {last}, not {expected_last}",
                offset,
            )
        if length < 8 or offset + length > end:
            raise DecodeError(f"transform length {length} out of bounds", offset + 2)
        transforms.append(attribute_spans(data, offset + 8, offset + length))
        offset += length
    if offset != end:
        raise DecodeError(
            f"proposal holds {end - offset} octets beyond its {count} transforms", offset
        )
    return tuple(transforms)


def attribute_spans(data: bytes, start: int, end: int) -> tuple[Span, ...]:
    """RFC 7296 §3.3.5: TV attributes are 4 octets, TLV ones 4 + their length."""
    spans: list[Span] = []
    offset = start
    while offset < end:
        if offset + 4 > end:
            raise DecodeError("transform attribute truncated", offset)
        af_type, length_or_value = _U16_U16.unpack_from(data, offset)
        size = 4 if af_type & _ATTRIBUTE_FORMAT_TV else 4 + length_or_value
        if offset + size > end:
            raise DecodeError(f"transform attribute length {length_or_value} overruns", offset + 2)
        spans.append(Span(offset, offset + size))
        offset += size
    return tuple(spans)


def check_notify(data: bytes, start: int, end: int) -> None:
    """RFC 7296 §3.10: the SPI fits, and its size suits the protocol."""
    protocol, spi_size = data[start + 4], data[start + 5]
    if 8 + spi_size > end - start:
        raise DecodeError(f"notify SPI size {spi_size} overruns the payload", start + 5)
    allowed = NOTIFY_SPI_SIZES.get(protocol)
    if allowed is not None and spi_size not in allowed:
        raise DecodeError(f"notify SPI size {spi_size} invalid for protocol {protocol}", start + 5)


def check_delete(data: bytes, start: int, end: int) -> None:
    """RFC 7296 §3.11: SPI size per protocol, and exactly Num of SPIs SPIs."""
    protocol, spi_size, count = _U8_U8_U16.unpack_from(data, start + 4)
    expected = DELETE_SPI_SIZE.get(protocol)
    if expected is None:
        raise DecodeError(f"delete for unknown protocol {protocol}", start + 4)
    if spi_size != expected:
        raise DecodeError(
            f"delete SPI size {spi_size} invalid for {ProtocolId(protocol).name}, "
            f"must be {expected}",
            start + 5,
        )
    if protocol == ProtocolId.IKE and count != 0:
        raise DecodeError(f"IKE delete with {count} SPIs, must have none", start + 6)
    if 8 + spi_size * count != end - start:
        raise DecodeError(
            f"delete payload length {end - start} != 8 + {count} SPIs of {spi_size} octets",
            start + 2,
        )


def selector_spans(data: bytes, start: int, end: int, count: int) -> list[Span]:
    """RFC 7296 §3.13-§3.13.1: `count` selectors filling data[start:end] exactly."""
    spans: list[Span] = []
    offset = start
    for index in range(count):
        if offset + 4 > end:
            raise DecodeError(f"traffic selector {index + 1} of {count} truncated", offset)
        ts_type, _, length = _U8_U8_U16.unpack_from(data, offset)
        expected = TS_LENGTH.get(ts_type)
        if expected is not None and length != expected:
            raise DecodeError(
                f"{TsType(ts_type).name} selector length {length}, must be {expected}", offset + 2
            )
        if length < 4 or offset + length > end:
            raise DecodeError(f"traffic selector length {length} out of bounds", offset + 2)
        spans.append(Span(offset, offset + length))
        offset += length
    if offset != end:
        raise DecodeError(f"{end - offset} octets after {count} traffic selectors", offset)
    return spans


def cfg_attribute_spans(data: bytes, start: int, end: int) -> list[Span]:
    """RFC 7296 §3.15.1: type, length, value; filling the CP body exactly."""
    spans: list[Span] = []
    offset = start
    while offset < end:
        if offset + 4 > end:
            raise DecodeError("configuration attribute truncated", offset)
        _, length = _U16_U16.unpack_from(data, offset)
        if offset + 4 + length > end:
            raise DecodeError(f"configuration attribute length {length} overruns", offset + 2)
        spans.append(Span(offset, offset + 4 + length))
        offset += 4 + length
    return spans


def check_nonce(data: bytes, offset: int) -> None:
    if not NONCE_MIN <= len(data) <= NONCE_MAX:
        raise DecodeError(
            f"nonce of {len(data)} octets, must be {NONCE_MIN} to {NONCE_MAX}", offset
        )


def check_ke_data(group: int, data: bytes, is_response: bool | None, offset: int) -> None:
    """Key Exchange Data length for the methods we know; unknown groups pass unchecked.
    is_response None (direction unknown) accepts either direction's length."""
    lengths = KE_DATA_LENGTH.get(group)
    if lengths is None:
        return
    allowed = set(lengths) if is_response is None else {lengths[is_response]}
    if len(data) not in allowed:
        expected = " or ".join(str(n) for n in sorted(allowed))
        raise DecodeError(
            f"KE data of {len(data)} octets for {KeId(group).name}, must be {expected}", offset
        )


def check_selector_range(
    start_port: int, end_port: int, start_addr: bytes, end_addr: bytes, offset: int
) -> None:
    """§3.13.1: start <= end for ports and addresses; ports 65535-0 denote OPAQUE."""
    if start_port > end_port and not (start_port == 0xFFFF and end_port == 0):
        raise DecodeError(f"selector start port {start_port} > end port {end_port}", offset + 4)
    if start_addr > end_addr:  # equal-length big-endian octets compare as the numbers do
        raise DecodeError("selector starting address > ending address", offset + 8)


def check_fragment(inner_next_payload: int, number: int, total: int, offset: int) -> None:
    """RFC 7383 §2.5: 1 <= Fragment Number <= Total Fragments; only fragment 1 names the first
    inner payload, the others carry Next Payload 0."""
    if number == 0 or total == 0 or number > total:
        raise DecodeError(f"fragment number {number} of {total} fragments", offset + 4)
    if number > 1 and inner_next_payload != 0:
        raise DecodeError(
            f"fragment {number} has Next Payload {inner_next_payload}, must be 0", offset
        )
