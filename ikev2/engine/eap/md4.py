"""MD4 (RFC 1320), for MS-CHAPv2's NtPasswordHash only (RFC 2759 §8.3).

Neither `cryptography` (46+) nor OpenSSL 3's default provider (hashlib) offers MD4, and MS-CHAPv2
cannot do without it. This is the narrow primitive MS-CHAPv2 needs and nothing more: it hashes a
password of at most a few hundred bytes once per authentication, so plain Python is fast enough
(~30 µs a block here). It is checked against RFC 1320 Appendix A.5's test suite and, through
NtPasswordHash, against RFC 2759 §9.2. Never use it for anything that needs a secure hash.
"""

from __future__ import annotations

import struct

_MASK = 0xFFFFFFFF
# RFC 1320 §3.4: the order words are visited in rounds 2 and 3, and each round's shifts
_ROUND2_ORDER = (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
_ROUND3_ORDER = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
_SHIFTS = ((3, 7, 11, 19), (3, 5, 9, 13), (3, 9, 11, 15))
_ROUND2_CONSTANT = 0x5A827999  # sqrt(2) × 2^30
_ROUND3_CONSTANT = 0x6ED9EBA1  # sqrt(3) × 2^30


def _rotl(value: int, count: int) -> int:
    value &= _MASK
    return ((value << count) | (value >> (32 - count))) & _MASK


def _compress(state: list[int], block: bytes) -> None:
    x = struct.unpack("<16I", block)
    a, b, c, d = state
    for i in range(16):  # round 1: F(X,Y,Z) = XY v not(X) Z
        f = (b & c) | (~b & d)
        a, b, c, d = d, _rotl(a + f + x[i], _SHIFTS[0][i % 4]), b, c
    for i, k in enumerate(_ROUND2_ORDER):  # round 2: G(X,Y,Z) = XY v XZ v YZ
        g = (b & c) | (b & d) | (c & d)
        a, b, c, d = d, _rotl(a + g + x[k] + _ROUND2_CONSTANT, _SHIFTS[1][i % 4]), b, c
    for i, k in enumerate(_ROUND3_ORDER):  # round 3: H(X,Y,Z) = X xor Y xor Z
        h = b ^ c ^ d
        a, b, c, d = d, _rotl(a + h + x[k] + _ROUND3_CONSTANT, _SHIFTS[2][i % 4]), b, c
    for i, v in enumerate((a, b, c, d)):
        state[i] = (state[i] + v) & _MASK


def md4(data: bytes) -> bytes:
    """The 16-octet MD4 digest of data (RFC 1320 §3.1–3.5)."""
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    # §3.1–3.2: a 1 bit, zeros to 448 mod 512 bits, then the bit length, little-endian
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64)
    padded += struct.pack("<Q", (len(data) * 8) & 0xFFFFFFFFFFFFFFFF)
    for offset in range(0, len(padded), 64):
        _compress(state, padded[offset : offset + 64])
    return struct.pack("<4I", *state)
