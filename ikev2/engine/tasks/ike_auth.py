"""IKE_AUTH, both roles (RFC 7296 §1.2, §2.15 AUTH, §3.5 IDs, §3.6–3.7 CERT/CERTREQ; RFC 7427).

    HDR, SK {IDi, [CERT+], [CERTREQ], [IDr], AUTH, [N(INITIAL_CONTACT)], SA, TSi, TSr}  -->
                                       <--  HDR, SK {IDr, [CERT+], AUTH, SA, TSi, TSr}

AUTHENTICATION_FAILED goes both ways (§2.21.2): the responder answers with it; the initiator
that cannot authenticate the responder tells it in a separate INFORMATIONAL and deletes the SA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from cryptography.exceptions import UnsupportedAlgorithm

from ...constants import AuthMethod, CertEncoding, ExchangeType, IdType, NotifyType
from ...crypto.auth import (
    PublicKey,
    psk_auth_data,
    sign_auth,
    signed_octets,
    verify_auth,
    verify_psk_auth,
)
from ...errors import AuthenticationFailed, CryptoError
from ...wire import (
    AuthPayload,
    CertPayload,
    IdiPayload,
    IdPayload,
    IdrPayload,
    NotifyPayload,
    Payload,
)
from ..config import (
    AuthMethodName,
    ChildConfig,
    ConnectionConfig,
    Credentials,
    Identity,
    SendCert,
)
from ..credentials import (
    CertificateError,
    asks_for_certificates,
    auth_method_for_key,
    identity_matches_certificate,
    pinned_certificate,
    requested_authorities,
    select_chain_for_certreq,
    verify_path,
)
from ..events import IkeSaFailed
from ..identity import identity_matches
from ..state import IkeInput
from . import (
    child_create,
    childless,
    config_payload,
    eap,
    find_payload,
    intermediate,
    mobike,
    ppk,
    redirect,
    revocation_wait,
    window_size,
)
from .ike_init import certreq_payloads, suite_name

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


def id_body(payload: IdPayload) -> bytes:
    """RestOfIDPayload (§2.15): ID type, three reserved octets, identification data."""
    return bytes([payload.id_type, 0, 0, 0]) + payload.data


def _our_octets(sa: IkeSa, id_payload: IdPayload) -> bytes:
    """RFC 7296 §2.15, and RFC 9242 §3.3.2: IntAuth appended after IKE_INTERMEDIATE rounds."""
    message = sa.init_request if sa.initiator else sa.init_response
    octets = signed_octets(message, sa.nonce_remote, sa.prf_local(), id_body(id_payload))
    return octets + intermediate.auth_octets(sa)


def _peer_octets(sa: IkeSa, id_payload: IdPayload) -> bytes:
    message = sa.init_response if sa.initiator else sa.init_request
    octets = signed_octets(message, sa.nonce_local, sa.prf_remote(), id_body(id_payload))
    return octets + intermediate.auth_octets(sa)


# swanctl.conf's send_cert: whether the chain goes, given whether the peer sent a CERTREQ
_SENDS_CERT: dict[SendCert, Callable[[bool], bool]] = {
    SendCert.IFASKED: lambda asked: asked,
    SendCert.ALWAYS: lambda asked: True,
    SendCert.NEVER: lambda asked: False,
}


def our_auth_payloads(sa: IkeSa, conn: ConnectionConfig, id_payload: IdPayload) -> list[Payload]:
    """CERT chain (if any) and AUTH proving our identity."""
    creds = conn.local_auth
    octets = _our_octets(sa, id_payload)
    if creds.method is AuthMethodName.PSK:
        assert creds.psk is not None
        return [AuthPayload(AuthMethod.PSK, psk_auth_data(sa.prf_id, creds.psk, octets))]
    method, hash_alg = auth_method_for_key(creds.private_key, sa.peer_hash_algorithms)
    # §3.7: the chain up to the CA the peer's CERTREQ names (credentials.py), when send_cert
    # says to send one at all
    sending = _SENDS_CERT[conn.send_cert](sa.peer_asked_cert)
    chain = select_chain_for_certreq(creds.certs, sa.peer_certreq) if sending else ()
    certs: list[Payload] = [CertPayload(CertEncoding.X509_SIGNATURE, der) for der in chain]
    signature = sign_auth(method, creds.private_key, octets, hash_alg)
    return [*certs, AuthPayload(method, signature)]


def verify_peer(
    sa: IkeSa, creds: Credentials, expected: Identity | None, payloads: Sequence[Payload]
) -> Identity:
    """Check the peer's ID against policy and its AUTH; raise AuthenticationFailed."""
    id_cls = IdrPayload if sa.initiator else IdiPayload
    id_payload = find_payload(payloads, id_cls)
    auth = find_payload(payloads, AuthPayload)
    if id_payload is None or auth is None:
        raise AuthenticationFailed("peer sent no ID or no AUTH")
    try:
        identity = Identity(IdType(id_payload.id_type), id_payload.data)
    except ValueError:
        raise AuthenticationFailed(f"unsupported ID type {id_payload.id_type}") from None
    if not identity_matches(expected, identity):
        raise AuthenticationFailed(f"peer ID {identity} does not match {expected}")
    octets = _peer_octets(sa, id_payload)
    if creds.method is AuthMethodName.PSK:
        if auth.method != AuthMethod.PSK or creds.psk is None:
            raise AuthenticationFailed(f"expected PSK authentication, got method {auth.method}")
        if not verify_psk_auth(sa.prf_id, creds.psk, octets, auth.data):
            raise AuthenticationFailed("PSK AUTH value does not verify")
        return identity
    if auth.method == AuthMethod.PSK:
        raise AuthenticationFailed("expected a signature, got PSK authentication")
    certs = [
        p.data
        for p in payloads
        if isinstance(p, CertPayload) and p.encoding == CertEncoding.X509_SIGNATURE
    ]
    if not certs:  # §3.6: no CERT is fine when we hold the peer's certificate
        pinned = pinned_certificate(identity, creds.trust_anchors)
        if pinned is None:
            raise AuthenticationFailed("peer sent no X.509 certificate, and none is pinned for it")
        certs = [pinned]
    try:
        path = verify_path(certs[0], certs[1:], creds.trust_anchors, sa.env.utc_now())
    except CertificateError as exc:
        raise AuthenticationFailed(f"certificate: {exc.reason}") from None
    revocation_wait.check(sa, creds, path)  # CRL / OCSP, remote.revocation
    cert = path[0]
    if not identity_matches_certificate(identity, cert):
        raise AuthenticationFailed(f"peer ID {identity} is not in its certificate")
    try:
        verify_auth(AuthMethod(auth.method), cast(PublicKey, cert.public_key()), octets, auth.data)
    except (CryptoError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuthenticationFailed(f"signature does not verify: {exc}") from None
    return identity


def established(sa: IkeSa, identity: Identity, now: float) -> None:
    sa.remote_identity = identity
    sa.established_at = now
    sa.arm_lifetimes(now)
    sa.transition(IkeInput.AUTH_DONE)
    remote_id, suite = str(identity), suite_name(sa)
    sa.log.info("IKE SA established", remote_id=remote_id, suite=suite)
    sa.emit(sa.established_event(remote_id, suite))
    sa.forget_handshake()


class IkeAuthExchange:
    """The initiator's IKE_AUTH, carrying the first child SA when one is configured. A
    reauthentication sends no INITIAL_CONTACT (§2.8.3: the peer would drop the old IKE SA)."""

    exchange_type = ExchangeType.IKE_AUTH

    def __init__(
        self, child: ChildConfig | None, reqid: int, *, initial_contact: bool = True
    ) -> None:
        self.child_config = child
        self.reqid = reqid
        self.initial_contact = initial_contact
        self.child_request: child_create.ChildRequest | None = None

    def build_i(self, sa: IkeSa, now: float) -> list[Payload]:
        conn = sa.conn
        idi = IdiPayload(conn.local_id.id_type, conn.local_id.data)
        use_eap = conn.local_auth.method is AuthMethodName.EAP  # §2.16: no AUTH, EAP follows
        ppk.apply_i(sa)  # RFC 8784 §3: AUTH with the PPK's SK_pi
        auth = [] if use_eap else our_auth_payloads(sa, conn, idi)
        payloads: list[Payload] = [idi, *auth[:-1], *certreq_payloads(conn)]
        if conn.remote_id is not None and conn.remote_id.id_type is not IdType.NULL:
            payloads.append(IdrPayload(conn.remote_id.id_type, conn.remote_id.data))
        payloads += auth[-1:]
        payloads += ppk.auth_notifies_i(sa, lambda: our_auth_payloads(sa, conn, idi))
        if use_eap:
            payloads += eap.first_request_notifies(sa)
        if conn.send_initial_contact and self.initial_contact:
            payloads.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
        payloads += config_payload.request(sa)  # §2.19 CP(CFG_REQUEST) for the vips
        payloads += mobike.auth_request(sa)  # RFC 4555 §3.3
        payloads += window_size.announce(sa)  # RFC 7296 §2.3
        way = childless.first_child(sa, self.child_config)  # RFC 6023: the policy table
        if way is childless.FirstChild.FAIL:
            _fail(sa, "the peer does not support childless IKE SAs (childless = force)", None)
            return []
        if way is childless.FirstChild.DEFERRED and self.child_config is not None:
            childless.defer(sa, self.child_config, self.reqid)
            self.child_config = None
        if self.child_config is not None:
            self.child_request, child_payloads = child_create.build_i(
                sa, self.child_config, self.reqid
            )
            payloads += child_payloads
        sa.transition(IkeInput.SEND_AUTH)
        return payloads

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        if sa.conn.local_auth.method is AuthMethodName.EAP:
            eap.first_response(sa, self, payloads, now)  # the rounds of §2.16
            return
        has_auth = find_payload(payloads, AuthPayload) is not None
        errors = [p for p in payloads if isinstance(p, NotifyPayload) and p.notify_type < 16384]
        if not has_auth:
            notify = _notify(errors[0].notify_type) if errors else None
            reason = f"peer refused IKE_AUTH ({notify.name if notify else 'no AUTH'})"
            _fail(sa, reason, notify)
            return
        try:
            ppk.response_i(sa, payloads)  # RFC 8784 §3: keys with or without the PPK
            identity = verify_peer(sa, sa.conn.remote_auth, sa.conn.remote_id, payloads)
        except AuthenticationFailed as exc:
            # §2.21.2: tell the responder in an INFORMATIONAL, then forget the SA
            packet = sa.protect(
                ExchangeType.INFORMATIONAL,
                sa.requests.allocate(),
                False,
                [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)],
            )
            sa.send(packet)
            _fail(sa, exc.reason, NotifyType.AUTHENTICATION_FAILED)
            return
        if redirect.auth_redirected(sa, self, identity, payloads, now):  # RFC 5685 §3.5
            return
        established(sa, identity, now)
        mobike.auth_response(sa, payloads)
        config_payload.process_reply(sa, payloads)
        if self.child_request is not None:
            child_create.process_i(sa, self.child_request, payloads, now)
        sa.schedule_dpd(now)

    def give_up(self, sa: IkeSa, now: float) -> None:
        _fail(sa, "no IKE_AUTH response (retransmits exhausted)", None)


def select_connection(sa: IkeSa, payloads: Sequence[Payload]) -> ConnectionConfig | None:
    """Responder: among the connections matching the addresses, the first whose remote ID
    accepts IDi and whose local ID is what IDr asks for (if it asks)."""
    idi = find_payload(payloads, IdiPayload)
    idr = find_payload(payloads, IdrPayload)
    if idi is None:
        return None
    try:
        peer = Identity(IdType(idi.id_type), idi.data)
        wanted = Identity(IdType(idr.id_type), idr.data) if idr is not None else None
    except ValueError:
        return None
    for conn in sa.candidates:
        if not identity_matches(conn.remote_id, peer):
            continue
        if wanted is not None and not identity_matches(wanted, conn.local_id):
            continue
        return conn
    return None


def respond(
    sa: IkeSa,
    payloads: tuple[Payload, ...],
    reqid_source: child_create.ReqidSource,
    now: float,
) -> list[Payload]:
    """The responder's IKE_AUTH: authenticate the initiator, prove ourselves, make the child."""
    if sa.eap is not None:  # a later round of an EAP conversation (§2.16)
        return eap.respond_round(sa, payloads, reqid_source, now)
    if intermediate.missing(sa):  # RFC 9370 §2.2.2: every additional key exchange first
        _fail(sa, "IKE_AUTH before the additional key exchanges", NotifyType.INVALID_SYNTAX)
        return [NotifyPayload(NotifyType.INVALID_SYNTAX)]
    sa.peer_certreq = requested_authorities(payloads)  # §1.2: IKE_AUTH request's CERTREQs
    sa.peer_asked_cert = asks_for_certificates(payloads)
    conn = select_connection(sa, payloads)
    try:
        if conn is None:
            raise AuthenticationFailed("no connection matches the peer's identities")
        if conn is not sa.conn:
            sa.conn = conn
            sa.log = sa.log.bind(conn=conn.name)
        if (why := childless.refusal(conn, payloads)) is not None:  # RFC 6023 §4
            _fail(sa, why, NotifyType.INVALID_SYNTAX)
            return [NotifyPayload(NotifyType.INVALID_SYNTAX)]
        if conn.remote_auth.method is AuthMethodName.EAP:
            return eap.respond_first(sa, conn, payloads, now)
        if conn.local_auth.method is AuthMethodName.EAP:  # §2.16: EAP is the initiator's only
            raise AuthenticationFailed("we authenticate with EAP, so we cannot be the responder")
        checked = ppk.request_r(sa, conn, payloads)  # RFC 8784 §3: PPK, fallback or refusal
        identity = verify_peer(sa, conn.remote_auth, conn.remote_id, checked)
    except AuthenticationFailed as exc:
        _fail(sa, exc.reason, NotifyType.AUTHENTICATION_FAILED)
        return [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)]
    idr = IdrPayload(conn.local_id.id_type, conn.local_id.data)
    answer: list[Payload] = [idr, *our_auth_payloads(sa, conn, idr)]
    answer += ppk.response_notifies_r(sa) + window_size.announce(sa)  # §2.3
    established(sa, identity, now)
    moved = redirect.auth_redirect(sa, now)  # RFC 5685 §3.5: no child, the client goes
    if moved:
        return answer + moved
    cp_answer, child_allowed = config_payload.respond(sa, payloads, now)  # §2.19 CP(CFG_REPLY)
    answer += cp_answer + mobike.auth_answer(sa, payloads)
    if child_allowed:
        answer += child_create.respond(sa, payloads, reqid_source, now)
    return answer


def _fail(sa: IkeSa, reason: str, notify: NotifyType | None) -> None:
    sa.log.warning("IKE_AUTH failed", reason=reason, notify=notify.name if notify else None)
    sa.emit(IkeSaFailed(sa.id, sa.conn.name, reason, notify))
    sa.transition(IkeInput.CLOSE)


def _notify(value: int) -> NotifyType | None:
    try:
        return NotifyType(value)
    except ValueError:
        return None
