"""One payload <-> its typed dataclass, through the construct schemas (RFC 7296 §3, RFC 7383 §2.5).

A PayloadCodec runs one set of parsers and builders: LAYOUT_CODEC (the plain-struct parsers and
builders of layouts.py), COMPILED_CODEC or INTERPRETED_CODEC (construct both ways). The production
codec, struct_codec.DEFAULT_CODEC, reads and writes the handshake payloads directly and falls back
to this generic path for the others; tests hold all of them against each other. Decoders
receive a slice whose generic header chain.walk_chain has bounds-checked; they check the payload's
inner lengths with checks.* before construct parses, and the field rules after.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final

from ..constants import PayloadType, TransformAttr, TsType
from ..errors import UsageError
from . import checks
from .chain import CRITICAL, PayloadSlice
from .layouts import STRUCT_BUILDERS, STRUCT_PARSERS
from .payloads import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CfgAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdiPayload,
    IdPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    RawTrafficSelector,
    SaPayload,
    Selector,
    SkfPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsPayload,
    TsrPayload,
    UnknownPayload,
    VendorPayload,
)
from .schemas import COMPILED_SET, INTERPRETED_SET, SchemaSet

_KEY_LENGTH: Final = int(TransformAttr.KEY_LENGTH)
_TV: Final = 0x8000  # §3.3.5 AF bit: Type/Value format
_CFG_TYPE_MASK: Final = 0x7FFF  # §3.15.1: the top bit is reserved
_MAX_LENGTH: Final = 0xFFFF
_ADDRESS_CLASS: Final[dict[int, type[IPv4Address] | type[IPv6Address]]] = {
    4: IPv4Address,
    16: IPv6Address,
}
# §3.13.1: the selector types whose addresses we interpret, and their schemas.
_TS_SCHEMA: Final[dict[int, str]] = {
    TsType.IPV4_ADDR_RANGE: "TS_IPV4",
    TsType.IPV6_ADDR_RANGE: "TS_IPV6",
}

Decoder = Callable[[bytes, PayloadSlice, "bool | None"], Payload]


def _length(size: int, what: str) -> int:
    if size > _MAX_LENGTH:
        raise UsageError(f"{what} of {size} octets does not fit a 16-bit length")
    return size


class PayloadCodec:
    """Decoders and encoders for every payload type wire/ interprets, over one set of schemas."""

    def __init__(self, schemas: SchemaSet) -> None:
        self._parsers = schemas.parse
        self._builders = schemas.build
        self._decoders: dict[int, Decoder] = {
            PayloadType.SA: self._decode_sa,
            PayloadType.KE: self._decode_ke,
            PayloadType.IDi: self._decode_id,
            PayloadType.IDr: self._decode_id,
            PayloadType.CERT: self._decode_cert,
            PayloadType.CERTREQ: self._decode_cert,
            PayloadType.AUTH: self._decode_auth,
            PayloadType.NONCE: self._decode_data,
            PayloadType.NOTIFY: self._decode_notify,
            PayloadType.DELETE: self._decode_delete,
            PayloadType.VENDOR: self._decode_data,
            PayloadType.TSi: self._decode_ts,
            PayloadType.TSr: self._decode_ts,
            PayloadType.SK: self._decode_sk,
            PayloadType.CP: self._decode_cp,
            PayloadType.EAP: self._decode_data,
            PayloadType.SKF: self._decode_skf,
        }
        self._encoders: dict[type[Any], Callable[[Any], tuple[str, dict[str, Any]]]] = {
            SaPayload: self._sa_fields,
            KePayload: lambda p: ("KE_PAYLOAD", {"group": p.group, "data": p.data}),
            IdiPayload: self._id_fields,
            IdrPayload: self._id_fields,
            CertPayload: lambda p: ("CERT_PAYLOAD", {"encoding": p.encoding, "data": p.data}),
            CertReqPayload: lambda p: ("CERT_PAYLOAD", {"encoding": p.encoding, "data": p.data}),
            AuthPayload: lambda p: ("AUTH_PAYLOAD", {"method": p.method, "data": p.data}),
            NoncePayload: lambda p: ("DATA_PAYLOAD", {"data": p.data}),
            NotifyPayload: self._notify_fields,
            DeletePayload: self._delete_fields,
            VendorPayload: lambda p: ("DATA_PAYLOAD", {"data": p.data}),
            TsiPayload: self._ts_fields,
            TsrPayload: self._ts_fields,
            CpPayload: self._cp_fields,
            EapPayload: lambda p: ("DATA_PAYLOAD", {"data": p.data}),
            SkPayload: lambda p: ("SK_PAYLOAD", {"body": p.body}),
            SkfPayload: self._skf_fields,
        }
        self._fixed_length: dict[str, int] = {
            "KE_PAYLOAD": 8,
            "CERT_PAYLOAD": 5,
            "AUTH_PAYLOAD": 8,
            "DATA_PAYLOAD": 4,
            "SK_PAYLOAD": 4,
            "ID_PAYLOAD": 8,
        }

    # ---- decoding ------------------------------------------------------------------------

    def decode(self, data: bytes, where: PayloadSlice, is_response: bool | None) -> Payload:
        decoder = self._decoders.get(where.payload_type)
        if decoder is None:
            # RFC 7296 §2.5: unknown payloads are kept; rules.py rejects them if critical.
            return UnknownPayload(
                where.payload_type, where.critical, data[where.start + 4 : where.end]
            )
        checks.check_min_length(where.payload_type, where.start, where.end)
        return decoder(data, where, is_response)

    def _parse(self, name: str, data: bytes, start: int, end: int) -> Any:
        return self._parsers[name](data[start:end])

    def _decode_sa(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        proposals = []
        for spans in checks.proposal_spans(data, w.start + 4, w.end):
            parsed = self._parse("PROPOSAL", data, *spans.span)
            transforms = []
            for transform, attribute_spans in zip(
                parsed["transforms"], spans.attributes, strict=True
            ):
                key_length = None
                attributes: list[tuple[int, int | bytes]] = []
                for a_start, a_end in attribute_spans:
                    attribute = self._parse("TRANSFORM_ATTRIBUTE", data, a_start, a_end)
                    if attribute["af_type"] & _TV:
                        attr_type = attribute["af_type"] & ~_TV
                        if attr_type == _KEY_LENGTH and key_length is None:
                            key_length = attribute["length_or_value"]
                        else:
                            attributes.append((attr_type, attribute["length_or_value"]))
                    else:
                        attributes.append((attribute["af_type"], attribute["value"]))
                transforms.append(
                    Transform(transform["type"], transform["id"], key_length, tuple(attributes))
                )
            proposals.append(
                Proposal(parsed["number"], parsed["protocol"], parsed["spi"], tuple(transforms))
            )
        return SaPayload(tuple(proposals))

    def _decode_ke(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        parsed = self._parse("KE_PAYLOAD", data, w.start, w.end)
        checks.check_ke_data(parsed["group"], parsed["data"], is_response, w.start + 8)
        return KePayload(parsed["group"], parsed["data"])

    def _decode_id(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        parsed = self._parse("ID_PAYLOAD", data, w.start, w.end)
        cls = IdiPayload if w.payload_type == PayloadType.IDi else IdrPayload
        return cls(parsed["id_type"], parsed["data"])

    def _decode_cert(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        parsed = self._parse("CERT_PAYLOAD", data, w.start, w.end)
        cls = CertPayload if w.payload_type == PayloadType.CERT else CertReqPayload
        return cls(parsed["encoding"], parsed["data"])

    def _decode_auth(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        parsed = self._parse("AUTH_PAYLOAD", data, w.start, w.end)
        return AuthPayload(parsed["method"], parsed["data"])

    def _decode_data(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        body = self._parse("DATA_PAYLOAD", data, w.start, w.end)["data"]
        if w.payload_type == PayloadType.NONCE:
            checks.check_nonce(body, w.start + 4)
            return NoncePayload(body)
        if w.payload_type == PayloadType.VENDOR:
            return VendorPayload(body)
        return EapPayload(body)

    def _decode_notify(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        checks.check_notify(data, w.start, w.end)
        parsed = self._parse("NOTIFY_PAYLOAD", data, w.start, w.end)
        return NotifyPayload(
            parsed["notify_type"], parsed["protocol"], parsed["spi"], parsed["data"]
        )

    def _decode_delete(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        checks.check_delete(data, w.start, w.end)
        parsed = self._parse("DELETE_PAYLOAD", data, w.start, w.end)
        return DeletePayload(parsed["protocol"], tuple(parsed["spis"]))

    def _decode_ts(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        count = data[w.start + 4]
        selectors: list[Selector] = []
        for start, end in checks.selector_spans(data, w.start + 8, w.end, count):
            schema = _TS_SCHEMA.get(data[start])
            if schema is None:
                raw = self._parse("TS_RAW", data, start, end)
                selectors.append(RawTrafficSelector(raw["ts_type"], raw["data"]))
                continue
            ts = self._parse(schema, data, start, end)
            checks.check_selector_range(
                ts["start_port"], ts["end_port"], ts["start_addr"], ts["end_addr"], start
            )
            address = _ADDRESS_CLASS[len(ts["start_addr"])]
            selectors.append(
                TrafficSelector(
                    ts["ts_type"],
                    ts["ip_protocol"],
                    ts["start_port"],
                    ts["end_port"],
                    address(ts["start_addr"]),
                    address(ts["end_addr"]),
                )
            )
        cls = TsiPayload if w.payload_type == PayloadType.TSi else TsrPayload
        return cls(tuple(selectors))

    def _decode_sk(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        parsed = self._parse("SK_PAYLOAD", data, w.start, w.end)
        return SkPayload(parsed["next_payload"], parsed["body"])

    def _decode_skf(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        parsed = self._parse("SKF_PAYLOAD", data, w.start, w.end)
        checks.check_fragment(
            parsed["next_payload"], parsed["fragment_number"], parsed["total_fragments"], w.start
        )
        return SkfPayload(
            parsed["next_payload"],
            parsed["fragment_number"],
            parsed["total_fragments"],
            parsed["body"],
        )

    def _decode_cp(self, data: bytes, w: PayloadSlice, is_response: bool | None) -> Payload:
        cfg_type = data[w.start + 4]
        attributes = []
        for start, end in checks.cfg_attribute_spans(data, w.start + 8, w.end):
            parsed = self._parse("CFG_ATTRIBUTE", data, start, end)
            attributes.append(CfgAttribute(parsed["attr_type"] & _CFG_TYPE_MASK, parsed["value"]))
        return CpPayload(cfg_type, tuple(attributes))

    # ---- encoding ------------------------------------------------------------------------

    def encode(self, payload: Payload, next_payload: int) -> bytes:
        """The payload's octets, generic header included, chained to next_payload."""
        if isinstance(payload, UnknownPayload):
            fields: dict[str, Any] = {"body": payload.body}
            length = _length(4 + len(payload.body), "payload")
            flags = CRITICAL if payload.critical else 0
            return bytes(
                self._builders["GENERIC_PAYLOAD"](
                    {"next_payload": next_payload, "flags": flags, "length": length, **fields}
                )
            )
        name, fields = self._encoders[type(payload)](payload)
        if isinstance(payload, SkPayload | SkfPayload):
            next_payload = payload.inner_next_payload  # §3.14: SK names the first inner payload
        fields["next_payload"] = next_payload
        fields["flags"] = 0
        if "length" not in fields:
            size = self._fixed_length[name] + len(fields["data" if "data" in fields else "body"])
            fields["length"] = _length(size, PayloadType(payload.payload_type).name)
        return self._builders[name](fields)

    def _id_fields(self, p: IdPayload) -> tuple[str, dict[str, Any]]:
        return "ID_PAYLOAD", {"id_type": p.id_type, "data": p.data}

    def _notify_fields(self, p: NotifyPayload) -> tuple[str, dict[str, Any]]:
        length = _length(8 + len(p.spi) + len(p.data), "NOTIFY")
        return "NOTIFY_PAYLOAD", {
            "protocol": p.protocol,
            "spi_size": len(p.spi),
            "notify_type": p.notify_type,
            "spi": p.spi,
            "data": p.data,
            "length": length,
        }

    def _delete_fields(self, p: DeletePayload) -> tuple[str, dict[str, Any]]:
        spi_size = len(p.spis[0]) if p.spis else checks.DELETE_SPI_SIZE.get(p.protocol, 0)
        if any(len(spi) != spi_size for spi in p.spis):
            raise UsageError("all SPIs of a Delete payload must have the same size")
        return "DELETE_PAYLOAD", {
            "protocol": p.protocol,
            "spi_size": spi_size,
            "num_spis": len(p.spis),
            "spis": list(p.spis),
            "length": _length(8 + spi_size * len(p.spis), "DELETE"),
        }

    def _skf_fields(self, p: SkfPayload) -> tuple[str, dict[str, Any]]:
        return "SKF_PAYLOAD", {
            "fragment_number": p.fragment_number,
            "total_fragments": p.total_fragments,
            "body": p.body,
            "length": _length(8 + len(p.body), "SKF"),
        }

    def _sa_fields(self, p: SaPayload) -> tuple[str, dict[str, Any]]:
        proposals = b"".join(
            self._encode_proposal(proposal, last=index == len(p.proposals) - 1)
            for index, proposal in enumerate(p.proposals)
        )
        return "SA_PAYLOAD", {"proposals": proposals, "length": _length(4 + len(proposals), "SA")}

    def _encode_proposal(self, proposal: Proposal, *, last: bool) -> bytes:
        transforms: list[dict[str, Any]] = []
        for index, transform in enumerate(proposal.transforms):
            attributes = b"".join(
                self._encode_attribute(t, v) for t, v in transform.all_attributes()
            )
            transforms.append(
                {
                    "last": 0 if index == len(proposal.transforms) - 1 else 3,
                    "length": _length(8 + len(attributes), "transform"),
                    "type": transform.type,
                    "id": transform.id,
                    "attributes": attributes,
                }
            )
        length = 8 + len(proposal.spi) + sum(t["length"] for t in transforms)
        return bytes(
            self._builders["PROPOSAL"](
                {
                    "last": 0 if last else 2,
                    "length": _length(length, "proposal"),
                    "number": proposal.number,
                    "protocol": proposal.protocol,
                    "spi_size": len(proposal.spi),
                    "num_transforms": len(transforms),
                    "spi": proposal.spi,
                    "transforms": transforms,
                }
            )
        )

    def _encode_attribute(self, attr_type: int, value: int | bytes) -> bytes:
        if attr_type & _TV:
            raise UsageError(f"attribute type {attr_type:#x} has the AF bit set; give it without")
        fields: dict[str, Any]
        if isinstance(value, int):  # §3.3.5 TV format
            fields = {"af_type": attr_type | _TV, "length_or_value": value, "value": None}
        else:
            fields = {
                "af_type": attr_type,
                "length_or_value": _length(len(value), "attribute"),
                "value": value,
            }
        return self._builders["TRANSFORM_ATTRIBUTE"](fields)

    def _ts_fields(self, p: TsPayload) -> tuple[str, dict[str, Any]]:
        selectors = b"".join(self._encode_selector(s) for s in p.selectors)
        return "TS_PAYLOAD", {
            "num_ts": len(p.selectors),
            "selectors": selectors,
            "length": _length(8 + len(selectors), "TS"),
        }

    def _encode_selector(self, selector: Selector) -> bytes:
        if isinstance(selector, RawTrafficSelector):
            return bytes(
                self._builders["TS_RAW"](
                    {
                        "ts_type": selector.ts_type,
                        "length": _length(4 + len(selector.data), "selector"),
                        "data": selector.data,
                    }
                )
            )
        start, end = selector.start_addr.packed, selector.end_addr.packed
        schema = _TS_SCHEMA.get(selector.ts_type)
        if (
            schema is None
            or len(start) != len(end)
            or len(start) != checks.TS_ADDRESS_SIZE[selector.ts_type]
        ):
            raise UsageError(f"selector type {selector.ts_type} does not match its addresses")
        return bytes(
            self._builders[schema](
                {
                    "ts_type": selector.ts_type,
                    "ip_protocol": selector.ip_protocol,
                    "length": 8 + 2 * len(start),
                    "start_port": selector.start_port,
                    "end_port": selector.end_port,
                    "start_addr": start,
                    "end_addr": end,
                }
            )
        )

    def _cp_fields(self, p: CpPayload) -> tuple[str, dict[str, Any]]:
        attributes = b"".join(
            bytes(
                self._builders["CFG_ATTRIBUTE"](
                    {
                        "attr_type": a.attr_type,
                        "length": _length(len(a.value), "attribute"),
                        "value": a.value,
                    }
                )
            )
            for a in p.attributes
        )
        return "CP_PAYLOAD", {
            "cfg_type": p.cfg_type,
            "attributes": attributes,
            "length": _length(8 + len(attributes), "CP"),
        }


# layouts.py's plain-struct parsers and builders behind the generic decoders and encoders: the
# fallback of struct_codec.DEFAULT_CODEC for the payloads it does not read or write directly.
LAYOUT_CODEC: Final = PayloadCodec(SchemaSet(STRUCT_PARSERS, STRUCT_BUILDERS))
# Construct both ways, compiled or interpreted: tests hold all three against each other.
COMPILED_CODEC: Final = PayloadCodec(COMPILED_SET)
INTERPRETED_CODEC: Final = PayloadCodec(INTERPRETED_SET)
