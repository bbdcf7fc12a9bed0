"""The authenticator's side of one EAP conversation (RFC 3748 §2, §4): identifiers, the
EAP-Identity round when the identity is not known yet, the method, then Success or Failure.

The EAP Identifier starts random and grows by one per Request (§4: it matches a Response to its
Request). Over IKE every Response arrives in its own IKE_AUTH request, which IKE itself protects
and orders (RFC 7296 §2.16), so a Response with the wrong Identifier, a Nak (we offer one method)
or a malformed packet ends the conversation with EAP-Failure instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .base import EapCode, EapError, EapPacket, EapType, Outcome, ServerMethod, parse_packet
from .identity import IdentityServer
from .md5 import Md5Server
from .mschapv2 import MsChapV2Server
from .tls import TlsServer, TlsSetup

SecretLookup = Callable[[bytes], "bytes | None"]


@dataclass(frozen=True, slots=True)
class ServerResult:
    packet: bytes = field(repr=False)  # what to send: the next Request, EAP-Success or -Failure
    outcome: Outcome
    reason: str = ""


def make_server_method(
    eap_type: EapType,
    identity: bytes,
    secret: SecretLookup,
    server_name: bytes,
    random: Callable[[int], bytes],
    tls: TlsSetup | None = None,
) -> ServerMethod:
    """The table of methods the authenticator can run."""
    if eap_type is EapType.TLS and tls is not None:
        return TlsServer(identity, tls.certs, tls.key, tls.check)
    if eap_type is EapType.MD5_CHALLENGE:
        return Md5Server(identity, secret, random)
    if eap_type is EapType.MSCHAPV2:
        return MsChapV2Server(server_name, secret, random)
    raise ValueError(f"no EAP server method {eap_type!r}")


class EapServer:
    """One conversation. `identity` None: ask with EAP-Identity first (swanctl eap_id = %any).
    `alternatives`: methods a peer may ask for instead with a Nak (§5.3.1; swanctl's
    remote.auth = eap, strongSwan's eap-dynamic): the first one it names that we run is
    offered next, once."""

    def __init__(
        self,
        eap_type: EapType,
        identity: bytes | None,
        secret: SecretLookup,
        server_name: bytes,
        random: Callable[[int], bytes],
        alternatives: tuple[EapType, ...] = (),
        tls: TlsSetup | None = None,
    ) -> None:
        self.eap_type = eap_type
        self._tls = tls
        self._alternatives = alternatives
        self._secret = secret
        self._server_name = server_name
        self._random = random
        self._identifier = random(1)[0]
        self.identity = identity or b""
        self._method: ServerMethod = (
            IdentityServer() if identity is None else self._new_method(identity)
        )
        self.msk: bytes | None = None
        self.done = False

    def _new_method(self, identity: bytes) -> ServerMethod:
        return make_server_method(
            self.eap_type, identity, self._secret, self._server_name, self._random, self._tls
        )

    def _request(self, data: bytes) -> bytes:
        return EapPacket(EapCode.REQUEST, self._identifier, self._method.eap_type, data).encode()

    def start(self) -> bytes:
        return self._request(self._method.start(self._identifier))

    def process(self, raw: bytes) -> ServerResult:
        """A Response (from an IKE_AUTH request's EAP payload) -> what to answer."""
        if self.done:
            return self._failure("EAP conversation already over")
        try:
            packet = parse_packet(raw)
        except EapError as exc:
            return self._failure(exc.reason)
        if packet.code is not EapCode.RESPONSE or packet.identifier != self._identifier:
            return self._failure(f"expected a Response to Identifier {self._identifier}")
        if packet.type == EapType.NAK:
            wanted = ", ".join(str(t) for t in packet.data) or "none"
            choice = next((t for t in self._alternatives if t in packet.data), None)
            if choice is None or isinstance(self._method, IdentityServer):
                return self._failure(f"peer refused EAP method {self.eap_type.name} "
                                     f"(wants {wanted})")  # fmt: skip
            self._alternatives = ()  # one switch: a second Nak ends it
            self.eap_type = choice
            self._identifier = (self._identifier + 1) % 256
            self._method = self._new_method(self.identity)
            return ServerResult(self.start(), Outcome.CONTINUE)
        if packet.type != self._method.eap_type:
            return self._failure(f"Response of EAP type {packet.type}, expected "
                                 f"{self._method.eap_type.name}")  # fmt: skip
        self._identifier = (self._identifier + 1) % 256
        step = self._method.process(self._identifier, packet.data)
        if step.outcome is Outcome.CONTINUE and step.data is not None:
            # a reason here: the method tells the peer it failed (MSCHAPv2's Failure request)
            return ServerResult(self._request(step.data), Outcome.CONTINUE, step.reason)
        if step.outcome is not Outcome.SUCCESS:
            return self._failure(step.reason or "EAP method failed")
        if isinstance(self._method, IdentityServer):  # the identity is known: the method now
            self.identity = self._method.identity
            self._method = self._new_method(self.identity)
            return ServerResult(self.start(), Outcome.CONTINUE)
        self.done = True
        self.identity = self._method.peer_name() or self.identity
        self.msk = self._method.msk()
        return ServerResult(EapPacket(EapCode.SUCCESS, self._identifier).encode(), Outcome.SUCCESS)

    def _failure(self, reason: str) -> ServerResult:
        self.done = True
        packet = EapPacket(EapCode.FAILURE, self._identifier).encode()
        return ServerResult(packet, Outcome.FAILURE, reason)
