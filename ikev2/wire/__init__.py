"""ikev2.wire: IKEv2 messages as bytes <-> typed, frozen dataclasses. Stateless and keyless.

- decode_message / encode_message: whole datagrams (RFC 7296 §3.1-§3.2).
- decode_payloads / encode_payloads: a bare payload chain, e.g. the plaintext inside SK.
- sk_associated_data: the octets the AEAD tag / ICV of an SK or SKF payload cover up front.
- validate_payloads: the per-exchange payload rules (rules.py).

Decoding raises DecodeError only (UnsupportedVersion, a subclass, for a major version other
than 2); no construct type ever leaves this package.
"""

from __future__ import annotations

from .chain import InitProbe, UnsupportedVersion, probe_init_request, sk_associated_data
from .message import (
    decode_message,
    decode_payloads,
    encode_message,
    encode_payloads,
    encrypted_payload,
)
from .payloads import (
    PAYLOAD_CLASSES,
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CfgAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    Header,
    IdiPayload,
    IdPayload,
    IdrPayload,
    KePayload,
    Message,
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
    payload_type_of,
)
from .rules import validate_payloads

__all__ = [
    "PAYLOAD_CLASSES",
    "AuthPayload",
    "CertPayload",
    "CertReqPayload",
    "CfgAttribute",
    "CpPayload",
    "DeletePayload",
    "EapPayload",
    "Header",
    "IdPayload",
    "IdiPayload",
    "IdrPayload",
    "InitProbe",
    "KePayload",
    "Message",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "Proposal",
    "RawTrafficSelector",
    "SaPayload",
    "Selector",
    "SkPayload",
    "SkfPayload",
    "TrafficSelector",
    "Transform",
    "TsPayload",
    "TsiPayload",
    "TsrPayload",
    "UnknownPayload",
    "UnsupportedVersion",
    "VendorPayload",
    "decode_message",
    "decode_payloads",
    "encode_message",
    "encode_payloads",
    "encrypted_payload",
    "payload_type_of",
    "probe_init_request",
    "sk_associated_data",
    "validate_payloads",
]
