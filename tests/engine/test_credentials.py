"""Certificate chains, ID-in-certificate checks and signing choices, on fixtures/pki."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from ikev2.constants import AuthMethod, HashAlgorithm, IdType, NotifyType
from ikev2.engine.config import Identity
from ikev2.engine.credentials import (
    CertificateError,
    SignatureSchemeError,
    auth_method_for_key,
    certreq_authority_hash,
    default_identity_for_cert,
    identity_matches_certificate,
    load_certificate,
    load_certificates,
    load_private_key,
    select_chain_for_certreq,
    split_certreq_hashes,
    verify_chain,
)
from ikev2.engine.events import IkeSaEstablished, IkeSaFailed
from ikev2.engine.identity import parse_identity
from ikev2.errors import AuthenticationFailed, UsageError

from .pairing import Pair, cert_connections

PKI = Path(__file__).resolve().parents[2] / "fixtures" / "pki"
NOW = datetime(2027, 6, 1, tzinfo=UTC)


def der(path: str) -> bytes:
    return load_certificate((PKI / path).read_bytes())


def key(path: str) -> object:
    return load_private_key((PKI / path).read_bytes())


def fail_kind(leaf: bytes, intermediates: list[bytes], anchors: list[bytes], now: datetime) -> str:
    with pytest.raises(CertificateError) as info:
        verify_chain(leaf, intermediates, anchors, now)
    assert isinstance(info.value, AuthenticationFailed) and info.value.notify == 24
    return info.value.kind


# --------------------------------------------------------------------------- good chains


@pytest.mark.parametrize("chain", ["rsa", "ecdsa", "ed25519"])
@pytest.mark.parametrize("host", ["moon", "sun"])
def test_simple_chains_verify(chain: str, host: str) -> None:
    cert = verify_chain(der(f"{chain}/{host}.crt"), [], [der(f"{chain}/ca.crt")], NOW)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"{host}.ikev2.test"


def test_rsa4096_three_level_chain_with_pss_leaf() -> None:
    chain = [der("rsa4096/int2.crt"), der("rsa4096/int1.crt")]
    cert = verify_chain(der("rsa4096/moon.crt"), chain, [der("rsa4096/root.crt")], NOW)
    assert cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
    # intermediates in any order, extra unrelated certificates ignored
    shuffled = [der("ecdsa/ca.crt"), der("rsa4096/int1.crt"), der("rsa4096/int2.crt")]
    verify_chain(der("rsa4096/moon.crt"), shuffled, [der("rsa4096/root.crt")], NOW)
    # the intermediate may also be a trust anchor itself
    verify_chain(der("rsa4096/moon.crt"), [], [der("rsa4096/int2.crt")], NOW)


def test_the_right_anchor_among_several() -> None:
    anchors = [der("rsa/ca.crt"), der("untrusted/ca.crt"), der("ecdsa/ca.crt")]
    verify_chain(der("ecdsa/moon.crt"), [], anchors, NOW)


# --------------------------------------------------------------------------- failures


def test_untrusted_ca() -> None:
    leaf = der("untrusted/moon.crt")
    assert fail_kind(leaf, [], [der("ecdsa/ca.crt")], NOW) == "untrusted issuer"
    # sending the untrusted CA along does not help
    assert fail_kind(leaf, [der("untrusted/ca.crt")], [der("ecdsa/ca.crt")], NOW) == (
        "untrusted issuer"
    )


def test_missing_intermediate() -> None:
    leaf = der("rsa4096/moon.crt")
    assert fail_kind(leaf, [der("rsa4096/int2.crt")], [der("rsa4096/root.crt")], NOW) == (
        "untrusted issuer"
    )


def test_expired_leaf() -> None:
    kind = fail_kind(der("expired/moon.crt"), [], [der("ecdsa/ca.crt")], NOW)
    assert kind == "expired"
    # and the good chains at the edges of their validity
    leaf, ca = der("ecdsa/moon.crt"), der("ecdsa/ca.crt")
    verify_chain(leaf, [], [ca], datetime(2026, 1, 1, tzinfo=UTC))
    assert fail_kind(leaf, [], [ca], datetime(2036, 1, 1, 0, 0, 1, tzinfo=UTC)) == "expired"
    assert fail_kind(leaf, [], [ca], datetime(2025, 12, 31, tzinfo=UTC)) == "not yet valid"


def test_expired_certificate_in_the_middle() -> None:
    # A leaf valid now under a CA that expired: the CA's validity counts too.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _self_signed_ca(ca_key, NOW - timedelta(days=400), NOW - timedelta(days=1))
    leaf = _leaf(ca, ca_key, NOW - timedelta(days=10), NOW + timedelta(days=10))
    assert fail_kind(leaf, [], [ca.public_bytes(serialization.Encoding.DER)], NOW) == "expired"


def test_tampered_signature() -> None:
    for chain in ("rsa", "ecdsa", "ed25519"):
        good = der(f"{chain}/moon.crt")
        tampered = good[:-1] + bytes([good[-1] ^ 0x01])
        assert fail_kind(tampered, [], [der(f"{chain}/ca.crt")], NOW) == "bad signature"


def test_same_name_other_key_is_a_bad_signature() -> None:
    # A CA that has the trusted CA's name but another key.
    trusted = x509.load_der_x509_certificate(der("ecdsa/ca.crt"))
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    impostor = _self_signed_ca(impostor_key, NOW - timedelta(days=1), NOW + timedelta(days=1),
                               trusted.subject)  # fmt: skip
    leaf = _leaf(impostor, impostor_key, NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert fail_kind(leaf, [], [der("ecdsa/ca.crt")], NOW) == "bad signature"


def test_issuer_must_be_a_ca_and_respect_path_length() -> None:
    # moon (not a CA) cannot issue; rsa/ca has pathLen 0, so a CA below it is refused.
    moon_key = key("ecdsa/moon.key")
    moon = x509.load_der_x509_certificate(der("ecdsa/moon.crt"))
    assert isinstance(moon_key, ec.EllipticCurvePrivateKey)
    child = _leaf(moon, moon_key, NOW - timedelta(days=1), NOW + timedelta(days=1))
    kind = fail_kind(child, [der("ecdsa/moon.crt")], [der("ecdsa/ca.crt")], NOW)
    assert kind == "not a CA"
    int2_key = key("rsa4096/int2.key")
    assert isinstance(int2_key, rsa.RSAPrivateKey)
    int2 = x509.load_der_x509_certificate(der("rsa4096/int2.crt"))
    sub_ca_key = ec.generate_private_key(ec.SECP256R1())
    sub_ca = _ca_issued_by(int2, int2_key, sub_ca_key)
    leaf = _leaf(sub_ca, sub_ca_key, NOW - timedelta(days=1), NOW + timedelta(days=1))
    chain = [sub_ca.public_bytes(serialization.Encoding.DER), der("rsa4096/int2.crt"),
             der("rsa4096/int1.crt")]  # fmt: skip
    assert fail_kind(leaf, chain, [der("rsa4096/root.crt")], NOW) == "path length exceeded"


def test_malformed_and_naive_time() -> None:
    assert fail_kind(b"\x30\x03\x02\x01\x00", [], [der("rsa/ca.crt")], NOW) == "malformed"
    with pytest.raises(UsageError):
        verify_chain(der("rsa/moon.crt"), [], [der("rsa/ca.crt")], datetime(2027, 1, 1))


def test_pinned_end_entity() -> None:
    leaf = der("ed25519/sun.crt")
    verify_chain(leaf, [], [leaf], NOW)


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("chain", ["rsa", "ecdsa", "ed25519", "rsa4096"])
def test_identity_in_certificate(chain: str) -> None:
    cert = x509.load_der_x509_certificate(der(f"{chain}/moon.crt"))
    unit = {"rsa": "RSA", "ecdsa": "ECDSA", "ed25519": "Ed25519", "rsa4096": "RSA-4096"}[chain]
    good = [
        "moon.ikev2.test",
        "MOON.ikev2.TEST",
        "moon@ikev2.test",
        "192.0.2.1",
        "2001:db8::1",
        f"C=CH, O=ikev2 test, OU={unit}, CN=moon.ikev2.test",
        f"C=CH, O=ikev2 test, OU={unit}, CN=*",
    ]
    wrong = [
        "sun.ikev2.test",
        "sun@ikev2.test",
        "192.0.2.2",
        "2001:db8::2",
        f"C=CH, O=ikev2 test, OU={unit}, CN=sun.ikev2.test",
        "C=CH, O=ikev2 test, CN=moon.ikev2.test",
        "@#00112233",
    ]
    for text in good:
        assert identity_matches_certificate(parse_identity(text), cert), text
    for text in wrong:
        assert not identity_matches_certificate(parse_identity(text), cert), text


def test_key_id_identity_and_default_identity() -> None:
    cert = x509.load_der_x509_certificate(der("ecdsa/sun.crt"))
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert identity_matches_certificate(Identity(IdType.KEY_ID, ski), cert)
    default = default_identity_for_cert(cert)
    assert default.id_type == IdType.DER_ASN1_DN
    assert str(default) == "C=CH, O=ikev2 test, OU=ECDSA, CN=sun.ikev2.test"
    assert identity_matches_certificate(default, cert)
    other = x509.load_der_x509_certificate(der("ecdsa/moon.crt"))
    assert not identity_matches_certificate(default, other)


def test_fqdn_is_not_matched_against_the_subject_cn() -> None:
    # CA certificates have no SAN; their CN looks like a name but is no FQDN identity.
    ca = x509.load_der_x509_certificate(der("rsa/ca.crt"))
    assert not identity_matches_certificate(parse_identity("fqdn:ikev2 test RSA CA"), ca)


# --------------------------------------------------------------------------- signing choice


def test_auth_method_without_rfc7427() -> None:
    assert auth_method_for_key(key("rsa/moon.key")) == (AuthMethod.RSA_SIG, HashAlgorithm.SHA1)
    assert auth_method_for_key(key("ecdsa/moon.key")) == (
        AuthMethod.ECDSA_SHA256_P256,
        HashAlgorithm.SHA2_256,
    )
    assert auth_method_for_key(ec.generate_private_key(ec.SECP384R1()))[0] == 10
    assert auth_method_for_key(ec.generate_private_key(ec.SECP521R1()))[0] == 11
    with pytest.raises(SignatureSchemeError):
        auth_method_for_key(key("ed25519/moon.key"))


def test_auth_method_with_rfc7427() -> None:
    announced = (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512,
                 HashAlgorithm.IDENTITY)  # fmt: skip
    ds = AuthMethod.DIGITAL_SIGNATURE
    assert auth_method_for_key(key("rsa/moon.key"), announced) == (ds, HashAlgorithm.SHA2_256)
    assert auth_method_for_key(key("ecdsa/moon.key"), announced) == (ds, HashAlgorithm.SHA2_256)
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert auth_method_for_key(p384, announced) == (ds, HashAlgorithm.SHA2_384)
    assert auth_method_for_key(key("ed25519/moon.key"), announced) == (ds, HashAlgorithm.IDENTITY)
    assert auth_method_for_key(ed448.Ed448PrivateKey.generate(), [5]) == (ds, 5)
    # the peer knows only SHA-512: our preference order is skipped to what it can verify
    assert auth_method_for_key(key("rsa/moon.key"), [HashAlgorithm.SHA2_512]) == (ds, 4)
    # SHA-1 only: RFC 7427 offers nothing better, back to the classic method
    assert auth_method_for_key(key("ecdsa/moon.key"), [HashAlgorithm.SHA1])[0] == 9
    with pytest.raises(SignatureSchemeError):
        auth_method_for_key(ed25519.Ed25519PrivateKey.generate(), [HashAlgorithm.SHA2_256])
    with pytest.raises(SignatureSchemeError):
        auth_method_for_key(object(), announced)


# --------------------------------------------------------------------------- loading, CERTREQ


def test_loading_pem_and_der() -> None:
    pem = (PKI / "rsa/ca.crt").read_bytes()
    as_der = load_certificate(pem)
    assert load_certificate(as_der) == as_der
    assert load_certificates(pem + (PKI / "ecdsa/ca.crt").read_bytes()) == (
        as_der,
        der("ecdsa/ca.crt"),
    )
    with pytest.raises(ValueError, match=r"not an X\.509"):
        load_certificate(b"garbage")
    private = key("ed25519/moon.key")
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    raw_der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert isinstance(load_private_key(raw_der), ed25519.Ed25519PrivateKey)


def test_certreq_hash_is_sha1_of_spki() -> None:
    ca = x509.load_der_x509_certificate(der("ecdsa/ca.crt"))
    spki = ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert certreq_authority_hash(der("ecdsa/ca.crt")) == hashlib.sha1(spki).digest()
    assert certreq_authority_hash(der("rsa/ca.crt")) != certreq_authority_hash(der("ecdsa/ca.crt"))
    joined = certreq_authority_hash(der("rsa/ca.crt")) + certreq_authority_hash(der("ecdsa/ca.crt"))
    assert split_certreq_hashes(joined) == (joined[:20], joined[20:])


def test_select_chain_for_certreq() -> None:
    chain = [der("rsa4096/moon.crt"), der("rsa4096/int2.crt"), der("rsa4096/int1.crt")]
    assert select_chain_for_certreq(chain, []) == tuple(chain)
    int2 = certreq_authority_hash(der("rsa4096/int2.crt"))
    assert select_chain_for_certreq(chain, [int2]) == (chain[0],)
    int1 = certreq_authority_hash(der("rsa4096/int1.crt"))
    assert select_chain_for_certreq(chain, [int1]) == tuple(chain[:2])
    root = certreq_authority_hash(der("rsa4096/root.crt"))
    assert select_chain_for_certreq(chain, [root]) == tuple(chain)


# --------------------------------------------------------------------------- helpers


def _self_signed_ca(
    private: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    subject = subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Throwaway CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(7)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(True, None), critical=True)
        .sign(private, hashes.SHA256())
    )


def _ca_issued_by(
    issuer: x509.Certificate, issuer_key: rsa.RSAPrivateKey, private: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Too deep CA")]))
        .issuer_name(issuer.subject)
        .public_key(private.public_key())
        .serial_number(8)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(True, None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def _leaf(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> bytes:
    private = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(issuer.subject)
        .public_key(private.public_key())
        .serial_number(9)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


# --------------------------------------------------------------------------- malformed fields
# cryptography decodes names and extensions lazily; a peer's certificate whose issuer, subject
# or extensions do not decode must be refused as "malformed" (AUTHENTICATION_FAILED, RFC 7296
# §2.21.2), not raise ValueError/DuplicateExtension out of the exchange.


def _corrupt_name(cert_der: bytes, name: x509.Name) -> bytes:
    """`name`'s last attribute value inside `cert_der` made a UTF8String that is not UTF-8."""
    name_der = name.public_bytes()
    assert cert_der.count(name_der) == 1
    value = str(name.rdns[-1].rfc4514_string()).partition("=")[2].encode()
    assert name_der.endswith(value) and len(value) < 128
    bad = name_der[: -len(value) - 2] + bytes([0x0C, len(value), 0xFF]) + value[1:]
    return cert_der.replace(name_der, bad)


def _with_duplicate_extension(issuer_key_path: str, subject_der: bytes) -> bytes:
    """`subject_der`'s names and key, signed by the given CA key, with subjectKeyIdentifier
    twice (RFC 5280 §4.2 allows each extension once). The builder refuses duplicates, so a
    private OID of the same length is written and then edited into 2.5.29.14 by hand."""
    template = x509.load_der_x509_certificate(subject_der)
    ski = x509.SubjectKeyIdentifier.from_public_key(template.public_key())
    placeholder = x509.ObjectIdentifier("2.5.29.99")
    built = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.issuer)
        .public_key(template.public_key())
        .serial_number(template.serial_number)
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
        .add_extension(ski, critical=False)
        .add_extension(x509.UnrecognizedExtension(placeholder, ski.public_bytes()), critical=False)
        .sign(key(issuer_key_path), hashes.SHA256())  # type: ignore[arg-type]
        .public_bytes(serialization.Encoding.DER)
    )
    assert built.count(bytes.fromhex("0603551d63")) == 1
    return built.replace(bytes.fromhex("0603551d63"), bytes.fromhex("0603551d0e"))


def malformed(kind: str, name: str = "moon") -> bytes:
    good = der(f"ecdsa/{name}.crt")
    cert = x509.load_der_x509_certificate(good)
    if kind == "subject":
        return _corrupt_name(good, cert.subject)
    if kind == "issuer":
        return _corrupt_name(good, cert.issuer)
    assert kind == "duplicate extension"
    return _with_duplicate_extension("ecdsa/ca.key", good)


MALFORMED_KINDS = ["subject", "issuer", "duplicate extension"]


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_a_leaf_with_an_undecodable_field_is_malformed(kind: str) -> None:
    bad = malformed(kind)
    x509.load_der_x509_certificate(bad)  # the outer structure still loads: the field is lazy
    assert fail_kind(bad, [], [der("ecdsa/ca.crt")], NOW) == "malformed"
    # a pinned end entity is parsed just as carefully
    assert fail_kind(bad, [], [bad], NOW) == "malformed"


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_an_intermediate_with_an_undecodable_field_is_malformed(kind: str) -> None:
    bad = malformed(kind, "sun")
    assert fail_kind(der("ecdsa/moon.crt"), [bad], [der("ecdsa/ca.crt")], NOW) == "malformed"


def test_identity_does_not_match_a_certificate_whose_subject_does_not_decode() -> None:
    cert = x509.load_der_x509_certificate(malformed("subject"))
    assert not identity_matches_certificate(parse_identity("CN=moon.ikev2.test"), cert)
    assert not identity_matches_certificate(parse_identity("moon.ikev2.test"), cert)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_a_malformed_initiator_certificate_gets_authentication_failed(kind: str) -> None:
    conn_i, conn_r = cert_connections("ecdsa")
    bad_auth = replace(conn_i.local_auth, certs=(malformed(kind),))
    pair = Pair(replace(conn_i, local_auth=bad_auth), conn_r)
    pair.initiate()
    pair.run(until=1)
    (fr,) = pair.r.of(IkeSaFailed)
    (fi,) = pair.i.of(IkeSaFailed)
    assert fr.notify is NotifyType.AUTHENTICATION_FAILED and "malformed" in fr.reason
    assert fi.notify is NotifyType.AUTHENTICATION_FAILED  # the responder said so
    assert not pair.i.of(IkeSaEstablished) and not pair.r.of(IkeSaEstablished)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_a_malformed_responder_certificate_fails_the_initiator(kind: str) -> None:
    conn_i, conn_r = cert_connections("ecdsa")
    bad_auth = replace(conn_r.local_auth, certs=(malformed(kind, "sun"),))
    pair = Pair(conn_i, replace(conn_r, local_auth=bad_auth))
    pair.initiate()
    pair.run(until=1)
    (fi,) = pair.i.of(IkeSaFailed)
    assert fi.notify is NotifyType.AUTHENTICATION_FAILED and "malformed" in fi.reason
    assert not pair.i.of(IkeSaEstablished)
