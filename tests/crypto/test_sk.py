"""SK payload protection (RFC 7296 §3.14, RFC 5282, RFC 7634): round trips and tampering."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from ikev2.crypto.mac import make_mac
from ikev2.crypto.sk import SkCipher
from ikev2.crypto.suites import (
    EncrSuite,
    IntegSuite,
    encr_suite,
    integ_suite,
    supported_ike_encr,
    supported_integ,
)
from ikev2.errors import IntegrityError, UsageError

AEAD = sorted(
    (encr_suite(*pair) for pair in supported_ike_encr() if encr_suite(*pair).aead),
    key=lambda s: s.name,
)
NON_AEAD = sorted(
    (encr_suite(*pair) for pair in supported_ike_encr() if not encr_suite(*pair).aead),
    key=lambda s: s.name,
)
INTEG = sorted((integ_suite(i) for i in supported_integ()), key=lambda s: s.name)
COMBINATIONS: list[tuple[EncrSuite, IntegSuite | None]] = [(e, None) for e in AEAD] + [
    (e, i) for e in NON_AEAD for i in INTEG
]
AD = bytes(range(28)) + b"\x21\x00\x00\x00"  # an IKE header and an SK generic header


def make(encr: EncrSuite, integ: IntegSuite | None) -> SkCipher:
    return SkCipher(
        encr, os.urandom(encr.key_bytes), integ, os.urandom(integ.key_bytes) if integ else b""
    )


@pytest.mark.parametrize(
    ("encr", "integ"),
    COMBINATIONS,
    ids=[f"{e.name}+{i.name if i else ''}" for e, i in COMBINATIONS],
)
def test_round_trip_and_tampering(encr: EncrSuite, integ: IntegSuite | None) -> None:
    """Every ENCR x INTEG pair: lengths as announced, a round trip, then each flipped byte of
    associated data, IV, ciphertext and ICV raises IntegrityError."""
    cipher = make(encr, integ)
    for size in (0, 1, 15, 16, 17, 300):
        plaintext = os.urandom(size)
        body = cipher.protect(AD, plaintext, os.urandom)
        assert len(body) == cipher.body_length(size)
        assert cipher.unprotect(AD, body) == plaintext
    body = cipher.protect(AD, b"inner payloads", os.urandom)
    iv_end = encr.iv_bytes
    icv_start = len(body) - cipher.icv_bytes
    for where, index in (("ad", 5), ("iv", 0), ("ciphertext", iv_end), ("icv", icv_start)):
        ad, tampered = bytearray(AD), bytearray(body)
        (ad if where == "ad" else tampered)[index] ^= 0x80
        with pytest.raises(IntegrityError):
            cipher.unprotect(bytes(ad), bytes(tampered))
    with pytest.raises(IntegrityError):
        cipher.unprotect(AD, body[:-1])
    with pytest.raises(IntegrityError):
        cipher.unprotect(AD, body[: encr.iv_bytes + cipher.icv_bytes])


def test_bad_pad_length_is_an_integrity_error() -> None:
    """A correctly MACed body whose Pad Length exceeds the plaintext raises IntegrityError."""
    encr, integ = encr_suite(12, 128), integ_suite(12)
    key, integ_key = os.urandom(16), os.urandom(32)
    cipher = SkCipher(encr, key, integ, integ_key)

    iv = os.urandom(16)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(bytes(15) + b"\x20") + enc.finalize()  # Pad Length 32 > 15
    icv = make_mac(integ.mac, integ.hash_name, integ_key).compute(AD, iv, ciphertext)[:16]
    with pytest.raises(IntegrityError, match="Pad Length"):
        cipher.unprotect(AD, iv + ciphertext + icv)


def test_cbc_padding_aligns_to_the_block() -> None:
    """RFC 7296 §3.14: plaintext | padding | Pad Length is a multiple of the block size."""
    cipher = make(encr_suite(12, 256), integ_suite(12))
    for size in range(40):
        assert (cipher.body_length(size) - 16 - 16) % 16 == 0


def test_wrong_use_is_refused() -> None:
    """ENCR_NULL is ESP only; AEAD takes no INTEG; others need one; key sizes are checked."""
    with pytest.raises(UsageError):
        SkCipher(encr_suite(11), b"", integ_suite(12), bytes(32))
    with pytest.raises(UsageError):
        SkCipher(encr_suite(20, 256), bytes(36), integ_suite(12), bytes(32))
    with pytest.raises(UsageError):
        SkCipher(encr_suite(12, 128), bytes(16), None, b"")
    with pytest.raises(UsageError):
        SkCipher(encr_suite(20, 256), bytes(32), None, b"")
    cipher = make(encr_suite(20, 128), None)
    with pytest.raises(UsageError):
        cipher.protect(AD, b"x", lambda n: bytes(n - 1))


@settings(max_examples=50)
@given(plaintext=st.binary(max_size=600), ad=st.binary(min_size=1, max_size=64))
def test_round_trip_property(plaintext: bytes, ad: bytes) -> None:
    for encr, integ in ((encr_suite(20, 256), None), (encr_suite(12, 256), integ_suite(12))):
        integ_key = bytes(integ.key_bytes if integ else 0)
        cipher = SkCipher(encr, bytes(encr.key_bytes), integ, integ_key)
        assert cipher.unprotect(ad, cipher.protect(ad, plaintext, os.urandom)) == plaintext


@pytest.mark.parametrize("tag", [8, 12, 16])
def test_a_bad_aead_key_fails_when_the_cipher_is_made(tag: int) -> None:
    """The AEAD context is made per message (memory), yet a wrong key still fails at once."""
    from ikev2.crypto.sk import _Aead
    from ikev2.crypto.suites import CipherKind

    for kind in (CipherKind.GCM, CipherKind.CCM):
        with pytest.raises(ValueError):
            _Aead(kind, bytes(15), tag)
    _Aead(CipherKind.GCM, bytes(16), tag)  # a good one is fine
