"""IKE_SA_INIT, both roles (RFC 7296 §1.2, §2.6 cookies, §2.7 proposals, §2.10 nonces,
§2.23 NAT detection; RFC 7383 §2.3 and RFC 7427 §4 capability notifies).

    HDR, SA, KEi, Ni, [N(COOKIE)], N(NATD_S), N(NATD_D), [N(FRAG_SUP)], [N(SIG_HASH)]  -->
                    <--  HDR, SA, KEr, Nr, N(NATD_S), N(NATD_D), [CERTREQ], [N(FRAG_SUP)], ...
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes

from ...constants import (
    CertEncoding,
    ExchangeType,
    HashAlgorithm,
    HeaderFlag,
    NotifyType,
    ProtocolId,
)
from ...crypto.dh import create_key_exchange, respond_key_exchange
from ...crypto.keymat import IkeKeys, derive_ike_keys
from ...crypto.sk import SkCipher
from ...crypto.suites import EncrSuite, IntegSuite, encr_suite, integ_suite
from ...errors import InvalidKePayload, NoProposalChosen, ProtocolError
from ...wire import (
    CertReqPayload,
    Header,
    KePayload,
    Message,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
    encode_message,
)
from ..config import AuthMethodName, ConnectionConfig
from ..credentials import asks_for_certificates, certreq_authority_hash, requested_authorities
from ..events import Endpoint, IkeSaFailed
from ..proposals import NegotiatedSuite, check_selected, select_proposal, spec_to_proposals
from ..state import IkeInput, IkeState
from ..support import crypto_supports, describe_suite
from . import childless, intermediate, ppk, redirect

if TYPE_CHECKING:
    from ..ike_sa import IkeSa

# RFC 7427 §4: what we can verify; strongSwan announces the same set.
OUR_HASH_ALGORITHMS = (
    HashAlgorithm.SHA2_256,
    HashAlgorithm.SHA2_384,
    HashAlgorithm.SHA2_512,
    HashAlgorithm.IDENTITY,
)
MAX_INIT_RETRIES = 3


# --- RFC 7296 §2.23: NAT detection hashes
def natd_hash(spi_i: bytes, spi_r: bytes, endpoint: Endpoint) -> bytes:
    digest = hashes.Hash(hashes.SHA1())
    digest.update(spi_i + spi_r + endpoint[0].packed + struct.pack("!H", endpoint[1]))
    return digest.finalize()


def natd_payloads(spi_i: bytes, spi_r: bytes, local: Endpoint, remote: Endpoint) -> list[Payload]:
    return [
        NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, data=natd_hash(spi_i, spi_r, local)),
        NotifyPayload(
            NotifyType.NAT_DETECTION_DESTINATION_IP, data=natd_hash(spi_i, spi_r, remote)
        ),
    ]


def detect_nat(sa: IkeSa, message: Message) -> None:
    """Compare the peer's NAT_DETECTION hashes with the addresses we see (§2.23)."""
    sources = [
        n.data for n in message.notifies if n.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP
    ]
    dest = message.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    if not sources or dest is None:
        return
    spi_r = message.header.spi_r
    sa.nat_remote = natd_hash(sa.spi_i, spi_r, sa.remote) not in sources
    sa.nat_local = dest.data != natd_hash(sa.spi_i, spi_r, sa.local)


def capability_payloads(conn: ConnectionConfig) -> list[Payload]:
    payloads: list[Payload] = []
    if conn.fragmentation:
        payloads.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
    data = b"".join(struct.pack("!H", h) for h in OUR_HASH_ALGORITHMS)
    payloads.append(NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, data=data))
    return payloads


def record_capabilities(sa: IkeSa, message: Message) -> None:
    sa.peer_fragmentation = (
        message.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        and sa.conn.fragmentation
    )
    sig = message.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    if sig is not None:
        data = sig.data[: len(sig.data) // 2 * 2]
        sa.peer_hash_algorithms = tuple(
            struct.unpack("!H", data[i : i + 2])[0] for i in range(0, len(data), 2)
        )
    sa.peer_certreq = requested_authorities(message.payloads)  # §3.7, for ike_auth's CERTs
    sa.peer_asked_cert = asks_for_certificates(message.payloads)


def certreq_payloads(*conns: ConnectionConfig) -> list[Payload]:
    """RFC 7296 §3.7: one CERTREQ listing the SHA-1 hashes of the CAs we trust. A responder's
    IKE_SA_INIT names those of every connection the addresses match, as IDi has not yet said
    which one it is (strongSwan names every CA it holds): a peer whose send_cert is ifasked
    then sends its chain whichever connection it turns out to be."""
    hashes: dict[bytes, None] = {}
    for conn in conns:
        auth = conn.remote_auth
        if conn.send_certreq and auth.method is AuthMethodName.PUBKEY:
            hashes.update((certreq_authority_hash(ca), None) for ca in auth.trust_anchors)
    if not hashes:
        return []
    return [CertReqPayload(CertEncoding.X509_SIGNATURE, b"".join(hashes))]


def install_ike_keys(sa: IkeSa, suite: NegotiatedSuite, shared_secret: bytes) -> None:
    """RFC 7296 §2.13–2.14: SKEYSEED and the SK_* split, then the SK ciphers of both ways."""
    assert suite.encr is not None and suite.prf is not None
    encr = encr_suite(suite.encr, suite.encr_key_bits)
    integ = integ_suite(suite.integ) if suite.integ else None
    sa.prf_id = suite.prf
    _skeyseed, keys = derive_ike_keys(
        suite.prf, encr, integ, sa.nonce_i, sa.nonce_r, shared_secret, sa.spi_i, sa.spi_r
    )
    set_ike_keys(sa, encr, integ, keys)


def set_ike_keys(sa: IkeSa, encr: EncrSuite, integ: IntegSuite | None, keys: IkeKeys) -> None:
    """The SK_* in place, with the SK ciphers of both directions (also after each additional
    key exchange, RFC 9370 §2.2.2)."""
    sk_i = SkCipher(encr, keys.sk_ei, integ, keys.sk_ai if integ else b"")
    sk_r = SkCipher(encr, keys.sk_er, integ, keys.sk_ar if integ else b"")
    sa.install_keys(keys, sk_i, sk_r)


def _header(sa: IkeSa, response: bool, spi_r: bytes) -> Header:
    flags = HeaderFlag.RESPONSE if response else HeaderFlag.INITIATOR
    return Header(sa.spi_i, spi_r, 0, ExchangeType.IKE_SA_INIT, flags, 0, 0)


# --- initiator: build_i / process_i
def build_i(sa: IkeSa, now: float) -> None:
    """Send (or re-send, after COOKIE or INVALID_KE_PAYLOAD) our IKE_SA_INIT request."""
    conn = sa.conn
    if sa.ke is None or sa.ke.group != sa.ke_group:
        if not sa.ke_group:
            sa.ke_group = next(g for spec in conn.ike_proposals for g in spec.ke)
        sa.ke = create_key_exchange(sa.ke_group, sa.random_bytes)
    if not sa.nonce_i:
        sa.nonce_i = sa.new_nonce()
    payloads: list[Payload] = []
    if sa.cookie:
        payloads.append(NotifyPayload(NotifyType.COOKIE, data=sa.cookie))
    payloads += [
        SaPayload(spec_to_proposals(conn.ike_proposals, b"")),
        KePayload(sa.ke_group, sa.ke.public_bytes),
        NoncePayload(sa.nonce_i),
        *natd_payloads(sa.spi_i, bytes(8), sa.local, sa.remote),
        *capability_payloads(conn),
        *redirect.init_notifies(sa),  # RFC 5685 §3.2, §3.4
    ]
    if intermediate.wanted(conn):  # RFC 9242 §3.1, for the additional key exchanges we offer
        payloads.append(intermediate.supported_notify())
    payloads += ppk.init_request_notifies(conn)  # RFC 8784 §3
    packet = encode_message(Message(_header(sa, False, bytes(8)), tuple(payloads)))
    sa.init_request = packet
    if sa.state is IkeState.CREATED:
        sa.transition(IkeInput.SEND_INIT)
        sa.requests.allocate()
        sa.requests.sent(0, (packet,), now)
    else:
        sa.transition(IkeInput.RETRY_INIT)
        sa.requests.resend_same_id((packet,), now)
    sa.send(packet)


def process_i(sa: IkeSa, raw: bytes, message: Message, now: float) -> bool:
    """Handle the IKE_SA_INIT response. True when keys are in place and IKE_AUTH may start."""
    if sa.keys is not None:  # a copy, while IKE_INTERMEDIATE rounds keep us in INIT_SENT
        sa.log.info("IKE_SA_INIT response dropped", reason="already processed")
        return False
    if redirect.init_response(sa, message, now):  # RFC 5685 §3.3
        return False
    cookie = message.notify(NotifyType.COOKIE)
    invalid_ke = message.notify(NotifyType.INVALID_KE_PAYLOAD)
    if cookie is not None or invalid_ke is not None:
        sa.init_retries += 1
        if sa.init_retries > MAX_INIT_RETRIES:
            fail(sa, "too many IKE_SA_INIT retries", None)
            return False
        if cookie is not None:  # RFC 7296 §2.6
            sa.log.info("retry with cookie")
            sa.cookie = cookie.data
        else:  # RFC 7296 §1.2: retry in the group the responder asks for
            assert invalid_ke is not None
            group = struct.unpack("!H", invalid_ke.data[:2])[0] if len(invalid_ke.data) >= 2 else 0
            groups = {g for spec in sa.conn.ike_proposals for g in spec.ke}
            if group not in groups or group == sa.ke_group:
                fail(sa, f"INVALID_KE_PAYLOAD asks for group {group} we do not offer", None)
                return False
            sa.log.info("retry with requested KE group", group=group)
            sa.ke_group = group
        build_i(sa, now)
        return False
    for notify in message.notifies:
        if notify.notify_type < 16384:
            fail(sa, "peer refused IKE_SA_INIT", _notify_type(notify.notify_type))
            return False
    sa_payload = message.find(SaPayload)
    ke = message.find(KePayload)
    nonce = message.find(NoncePayload)
    if sa_payload is None or ke is None or nonce is None or len(sa_payload.proposals) != 1:
        fail(sa, "IKE_SA_INIT response lacks SA, KE or Nonce", None)
        return False
    try:
        offered = spec_to_proposals(sa.conn.ike_proposals, b"")
        check_selected(sa_payload.proposals[0], offered)
        suite = NegotiatedSuite.from_proposal(sa_payload.proposals[0])
        if suite.ke != sa.ke_group or ke.group != sa.ke_group:
            raise NoProposalChosen("responder chose a KE group other than the one we sent")
        assert sa.ke is not None
        shared = sa.ke.compute(ke.data)
    except (ProtocolError, ValueError) as exc:
        fail(sa, f"bad IKE_SA_INIT response: {exc}", None)
        return False
    except Exception as exc:  # crypto errors of the peer's KE
        fail(sa, f"key exchange failed: {exc}", NotifyType.INVALID_SYNTAX)
        return False
    sa.spi_r = message.header.spi_r
    sa.nonce_r = nonce.data
    sa.suite = suite
    sa.init_response = raw
    sa.bind_log()
    if suite.additional_ke and not _announces_intermediate(message):
        fail(sa, "responder chose additional key exchanges without IKE_INTERMEDIATE", None)
        return False
    refused = ppk.init_response_i(sa, message)  # RFC 8784 §3: a required PPK needs USE_PPK
    if refused is not None:
        fail(sa, refused, None)
        return False
    install_ike_keys(sa, suite, shared)
    detect_nat(sa, message)
    record_capabilities(sa, message)
    childless.record(sa, message)  # RFC 6023 §4
    sa.requests.done()
    sa.transition(IkeInput.RECV_INIT_RESPONSE)
    if suite.additional_ke:  # RFC 9370 §2.2.2: one IKE_INTERMEDIATE each, before IKE_AUTH
        intermediate.start(sa, suite.additional_ke)
    return True


def _announces_intermediate(message: Message) -> bool:
    return message.notify(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is not None


def fail(sa: IkeSa, reason: str, notify: NotifyType | None) -> None:
    sa.log.warning("IKE SA failed", reason=reason, notify=notify.name if notify else None)
    sa.emit(IkeSaFailed(sa.id, sa.conn.name, reason, notify))
    sa.transition(IkeInput.CLOSE)


def _notify_type(value: int) -> NotifyType | None:
    try:
        return NotifyType(value)
    except ValueError:
        return None


# --- responder: process_r / build_r
def error_response(message: Message, notify: NotifyType, data: bytes = b"") -> bytes:
    """An unprotected IKE_SA_INIT answer carrying one notify; responder SPI zero (§2.6, §2.21.1)."""
    header = Header(
        message.header.spi_i, bytes(8), 0, ExchangeType.IKE_SA_INIT, HeaderFlag.RESPONSE, 0, 0
    )
    return encode_message(Message(header, (NotifyPayload(notify, data=data),)))


def process_r(sa: IkeSa, raw: bytes, message: Message) -> None:
    """Choose the proposal, check the KE group, derive keys; raises ProtocolError to refuse."""
    conn = sa.conn
    sa_payload = message.find(SaPayload)
    ke = message.find(KePayload)
    nonce = message.find(NoncePayload)
    if sa_payload is None or ke is None or nonce is None:
        raise ProtocolError("IKE_SA_INIT request lacks SA, KE or Nonce")
    # RFC 9370 §2.2.1: additional key exchanges only with a peer announcing IKE_INTERMEDIATE
    announced = _announces_intermediate(message)
    chosen = select_proposal(
        sa_payload.proposals,
        conn.ike_proposals,
        ProtocolId.IKE,
        crypto_supports,
        additional_ke=announced,
    )
    if chosen is None:
        raise NoProposalChosen("no acceptable IKE proposal")
    suite = NegotiatedSuite.from_proposal(chosen)
    if suite.ke is None:
        raise NoProposalChosen("chosen proposal has no KE method")
    if ke.group != suite.ke:  # RFC 7296 §1.2
        raise InvalidKePayload(
            f"KE in group {ke.group}, proposal chose {suite.ke}", struct.pack("!H", suite.ke)
        )
    sa.ke_group = suite.ke
    # the responder's path for every method: ML-KEM encapsulates to KEi (never compute(),
    # which would decapsulate with a key pair a responder does not have)
    sa.ke, shared = respond_key_exchange(suite.ke, ke.data, sa.random_bytes)
    sa.nonce_i = nonce.data
    sa.nonce_r = sa.new_nonce()
    sa.suite = suite
    sa.chosen_proposal = chosen
    sa.init_request = raw
    if announced:  # RFC 9242 §3.1: we support it too (used when ADDKEs were chosen)
        sa.intermediate = intermediate.IntermediateState(suite.additional_ke)
    install_ike_keys(sa, suite, shared)
    detect_nat(sa, message)
    record_capabilities(sa, message)
    ppk.init_request_r(sa, message)  # RFC 8784 §3


def build_r(sa: IkeSa) -> bytes:
    assert sa.ke is not None and sa.chosen_proposal is not None
    payloads: list[Payload] = [
        SaPayload((sa.chosen_proposal,)),
        KePayload(sa.ke_group, sa.ke.public_bytes),
        NoncePayload(sa.nonce_r),
        *natd_payloads(sa.spi_i, sa.spi_r, sa.local, sa.remote),
        *certreq_payloads(*sa.candidates),
        *capability_payloads(sa.conn),
        *childless.init_notifies(sa),  # RFC 6023 §4
    ]
    if sa.intermediate is not None:
        payloads.append(intermediate.supported_notify())
    payloads += ppk.init_response_notifies(sa)
    packet = encode_message(Message(_header(sa, True, sa.spi_r), tuple(payloads)))
    sa.init_response = packet
    return packet


def suite_name(sa: IkeSa) -> str:
    assert sa.suite is not None
    return describe_suite(sa.suite)
