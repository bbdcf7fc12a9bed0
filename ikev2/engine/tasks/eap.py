"""The IKE_AUTH rounds that carry EAP (RFC 7296 §2.16), both roles.

    HDR, SK {IDi, [CERTREQ,] [IDr,] SAi2, TSi, TSr, N(EAP_ONLY...)}  -->   (no AUTH: EAP wanted)
                                <--  HDR, SK {IDr, [CERT,] AUTH, EAP}      (cert AUTH + Request)
    HDR, SK {EAP}  -->                                                     (as many rounds
                                <--  HDR, SK {EAP}                          as the method needs)
    HDR, SK {AUTH}  -->                                                    (after EAP-Success)
                                <--  HDR, SK {AUTH, SAr2, TSi, TSr}

Each round is an IKE_AUTH exchange of its own: a new message ID, retransmitted by the
initiator and answered from the responder's cache like any other (window.py). The final AUTH
payloads are prf(prf(MSK, "Key Pad for IKEv2"), <SignedOctets>) over the IDi and IDr of the
first round; a method without an MSK (EAP-MD5) uses SK_pi / SK_pr instead (§2.16). A failed EAP
ends the IKE SA with AUTHENTICATION_FAILED and nothing installed: the child SA of the first
round is only created once the final AUTH verified.

RFC 5998 (EAP-only): the initiator always announces N(EAP_ONLY_AUTHENTICATION). A responder
whose own side is EAP (local_auth EAP) sends no certificate AUTH, only when the initiator
announced it (else AUTHENTICATION_FAILED). An initiator accepts an answer without AUTH only
when the method that runs authenticates the responder (a mutual, key-generating one, §4),
checked when the method succeeds; it then proves the responder through the MSK-keyed final
AUTH alone. EAP-TLS is mutual; neither MD5 nor MSCHAPv2 counts (RFC 5998 §4 lists neither;
strongSwan's is_mutual() agrees), so EAP-only runs with EAP-TLS and is refused with the others.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ...constants import AuthMethod, ExchangeType, IdType, NotifyType
from ...crypto.auth import KEY_PAD, signed_octets
from ...crypto.keymat import Prf
from ...errors import AuthenticationFailed
from ...wire import (
    AuthPayload,
    EapPayload,
    IdiPayload,
    IdPayload,
    IdrPayload,
    NotifyPayload,
    Payload,
)
from ..config import AuthMethodName, ConnectionConfig, Identity
from ..credentials import CertificateError, identity_matches_certificate, verify_chain
from ..eap import EapPeer, EapServer, EapType, Outcome
from ..eap.tls import PeerCheck, TlsSetup
from ..identity import identity_matches, parse_identity
from . import (
    child_create,
    config_payload,
    eap_radius,
    error_notifies,
    find_payload,
    has_notify,
    intermediate,
    mobike,
    window_size,
)

if TYPE_CHECKING:
    from ..ike_sa import IkeSa
    from .ike_auth import IkeAuthExchange

ASK_IDENTITY = b"%any"  # remote.eap_id = %any: EAP-Identity first
SERVER_NAME = b"ikev2"  # the Name in our MSCHAPv2 Challenge (RFC 2759 §4)


def eap_auth(prf_id: int, secret: bytes, octets: bytes) -> bytes:
    """§2.16: AUTH = prf(prf(MSK or SK_p, "Key Pad for IKEv2"), <SignedOctets>). Not
    psk_auth_data: its cache is for long-lived PSKs, an MSK must not outlive its IKE SA."""
    return Prf(prf_id, Prf(prf_id, secret).compute(KEY_PAD)).compute(octets)


def _id_body(payload: IdPayload) -> bytes:
    return bytes([payload.id_type, 0, 0, 0]) + payload.data


def _initiator_auth(sa: IkeSa, idi: IdPayload, secret: bytes, prf: Prf) -> bytes:
    octets = signed_octets(sa.init_request, sa.nonce_r, prf, _id_body(idi))
    return eap_auth(sa.prf_id, secret, octets + intermediate.auth_octets(sa))  # RFC 9242 §3.3.2


def _responder_auth(sa: IkeSa, idr: IdPayload, secret: bytes, prf: Prf) -> bytes:
    octets = signed_octets(sa.init_response, sa.nonce_i, prf, _id_body(idr))
    return eap_auth(sa.prf_id, secret, octets + intermediate.auth_octets(sa))  # RFC 9242 §3.3.2


def _shared_keys(sa: IkeSa, msk: bytes | None) -> tuple[bytes, bytes]:
    """(initiator's secret, responder's secret) for the final AUTH payloads (§2.16)."""
    assert sa.keys is not None
    if msk:
        return msk, msk
    return sa.keys.sk_pi, sa.keys.sk_pr


def eap_payload(payloads: Sequence[Payload]) -> bytes | None:
    found = find_payload(payloads, EapPayload)
    return found.data if found is not None else None


def tls_check(
    sa: IkeSa, anchors: tuple[bytes, ...], identity: Callable[[], Identity | None]
) -> PeerCheck:
    """EAP-TLS: the peer's chain must reach one of `anchors` (the IKE rules of
    credentials.verify_chain) and certify `identity()` (RFC 5216 §5.2), when one is known."""

    def check(leaf: x509.Certificate, others: list[x509.Certificate]) -> str | None:
        der = serialization.Encoding.DER
        try:
            cert = verify_chain(leaf.public_bytes(der), [c.public_bytes(der) for c in others],
                                anchors, sa.env.utc_now())  # fmt: skip
        except CertificateError as exc:
            return f"certificate: {exc.reason}"
        wanted = identity()
        if wanted is not None and not identity_matches_certificate(wanted, cert):
            return f"{wanted} is not in the TLS certificate"
        return None

    return check


def _text_identity(data: bytes) -> Identity | None:
    try:
        return parse_identity(data.decode())
    except (ValueError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------- initiator (client)


def first_request_notifies(sa: IkeSa) -> list[Payload]:
    """RFC 5998 §3: we can do EAP-only authentication."""
    return [NotifyPayload(NotifyType.EAP_ONLY_AUTHENTICATION)]


def _send(sa: IkeSa, exchange: EapRound, payloads: list[Payload], now: float) -> None:
    """The next round, at once (the IKE SA stays AUTH_SENT, which pump() leaves alone): a new
    message ID, retransmitted by the request window like any request."""
    message_id = sa.requests.allocate()
    packets = sa.protect_all(ExchangeType.IKE_AUTH, message_id, False, payloads)
    sa.requests.sent(message_id, packets, now, exchange)
    for packet in packets:
        sa.send(packet)


class EapRound:
    """The initiator's IKE_AUTH rounds after the first: EAP ones, then the final AUTH."""

    exchange_type = ExchangeType.IKE_AUTH

    def __init__(
        self,
        first: IkeAuthExchange,
        peer: EapPeer,
        idi: IdPayload,
        idr: IdPayload,
        eap_only: bool = False,
    ) -> None:
        self.first = first
        self.peer = peer
        self.idi = idi
        self.idr = idr
        self.eap_only = eap_only  # RFC 5998: the responder sent no AUTH of its own
        self.final = False

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        return None  # never queued: each round is sent by the one before (_send)

    def give_up(self, sa: IkeSa, now: float) -> None:
        from .ike_auth import _fail

        _fail(sa, "no IKE_AUTH response in EAP (retransmits exhausted)", None)

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        if self.final:
            self._final_response(sa, payloads, now)
            return
        data = eap_payload(payloads)
        if data is None:
            _refused(sa, payloads, "peer sent no EAP payload")
            return
        self.advance(sa, data, now)

    def advance(self, sa: IkeSa, data: bytes, now: float) -> None:
        """Feed the server's EAP packet to the peer; send our answer or the final AUTH."""
        from .ike_auth import _fail

        result = self.peer.process(data)
        if result.outcome is Outcome.CONTINUE and result.packet is not None:
            _send(sa, self, [EapPayload(result.packet)], now)
            return
        if result.outcome is not Outcome.SUCCESS:
            _fail(sa, f"EAP: {result.reason}", NotifyType.AUTHENTICATION_FAILED)
            return
        method = self.peer.method
        if self.eap_only and (method is None or not method.mutual or not self.peer.msk):
            # RFC 5998 §4: only a mutual, key-generating method may stand in for its AUTH
            _tell_peer(sa)
            name = method.eap_type.name if method else "no method"
            _fail(sa, f"EAP-only authentication needs a mutual method that derives an MSK; "
                  f"{name} is not", NotifyType.AUTHENTICATION_FAILED)  # fmt: skip
            return
        sa.log.info("EAP succeeded", method=method.eap_type.name if method else None,
                    msk=self.peer.msk is not None, eap_only=self.eap_only)  # fmt: skip
        secret_i, _ = _shared_keys(sa, self.peer.msk)
        auth = _initiator_auth(sa, self.idi, secret_i, sa.prf_local())
        self.final = True
        _send(sa, self, [AuthPayload(AuthMethod.PSK, auth)], now)

    def _final_response(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        from .ike_auth import _fail, established

        auth = find_payload(payloads, AuthPayload)
        if auth is None:
            _refused(sa, payloads, "peer sent no AUTH after EAP")
            return
        _, secret_r = _shared_keys(sa, self.peer.msk)
        expected = _responder_auth(sa, self.idr, secret_r, sa.prf_remote())
        if auth.method != AuthMethod.PSK or not hmac.compare_digest(expected, auth.data):
            _tell_peer(sa)
            _fail(sa, "EAP AUTH of the responder does not verify", NotifyType.AUTHENTICATION_FAILED)
            return
        identity = Identity(IdType(self.idr.id_type), self.idr.data)
        established(sa, identity, now)
        mobike.auth_response(sa, payloads)  # RFC 4555 §3.3: in the last IKE_AUTH answer
        config_payload.process_reply(sa, payloads)  # §2.19: CP rides with the final AUTH
        if self.first.child_request is not None:
            child_create.process_i(sa, self.first.child_request, payloads, now)
        sa.schedule_dpd(now)


def first_response(
    sa: IkeSa, exchange: IkeAuthExchange, payloads: tuple[Payload, ...], now: float
) -> None:
    """The responder's answer to our AUTH-less first IKE_AUTH: check its AUTH (or refuse
    EAP-only, see the module docstring), then start the EAP conversation."""
    from .ike_auth import _fail, verify_peer

    data = eap_payload(payloads)
    idr = find_payload(payloads, IdrPayload)
    if data is None or idr is None:
        _refused(sa, payloads, "peer did not start EAP")
        return
    eap_only = find_payload(payloads, AuthPayload) is None
    try:
        if eap_only:  # RFC 5998: its identity now, its proof from the method (advance)
            try:
                peer_id = Identity(IdType(idr.id_type), idr.data)
            except ValueError:
                raise AuthenticationFailed(f"unsupported ID type {idr.id_type}") from None
            if not identity_matches(sa.conn.remote_id, peer_id):
                raise AuthenticationFailed(f"peer ID {peer_id} does not match")
            sa.log.info("peer uses EAP-only authentication (RFC 5998)")
        else:
            verify_peer(sa, sa.conn.remote_auth, sa.conn.remote_id, payloads)
    except AuthenticationFailed as exc:
        _tell_peer(sa)
        _fail(sa, exc.reason, NotifyType.AUTHENTICATION_FAILED)
        return
    creds = sa.conn.local_auth
    identity = creds.eap_id if creds.eap_id is not None else sa.conn.local_id.data
    tls = None
    if EapType.TLS in creds.eap_types:  # the gateway's TLS certificate must carry its IDr
        gateway = Identity(IdType(idr.id_type), idr.data)
        check = tls_check(sa, sa.conn.remote_auth.trust_anchors, lambda: gateway)
        tls = TlsSetup(creds.certs, creds.private_key, check)
    peer = EapPeer(
        identity, creds.eap_secret or b"", tuple(EapType(t) for t in creds.eap_types),
        sa.random_bytes, tls,
    )  # fmt: skip
    idi = IdiPayload(sa.conn.local_id.id_type, sa.conn.local_id.data)
    EapRound(exchange, peer, idi, idr, eap_only).advance(sa, data, now)


def _refused(sa: IkeSa, payloads: Sequence[Payload], reason: str) -> None:
    from .ike_auth import _fail, _notify

    errors = error_notifies(payloads)
    notify = _notify(errors[0].notify_type) if errors else None
    _fail(sa, f"{reason} ({notify.name})" if notify else reason, notify)


def _tell_peer(sa: IkeSa) -> None:
    """§2.21.2: the initiator that cannot authenticate the responder tells it."""
    packet = sa.protect(
        ExchangeType.INFORMATIONAL,
        sa.requests.allocate(),
        False,
        [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)],
    )
    sa.send(packet)


# --------------------------------------------------------------------------- responder (gateway)


class ServerRounds:
    """What the responder keeps between the rounds: the conversation, the first request (its
    IDi and child SA payloads) and, once established, the EAP identity (for views and leases)."""

    __slots__ = ("first", "identity", "idi", "idr", "server", "succeeded")

    def __init__(
        self,
        server: EapServer | eap_radius.RadiusRelay,
        first: tuple[Payload, ...],
        idr: IdrPayload,
    ) -> None:
        self.server: EapServer | eap_radius.RadiusRelay | None = server
        self.first = first
        idi = find_payload(first, IdiPayload)
        assert idi is not None
        self.idi: IdPayload = idi
        self.idr: IdPayload = idr
        self.identity = b""
        self.succeeded = False


def respond_first(
    sa: IkeSa, conn: ConnectionConfig, payloads: tuple[Payload, ...], now: float
) -> list[Payload]:
    """The first IKE_AUTH of an EAP client: our certificate AUTH and the first EAP Request.
    Raises AuthenticationFailed (ike_auth.respond answers it)."""
    from .ike_auth import our_auth_payloads

    creds = conn.remote_auth
    if find_payload(payloads, AuthPayload) is not None:
        raise AuthenticationFailed("peer sent AUTH, but this connection wants EAP (§2.16)")
    idi = find_payload(payloads, IdiPayload)
    assert idi is not None  # select_connection found one
    if not identity_matches(conn.remote_id, Identity(IdType(idi.id_type), idi.data)):
        raise AuthenticationFailed("peer ID does not match")
    eap_only = conn.local_auth.method is AuthMethodName.EAP
    if eap_only and not has_notify(payloads, NotifyType.EAP_ONLY_AUTHENTICATION):
        raise AuthenticationFailed("EAP-only authentication configured, but the peer did not "
                                   "announce it (RFC 5998 §3)")  # fmt: skip
    eap_id = None if creds.eap_id == ASK_IDENTITY else (creds.eap_id or idi.data)
    idr = IdrPayload(conn.local_id.id_type, conn.local_id.data)
    ours = [] if eap_only else our_auth_payloads(sa, conn, idr)  # §2.16 / RFC 5998 §3
    if creds.eap_radius:  # RFC 3579: the RADIUS server runs the method (tasks/eap_radius.py)
        relay = eap_radius.RadiusRelay(sa.random_bytes)
        sa.eap = ServerRounds(relay, payloads, idr)
        sa.log.info("EAP started", method="radius", eap_only=eap_only)
        return [idr, *ours, EapPayload(relay.start())]
    first, *others = (EapType(t) for t in creds.eap_types)
    tls = None
    holder: list[EapServer] = []
    if EapType.TLS in creds.eap_types:  # the client's certificate must carry its EAP identity
        check = tls_check(
            sa, creds.trust_anchors, lambda: _text_identity(holder[0].identity) if holder else None
        )
        own = conn.local_auth  # our TLS certificate is our IKE one
        tls = TlsSetup(own.certs, own.private_key, check)  # fmt: skip
    server = EapServer(first, eap_id, creds.eap_user_secret, SERVER_NAME, sa.random_bytes,
                       tuple(others), tls)  # fmt: skip
    holder.append(server)
    sa.eap = ServerRounds(server, payloads, idr)
    sa.log.info("EAP started", method=server.eap_type.name, ask_identity=eap_id is None,
                eap_only=eap_only)  # fmt: skip
    return [idr, *ours, EapPayload(server.start())]


def respond_round(
    sa: IkeSa,
    payloads: tuple[Payload, ...],
    reqid_source: child_create.ReqidSource,
    now: float,
) -> list[Payload]:
    """A later IKE_AUTH request of the EAP conversation: an EAP Response, or the final AUTH."""
    from .ike_auth import _fail

    rounds: ServerRounds = sa.eap
    server = rounds.server
    if rounds.succeeded:
        return _final_request(sa, rounds, payloads, reqid_source, now)
    data = eap_payload(payloads)
    if data is None or server is None:
        _fail(sa, "EAP round without an EAP payload", NotifyType.AUTHENTICATION_FAILED)
        return [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)]
    result = server.process(data)
    if result.outcome is Outcome.PENDING:  # RFC 3579: relayed; raises AnswerLater
        assert isinstance(server, eap_radius.RadiusRelay)
        eap_radius.later(sa, server)
    if result.outcome is Outcome.FAILURE:
        # the method's reason never includes the secret; the identity is the user's name
        sa.log.warning("EAP failed", reason=result.reason, eap_id=server.identity.decode(
            "utf-8", "replace"))  # fmt: skip
        _fail(sa, f"EAP: {result.reason}", NotifyType.AUTHENTICATION_FAILED)
        rounds.server = None
        return [EapPayload(result.packet), NotifyPayload(NotifyType.AUTHENTICATION_FAILED)]
    if result.reason:  # not over yet, but the peer is told it failed (MSCHAPv2 Failure)
        sa.log.warning("EAP failing", reason=result.reason, eap_id=server.identity.decode(
            "utf-8", "replace"))  # fmt: skip
    if result.outcome is Outcome.SUCCESS:
        rounds.succeeded = True
        rounds.identity = server.identity
        sa.log.info("EAP succeeded", method=server.eap_type.name, msk=server.msk is not None,
                    eap_id=server.identity.decode("utf-8", "replace"))  # fmt: skip
    return [EapPayload(result.packet)]


def _final_request(
    sa: IkeSa,
    rounds: ServerRounds,
    payloads: tuple[Payload, ...],
    reqid_source: child_create.ReqidSource,
    now: float,
) -> list[Payload]:
    from .ike_auth import _fail, established

    server = rounds.server
    assert server is not None
    auth = find_payload(payloads, AuthPayload)
    secret_i, secret_r = _shared_keys(sa, server.msk)
    expected = _initiator_auth(sa, rounds.idi, secret_i, sa.prf_remote())
    if (
        auth is None
        or auth.method != AuthMethod.PSK
        or not hmac.compare_digest(expected, auth.data)
    ):
        _fail(sa, "EAP AUTH of the initiator does not verify", NotifyType.AUTHENTICATION_FAILED)
        rounds.server = None
        return [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)]
    answer: list[Payload] = [
        AuthPayload(AuthMethod.PSK, _responder_auth(sa, rounds.idr, secret_r, sa.prf_local())),
        *window_size.announce(sa),  # RFC 7296 §2.3, in the IKE_AUTH answer that establishes
    ]
    first = rounds.first
    rounds.server, rounds.first = None, ()  # keep only the EAP identity
    identity = Identity(IdType(rounds.idi.id_type), rounds.idi.data)
    established(sa, identity, now)
    cp_answer, child_allowed = config_payload.respond(sa, first, now)  # §2.19 CP(CFG_REPLY)
    answer += cp_answer + mobike.auth_answer(sa, first)  # RFC 4555 §3.3
    if child_allowed:
        answer += child_create.respond(sa, first, reqid_source, now)
    return answer
