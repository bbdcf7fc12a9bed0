"""The production payload codec: the hot payloads read and written with plain struct.

PayloadCodec (codec.py) goes through a parser or builder per schema and a dict of fields per
struct; for the payloads of every handshake (SA, KE, Nonce, Notify, ID, AUTH, TS, SK) that costs
more than the rest of the message handling (DESIGN §4: an IKE_SA_INIT parses in ~7 µs by hand
against ~66 µs through compiled construct). StructCodec decodes those straight from the validated
spans into the dataclasses and encodes them straight from the dataclasses, restating the layouts
of schemas.py (RFC 7296 §3) in struct formats. The rest (CERT, Delete, CP, SKF, unknown payloads)
keeps the generic path.

The construct schemas stay the declaration: tests/wire/test_layouts.py and test_struct_codec.py
hold this codec against the compiled and the interpreted construct codecs, octet for octet and
field for field, on the reference capture, on random payloads and on mutated messages. The
bounds checks are the same calls to checks.* as in codec.py, made before any field is read.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final

from ..constants import PayloadType, TransformAttr, TsType
from ..errors import UsageError
from . import checks
from .chain import PayloadSlice
from .codec import PayloadCodec
from .layouts import STRUCT_BUILDERS, STRUCT_PARSERS
from .payloads import (
    AuthPayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    RawTrafficSelector,
    SaPayload,
    Selector,
    SkPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsPayload,
    TsrPayload,
    VendorPayload,
)
from .schemas import SchemaSet

_GENERIC: Final = struct.Struct(">BBH")  # §3.2 generic payload header
_U16: Final = struct.Struct(">H")
_U16_U16: Final = struct.Struct(">HH")
_PROPOSAL: Final = struct.Struct(">BxHBBBB")  # §3.3.1
_TRANSFORM: Final = struct.Struct(">BxHBxH")  # §3.3.2
_TYPE_RESERVED3: Final = struct.Struct(">BBHB3x")  # §3.5 ID, §3.8 AUTH, §3.13 TS headers
_KE: Final = struct.Struct(">BBHH2x")  # §3.4
_NOTIFY: Final = struct.Struct(">BBHBBH")  # §3.10
_NOTIFY_FIELDS: Final = struct.Struct(">BBH")
_SELECTOR: Final = struct.Struct(">BBHHH")  # §3.13.1
_RAW_SELECTOR: Final = struct.Struct(">BxH")
_TV: Final = 0x8000  # §3.3.5 AF bit
_KEY_LENGTH: Final = int(TransformAttr.KEY_LENGTH)
_MORE_PROPOSALS, _MORE_TRANSFORMS = 2, 3  # §3.3.1, §3.3.2 Last Substruc
_MAX_LENGTH: Final = 0xFFFF
_ADDRESS: Final[dict[int, tuple[int, type[IPv4Address] | type[IPv6Address]]]] = {
    TsType.IPV4_ADDR_RANGE: (4, IPv4Address),
    TsType.IPV6_ADDR_RANGE: (16, IPv6Address),
}
_DATA_CLASS: Final[dict[int, type[NoncePayload] | type[VendorPayload] | type[EapPayload]]] = {
    PayloadType.NONCE: NoncePayload,
    PayloadType.VENDOR: VendorPayload,
    PayloadType.EAP: EapPayload,
}


def _length(size: int, what: str) -> int:
    if size > _MAX_LENGTH:
        raise UsageError(f"{what} of {size} octets does not fit a 16-bit length")
    return size


class StructCodec(PayloadCodec):
    """PayloadCodec with direct struct decoders and encoders for the payloads of a handshake."""

    def __init__(self) -> None:
        super().__init__(SchemaSet(STRUCT_PARSERS, STRUCT_BUILDERS))
        self._decoders.update(
            {
                PayloadType.SA: self._read_sa,
                PayloadType.KE: self._read_ke,
                PayloadType.IDi: self._read_id,
                PayloadType.IDr: self._read_id,
                PayloadType.AUTH: self._read_auth,
                PayloadType.NONCE: self._read_data,
                PayloadType.VENDOR: self._read_data,
                PayloadType.EAP: self._read_data,
                PayloadType.NOTIFY: self._read_notify,
                PayloadType.TSi: self._read_ts,
                PayloadType.TSr: self._read_ts,
                PayloadType.SK: self._read_sk,
            }
        )
        self._writers: dict[type[Any], Callable[[Any, int], bytes]] = {
            SaPayload: _write_sa,
            KePayload: _write_ke,
            IdiPayload: _write_id,
            IdrPayload: _write_id,
            AuthPayload: _write_auth,
            NoncePayload: _write_data,
            VendorPayload: _write_data,
            EapPayload: _write_data,
            NotifyPayload: _write_notify,
            TsiPayload: _write_ts,
            TsrPayload: _write_ts,
            SkPayload: _write_sk,
        }

    def encode(self, payload: Payload, next_payload: int) -> bytes:
        writer = self._writers.get(type(payload))
        if writer is None:
            return super().encode(payload, next_payload)
        return writer(payload, next_payload)

    # ---- decoding: each reads a span chain.walk_chain and check_min_length have bounded --------

    def _read_sa(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        proposals = []
        for spans in checks.proposal_spans(data, w.start + 4, w.end):
            start = spans.span.start
            _, _, number, protocol, spi_size, _ = _PROPOSAL.unpack_from(data, start)
            offset = start + 8 + spi_size
            spi = data[start + 8 : offset]
            transforms = []
            for attribute_spans in spans.attributes:
                _, length, transform_type, transform_id = _TRANSFORM.unpack_from(data, offset)
                key_length = None
                attributes: list[tuple[int, int | bytes]] = []
                for a_start, a_end in attribute_spans:
                    af_type, length_or_value = _U16_U16.unpack_from(data, a_start)
                    if af_type & _TV:
                        attr_type = af_type & ~_TV
                        if attr_type == _KEY_LENGTH and key_length is None:
                            key_length = length_or_value
                        else:
                            attributes.append((attr_type, length_or_value))
                    else:
                        attributes.append((af_type, data[a_start + 4 : a_end]))
                transforms.append(
                    Transform(transform_type, transform_id, key_length, tuple(attributes))
                )
                offset += length
            proposals.append(Proposal(number, protocol, spi, tuple(transforms)))
        return SaPayload(tuple(proposals))

    def _read_ke(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        group = _U16.unpack_from(data, w.start + 4)[0]
        body = data[w.start + 8 : w.end]
        checks.check_ke_data(group, body, is_response, w.start + 8)
        return KePayload(group, body)

    def _read_id(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        cls = IdiPayload if w.payload_type == PayloadType.IDi else IdrPayload
        return cls(data[w.start + 4], data[w.start + 8 : w.end])

    def _read_auth(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        return AuthPayload(data[w.start + 4], data[w.start + 8 : w.end])

    def _read_data(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        body = data[w.start + 4 : w.end]
        if w.payload_type == PayloadType.NONCE:
            checks.check_nonce(body, w.start + 4)
        return _DATA_CLASS[w.payload_type](body)

    def _read_notify(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        checks.check_notify(data, w.start, w.end)
        protocol, spi_size, notify_type = _NOTIFY_FIELDS.unpack_from(data, w.start + 4)
        spi_end = w.start + 8 + spi_size
        spi, body = data[w.start + 8 : spi_end], data[spi_end : w.end]
        return NotifyPayload(notify_type, protocol, spi, body)

    def _read_ts(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        count = data[w.start + 4]
        selectors: list[Selector] = []
        for start, end in checks.selector_spans(data, w.start + 8, w.end, count):
            ts_type = data[start]
            address = _ADDRESS.get(ts_type)
            if address is None:  # a type we keep uninterpreted: any length >= 4
                selectors.append(RawTrafficSelector(ts_type, data[start + 4 : end]))
                continue
            _, ip_protocol, _, start_port, end_port = _SELECTOR.unpack_from(data, start)
            size, cls = address
            start_addr = data[start + 8 : start + 8 + size]
            end_addr = data[start + 8 + size : end]
            checks.check_selector_range(start_port, end_port, start_addr, end_addr, start)
            selectors.append(
                TrafficSelector(
                    ts_type, ip_protocol, start_port, end_port, cls(start_addr), cls(end_addr)
                )
            )
        cls_ts = TsiPayload if w.payload_type == PayloadType.TSi else TsrPayload
        return cls_ts(tuple(selectors))

    def _read_sk(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        return SkPayload(data[w.start], data[w.start + 4 : w.end])


# ---- encoding: generic header (§3.2) with flags 0, the payload's fixed part, then its octets ----


def _write_sa(p: SaPayload, next_payload: int) -> bytes:
    last_index = len(p.proposals) - 1
    body = b"".join(
        _proposal_octets(proposal, index == last_index)
        for index, proposal in enumerate(p.proposals)
    )
    return _GENERIC.pack(next_payload, 0, _length(4 + len(body), "SA")) + body


def _proposal_octets(proposal: Proposal, last: bool) -> bytes:
    transforms = _transforms_octets(proposal.transforms)
    length = _length(8 + len(proposal.spi) + len(transforms), "proposal")
    header = _PROPOSAL.pack(
        0 if last else _MORE_PROPOSALS,
        length,
        proposal.number,
        proposal.protocol,
        len(proposal.spi),
        len(proposal.transforms),
    )
    return header + proposal.spi + transforms


@functools.lru_cache(maxsize=512)
def _transforms_octets(transforms: tuple[Transform, ...]) -> bytes:
    """The transform substructures of a proposal (§3.3.2): cached, as every SA of a connection
    offers or answers the same few transform lists."""
    last_index = len(transforms) - 1
    parts = []
    for index, transform in enumerate(transforms):
        attributes = b"".join(_attribute_octets(t, v) for t, v in transform.all_attributes())
        parts.append(
            _TRANSFORM.pack(
                _MORE_TRANSFORMS if index != last_index else 0,
                _length(8 + len(attributes), "transform"),
                transform.type,
                transform.id,
            )
        )
        parts.append(attributes)
    return b"".join(parts)


def _attribute_octets(attr_type: int, value: int | bytes) -> bytes:
    if attr_type & _TV:
        raise UsageError(f"attribute type {attr_type:#x} has the AF bit set; give it without")
    if isinstance(value, int):  # §3.3.5 TV format
        return _U16_U16.pack(attr_type | _TV, value)
    return _U16_U16.pack(attr_type, _length(len(value), "attribute")) + value


def _write_ke(p: KePayload, next_payload: int) -> bytes:
    return _KE.pack(next_payload, 0, _length(8 + len(p.data), "KE"), p.group) + p.data


def _write_id(p: IdiPayload | IdrPayload, next_payload: int) -> bytes:
    length = _length(8 + len(p.data), PayloadType(p.payload_type).name)
    return _TYPE_RESERVED3.pack(next_payload, 0, length, p.id_type) + p.data


def _write_auth(p: AuthPayload, next_payload: int) -> bytes:
    length = _length(8 + len(p.data), "AUTH")
    return _TYPE_RESERVED3.pack(next_payload, 0, length, p.method) + p.data


def _write_data(p: NoncePayload | VendorPayload | EapPayload, next_payload: int) -> bytes:
    length = _length(4 + len(p.data), PayloadType(p.payload_type).name)
    return _GENERIC.pack(next_payload, 0, length) + p.data


def _write_notify(p: NotifyPayload, next_payload: int) -> bytes:
    length = _length(8 + len(p.spi) + len(p.data), "NOTIFY")
    header = _NOTIFY.pack(next_payload, 0, length, p.protocol, len(p.spi), p.notify_type)
    return header + p.spi + p.data


def _write_ts(p: TsPayload, next_payload: int) -> bytes:
    selectors = b"".join(_selector_octets(s) for s in p.selectors)
    length = _length(8 + len(selectors), "TS")
    return _TYPE_RESERVED3.pack(next_payload, 0, length, len(p.selectors)) + selectors


def _selector_octets(selector: Selector) -> bytes:
    if isinstance(selector, RawTrafficSelector):
        length = _length(4 + len(selector.data), "selector")
        return _RAW_SELECTOR.pack(selector.ts_type, length) + selector.data
    start, end = selector.start_addr.packed, selector.end_addr.packed
    address = _ADDRESS.get(selector.ts_type)
    if address is None or len(start) != address[0] or len(end) != address[0]:
        raise UsageError(f"selector type {selector.ts_type} does not match its addresses")
    fixed = _SELECTOR.pack(
        selector.ts_type,
        selector.ip_protocol,
        8 + 2 * len(start),
        selector.start_port,
        selector.end_port,
    )
    return fixed + start + end


def _write_sk(p: SkPayload, next_payload: int) -> bytes:
    # §3.14: SK's Next Payload names the first inner payload, not the next outer one
    return _GENERIC.pack(p.inner_next_payload, 0, _length(4 + len(p.body), "SK")) + p.body


# The production path; codec.py's COMPILED_CODEC and INTERPRETED_CODEC are the references.
DEFAULT_CODEC: Final = StructCodec()
