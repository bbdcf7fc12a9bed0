"""verify_chain remembers decoded certificates and checked signatures (credentials._decoded,
_signed_by): a repeated chain costs no decoding and no signature check, and the cache never
turns a failing check into a passing one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ikev2.engine import credentials
from ikev2.engine.credentials import CertificateError, load_certificate, verify_chain

PKI = Path(__file__).resolve().parents[2] / "fixtures" / "pki"
NOW = datetime(2027, 6, 1, tzinfo=UTC)


def der(path: str) -> bytes:
    return load_certificate((PKI / path).read_bytes())


def test_a_repeated_chain_is_decoded_and_signature_checked_once() -> None:
    leaf, ca = der("ecdsa/sun.crt"), der("ecdsa/ca.crt")
    credentials._decoded.cache_clear()
    credentials._signed_by.cache_clear()
    first = verify_chain(leaf, [], [ca], NOW)
    assert credentials._signed_by.cache_info().misses == 1
    decoded = credentials._decoded.cache_info().misses
    for _ in range(5):
        assert verify_chain(leaf, [], [ca], NOW) == first
    assert credentials._signed_by.cache_info().misses == 1
    assert credentials._signed_by.cache_info().hits == 5
    assert credentials._decoded.cache_info().misses == decoded


def test_the_cache_keeps_every_check_that_depends_on_time_or_bytes() -> None:
    leaf, ca = der("ecdsa/moon.crt"), der("ecdsa/ca.crt")
    verify_chain(leaf, [], [ca], NOW)  # cached as good
    with pytest.raises(CertificateError) as info:  # still expired later (valid to 2036)
        verify_chain(leaf, [], [ca], datetime(2037, 1, 1, tzinfo=UTC))
    assert info.value.kind == "expired"
    tampered = leaf[:-1] + bytes([leaf[-1] ^ 0x01])  # other bytes: a separate entry
    for _ in range(2):
        with pytest.raises(CertificateError) as info:
            verify_chain(tampered, [], [ca], NOW)
        assert info.value.kind == "bad signature"
    for _ in range(2):  # a decoding failure is not cached, and is malformed each time
        with pytest.raises(CertificateError) as info:
            verify_chain(b"\x30\x03\x02\x01\x00", [], [ca], NOW)
        assert info.value.kind == "malformed"
    untrusted = der("untrusted/moon.crt")  # same names, another CA key
    with pytest.raises(CertificateError):
        verify_chain(untrusted, [], [ca], NOW)


def test_the_caches_are_bounded() -> None:
    assert credentials._decoded.cache_info().maxsize == credentials.CERT_CACHE
    assert credentials._signed_by.cache_info().maxsize == credentials.CERT_CACHE
    assert credentials.certreq_authority_hash.cache_info().maxsize == credentials.CERT_CACHE


def test_certreq_hash_is_the_sha1_of_the_ca_key_cached_or_not() -> None:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = der("ecdsa/ca.crt")
    spki = (
        x509.load_der_x509_certificate(ca)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for _ in range(2):
        assert credentials.certreq_authority_hash(ca) == hashlib.sha1(spki).digest()
