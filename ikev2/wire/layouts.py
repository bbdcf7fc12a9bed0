"""Plain-struct builders and parsers for the schemas of schemas.py: the hot path both ways.

A compiled construct builder copies its input into a fresh context Container field by field
(≈2–5 µs per payload here), which alone would spend the build budget of an IKE_SA_INIT. Every
declaration in schemas.py is "fixed fields, then variable-length octets", so each one is
restated below as a struct format for the fixed fields plus the names of the trailing fields.

The builders take the same field dicts as the construct builders and must produce the same octets;
the parsers return the same fields as the construct parsers (plain dicts, not Containers), sizing
each trailing field by the rule in TAIL_SIZES that restates the schema's `Bytes(...)`/`Array(...)`.
Like the compiled construct parsers they trust their input: codec.py hands them only spans that
chain.py and checks.py have bounds-checked. tests/wire/test_layouts.py holds them against the
compiled and the interpreted construct code for every payload of the reference capture and for
random payloads.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

_GENERIC: Final = ("next_payload", "flags", "length")


class Layout(NamedTuple):
    fixed: struct.Struct  # the fixed-size fields, RESERVED octets as pad bytes
    fixed_fields: tuple[str, ...]
    tail_fields: tuple[str, ...]  # variable-length fields appended in order
    element: str | None = None  # layout of list items in a tail field (Array of structs)


def _layout(
    fmt: str, fixed: tuple[str, ...], tail: tuple[str, ...], element: str | None = None
) -> Layout:
    return Layout(struct.Struct(">" + fmt), fixed, tail, element)


# Same names and field order as schemas.SCHEMAS (RFC figures there).
LAYOUTS: Final[dict[str, Layout]] = {
    "IKE_HEADER": _layout(
        "8s8sBBBBII",
        ("spi_i", "spi_r", "next_payload", "version", "exchange", "flags", "message_id", "length"),
        (),
    ),
    "GENERIC_PAYLOAD": _layout("BBH", _GENERIC, ("body",)),
    "SA_PAYLOAD": _layout("BBH", _GENERIC, ("proposals",)),
    "PROPOSAL": _layout(
        "BxHBBBB",
        ("last", "length", "number", "protocol", "spi_size", "num_transforms"),
        ("spi", "transforms"),
        element="TRANSFORM",
    ),
    "TRANSFORM": _layout("BxHBxH", ("last", "length", "type", "id"), ("attributes",)),
    "TRANSFORM_ATTRIBUTE": _layout("HH", ("af_type", "length_or_value"), ("value",)),
    "KE_PAYLOAD": _layout("BBHH2x", (*_GENERIC, "group"), ("data",)),
    "ID_PAYLOAD": _layout("BBHB3x", (*_GENERIC, "id_type"), ("data",)),
    "CERT_PAYLOAD": _layout("BBHB", (*_GENERIC, "encoding"), ("data",)),
    "AUTH_PAYLOAD": _layout("BBHB3x", (*_GENERIC, "method"), ("data",)),
    "DATA_PAYLOAD": _layout("BBH", _GENERIC, ("data",)),
    "NOTIFY_PAYLOAD": _layout(
        "BBHBBH", (*_GENERIC, "protocol", "spi_size", "notify_type"), ("spi", "data")
    ),
    "DELETE_PAYLOAD": _layout("BBHBBH", (*_GENERIC, "protocol", "spi_size", "num_spis"), ("spis",)),
    "TS_PAYLOAD": _layout("BBHB3x", (*_GENERIC, "num_ts"), ("selectors",)),
    "TS_IPV4": _layout(
        "BBHHH",
        ("ts_type", "ip_protocol", "length", "start_port", "end_port"),
        ("start_addr", "end_addr"),
    ),
    "TS_IPV6": _layout(
        "BBHHH",
        ("ts_type", "ip_protocol", "length", "start_port", "end_port"),
        ("start_addr", "end_addr"),
    ),
    "TS_RAW": _layout("BxH", ("ts_type", "length"), ("data",)),
    "SK_PAYLOAD": _layout("BBH", _GENERIC, ("body",)),
    "SKF_PAYLOAD": _layout("BBHHH", (*_GENERIC, "fragment_number", "total_fragments"), ("body",)),
    "CP_PAYLOAD": _layout("BBHB3x", (*_GENERIC, "cfg_type"), ("attributes",)),
    "CFG_ATTRIBUTE": _layout("HH", ("attr_type", "length"), ("value",)),
}


def _builder(name: str) -> Callable[[Mapping[str, Any]], bytes]:
    layout = LAYOUTS[name]
    pack, fixed, tail = layout.fixed.pack, layout.fixed_fields, layout.tail_fields
    element = _builder(layout.element) if layout.element else None

    def build(fields: Mapping[str, Any]) -> bytes:
        parts = [pack(*[fields[key] for key in fixed])]
        for key in tail:
            value = fields[key]
            if value is None:  # an If(...) field that is absent (TV attribute)
                continue
            if isinstance(value, list | tuple):  # Array: of structs or of Bytes
                parts.extend(element(item) if element else item for item in value)
            else:
                parts.append(value)
        return b"".join(parts)

    return build


STRUCT_BUILDERS: Final[dict[str, Callable[[Mapping[str, Any]], bytes]]] = {
    name: _builder(name) for name in LAYOUTS
}


# How each trailing field is sized, restating schemas.py (same order as Layout.tail_fields):
#   REST: up to the end of the struct, i.e. Bytes(this.length - <octets before it>)
#   ("field", name): Bytes(this.<name>)
#   ("fixed", n): Bytes(n)
#   ("array", count, element): Array(this.<count>, <element>), each element sized by its length
#   ("spis", count, size): Array(this.<count>, Bytes(this.<size>))
#   TV_VALUE: If(this.af_type < 0x8000, Bytes(this.length_or_value)), else None (§3.3.5)
REST: Final = ("rest",)
TV_VALUE: Final = ("tv",)
TAIL_SIZES: Final[dict[str, tuple[tuple[Any, ...], ...]]] = {
    "IKE_HEADER": (),
    "GENERIC_PAYLOAD": (REST,),
    "SA_PAYLOAD": (REST,),
    "PROPOSAL": (("field", "spi_size"), ("array", "num_transforms", "TRANSFORM")),
    "TRANSFORM": (REST,),
    "TRANSFORM_ATTRIBUTE": (TV_VALUE,),
    "KE_PAYLOAD": (REST,),
    "ID_PAYLOAD": (REST,),
    "CERT_PAYLOAD": (REST,),
    "AUTH_PAYLOAD": (REST,),
    "DATA_PAYLOAD": (REST,),
    "NOTIFY_PAYLOAD": (("field", "spi_size"), REST),
    "DELETE_PAYLOAD": (("spis", "num_spis", "spi_size"),),
    "TS_PAYLOAD": (REST,),
    "TS_IPV4": (("fixed", 4), ("fixed", 4)),
    "TS_IPV6": (("fixed", 16), ("fixed", 16)),
    "TS_RAW": (REST,),
    "SK_PAYLOAD": (REST,),
    "SKF_PAYLOAD": (REST,),
    "CP_PAYLOAD": (REST,),
    "CFG_ATTRIBUTE": (("field", "length"),),
}

# parse(data, start) -> (fields, end): the struct at data[start:], and where it ends.
SpanParser = Callable[[bytes, int], tuple[dict[str, Any], int]]


def _span_parser(name: str) -> SpanParser:
    layout = LAYOUTS[name]
    unpack, size, fixed = layout.fixed.unpack_from, layout.fixed.size, layout.fixed_fields
    rules = tuple(zip(layout.tail_fields, TAIL_SIZES[name], strict=True))
    element = _span_parser(layout.element) if layout.element else None

    def parse(data: bytes, start: int) -> tuple[dict[str, Any], int]:
        fields = dict(zip(fixed, unpack(data, start), strict=True))
        offset = start + size
        for key, rule in rules:
            kind = rule[0]
            if kind == "rest":
                end = start + fields["length"]
            elif kind == "field":
                end = offset + fields[rule[1]]
            elif kind == "fixed":
                end = offset + rule[1]
            elif kind == "tv":
                if fields["af_type"] & 0x8000:
                    fields[key] = None
                    continue
                end = offset + fields["length_or_value"]
            elif kind == "spis":
                step = fields[rule[2]]
                count = fields[rule[1]]
                items = [data[offset + i * step : offset + (i + 1) * step] for i in range(count)]
                fields[key] = items
                offset += step * len(items)
                continue
            else:  # array of structs
                assert element is not None
                elements = []
                for _ in range(fields[rule[1]]):
                    item, offset = element(data, offset)
                    elements.append(item)
                fields[key] = elements
                continue
            fields[key] = data[offset:end]
            offset = end
        return fields, offset

    return parse


def _parser(name: str) -> Callable[[bytes], dict[str, Any]]:
    parse = _span_parser(name)

    def run(data: bytes) -> dict[str, Any]:
        return parse(data, 0)[0]

    return run


STRUCT_PARSERS: Final[dict[str, Callable[[bytes], dict[str, Any]]]] = {
    name: _parser(name) for name in LAYOUTS
}
