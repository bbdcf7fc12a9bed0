"""The little DER (X.690) that RFC 7427 AlgorithmIdentifiers need: build and parse.

Only definite lengths, only the types an AlgorithmIdentifier uses (SEQUENCE, OID, NULL, INTEGER,
context-specific explicit tags). Parsing raises ValueError on anything malformed or trailing.
"""

from __future__ import annotations

TAG_INTEGER = 0x02
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_SEQUENCE = 0x30
TAG_CONTEXT = 0xA0  # constructed, context-specific [n]

NULL = bytes([TAG_NULL, 0])


def tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8)
    return bytes([tag, 0x80 | len(length)]) + length + content


def sequence(*items: bytes) -> bytes:
    return tlv(TAG_SEQUENCE, b"".join(items))


def explicit(number: int, inner: bytes) -> bytes:
    return tlv(TAG_CONTEXT | number, inner)


def integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative INTEGER not needed here")
    return tlv(TAG_INTEGER, value.to_bytes(value.bit_length() // 8 + 1))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    values = [40 * arcs[0] + arcs[1], *arcs[2:]]
    out = bytearray()
    for value in values:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out += bytes(reversed(chunk))
    return tlv(TAG_OID, bytes(out))


def algorithm_identifier(algorithm: str, parameters: bytes | None = None) -> bytes:
    """AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL } (RFC 5280)."""
    return sequence(oid(algorithm), parameters or b"")


# --------------------------------------------------------------------------------------------


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """(tag, content, offset after) of the element at offset."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER element")
    tag, first = data[offset], data[offset + 1]
    offset += 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or offset + count > len(data):
            raise ValueError("bad DER length")
        size = int.from_bytes(data[offset : offset + count])
        if size < 0x80:
            raise ValueError("non-minimal DER length")
        offset += count
    if offset + size > len(data):
        raise ValueError("DER element overruns its container")
    return tag, data[offset : offset + size], offset + size


def read_whole(data: bytes, expected_tag: int) -> bytes:
    tag, content, end = read_tlv(data)
    if tag != expected_tag or end != len(data):
        raise ValueError(f"expected one element of tag {expected_tag:#x}")
    return content


def decode_oid(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise ValueError("bad OID")
    values: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            values.append(value)
            value = 0
    first = values[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(v) for v in head + values[1:])


def parse_algorithm_identifier(data: bytes) -> tuple[str, bytes | None]:
    """(dotted OID, the DER of the parameters or None when absent)."""
    body = read_whole(data, TAG_SEQUENCE)
    tag, content, end = read_tlv(body)
    if tag != TAG_OID:
        raise ValueError("AlgorithmIdentifier without an OID")
    params = body[end:] or None
    if params is not None:
        read_tlv(params)  # one well-formed element
        if read_tlv(params)[2] != len(params):
            raise ValueError("trailing bytes in AlgorithmIdentifier")
    return decode_oid(content), params


def parse_explicit_fields(data: bytes) -> dict[int, bytes]:
    """A SEQUENCE of [n] EXPLICIT fields -> {n: inner element DER}."""
    body = read_whole(data, TAG_SEQUENCE)
    fields: dict[int, bytes] = {}
    offset = 0
    while offset < len(body):
        tag, content, offset = read_tlv(body, offset)
        if tag & 0xE0 != TAG_CONTEXT:
            raise ValueError("expected a context-specific field")
        fields[tag & 0x1F] = content
    return fields


def parse_integer(data: bytes) -> int:
    content = read_whole(data, TAG_INTEGER)
    if not content or content[0] & 0x80:
        raise ValueError("bad or negative INTEGER")
    return int.from_bytes(content)
