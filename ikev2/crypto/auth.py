"""AUTH payload data: the signed octets, PSK MACs and signatures.

RFC 7296 §2.15 (octets and PSK), §3.8 (methods 1 and 2); RFC 4754 §3 and §7 (ECDSA methods
9/10/11: raw r||s); RFC 7427 §3 (method 14: a one-octet length, an ASN.1 AlgorithmIdentifier,
then the signature) and §4 (SIGNATURE_HASH_ALGORITHMS); RFC 8420 (EdDSA with the Identity hash).
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass
from typing import Literal, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ..constants import AuthMethod, HashAlgorithm
from ..errors import InvalidSyntax, SignatureError, UsageError
from . import der
from .keymat import Prf

PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)  # fmt: skip
PublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
RsaPadding = Literal["pss", "pkcs1"]

KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 §2.15

# --------------------------------------------------------------------------------------------
# RFC 7296 §2.15


def signed_octets(
    message_bytes: bytes, peer_nonce: bytes, prf: Prf, id_payload_body: bytes
) -> bytes:
    """InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI (and the R mirror).

    prf is keyed with SK_pi (for the initiator's AUTH) or SK_pr; id_payload_body is the ID
    payload without its generic header (RestOfInitIDPayload: ID type, reserved, data).
    """
    return message_bytes + peer_nonce + prf.compute(id_payload_body)


def intermediate_auth(prf: Prf, previous: bytes, authenticated: bytes, plaintext: bytes) -> bytes:
    """IntAuth_[i|r](n) = prf(SK_p[i|r], IntAuth_[i|r](n-1) | IntAuth_[i|r](n)A | ...P)
    (RFC 9242 §3.3.2): `authenticated` is the IKE header and the Encrypted payload header as if
    the payload held `plaintext` (its inner payloads) in the clear; `previous` is empty for the
    first IKE_INTERMEDIATE message. prf is keyed with the SK_pi/SK_pr of the keys that protect
    the message."""
    return prf.compute_parts(previous, authenticated, plaintext)


def intermediate_octets(int_auth_i: bytes, int_auth_r: bytes, ike_auth_mid: int) -> bytes:
    """IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID (RFC 9242 §3.3.2), appended to both
    sides' signed octets; the message ID of the first IKE_AUTH request, 32 bits."""
    return int_auth_i + int_auth_r + ike_auth_mid.to_bytes(4, "big")


def psk_auth_data(prf_id: int, psk: bytes, octets: bytes) -> bytes:
    """AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (RFC 7296 §2.15)."""
    return _padded_psk_prf(prf_id, psk).compute(octets)


@functools.lru_cache(maxsize=64)
def _padded_psk_prf(prf_id: int, psk: bytes) -> Prf:
    """The PRF keyed with prf(PSK, "Key Pad for IKEv2"): the same for every IKE SA of a PSK,
    so made once (two keyed PRFs less per AUTH). Its repr shows no key."""
    return Prf(prf_id, Prf(prf_id, psk).compute(KEY_PAD))


def verify_psk_auth(prf_id: int, psk: bytes, octets: bytes, received: bytes) -> bool:
    return hmac.compare_digest(psk_auth_data(prf_id, psk, octets), received)


# --------------------------------------------------------------------------------------------
# Signature schemes


_HASH_BY_ID: dict[HashAlgorithm, type[hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA1: hashes.SHA1,
    HashAlgorithm.SHA2_256: hashes.SHA256,
    HashAlgorithm.SHA2_384: hashes.SHA384,
    HashAlgorithm.SHA2_512: hashes.SHA512,
}
_HASH_OIDS: dict[HashAlgorithm, str] = {  # RFC 3279 / RFC 5754
    HashAlgorithm.SHA1: "1.3.14.3.2.26",
    HashAlgorithm.SHA2_256: "2.16.840.1.101.3.4.2.1",
    HashAlgorithm.SHA2_384: "2.16.840.1.101.3.4.2.2",
    HashAlgorithm.SHA2_512: "2.16.840.1.101.3.4.2.3",
}
_ID_BY_HASH_OID = {oid: hash_id for hash_id, oid in _HASH_OIDS.items()}
OID_RSASSA_PSS = "1.2.840.113549.1.1.10"  # RFC 4055 §3.1
OID_MGF1 = "1.2.840.113549.1.1.8"


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """An RFC 7427 signature algorithm: key type, hash, and (RSA) padding."""

    key_type: Literal["rsa", "ecdsa", "ed25519", "ed448"]
    hash: HashAlgorithm
    rsa_padding: RsaPadding | None = None
    pss_salt: int = 0

    def algorithm_identifier(self) -> bytes:
        """The DER AlgorithmIdentifier of RFC 7427 Appendix A."""
        if self.rsa_padding == "pss":
            hash_alg = der.algorithm_identifier(_HASH_OIDS[self.hash], der.NULL)
            params = der.sequence(
                der.explicit(0, hash_alg),
                der.explicit(1, der.algorithm_identifier(OID_MGF1, hash_alg)),
                der.explicit(2, der.integer(self.pss_salt)),
            )
            return der.algorithm_identifier(OID_RSASSA_PSS, params)
        oid, plain_params = _SCHEME_OIDS[self]
        return der.algorithm_identifier(oid, plain_params)


_SCHEME_OIDS: dict[SignatureScheme, tuple[str, bytes | None]] = {
    SignatureScheme("rsa", HashAlgorithm.SHA1, "pkcs1"): ("1.2.840.113549.1.1.5", der.NULL),
    SignatureScheme("rsa", HashAlgorithm.SHA2_256, "pkcs1"): ("1.2.840.113549.1.1.11", der.NULL),
    SignatureScheme("rsa", HashAlgorithm.SHA2_384, "pkcs1"): ("1.2.840.113549.1.1.12", der.NULL),
    SignatureScheme("rsa", HashAlgorithm.SHA2_512, "pkcs1"): ("1.2.840.113549.1.1.13", der.NULL),
    SignatureScheme("ecdsa", HashAlgorithm.SHA1): ("1.2.840.10045.4.1", None),
    SignatureScheme("ecdsa", HashAlgorithm.SHA2_256): ("1.2.840.10045.4.3.2", None),
    SignatureScheme("ecdsa", HashAlgorithm.SHA2_384): ("1.2.840.10045.4.3.3", None),
    SignatureScheme("ecdsa", HashAlgorithm.SHA2_512): ("1.2.840.10045.4.3.4", None),
    SignatureScheme("ed25519", HashAlgorithm.IDENTITY): ("1.3.101.112", None),  # RFC 8410
    SignatureScheme("ed448", HashAlgorithm.IDENTITY): ("1.3.101.113", None),
}
_SCHEME_BY_OID = {oid: scheme for scheme, (oid, _) in _SCHEME_OIDS.items()}

# RFC 4754 §3: the ECDSA methods fix curve and hash.
_RFC4754_METHODS: dict[AuthMethod, tuple[type[ec.EllipticCurve], HashAlgorithm]] = {
    AuthMethod.ECDSA_SHA256_P256: (ec.SECP256R1, HashAlgorithm.SHA2_256),
    AuthMethod.ECDSA_SHA384_P384: (ec.SECP384R1, HashAlgorithm.SHA2_384),
    AuthMethod.ECDSA_SHA512_P521: (ec.SECP521R1, HashAlgorithm.SHA2_512),
}
_DEFAULT_ECDSA_HASH: dict[str, HashAlgorithm] = {
    "secp256r1": HashAlgorithm.SHA2_256,
    "secp384r1": HashAlgorithm.SHA2_384,
    "secp521r1": HashAlgorithm.SHA2_512,
}


def _key_type(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    return "ed448"


def _hash(hash_id: HashAlgorithm) -> hashes.HashAlgorithm:
    return _HASH_BY_ID[hash_id]()


def parse_algorithm_identifier(data: bytes) -> SignatureScheme:
    """The scheme of an RFC 7427 AlgorithmIdentifier (SignatureError if we do not know it)."""
    try:
        oid, params = der.parse_algorithm_identifier(data)
    except ValueError as exc:
        raise SignatureError(f"bad AlgorithmIdentifier: {exc}") from None
    if oid == OID_RSASSA_PSS:
        return _parse_pss_params(params)
    scheme = _SCHEME_BY_OID.get(oid)
    if scheme is None:
        raise SignatureError(f"unsupported signature algorithm {oid}")
    return scheme


def _parse_pss_params(params: bytes | None) -> SignatureScheme:
    """RSASSA-PSS-params (RFC 4055 §3.1); absent fields take the SHA-1 / salt 20 defaults."""
    hash_id, mgf_hash, salt = HashAlgorithm.SHA1, HashAlgorithm.SHA1, 20
    try:
        fields = der.parse_explicit_fields(params) if params else {}
        if 0 in fields:
            hash_id = _ID_BY_HASH_OID[der.parse_algorithm_identifier(fields[0])[0]]
        if 1 in fields:
            mgf_oid, mgf_params = der.parse_algorithm_identifier(fields[1])
            if mgf_oid != OID_MGF1 or mgf_params is None:
                raise SignatureError("RSASSA-PSS with a mask generation other than MGF1")
            mgf_hash = _ID_BY_HASH_OID[der.parse_algorithm_identifier(mgf_params)[0]]
        if 2 in fields:
            salt = der.parse_integer(fields[2])
    except (ValueError, KeyError):
        raise SignatureError("bad RSASSA-PSS parameters") from None
    if mgf_hash != hash_id:
        raise SignatureError("RSASSA-PSS with different hash and MGF1 hash")
    return SignatureScheme("rsa", hash_id, "pss", salt)


def _sign_with(scheme: SignatureScheme, key: PrivateKey, octets: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return key.sign(octets)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(octets, ec.ECDSA(_hash(scheme.hash)))
    pad: padding.AsymmetricPadding = padding.PKCS1v15()
    if scheme.rsa_padding == "pss":
        pad = padding.PSS(mgf=padding.MGF1(_hash(scheme.hash)), salt_length=scheme.pss_salt)
    return key.sign(octets, pad, _hash(scheme.hash))


def _verify_with(scheme: SignatureScheme, key: PublicKey, octets: bytes, sig: bytes) -> None:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(sig, octets)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, octets, ec.ECDSA(_hash(scheme.hash)))
        else:
            pad: padding.AsymmetricPadding = padding.PKCS1v15()
            if scheme.rsa_padding == "pss":
                pad = padding.PSS(mgf=padding.MGF1(_hash(scheme.hash)), salt_length=scheme.pss_salt)
            key.verify(sig, octets, pad, _hash(scheme.hash))
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not verify") from None


def _ecdsa_raw_length(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def sign_auth(
    method: AuthMethod,
    private_key: PrivateKey,
    octets: bytes,
    hash_alg: HashAlgorithm | None = None,
    *,
    rsa_padding: RsaPadding = "pss",
) -> bytes:
    """AUTH payload data for a signature method (RFC 7296 §3.8, RFC 4754, RFC 7427).

    hash_alg matters for method 14 only: None picks SHA2-256 for RSA, the curve's hash for
    ECDSA, and Identity for EdDSA. RSA-PSS uses a salt as long as the hash (RFC 8247 §3.2).
    """
    key_type = _key_type(private_key)
    if method == AuthMethod.RSA_SIG:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise UsageError("method 1 needs an RSA key")
        return private_key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
    if method in _RFC4754_METHODS:
        curve, hash_id = _RFC4754_METHODS[AuthMethod(method)]
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, curve
        ):
            raise UsageError(f"method {method} needs a {curve.name} key")
        r, s = decode_dss_signature(private_key.sign(octets, ec.ECDSA(_hash(hash_id))))
        size = _ecdsa_raw_length(private_key.curve)
        return r.to_bytes(size) + s.to_bytes(size)
    if method != AuthMethod.DIGITAL_SIGNATURE:
        raise UsageError(f"AUTH method {method} is not a signature method")
    scheme = _scheme_for(private_key, key_type, hash_alg, rsa_padding)
    algorithm_id = scheme.algorithm_identifier()
    return len(algorithm_id).to_bytes(1) + algorithm_id + _sign_with(scheme, private_key, octets)


def _scheme_for(
    key: PrivateKey, key_type: str, hash_alg: HashAlgorithm | None, rsa_padding: RsaPadding
) -> SignatureScheme:
    if key_type in ("ed25519", "ed448"):
        if hash_alg not in (None, HashAlgorithm.IDENTITY):
            raise UsageError("EdDSA signs with the Identity hash (RFC 8420)")
        return SignatureScheme(key_type, HashAlgorithm.IDENTITY)  # type: ignore[arg-type]
    if hash_alg == HashAlgorithm.IDENTITY:
        raise UsageError(f"{key_type} cannot sign with the Identity hash")
    if key_type == "ecdsa":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return SignatureScheme("ecdsa", hash_alg or _DEFAULT_ECDSA_HASH[key.curve.name])
    hash_id = hash_alg or HashAlgorithm.SHA2_256
    if rsa_padding == "pss":
        return SignatureScheme("rsa", hash_id, "pss", _hash(hash_id).digest_size)
    return SignatureScheme("rsa", hash_id, "pkcs1")


def verify_auth(method: AuthMethod, public_key: PublicKey, octets: bytes, auth_data: bytes) -> None:
    """Check signature AUTH data against the peer's key; SignatureError on any mismatch."""
    if method == AuthMethod.RSA_SIG:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise SignatureError("method 1 needs an RSA key")
        _verify_with(SignatureScheme("rsa", HashAlgorithm.SHA1, "pkcs1"), public_key, octets,
                     auth_data)  # fmt: skip
        return
    if method in _RFC4754_METHODS:
        curve, hash_id = _RFC4754_METHODS[AuthMethod(method)]
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, curve
        ):
            raise SignatureError(f"method {method} needs a {curve.name} key")
        size = _ecdsa_raw_length(public_key.curve)
        if len(auth_data) != 2 * size:
            raise SignatureError(f"ECDSA signature of {len(auth_data)} bytes, not {2 * size}")
        sig = encode_dss_signature(
            int.from_bytes(auth_data[:size]), int.from_bytes(auth_data[size:])
        )
        _verify_with(SignatureScheme("ecdsa", hash_id), public_key, octets, sig)
        return
    if method != AuthMethod.DIGITAL_SIGNATURE:
        raise SignatureError(f"AUTH method {method} is not a signature method")
    if not auth_data or len(auth_data) < 1 + auth_data[0]:
        raise SignatureError("AUTH data shorter than its AlgorithmIdentifier")
    scheme = parse_algorithm_identifier(auth_data[1 : 1 + auth_data[0]])
    if scheme.key_type != _key_type(public_key):
        raise SignatureError(f"a {scheme.key_type} signature for a {_key_type(public_key)} key")
    _verify_with(scheme, public_key, octets, auth_data[1 + auth_data[0] :])


# --------------------------------------------------------------------------------------------
# RFC 7427 §4: SIGNATURE_HASH_ALGORITHMS notify data, a list of 16-bit hash ids


def encode_signature_hash_algorithms(algorithms: list[int] | tuple[int, ...]) -> bytes:
    return b"".join(int(a).to_bytes(2) for a in algorithms)


def decode_signature_hash_algorithms(data: bytes) -> tuple[int, ...]:
    """The hash ids in the notify data; unknown ids are kept (the caller ignores them)."""
    if len(data) % 2:
        raise InvalidSyntax(f"SIGNATURE_HASH_ALGORITHMS data of odd length {len(data)}")
    return tuple(int.from_bytes(data[i : i + 2]) for i in range(0, len(data), 2))


def choose_signature_hash(
    ours: tuple[int, ...] | list[int], theirs: tuple[int, ...] | list[int], key: PrivateKey
) -> HashAlgorithm | None:
    """Our first preferred hash the peer accepts and our key can sign with; None: none fits."""
    key_type = _key_type(key)
    usable = (
        {HashAlgorithm.IDENTITY}
        if key_type in ("ed25519", "ed448")
        else set(_HASH_BY_ID) - {HashAlgorithm.SHA1}  # RFC 8247 §3.2: no SHA-1 for signatures
    )
    accepted = set(theirs)
    for hash_id in ours:
        if hash_id in accepted and hash_id in usable:
            return HashAlgorithm(hash_id)
    return None
