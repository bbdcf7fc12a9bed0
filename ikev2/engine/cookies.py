"""Stateless COOKIEs for the IKE_SA_INIT gate (RFC 7296 §2.6).

    Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)

The secret rotates every `lifetime` seconds of engine time; a cookie made with the previous
secret is still accepted, so a rotation never refuses an initiator that is mid-retry.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes

from .config import IPAddress

SECRET_BYTES = 32


class CookieGate:
    def __init__(self, random_bytes: Callable[[int], bytes], lifetime: float) -> None:
        self._random_bytes = random_bytes
        self._lifetime = lifetime
        self._version = 0
        self._secret = b""
        self._previous: tuple[int, bytes] | None = None
        self._rotated_at: float | None = None

    def __repr__(self) -> str:
        return f"CookieGate(version={self._version})"

    def _rotate(self, now: float) -> None:
        if self._rotated_at is not None and now - self._rotated_at < self._lifetime:
            return
        if self._rotated_at is not None:
            self._previous = (self._version, self._secret)
            self._version = (self._version + 1) % 256
        self._secret = self._random_bytes(SECRET_BYTES)
        self._rotated_at = now

    @staticmethod
    def _digest(version: int, secret: bytes, nonce: bytes, ip: IPAddress, spi_i: bytes) -> bytes:
        h = hashes.Hash(hashes.SHA256())
        h.update(nonce + ip.packed + spi_i + secret)
        return bytes([version]) + h.finalize()

    def make(self, nonce: bytes, ip: IPAddress, spi_i: bytes, now: float) -> bytes:
        self._rotate(now)
        return self._digest(self._version, self._secret, nonce, ip, spi_i)

    def verify(self, cookie: bytes, nonce: bytes, ip: IPAddress, spi_i: bytes, now: float) -> bool:
        self._rotate(now)
        if not cookie:
            return False
        secrets = [(self._version, self._secret)]
        if self._previous is not None:
            secrets.append(self._previous)
        for version, secret in secrets:
            if cookie[0] == version:
                expected = self._digest(version, secret, nonce, ip, spi_i)
                return hmac.compare_digest(expected, cookie)
        return False
