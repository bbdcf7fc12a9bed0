"""IKE_INTERMEDIATE (RFC 9242) carrying the additional key exchanges of RFC 9370, both roles.

Negotiation: both peers send N(INTERMEDIATE_EXCHANGE_SUPPORTED) in IKE_SA_INIT (RFC 9242 §3.1);
the responder chooses ADDKE1..7 in the proposal (RFC 9370 §2.2.1, NONE left out). Then one
exchange per additional key exchange, in ADDKE order, message IDs 1..N, IKE_AUTH at N+1:

    HDR(MID=n), SK {KEi(n)}  -->
                      <--  HDR(MID=n), SK {KEr(n)}

Both messages of exchange n are protected with the keys of n-1 (IKE_SA_INIT's for n = 1); after
it every IKE SA key is replaced (RFC 9370 §2.2.2, crypto.keymat.update_ike_keys_additional_ke):

    SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)
    {SK_d(n) | SK_ai(n) | SK_ar(n) | SK_ei(n) | SK_er(n) | SK_pi(n) | SK_pr(n)}
        = prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr)

The initiator switches after the response, the responder once its response is out (`responded`).
Every IKE_INTERMEDIATE message is authenticated in IKE_AUTH (RFC 9242 §3.3.2): each side chains
IntAuth_i over the initiator's messages (SK_pi) and IntAuth_r over the responder's (SK_pr), each
over the message as if its Encrypted payload were plaintext; a fragmented message counts in its
reassembled form (RFC 7383 applies, the shares of ML-KEM exceed an MTU). IntAuth_iN | IntAuth_rN |
IKE_AUTH_MID ends both AUTH payloads' signed octets (`auth_octets`).

A responder refuses a missing KE with INVALID_SYNTAX and a KE of another method or bad KE data
with NO_PROPOSAL_CHOSEN (as strongSwan 6 does); either ends the half-open IKE SA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...constants import ExchangeType, HeaderFlag, KeId, NotifyType, enum_name
from ...crypto.auth import intermediate_auth, intermediate_octets
from ...crypto.dh import KeyExchange, create_key_exchange, respond_key_exchange
from ...crypto.keymat import Prf, update_ike_keys_additional_ke
from ...crypto.suites import EncrSuite, IntegSuite, encr_suite, integ_suite
from ...errors import CryptoError, InvalidSyntax, NoProposalChosen, ProtocolError
from ...wire import (
    Header,
    KePayload,
    NotifyPayload,
    Payload,
    encode_payloads,
    sk_associated_data,
)
from ..config import ConnectionConfig
from ..events import IkeSaFailed
from ..state import IkeInput
from . import as_notify_type, error_notifies, find_payload

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


@dataclass(slots=True)
class IntermediateState:
    """One IKE SA's IKE_INTERMEDIATE rounds: the additional key exchanges chosen and those done,
    and the two IntAuth chains. Dropped once the IKE SA is established."""

    methods: tuple[int, ...]  # the ADDKE methods chosen, in ADDKE order (NONE left out)
    done: int = 0  # additional key exchanges whose keys are in place
    exchanges: int = 0  # IKE_INTERMEDIATE exchanges in the IntAuth chains
    int_auth_i: bytes = field(default=b"", repr=False)
    int_auth_r: bytes = field(default=b"", repr=False)
    # the last IKE_INTERMEDIATE received: its header, first inner payload type, plaintext
    inner: tuple[Header, int, bytes] | None = field(default=None, repr=False)
    secret: bytes | None = field(default=None, repr=False)  # responder: SK(n) until answered

    @property
    def pending(self) -> bool:
        return self.done < len(self.methods)

    def received(self, header: Header, first: int, plaintext: bytes) -> None:
        """IkeSa.open hands every decrypted message here; IKE_INTERMEDIATE ones are kept."""
        if header.exchange == ExchangeType.IKE_INTERMEDIATE:
            self.inner = (header, first, plaintext)


def wanted(conn: ConnectionConfig) -> bool:
    """Do we offer additional key exchanges (and so announce IKE_INTERMEDIATE)?"""
    return any(
        method != KeId.NONE
        for spec in conn.ike_proposals
        for choices in spec.addke
        for method in choices
    )


def supported_notify() -> NotifyPayload:
    return NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED)


def auth_octets(sa: IkeSa) -> bytes:
    """What RFC 9242 §3.3.2 appends to both sides' signed octets: nothing without
    IKE_INTERMEDIATE exchanges; else IntAuth_iN | IntAuth_rN | IKE_AUTH_MID, the first IKE_AUTH
    request having the message ID after the last IKE_INTERMEDIATE one (RFC 9242 §3.2)."""
    state = sa.intermediate
    if state is None or state.exchanges == 0:
        return b""
    return intermediate_octets(state.int_auth_i, state.int_auth_r, state.exchanges + 1)


def missing(sa: IkeSa) -> bool:
    """An additional key exchange chosen but not done: IKE_AUTH may not start (RFC 9370 §2.2.2)."""
    return sa.intermediate is not None and sa.intermediate.pending


# --- the two IntAuth chains
def _chain(prf: Prf, previous: bytes, header: Header, first: int, plaintext: bytes) -> bytes:
    authenticated = sk_associated_data(header, first, len(plaintext))
    return intermediate_auth(prf, previous, authenticated, plaintext)


def _sent(sa: IkeSa, message_id: int, response: bool, payloads: list[Payload]) -> bytes:
    """Chain our own IKE_INTERMEDIATE message (as it goes out, before any fragmentation)."""
    state = sa.intermediate
    assert state is not None
    flags = (HeaderFlag.INITIATOR if sa.initiator else 0) | (HeaderFlag.RESPONSE if response else 0)
    header = Header(sa.spi_i, sa.spi_r, 0, ExchangeType.IKE_INTERMEDIATE, flags, message_id, 0)
    first, plaintext = encode_payloads(payloads)
    previous = state.int_auth_r if response else state.int_auth_i
    return _chain(sa.prf_local(), previous, header, first, plaintext)


def _received(sa: IkeSa) -> bytes:
    """Chain the peer's IKE_INTERMEDIATE message just opened (as received, reassembled)."""
    state = sa.intermediate
    assert state is not None and state.inner is not None
    header, first, plaintext = state.inner
    state.inner = None
    previous = state.int_auth_i if header.is_initiator else state.int_auth_r
    return _chain(sa.prf_remote(), previous, header, first, plaintext)


# --- the key update
def update_keys(sa: IkeSa, shared_secret: bytes) -> None:
    """RFC 9370 §2.2.2: every SK_* from SK_d(n-1) and SK(n), with the IKE_SA_INIT nonces and
    the IKE SA's SPIs; the SK ciphers of both directions follow."""
    from .ike_init import set_ike_keys

    assert sa.keys is not None
    encr, integ = _suites(sa)
    _seed, keys = update_ike_keys_additional_ke(
        sa.prf_id,
        sa.keys.sk_d,
        encr,
        integ,
        shared_secret,
        sa.nonce_i,
        sa.nonce_r,
        sa.spi_i,
        sa.spi_r,
    )
    set_ike_keys(sa, encr, integ, keys)


def _suites(sa: IkeSa) -> tuple[EncrSuite, IntegSuite | None]:
    suite = sa.suite
    assert suite is not None and suite.encr is not None
    integ = integ_suite(suite.integ) if suite.integ else None
    return encr_suite(suite.encr, suite.encr_key_bits), integ


# --- initiator
def start(sa: IkeSa, methods: tuple[int, ...]) -> None:
    """After IKE_SA_INIT chose additional key exchanges: one IKE_INTERMEDIATE per method goes
    before IKE_AUTH (already queued), in ADDKE order."""
    sa.intermediate = IntermediateState(methods)
    sa.queue[0:0] = [AdditionalKeExchange(index) for index in range(len(methods))]


class AdditionalKeExchange:
    """Our IKE_INTERMEDIATE carrying the `index`-th additional key exchange."""

    exchange_type = ExchangeType.IKE_INTERMEDIATE

    def __init__(self, index: int) -> None:
        self.index = index
        self.ke: KeyExchange | None = None

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        state = sa.intermediate
        if state is None or state.done != self.index:
            return None  # the IKE SA went on without us (it failed, or this is stale)
        method = state.methods[self.index]
        self.ke = create_key_exchange(method, sa.random_bytes)
        payloads: list[Payload] = [KePayload(method, self.ke.public_bytes)]
        # the window is free: the request gets the next message ID (RFC 9242 §3.2)
        state.int_auth_i = _sent(sa, sa.requests.next_id, False, payloads)
        return payloads

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        state = sa.intermediate
        assert state is not None and self.ke is not None
        errors = error_notifies(payloads)
        if errors:
            kind = as_notify_type(errors[0].notify_type)
            _fail(sa, f"peer refused IKE_INTERMEDIATE ({kind.name if kind else 'error'})", kind)
            return
        method = state.methods[self.index]
        ke = find_payload(payloads, KePayload)
        if ke is None or ke.group != method or state.inner is None:
            _fail(sa, f"IKE_INTERMEDIATE response lacks a KE of method {method}", None)
            return
        state.int_auth_r = _received(sa)
        try:
            shared = self.ke.compute(ke.data)
        except CryptoError as exc:
            _fail(sa, f"additional key exchange failed: {exc}", None)
            return
        self.ke = None
        state.exchanges += 1
        update_keys(sa, shared)
        state.done += 1
        sa.log.info("additional key exchange done", n=state.done, method=enum_name(KeId, method))

    def give_up(self, sa: IkeSa, now: float) -> None:
        _fail(sa, "no IKE_INTERMEDIATE response (retransmits exhausted)", None)


# --- responder
def respond(sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> list[Payload]:
    """The responder's IKE_INTERMEDIATE: answer the next additional key exchange."""
    state = sa.intermediate
    try:
        if state is None:
            raise InvalidSyntax("IKE_INTERMEDIATE was not negotiated")
        if state.inner is None:
            raise InvalidSyntax("IKE_INTERMEDIATE request not seen as received")
        state.int_auth_i = _received(sa)
        answer = _answer(sa, state, find_payload(payloads, KePayload))
    except ProtocolError as exc:
        notify = exc.notify or NotifyType.INVALID_SYNTAX
        _fail(sa, exc.reason, notify)
        return [NotifyPayload(notify)]
    state.int_auth_r = _sent(sa, sa.responses.expected_id, True, answer)
    state.exchanges += 1
    return answer


def _answer(sa: IkeSa, state: IntermediateState, ke: KePayload | None) -> list[Payload]:
    if not state.pending:
        if ke is not None:
            raise InvalidSyntax("KE in IKE_INTERMEDIATE after the additional key exchanges")
        return []  # an IKE_INTERMEDIATE for something we do not know: answered empty
    method = state.methods[state.done]
    if ke is None:
        raise InvalidSyntax(f"IKE_INTERMEDIATE without the KE of method {method}")
    if ke.group != method:
        raise NoProposalChosen(f"KE of method {ke.group} in IKE_INTERMEDIATE, chose {method}")
    try:
        exchange, state.secret = respond_key_exchange(method, ke.data, sa.random_bytes)
    except CryptoError as exc:
        raise NoProposalChosen(f"bad KE data in IKE_INTERMEDIATE: {exc}") from None
    return [KePayload(method, exchange.public_bytes)]


def responded(sa: IkeSa) -> None:
    """Our IKE_INTERMEDIATE answer is out (protected with the old keys): switch to the new."""
    state = sa.intermediate
    if state is None or state.secret is None or sa.closed:
        return
    secret, state.secret = state.secret, None
    update_keys(sa, secret)
    state.done += 1
    method = enum_name(KeId, state.methods[state.done - 1])
    sa.log.info("additional key exchange done", n=state.done, method=method)


def _fail(sa: IkeSa, reason: str, notify: NotifyType | None) -> None:
    sa.log.warning("IKE_INTERMEDIATE failed", reason=reason, notify=notify.name if notify else None)
    sa.emit(IkeSaFailed(sa.id, sa.conn.name, reason, notify))
    sa.transition(IkeInput.CLOSE)
