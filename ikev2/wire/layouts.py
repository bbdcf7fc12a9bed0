"""Plain-struct builders for the schemas of schemas.py: the encoding hot path.

A compiled construct builder copies its input into a fresh context Container field by field
(≈2–5 µs per payload here), which alone would spend the build budget of an IKE_SA_INIT. Every
declaration in schemas.py is "fixed fields, then variable-length octets", so each one is
restated below as a struct format for the fixed fields plus the names of the trailing fields.

The builders take the same field dicts as the construct builders and must produce the same octets:
tests/wire/test_layouts.py holds them against the compiled and the interpreted construct builders
for every payload of the reference capture and for random payloads.
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
