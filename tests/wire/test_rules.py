"""The payload rules table (rules.py): one violating message per rule, and the forms the RFCs
allow that a naive table would reject (EAP rounds, error-only responses, childless IKE_AUTH)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ikev2.constants import ExchangeType, NotifyType, ProtocolId
from ikev2.errors import InvalidSyntax, UnsupportedCriticalPayload
from ikev2.wire import (
    AuthPayload,
    DeletePayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    validate_payloads,
)

E = ExchangeType
SA = SaPayload((Proposal(1, ProtocolId.ESP, bytes(4), (Transform(1, 20, 256),)),))
KE = KePayload(31, bytes(32))
NONCE = NoncePayload(bytes(32))
SEL = TrafficSelector(7, 0, 0, 65535, IPv4Address("10.0.0.0"), IPv4Address("10.0.0.255"))
TSI, TSR = TsiPayload((SEL,)), TsrPayload((SEL,))
IDI, IDR = IdiPayload(2, b"a.example"), IdrPayload(2, b"b.example")
AUTH = AuthPayload(2, bytes(32))
SK = SkPayload(35, bytes(48))


def ok(exchange: int, response: bool, *payloads: Payload, inner: bool = True) -> None:
    validate_payloads(exchange, response, payloads, inner=inner)


def bad(exchange: int, response: bool, *payloads: Payload, inner: bool = True) -> str:
    with pytest.raises(InvalidSyntax) as info:
        validate_payloads(exchange, response, payloads, inner=inner)
    return info.value.reason


def test_ike_sa_init() -> None:
    ok(E.IKE_SA_INIT, False, SA, KE, NONCE, NotifyPayload(16388), inner=False)
    assert "KE missing" in bad(E.IKE_SA_INIT, False, SA, NONCE, inner=False)
    assert "2 SA payloads" in bad(E.IKE_SA_INIT, False, SA, SA, KE, NONCE, inner=False)
    assert "IDi not allowed" in bad(E.IKE_SA_INIT, False, SA, KE, NONCE, IDI, inner=False)
    assert "encrypted" in bad(E.IKE_SA_INIT, False, SA, KE, NONCE, SK, inner=False)
    assert "no encrypted payloads" in bad(E.IKE_SA_INIT, False, SA, KE, NONCE, inner=True)


def test_ike_sa_init_cookie_must_come_first() -> None:
    cookie = NotifyPayload(NotifyType.COOKIE, data=bytes(16))
    ok(E.IKE_SA_INIT, False, cookie, SA, KE, NONCE, inner=False)
    assert "COOKIE must be the first" in bad(
        E.IKE_SA_INIT, False, SA, cookie, KE, NONCE, inner=False
    )


def test_ike_sa_init_notify_only_responses() -> None:
    for notify_type in (
        NotifyType.NO_PROPOSAL_CHOSEN,
        NotifyType.COOKIE,
        NotifyType.INVALID_KE_PAYLOAD,
    ):
        ok(E.IKE_SA_INIT, True, NotifyPayload(notify_type, data=b"\x00\x13"), inner=False)
    assert "missing" in bad(E.IKE_SA_INIT, True, NotifyPayload(16388, data=bytes(20)), inner=False)


def test_ike_auth_response_without_auth() -> None:
    reason = bad(E.IKE_AUTH, True, IDR, SA, TSI, TSR)
    assert "AUTH missing" in reason


def test_ike_auth_request_forms() -> None:
    ok(E.IKE_AUTH, False, IDI, AUTH, SA, TSI, TSR)
    ok(E.IKE_AUTH, False, IDI, AUTH)  # childless (RFC 6023)
    ok(E.IKE_AUTH, False, IDI, SA, TSI, TSR)  # no AUTH: asks for EAP (RFC 7296 §2.16)
    ok(E.IKE_AUTH, False, EapPayload(b"\x02\x01\x00\x05\x01"))
    ok(E.IKE_AUTH, False, AUTH)  # the final EAP round
    assert "IDi missing" in bad(E.IKE_AUTH, False, SA, TSI, TSR)
    assert "must come together" in bad(E.IKE_AUTH, False, IDI, AUTH, SA, TSI)
    assert "2 IDi" in bad(E.IKE_AUTH, False, IDI, IDI, AUTH)
    assert "KE not allowed" in bad(E.IKE_AUTH, False, IDI, AUTH, KE)


def test_error_response_alone() -> None:
    ok(E.IKE_AUTH, True, NotifyPayload(NotifyType.AUTHENTICATION_FAILED))
    ok(E.CREATE_CHILD_SA, True, NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN))
    assert "missing" in bad(E.CREATE_CHILD_SA, True, NotifyPayload(NotifyType.INITIAL_CONTACT))


def test_encrypted_exchanges_outer_envelope() -> None:
    ok(E.IKE_AUTH, False, SK, inner=False)
    assert "exactly one SK" in bad(E.IKE_AUTH, False, IDI, AUTH, inner=False)
    assert "exactly one SK" in bad(E.INFORMATIONAL, False, SK, SK, inner=False)
    assert "NONCE must be inside" in bad(E.CREATE_CHILD_SA, False, NONCE, SK, inner=False)
    assert "encrypted payload not allowed" in bad(E.IKE_AUTH, False, IDI, AUTH, SK)


def test_create_child_sa() -> None:
    ok(
        E.CREATE_CHILD_SA,
        False,
        NotifyPayload(NotifyType.REKEY_SA, 3, bytes(4)),
        SA,
        NONCE,
        TSI,
        TSR,
    )
    ok(E.CREATE_CHILD_SA, False, SA, NONCE, KE)  # IKE SA rekey
    assert "NONCE missing" in bad(E.CREATE_CHILD_SA, False, SA, TSI, TSR)
    assert "must come together" in bad(E.CREATE_CHILD_SA, True, SA, NONCE, TSI)


def test_informational_and_intermediate() -> None:
    ok(E.INFORMATIONAL, False)  # liveness check
    ok(
        E.INFORMATIONAL,
        True,
        DeletePayload(ProtocolId.ESP, (bytes(4),)),
        DeletePayload(3, (bytes(4),)),
    )
    assert "SA not allowed" in bad(E.INFORMATIONAL, False, SA)
    ok(E.IKE_INTERMEDIATE, False, KE)
    assert "2 KE" in bad(E.IKE_INTERMEDIATE, True, KE, KE)
    assert "no payload rules" in bad(E.GSA_AUTH, False, KE)


def test_unknown_payloads() -> None:
    ok(E.INFORMATIONAL, False, UnknownPayload(200, False, b"x"))
    with pytest.raises(UnsupportedCriticalPayload) as info:
        validate_payloads(E.INFORMATIONAL, False, [UnknownPayload(201, True, b"x")], inner=True)
    assert info.value.notify_data == bytes([201])
    assert info.value.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
