"""Keyed MACs shared by the PRF (keymat.py) and the INTEG transforms (sk.py).

All primitives come from `cryptography`: HMAC (RFC 2104), AES-CMAC (RFC 4493) directly, and
AES-XCBC-MAC (RFC 3566), which `cryptography` lacks, as its RFC 3566 §4 construction over AES-ECB
and AES-CBC from `cryptography` (three derived keys, CBC-MAC, final block masked with K2 or K3).

Each MAC is keyed once; `compute` works on a copy of the keyed state (DESIGN §4: a keyed HMAC
`.copy()` saves ~5 µs per use against creating a new one).
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives import cmac, hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import UsageError
from .suites import MacKind

AES_BLOCK = 16
_ZERO_BLOCK = bytes(AES_BLOCK)

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """The `cryptography` hash object for a suite's hash_name."""
    return _HASHES[name]


class KeyedMac(Protocol):
    """A MAC keyed once; compute(*parts) is the MAC of the concatenated parts (full length)."""

    def compute(self, *parts: bytes) -> bytes: ...


class HmacMac:
    """HMAC (RFC 2104) with a keyed state that is copied for each message."""

    __slots__ = ("_keyed",)

    def __init__(self, hash_name: str, key: bytes) -> None:
        self._keyed = hmac.HMAC(key, _HASHES[hash_name])

    def compute(self, *parts: bytes) -> bytes:
        ctx = self._keyed.copy()
        ctx.update(b"".join(parts) if len(parts) != 1 else parts[0])
        return ctx.finalize()

    def __repr__(self) -> str:
        return "HmacMac(<keyed>)"


class CmacMac:
    """AES-CMAC (RFC 4493) on a 128-bit key."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        if len(key) != AES_BLOCK:
            raise UsageError(f"AES-CMAC takes a 16-byte key, not {len(key)}")
        self._keyed = cmac.CMAC(algorithms.AES(key))

    def compute(self, *parts: bytes) -> bytes:
        ctx = self._keyed.copy()
        for part in parts:
            ctx.update(part)
        return ctx.finalize()

    def __repr__(self) -> str:
        return "CmacMac(<keyed>)"


class XcbcMac:
    """AES-XCBC-MAC (RFC 3566 §4) on a 128-bit key, full 128-bit output."""

    __slots__ = ("_k1", "_k2", "_k3")

    def __init__(self, key: bytes) -> None:
        if len(key) != AES_BLOCK:
            raise UsageError(f"AES-XCBC takes a 16-byte key, not {len(key)}")
        # RFC 3566 §4 (1): K1 = E(K, 0x01..), K2 = E(K, 0x02..), K3 = E(K, 0x03..)
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        derived = ecb.update(bytes([1]) * 16 + bytes([2]) * 16 + bytes([3]) * 16) + ecb.finalize()
        self._k1 = algorithms.AES(derived[:16])
        self._k2 = int.from_bytes(derived[16:32])
        self._k3 = int.from_bytes(derived[32:48])

    def compute(self, *parts: bytes) -> bytes:
        message = b"".join(parts)
        full_blocks, tail = divmod(len(message), AES_BLOCK)
        if message and tail == 0:
            # RFC 3566 §4 (3)(a): a complete last block is XORed with K2.
            body, last, mask = message[:-AES_BLOCK], message[-AES_BLOCK:], self._k2
        else:
            # RFC 3566 §4 (3)(b): pad with 0x80 then zeros, XOR with K3 (the empty message too).
            cut = full_blocks * AES_BLOCK
            padded = message[cut:] + b"\x80" + bytes(AES_BLOCK - 1 - tail)
            body, last, mask = message[:cut], padded, self._k3
        last = (int.from_bytes(last) ^ mask).to_bytes(AES_BLOCK)
        # CBC-MAC with K1 and a zero IV: the MAC is the last ciphertext block.
        enc = Cipher(self._k1, modes.CBC(_ZERO_BLOCK)).encryptor()
        return (enc.update(body + last) + enc.finalize())[-AES_BLOCK:]

    def __repr__(self) -> str:
        return "XcbcMac(<keyed>)"


def make_mac(kind: MacKind, hash_name: str | None, key: bytes) -> KeyedMac:
    """A keyed MAC of the given kind; AES MACs take exactly 16 key bytes here."""
    if kind is MacKind.HMAC:
        if hash_name is None:
            raise UsageError("HMAC needs a hash")
        return HmacMac(hash_name, key)
    if kind is MacKind.CMAC:
        return CmacMac(key)
    return XcbcMac(key)


def aes_prf_key(kind: MacKind, key: bytes) -> bytes:
    """Map a PRF key of any length to the 16-byte AES key.

    RFC 4434 §2 (AES-XCBC-PRF-128): shorter keys are padded with zero bits, longer keys are
    replaced by AES-XCBC-PRF-128 under a zero key of the original key.
    RFC 4615 §3 (AES-CMAC-PRF-128): any key that is not 16 bytes is replaced by
    AES-CMAC under a zero key of the original key.
    """
    if len(key) == AES_BLOCK:
        return key
    if kind is MacKind.XCBC:
        if len(key) < AES_BLOCK:
            return key + bytes(AES_BLOCK - len(key))
        return XcbcMac(_ZERO_BLOCK).compute(key)
    return CmacMac(_ZERO_BLOCK).compute(key)
