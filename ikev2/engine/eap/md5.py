"""EAP-MD5-Challenge (RFC 3748 §5.4, on CHAP's RFC 1994 §4.1): type 4.

    Request/Response Type-Data:  Value-Size (1) | Value | Name
    Response Value = MD5(Identifier | secret | Challenge)

It proves the peer knows the secret but does not authenticate the server and derives no key
(so IKE's final AUTH falls back to SK_pi/SK_pr, RFC 7296 §2.16); never mutual (RFC 5998 §4).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from .base import EapType, Outcome, Step, fail

CHALLENGE_BYTES = 16


def md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 §4.1: the Response Value."""
    return hashlib.md5(bytes([identifier]) + secret + challenge, usedforsecurity=False).digest()


def _value(data: bytes) -> tuple[bytes, bytes] | None:
    """(Value, Name) of MD5-Challenge Type-Data, None when malformed."""
    if not data or data[0] == 0 or 1 + data[0] > len(data):
        return None
    return data[1 : 1 + data[0]], data[1 + data[0] :]


class Md5Server:
    eap_type = EapType.MD5_CHALLENGE

    def __init__(
        self,
        identity: bytes,
        secret: Callable[[bytes], bytes | None],
        random: Callable[[int], bytes],
    ) -> None:
        self.identity = identity
        self._secret = secret
        self._challenge = random(CHALLENGE_BYTES)
        self._identifier = -1

    def start(self, identifier: int) -> bytes:
        self._identifier = identifier
        return bytes([CHALLENGE_BYTES]) + self._challenge

    def process(self, identifier: int, data: bytes) -> Step:
        parsed = _value(data)
        if parsed is None:
            return fail("malformed EAP-MD5 response")
        secret = self._secret(self.identity)
        if secret is None:
            return fail("no EAP secret for this identity")
        expected = md5_response(self._identifier, secret, self._challenge)
        if not hmac.compare_digest(expected, parsed[0]):
            return fail("EAP-MD5 response does not verify")
        return Step(Outcome.SUCCESS)

    def msk(self) -> bytes | None:
        return None

    def peer_name(self) -> bytes:
        return self.identity


class Md5Peer:
    eap_type = EapType.MD5_CHALLENGE
    mutual = False

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def process(self, identifier: int, data: bytes) -> Step:
        parsed = _value(data)
        if parsed is None:
            return fail("malformed EAP-MD5 challenge")
        value = md5_response(identifier, self._secret, parsed[0])
        return Step(Outcome.SUCCESS, bytes([len(value)]) + value)

    def msk(self) -> bytes | None:
        return None
