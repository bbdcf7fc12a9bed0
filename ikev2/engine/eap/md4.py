"""MD4 (RFC 1320), for MS-CHAPv2's NtPasswordHash only (RFC 2759 §8.3).

Neither `cryptography` nor OpenSSL 3's default provider (hashlib) offers MD4, and MS-CHAPv2 cannot
do without it. We hand-roll no primitive: MD4 comes from pycryptodome (maintained, wheels for
every platform we run on), used for this one hash and nothing else. tests/engine/eap checks it
against RFC 1320 Appendix A.5 and, through NtPasswordHash, RFC 2759 §9.2. Never use MD4 for
anything that needs a secure hash.
"""

from __future__ import annotations

from Crypto.Hash import MD4


def md4(data: bytes) -> bytes:
    """The 16-octet MD4 digest of `data`."""
    return bytes(MD4.new(data).digest())
