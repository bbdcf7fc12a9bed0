"""The peer's side of one EAP conversation (RFC 3748 §2, §4, §5.3).

It answers EAP-Identity with our identity and Notification with an empty Response, runs the
method the server asks for when we are configured for it and answers a legacy Nak (§5.3.1)
listing ours otherwise, and accepts EAP-Success only once the method says it may (§4.2: for
MSCHAPv2 after the server's authenticator response verified).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .base import EapCode, EapError, EapPacket, EapType, Outcome, PeerMethod, parse_packet
from .md5 import Md5Peer
from .mschapv2 import MsChapV2Peer
from .tls import TlsPeer, TlsSetup


@dataclass(frozen=True, slots=True)
class PeerResult:
    packet: bytes | None = field(repr=False)  # our Response, None when nothing is to be sent
    outcome: Outcome
    reason: str = ""


def make_peer_method(
    eap_type: EapType,
    identity: bytes,
    secret: bytes,
    random: Callable[[int], bytes],
    tls: TlsSetup | None = None,
) -> PeerMethod:
    """The table of methods the peer can run."""
    if eap_type is EapType.TLS and tls is not None:
        return TlsPeer(tls.certs, tls.key, tls.check)
    if eap_type is EapType.MD5_CHALLENGE:
        return Md5Peer(secret)
    if eap_type is EapType.MSCHAPV2:
        return MsChapV2Peer(identity, secret, random)
    raise ValueError(f"no EAP peer method {eap_type!r}")


class EapPeer:
    def __init__(
        self,
        identity: bytes,
        secret: bytes,
        allowed: tuple[EapType, ...],
        random: Callable[[int], bytes],
        tls: TlsSetup | None = None,
    ) -> None:
        self.identity = identity
        self._tls = tls
        self._secret = secret
        self.allowed = allowed
        self._random = random
        self.method: PeerMethod | None = None
        self._may_succeed = False
        self._failed = False
        self.msk: bytes | None = None
        self.done = False

    def process(self, raw: bytes) -> PeerResult:
        """A packet from the server (an IKE_AUTH response's EAP payload) -> our answer."""
        if self.done:
            return PeerResult(None, Outcome.FAILURE, "EAP conversation already over")
        try:
            packet = parse_packet(raw)
        except EapError as exc:
            return self._end(Outcome.FAILURE, exc.reason)
        if packet.code is EapCode.SUCCESS:
            if self._may_succeed and not self._failed and self.method is not None:
                self.msk = self.method.msk()
                return self._end(Outcome.SUCCESS, "")
            return self._end(Outcome.FAILURE, "EAP-Success before the method completed")
        if packet.code is EapCode.FAILURE:
            return self._end(Outcome.FAILURE, "server sent EAP-Failure")
        if packet.code is not EapCode.REQUEST or packet.type is None:
            return self._end(Outcome.FAILURE, "expected an EAP Request")
        if packet.type == EapType.IDENTITY:
            return self._respond(packet, EapType.IDENTITY, self.identity)
        if packet.type == EapType.NOTIFICATION:
            return self._respond(packet, EapType.NOTIFICATION, b"")
        if packet.type not in self.allowed:
            # §5.3.1: legacy Nak, the types we would accept
            return self._respond(packet, EapType.NAK, bytes(self.allowed))
        eap_type = EapType(packet.type)
        if self.method is None or self.method.eap_type is not eap_type:
            self.method = make_peer_method(
                eap_type, self.identity, self._secret, self._random, self._tls
            )
        step = self.method.process(packet.identifier, packet.data)
        if step.outcome is Outcome.SUCCESS:
            self._may_succeed = True
        elif step.outcome is Outcome.FAILURE:
            self._failed = True
            if step.data is None:
                return self._end(Outcome.FAILURE, step.reason)
        if step.data is None:
            return self._end(Outcome.FAILURE, "EAP method gave no response")
        return self._respond(packet, eap_type, step.data)

    def _respond(self, request: EapPacket, eap_type: int, data: bytes) -> PeerResult:
        packet = EapPacket(EapCode.RESPONSE, request.identifier, eap_type, data).encode()
        return PeerResult(packet, Outcome.CONTINUE)

    def _end(self, outcome: Outcome, reason: str) -> PeerResult:
        self.done = True
        return PeerResult(None, outcome, reason)
