"""EAP-RADIUS on the gateway (RFC 3579; RFC 7296 §2.16): we ask the client's EAP identity, then
relay every EAP Response to a RADIUS server and its Requests back, until it says Accept (with
the MSK) or Reject. Pure: the engine emits EapBackendRequest and parks the IKE_AUTH request;
the service (service/eap_radius.py) talks RADIUS and hands the answer back with
Engine.eap_backend_answer, which answers the parked request as if it had just arrived.

    IKE_AUTH { EAP(Response) }  -->  gateway  --  EapBackendRequest  -->  service  -->  RADIUS
    <--  IKE_AUTH { EAP(Request | Success | Failure) }  <--  eap_backend_answer  <--

A retransmission of the parked request (the initiator retransmits, §2.1) finds the question
already asked and is dropped; the answer, once it comes, goes out once and is then replayed
from the response cache like any other. RadiusRelay has the surface of eap.EapServer, so the
rounds in tasks/eap.py run unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...wire import Payload
from ..eap import EapCode, EapError, EapPacket, EapType, Outcome, ServerResult, parse_packet
from ..events import EapBackendRequest

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


class BackendVerdict(enum.Enum):
    CHALLENGE = "challenge"
    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class BackendAnswer:
    verdict: BackendVerdict
    eap: bytes = field(repr=False)  # the packet for the client (may be empty on a Reject)
    msk: bytes | None = field(default=None, repr=False)
    reason: str = ""


class AnswerLater(Exception):
    """The IKE_AUTH request is answered once the RADIUS server has (the manager parks it)."""


class RadiusRelay:
    """The EAP authenticator's side, relayed: the method runs on the RADIUS server."""

    def __init__(self, random: Callable[[int], bytes]) -> None:
        self.eap_type = EapType.IDENTITY  # what the conversation is at (logs)
        self.identity = b""
        self.msk: bytes | None = None
        self.done = False
        self._identifier = random(1)[0]
        self.waiting: bytes | None = None  # the Response we forwarded, until answered
        self.fresh = False  # waiting was not yet handed to the service
        self.answer: BackendAnswer | None = None
        self.parked: tuple[int, tuple[Payload, ...]] | None = None  # (message ID, payloads)

    def start(self) -> bytes:
        """EAP-Identity first (strongSwan's eap-radius does the same by default)."""
        return EapPacket(EapCode.REQUEST, self._identifier, EapType.IDENTITY).encode()

    def process(self, raw: bytes) -> ServerResult:
        if self.done:
            return self._end(Outcome.FAILURE, b"", "EAP conversation already over")
        if raw == self.waiting:
            if self.answer is None:
                return ServerResult(b"", Outcome.PENDING)  # a retransmission: asked already
            answer, self.answer, self.waiting = self.answer, None, None
            return self._result(answer)
        try:
            packet = parse_packet(raw)
        except EapError as exc:
            return self._end(Outcome.FAILURE, b"", exc.reason)
        if packet.code is not EapCode.RESPONSE or packet.type is None:
            return self._end(Outcome.FAILURE, b"", "expected an EAP Response")
        if packet.type == EapType.IDENTITY and not self.identity:
            self.identity = packet.data
        elif packet.type in {int(t) for t in EapType} and packet.type != EapType.NAK:
            self.eap_type = EapType(packet.type)
        self.waiting, self.fresh, self.answer = raw, True, None
        return ServerResult(b"", Outcome.PENDING)

    def _result(self, answer: BackendAnswer) -> ServerResult:
        if answer.verdict is BackendVerdict.CHALLENGE and answer.eap:
            return ServerResult(answer.eap, Outcome.CONTINUE)
        if answer.verdict is BackendVerdict.ACCEPT:
            self.msk = answer.msk
            success = EapPacket(EapCode.SUCCESS, self._identifier).encode()
            return self._end(Outcome.SUCCESS, answer.eap or success, "")
        return self._end(Outcome.FAILURE, answer.eap, answer.reason or "RADIUS: Access-Reject")

    def _end(self, outcome: Outcome, packet: bytes, reason: str) -> ServerResult:
        self.done = True
        if not packet and outcome is Outcome.FAILURE:
            packet = EapPacket(EapCode.FAILURE, self._identifier).encode()
        return ServerResult(packet, outcome, reason)


def later(sa: IkeSa, relay: RadiusRelay) -> None:
    """Hand the Response to the service (once) and leave the request unanswered for now."""
    if relay.fresh and relay.waiting is not None:
        relay.fresh = False
        peer = f"{sa.remote[0]}[{sa.remote[1]}]"
        sa.emit(EapBackendRequest(sa.id, sa.conn.name, relay.identity, relay.waiting, peer))
    raise AnswerLater


def park(sa: IkeSa, message_id: int, payloads: tuple[Payload, ...]) -> None:
    relay = sa.eap.server if sa.eap is not None else None
    if isinstance(relay, RadiusRelay):
        relay.parked = (message_id, payloads)


def answered(sa: IkeSa, answer: BackendAnswer) -> tuple[int, tuple[Payload, ...]] | None:
    """The parked request to answer now, or None (a late answer for a request gone)."""
    relay = sa.eap.server if sa.eap is not None else None
    if not isinstance(relay, RadiusRelay) or relay.parked is None or relay.waiting is None:
        sa.log.info("RADIUS answer dropped", reason="no EAP round waits for it")
        return None
    relay.answer = answer
    parked, relay.parked = relay.parked, None
    return parked
