"""Typed IKEv2 messages: frozen dataclasses, one per payload of RFC 7296 §3 (and SKF, RFC 7383).

These are the only types that leave ikev2.wire. They hold field values, not encodings: lengths,
SPI sizes, counts and the next-payload chain are derived when a message is encoded. Each payload
class knows its Next Payload type code as the class attribute `payload_type` (UnknownPayload
carries it as a field).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, TypeVar

from ..constants import HeaderFlag, NotifyType, PayloadType, TransformAttr


@dataclass(frozen=True, slots=True)
class Header:
    """RFC 7296 §3.1. `next_payload` and `length` are recomputed by encode_message."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int
    version: int = 0x20

    @property
    def is_initiator(self) -> bool:
        """The I(nitiator) flag: set by the original initiator of the IKE SA."""
        return bool(self.flags & HeaderFlag.INITIATOR)

    @property
    def is_response(self) -> bool:
        """The R(esponse) flag: this message answers a request with the same message ID."""
        return bool(self.flags & HeaderFlag.RESPONSE)

    @property
    def major_version(self) -> int:
        return self.version >> 4


@dataclass(frozen=True, slots=True)
class Transform:
    """RFC 7296 §3.3.2. KEY_LENGTH (§3.3.5) is lifted into key_length; other attributes stay in
    `attributes` as (type, value): an int for TV format, bytes for TLV format."""

    type: int
    id: int
    key_length: int | None = None
    attributes: tuple[tuple[int, int | bytes], ...] = ()

    def all_attributes(self) -> tuple[tuple[int, int | bytes], ...]:
        """The attributes as sent: KEY_LENGTH first, then the others in order."""
        if self.key_length is None:
            return self.attributes
        return ((int(TransformAttr.KEY_LENGTH), self.key_length), *self.attributes)


@dataclass(frozen=True, slots=True)
class Proposal:
    """RFC 7296 §3.3.1. The SPI size is len(spi)."""

    number: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]


@dataclass(frozen=True, slots=True)
class SaPayload:
    payload_type: ClassVar[PayloadType] = PayloadType.SA
    proposals: tuple[Proposal, ...]


@dataclass(frozen=True, slots=True)
class KePayload:
    """RFC 7296 §3.4; group is the Transform Type 4 ID (KeId)."""

    payload_type: ClassVar[PayloadType] = PayloadType.KE
    group: int
    data: bytes


@dataclass(frozen=True, slots=True)
class IdPayload:
    """RFC 7296 §3.5; use IdiPayload / IdrPayload."""

    id_type: int
    data: bytes

    @property
    def body(self) -> bytes:
        """ID Type | RESERVED(3) | Identification Data: the ID payload body that AUTH signs
        (RFC 7296 §2.15: everything after the generic payload header)."""
        return bytes((self.id_type, 0, 0, 0)) + self.data


@dataclass(frozen=True, slots=True)
class IdiPayload(IdPayload):
    payload_type: ClassVar[PayloadType] = PayloadType.IDi


@dataclass(frozen=True, slots=True)
class IdrPayload(IdPayload):
    payload_type: ClassVar[PayloadType] = PayloadType.IDr


@dataclass(frozen=True, slots=True)
class CertPayload:
    """RFC 7296 §3.6."""

    payload_type: ClassVar[PayloadType] = PayloadType.CERT
    encoding: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CertReqPayload:
    """RFC 7296 §3.7; data is a concatenation of SHA-1 hashes of CA public keys for X.509."""

    payload_type: ClassVar[PayloadType] = PayloadType.CERTREQ
    encoding: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AuthPayload:
    """RFC 7296 §3.8."""

    payload_type: ClassVar[PayloadType] = PayloadType.AUTH
    method: int
    data: bytes


@dataclass(frozen=True, slots=True)
class NoncePayload:
    """RFC 7296 §3.9: 16 to 256 octets."""

    payload_type: ClassVar[PayloadType] = PayloadType.NONCE
    data: bytes


@dataclass(frozen=True, slots=True)
class NotifyPayload:
    """RFC 7296 §3.10. The SPI size is len(spi)."""

    payload_type: ClassVar[PayloadType] = PayloadType.NOTIFY
    notify_type: int
    protocol: int = 0
    spi: bytes = b""
    data: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.notify_type < 16384


@dataclass(frozen=True, slots=True)
class DeletePayload:
    """RFC 7296 §3.11. The SPI size is derived: 0 for IKE (no SPIs), 4 for ESP and AH."""

    payload_type: ClassVar[PayloadType] = PayloadType.DELETE
    protocol: int
    spis: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class VendorPayload:
    """RFC 7296 §3.12."""

    payload_type: ClassVar[PayloadType] = PayloadType.VENDOR
    data: bytes


IpAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """RFC 7296 §3.13.1, TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE."""

    ts_type: int
    ip_protocol: int
    start_port: int
    end_port: int
    start_addr: IpAddress
    end_addr: IpAddress


@dataclass(frozen=True, slots=True)
class RawTrafficSelector:
    """A selector of a type we do not interpret (e.g. RFC 4595 FC, RFC 9478 security label):
    `data` is everything after the 4-octet selector header."""

    ts_type: int
    data: bytes


Selector = TrafficSelector | RawTrafficSelector


@dataclass(frozen=True, slots=True)
class TsPayload:
    """RFC 7296 §3.13; use TsiPayload / TsrPayload."""

    selectors: tuple[Selector, ...]


@dataclass(frozen=True, slots=True)
class TsiPayload(TsPayload):
    payload_type: ClassVar[PayloadType] = PayloadType.TSi


@dataclass(frozen=True, slots=True)
class TsrPayload(TsPayload):
    payload_type: ClassVar[PayloadType] = PayloadType.TSr


@dataclass(frozen=True, slots=True)
class CfgAttribute:
    """RFC 7296 §3.15.1 (the reserved R bit is dropped)."""

    attr_type: int
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class CpPayload:
    """RFC 7296 §3.15."""

    payload_type: ClassVar[PayloadType] = PayloadType.CP
    cfg_type: int
    attributes: tuple[CfgAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class EapPayload:
    """RFC 7296 §3.16: one EAP message (RFC 3748), opaque here."""

    payload_type: ClassVar[PayloadType] = PayloadType.EAP
    data: bytes


@dataclass(frozen=True, slots=True)
class SkPayload:
    """RFC 7296 §3.14: body = IV | ciphertext | ICV, opaque to wire/."""

    payload_type: ClassVar[PayloadType] = PayloadType.SK
    inner_next_payload: int
    body: bytes


@dataclass(frozen=True, slots=True)
class SkfPayload:
    """RFC 7383 §2.5: one fragment of an encrypted message. Only fragment 1 names the first inner
    payload; the others carry inner_next_payload 0."""

    payload_type: ClassVar[PayloadType] = PayloadType.SKF
    inner_next_payload: int
    fragment_number: int
    total_fragments: int
    body: bytes


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload type we do not understand (RFC 7296 §2.5): kept raw with its critical bit."""

    payload_type: int
    critical: bool
    body: bytes


Payload = (
    SaPayload
    | KePayload
    | IdiPayload
    | IdrPayload
    | CertPayload
    | CertReqPayload
    | AuthPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorPayload
    | TsiPayload
    | TsrPayload
    | CpPayload
    | EapPayload
    | SkPayload
    | SkfPayload
    | UnknownPayload
)

# Next Payload type code -> class, for every payload type wire/ interprets.
PAYLOAD_CLASSES: dict[int, type[Payload]] = {
    int(cls.payload_type): cls
    for cls in (
        SaPayload,
        KePayload,
        IdiPayload,
        IdrPayload,
        CertPayload,
        CertReqPayload,
        AuthPayload,
        NoncePayload,
        NotifyPayload,
        DeletePayload,
        VendorPayload,
        TsiPayload,
        TsrPayload,
        CpPayload,
        EapPayload,
        SkPayload,
        SkfPayload,
    )
}

P = TypeVar("P")


def payload_type_of(payload: Payload) -> int:
    """The Next Payload code of a payload of any class."""
    return int(payload.payload_type)


@dataclass(frozen=True, slots=True)
class Message:
    """An IKE message: the header and the payloads of the outer chain, in order."""

    header: Header
    payloads: tuple[Payload, ...]

    def find(self, cls: type[P]) -> P | None:
        """The first payload of class cls, or None."""
        for payload in self.payloads:
            if isinstance(payload, cls):
                return payload
        return None

    def find_all(self, cls: type[P]) -> tuple[P, ...]:
        return tuple(payload for payload in self.payloads if isinstance(payload, cls))

    @property
    def notifies(self) -> tuple[NotifyPayload, ...]:
        return self.find_all(NotifyPayload)

    def notify(self, notify_type: int | NotifyType) -> NotifyPayload | None:
        """The first Notify payload of that type, or None."""
        for payload in self.payloads:
            if isinstance(payload, NotifyPayload) and payload.notify_type == notify_type:
                return payload
        return None
