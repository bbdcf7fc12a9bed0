"""Whole messages and payload chains: bytes <-> Message (RFC 7296 §3.1-§3.2, §3.14).

The error contract: decoding any byte string returns a value or raises DecodeError with a reason
and an offset, nothing else. chain.walk_chain bounds-checks lengths before construct runs; anything
a parser still throws is mapped to DecodeError at the offset of the payload it came from.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from construct import ConstructError

from ..constants import PayloadType
from ..errors import DecodeError
from .chain import (
    HEADER_LENGTH,
    PayloadSlice,
    decode_header,
    encode_header,
    walk_chain,
)
from .codec import PayloadCodec
from .payloads import Message, Payload, SkfPayload, SkPayload
from .struct_codec import DEFAULT_CODEC

# What a parser may throw on input the checks did not foresee; all become DecodeError.
_PARSE_ERRORS = (
    ConstructError,
    struct.error,
    ValueError,  # includes UnicodeError and ipaddress errors
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
)


def decode_message(data: bytes, *, codec: PayloadCodec = DEFAULT_CODEC) -> Message:
    """Decode one IKE message; raises DecodeError only (UnsupportedVersion for major != 2).

    Direction-dependent checks (the ML-KEM KE length) follow the header's R flag.
    """
    header = decode_header(data)
    slices = walk_chain(data, header.next_payload, HEADER_LENGTH, len(data), allow_encrypted=True)
    return Message(header, _decode_slices(data, slices, header.is_response, codec))


def decode_payloads(
    first_type: int,
    data: bytes,
    base_offset: int = 0,
    *,
    is_response: bool | None = None,
    codec: PayloadCodec = DEFAULT_CODEC,
) -> tuple[Payload, ...]:
    """Decode a payload chain starting with first_type, e.g. the decrypted inside of SK.

    base_offset is added to every error offset (the chain's position in the message). An SK or
    SKF payload inside is an error. is_response, when known, makes the KE length check exact.
    """
    try:
        slices = walk_chain(data, first_type, 0, len(data), allow_encrypted=False)
        return _decode_slices(data, slices, is_response, codec)
    except DecodeError as error:
        if base_offset:
            raise type(error)(error.reason, error.offset + base_offset) from error
        raise


def _decode_slices(
    data: bytes, slices: list[PayloadSlice], is_response: bool | None, codec: PayloadCodec
) -> tuple[Payload, ...]:
    payloads = []
    for where in slices:
        try:
            payloads.append(codec.decode(data, where, is_response))
        except DecodeError:
            raise
        except _PARSE_ERRORS as error:
            raise DecodeError(
                f"malformed {_name(where.payload_type)} payload: {type(error).__name__}: {error}",
                where.start,
            ) from error
    return tuple(payloads)


def encode_payloads(
    payloads: Sequence[Payload], *, codec: PayloadCodec = DEFAULT_CODEC
) -> tuple[int, bytes]:
    """(type of the first payload, the chained octets); (NONE, b"") for no payloads."""
    if not payloads:
        return PayloadType.NONE, b""
    parts = []
    count = len(payloads)
    for index, payload in enumerate(payloads):
        following = payloads[index + 1].payload_type if index + 1 < count else PayloadType.NONE
        parts.append(codec.encode(payload, int(following)))
    return int(payloads[0].payload_type), b"".join(parts)


def encode_message(message: Message, *, codec: PayloadCodec = DEFAULT_CODEC) -> bytes:
    """The message's octets; header.next_payload and header.length are recomputed."""
    first_type, chain = encode_payloads(message.payloads, codec=codec)
    return encode_header(message.header, first_type, HEADER_LENGTH + len(chain)) + chain


def encrypted_payload(message: Message) -> SkPayload | SkfPayload | None:
    """The message's SK or SKF payload (always the last one), if any."""
    if message.payloads and isinstance(message.payloads[-1], SkPayload | SkfPayload):
        return message.payloads[-1]
    return None


def _name(payload_type: int) -> str:
    try:
        return PayloadType(payload_type).name
    except ValueError:
        return f"type {payload_type}"
