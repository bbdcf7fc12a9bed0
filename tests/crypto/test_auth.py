"""AUTH data: RFC 7427 AlgorithmIdentifiers, sign/verify of every method, the hash notify."""

from __future__ import annotations

import datetime
import os
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.x509.oid import NameOID

from ikev2.constants import AuthMethod, HashAlgorithm, PrfId
from ikev2.crypto import der
from ikev2.crypto.auth import (
    SignatureScheme,
    choose_signature_hash,
    decode_signature_hash_algorithms,
    encode_signature_hash_algorithms,
    parse_algorithm_identifier,
    sign_auth,
    signed_octets,
    verify_auth,
)
from ikev2.crypto.keymat import Prf
from ikev2.errors import InvalidSyntax, SignatureError, UsageError

from .vectors import VECTORS, h, load

RFC7427 = load("rfc7427-algorithm-identifiers.json")
RSA_KEY = rsa.generate_private_key(65537, 2048)
OCTETS = os.urandom(300)


@pytest.mark.parametrize("entry", RFC7427["identifiers"], ids=lambda e: e["name"])
def test_algorithm_identifiers_rfc7427_appendix_a(entry: dict[str, Any]) -> None:
    """RFC 7427 Appendix A: we build exactly these DER bytes and parse them back."""
    scheme = SignatureScheme(
        entry["key"], HashAlgorithm(entry["hash"]), entry.get("padding"), entry.get("salt", 0)
    )
    assert scheme.algorithm_identifier().hex() == entry["der"]
    assert parse_algorithm_identifier(h(entry["der"])) == scheme


def test_pss_identifier_matches_openssl() -> None:
    """The RSASSA-PSS SHA-256 AlgorithmIdentifier equals the one OpenSSL puts in a certificate."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pss")])
    start = datetime.datetime(2024, 1, 1)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(RSA_KEY.public_key()).serial_number(1)
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
        .sign(RSA_KEY, hashes.SHA256(),
              rsa_padding=asym_padding.PSS(mgf=asym_padding.MGF1(hashes.SHA256()), salt_length=32))
    )  # fmt: skip
    body = der.read_whole(cert.public_bytes(serialization.Encoding.DER), der.TAG_SEQUENCE)
    _, _, start_of_alg = der.read_tlv(body)
    _, _, end_of_alg = der.read_tlv(body, start_of_alg)
    scheme = SignatureScheme("rsa", HashAlgorithm.SHA2_256, "pss", 32)
    assert scheme.algorithm_identifier() == body[start_of_alg:end_of_alg]


def test_der_oid_round_trip() -> None:
    for oid in ("1.2.840.113549.1.1.10", "2.16.840.1.101.3.4.2.3", "1.3.101.112"):
        assert der.decode_oid(der.read_whole(der.oid(oid), der.TAG_OID)) == oid


def _keys() -> list[tuple[str, Any]]:
    pki = VECTORS / "strongswan-pki"
    ecdsa_key = serialization.load_pem_private_key((pki / "init-ecdsa.key").read_bytes(), None)
    ed_key = serialization.load_pem_private_key((pki / "init-ed25519.key").read_bytes(), None)
    return [
        ("rsa", RSA_KEY),
        ("p256-strongswan", ecdsa_key),
        ("p384", ec.generate_private_key(ec.SECP384R1())),
        ("p521", ec.generate_private_key(ec.SECP521R1())),
        ("ed25519-strongswan", ed_key),
        ("ed448", ed448.Ed448PrivateKey.generate()),
    ]


KEYS = _keys()
CASES: list[tuple[str, AuthMethod, Any, HashAlgorithm | None, str]] = [
    ("rsa-sig", AuthMethod.RSA_SIG, RSA_KEY, None, "pss"),
    ("ecdsa-p256", AuthMethod.ECDSA_SHA256_P256, KEYS[1][1], None, "pss"),
    ("ecdsa-p384", AuthMethod.ECDSA_SHA384_P384, KEYS[2][1], None, "pss"),
    ("ecdsa-p521", AuthMethod.ECDSA_SHA512_P521, KEYS[3][1], None, "pss"),
    ("ds-rsa-pss-256", AuthMethod.DIGITAL_SIGNATURE, RSA_KEY, HashAlgorithm.SHA2_256, "pss"),
    ("ds-rsa-pss-512", AuthMethod.DIGITAL_SIGNATURE, RSA_KEY, HashAlgorithm.SHA2_512, "pss"),
    ("ds-rsa-pkcs1-384", AuthMethod.DIGITAL_SIGNATURE, RSA_KEY, HashAlgorithm.SHA2_384, "pkcs1"),
    ("ds-ecdsa-p256", AuthMethod.DIGITAL_SIGNATURE, KEYS[1][1], HashAlgorithm.SHA2_256, "pss"),
    ("ds-ecdsa-p384-512", AuthMethod.DIGITAL_SIGNATURE, KEYS[2][1], HashAlgorithm.SHA2_512, "pss"),
    ("ds-ed25519", AuthMethod.DIGITAL_SIGNATURE, KEYS[4][1], None, "pss"),
    ("ds-ed448", AuthMethod.DIGITAL_SIGNATURE, KEYS[5][1], HashAlgorithm.IDENTITY, "pss"),
]


@pytest.mark.parametrize(
    ("name", "method", "key", "hash_alg", "padding"), CASES, ids=[c[0] for c in CASES]
)
def test_sign_verify_round_trip(
    name: str, method: AuthMethod, key: Any, hash_alg: HashAlgorithm | None, padding: Any
) -> None:
    """RFC 7296 §3.8 method 1, RFC 4754 methods 9-11 (raw r||s), RFC 7427 method 14."""
    data = sign_auth(method, key, OCTETS, hash_alg, rsa_padding=padding)
    if method in (AuthMethod.ECDSA_SHA256_P256, AuthMethod.ECDSA_SHA384_P384):
        assert len(data) == 2 * ((key.curve.key_size + 7) // 8)
    verify_auth(method, key.public_key(), OCTETS, data)
    with pytest.raises(SignatureError):
        verify_auth(method, key.public_key(), OCTETS[:-1] + bytes([OCTETS[-1] ^ 1]), data)
    tampered = bytearray(data)
    tampered[-1] ^= 0x01
    with pytest.raises(SignatureError):
        verify_auth(method, key.public_key(), OCTETS, bytes(tampered))


def test_key_type_must_fit_the_algorithm_identifier() -> None:
    data = sign_auth(AuthMethod.DIGITAL_SIGNATURE, KEYS[4][1], OCTETS)
    with pytest.raises(SignatureError, match="ed25519 signature for a ecdsa key"):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, KEYS[1][1].public_key(), OCTETS, data)
    with pytest.raises(SignatureError):
        verify_auth(AuthMethod.DIGITAL_SIGNATURE, KEYS[4][1].public_key(), OCTETS, b"\x30\x00")
    with pytest.raises(SignatureError, match="needs"):
        verify_auth(AuthMethod.ECDSA_SHA384_P384, KEYS[1][1].public_key(), OCTETS, bytes(96))
    with pytest.raises(UsageError):
        sign_auth(AuthMethod.ECDSA_SHA256_P256, KEYS[2][1], OCTETS)
    with pytest.raises(UsageError):
        sign_auth(AuthMethod.DIGITAL_SIGNATURE, KEYS[4][1], OCTETS, HashAlgorithm.SHA2_256)


def test_signed_octets_rfc7296_section_2_15() -> None:
    prf = Prf(PrfId.HMAC_SHA2_256, b"k" * 32)
    octets = signed_octets(b"message", b"nonce", prf, b"\x02\x00\x00\x00id")
    assert octets == b"messagenonce" + prf.compute(b"\x02\x00\x00\x00id")


def test_signature_hash_algorithms_notify_rfc7427_section_4() -> None:
    data = encode_signature_hash_algorithms([2, 3, 4, 5])
    assert data == bytes.fromhex("0002000300040005")  # as strongSwan sends it (capture frame 1)
    assert decode_signature_hash_algorithms(data) == (2, 3, 4, 5)
    with pytest.raises(InvalidSyntax):
        decode_signature_hash_algorithms(b"\x00\x02\x00")
    ours = [HashAlgorithm.SHA2_512, HashAlgorithm.SHA2_256, HashAlgorithm.IDENTITY]
    assert choose_signature_hash(ours, [2, 5], RSA_KEY) == HashAlgorithm.SHA2_256
    assert choose_signature_hash(ours, [2, 5], KEYS[4][1]) == HashAlgorithm.IDENTITY
    assert choose_signature_hash(ours, [1], RSA_KEY) is None
    assert choose_signature_hash(ours, [2], ed25519.Ed25519PrivateKey.generate()) is None
