"""EAP-Identity (RFC 3748 §5.1): type 1. The Request may carry a displayable prompt; the
Response carries the peer's identity. It authenticates nothing: the server uses the answer to
pick the secret for the method that follows (swanctl's remote.eap_id = %any)."""

from __future__ import annotations

from .base import EapType, Outcome, Step, fail

MAX_IDENTITY = 253  # RADIUS User-Name limit (RFC 2865 §5.1); a longer one is refused


class IdentityServer:
    eap_type = EapType.IDENTITY

    def __init__(self) -> None:
        self.identity = b""

    def start(self, identifier: int) -> bytes:
        return b""

    def process(self, identifier: int, data: bytes) -> Step:
        identity = data.split(b"\x00", 1)[0]  # RFC 3748 §5.1: no NUL in the identity
        if not identity or len(identity) > MAX_IDENTITY:
            return fail(f"EAP-Identity response of {len(identity)} octets")
        self.identity = identity
        return Step(Outcome.SUCCESS)

    def msk(self) -> bytes | None:
        return None

    def peer_name(self) -> bytes:
        return self.identity


class IdentityPeer:
    eap_type = EapType.IDENTITY
    mutual = False

    def __init__(self, identity: bytes) -> None:
        self.identity = identity

    def process(self, identifier: int, data: bytes) -> Step:
        return Step(Outcome.CONTINUE, self.identity)

    def msk(self) -> bytes | None:
        return None
