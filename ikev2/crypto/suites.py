"""The one table of the transforms we implement: ids -> primitives, key/IV/ICV sizes, XFRM names.

Sources of the sizes:
- ENCR: RFC 3602 (AES-CBC), RFC 3686 / RFC 5930 (AES-CTR: 4-byte nonce after the key),
  RFC 4106 / RFC 5282 (AES-GCM: 4-byte salt after the key, 8-byte IV, 8/12/16-byte ICV),
  RFC 7634 (ChaCha20-Poly1305: 32-byte key + 4-byte salt, 8-byte IV, 16-byte ICV),
  RFC 2410 (ENCR_NULL, ESP only: RFC 7296 §3.3.2 forbids it for IKE).
- PRF: RFC 2104 / RFC 4868 (HMAC), RFC 4434 (AES-XCBC-PRF-128), RFC 4615 (AES-CMAC-PRF-128).
- INTEG: RFC 2404 (HMAC-SHA1-96), RFC 4868 §2.3 (HMAC-SHA2-*), RFC 3566 (AES-XCBC-MAC-96),
  RFC 4494 (AES-CMAC-96).
- KE: RFC 3526 (MODP 14-18), RFC 5903 §7 (ECP 19/20/21, x||y), RFC 8031 (Curve25519/448),
  FIPS 203 + draft-ietf-ipsecme-ikev2-mlkem (ML-KEM-768/1024).

Linux XFRM algorithm names are those of the kernel crypto API as `ip xfrm` uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from ..constants import EncrId, EsnId, IntegId, KeId, PrfId


class MacKind(Enum):
    """How a PRF or INTEG transform computes its MAC."""

    HMAC = "hmac"
    XCBC = "xcbc"  # AES-XCBC-MAC, RFC 3566 / RFC 4434
    CMAC = "cmac"  # AES-CMAC, RFC 4493 / RFC 4615


class CipherKind(Enum):
    """The cipher construction behind an ENCR transform."""

    CBC = "cbc"
    CTR = "ctr"
    GCM = "gcm"
    CCM = "ccm"
    CHACHA20_POLY1305 = "chacha20-poly1305"
    NULL = "null"


@dataclass(frozen=True, slots=True)
class EncrSuite:
    """One ENCR transform at one key length.

    key_bytes is the keying material taken from KEYMAT / prf+ (RFC 7296 §2.14, §2.17): for AEAD
    and CTR it includes the salt/nonce that follows the cipher key (RFC 5282 §7.1, RFC 5930 §3).
    block_bytes is the alignment of plaintext + padding + pad length (RFC 7296 §3.14).
    """

    id: EncrId
    name: str
    cipher: CipherKind
    key_bits: int
    key_bytes: int
    salt_bytes: int
    iv_bytes: int
    block_bytes: int
    icv_bytes: int
    aead: bool
    xfrm_name: str
    xfrm_icv_bits: int | None
    ike_allowed: bool = True  # False: ESP only (ENCR_NULL)

    @property
    def cipher_key_bytes(self) -> int:
        return self.key_bytes - self.salt_bytes


@dataclass(frozen=True, slots=True)
class PrfSuite:
    """One PRF transform. key_bytes is the preferred key size (RFC 7296 §2.13, §2.17)."""

    id: PrfId
    name: str
    mac: MacKind
    hash_name: str | None  # hashlib / cryptography name for HMAC ("sha256"); None for AES MACs
    key_bytes: int
    output_bytes: int
    # RFC 7296 §2.14: a PRF that needs a fixed-length key takes half of it from the first bytes of
    # Ni and half from Nr for SKEYSEED. strongSwan treats XCBC and CMAC so (RFC 3664 semantics).
    fixed_key: bool


@dataclass(frozen=True, slots=True)
class IntegSuite:
    """One INTEG transform: a MAC truncated to icv_bytes."""

    id: IntegId
    name: str
    mac: MacKind
    hash_name: str | None
    key_bytes: int
    icv_bytes: int
    xfrm_name: str
    xfrm_trunc_bits: int


KeKind = Literal["modp", "ecp", "montgomery", "mlkem"]


@dataclass(frozen=True, slots=True)
class KeSuite:
    """One key exchange method: the KE payload data sizes each side sends."""

    id: KeId
    name: str
    kind: KeKind
    public_bytes_initiator: int
    public_bytes_responder: int
    # MODP: RFC 3526 prime size in bits; ECP: curve name; ML-KEM: parameter set.
    modp_bits: int | None = None
    curve: str | None = None
    # MODP private exponent length in bytes (RFC 3526 §8: twice the group's strength).
    private_bytes: int = 0


class UnsupportedTransform(KeyError):
    """A transform id (and key length) this implementation does not provide."""


# --------------------------------------------------------------------------------------------
# ENCR: keyed by (id, key bits). RFC 7296 §3.3.5: AES transforms carry a Key Length attribute;
# ChaCha20-Poly1305 and NULL do not (key_bits None looks up their only size).


def _aes_cbc(bits: int) -> EncrSuite:
    return EncrSuite(
        EncrId.AES_CBC, f"aes{bits}-cbc", CipherKind.CBC, bits, bits // 8, 0, 16, 16, 0, False,
        "cbc(aes)", None,
    )  # fmt: skip


def _aes_ctr(bits: int) -> EncrSuite:
    # RFC 5930 §2 / RFC 3686 §5.1: key || 4-byte nonce; 8-byte IV; no alignment beyond 1 byte.
    return EncrSuite(
        EncrId.AES_CTR, f"aes{bits}-ctr", CipherKind.CTR, bits, bits // 8 + 4, 4, 8, 1, 0, False,
        "rfc3686(ctr(aes))", None,
    )  # fmt: skip


def _aes_gcm(encr_id: EncrId, icv: int, bits: int) -> EncrSuite:
    # RFC 5282 §7.1 / RFC 4106 §8.1: key || 4-byte salt; 8-byte IV.
    return EncrSuite(
        encr_id, f"aes{bits}-gcm{icv}", CipherKind.GCM, bits, bits // 8 + 4, 4, 8, 1, icv, True,
        "rfc4106(gcm(aes))", icv * 8,
    )  # fmt: skip


def _aes_ccm(encr_id: EncrId, icv: int, bits: int) -> EncrSuite:
    # RFC 5282 §7.1 / RFC 4309 §7.1: key || 3-byte salt; 8-byte IV.
    return EncrSuite(
        encr_id, f"aes{bits}-ccm{icv}", CipherKind.CCM, bits, bits // 8 + 3, 3, 8, 1, icv, True,
        "rfc4309(ccm(aes))", icv * 8,
    )  # fmt: skip


_ENCR_TABLE: dict[tuple[int, int], EncrSuite] = {}
for _bits in (128, 192, 256):
    for _suite in (
        _aes_cbc(_bits),
        _aes_ctr(_bits),
        _aes_gcm(EncrId.AES_GCM_8, 8, _bits),
        _aes_gcm(EncrId.AES_GCM_12, 12, _bits),
        _aes_gcm(EncrId.AES_GCM_16, 16, _bits),
        _aes_ccm(EncrId.AES_CCM_8, 8, _bits),
        _aes_ccm(EncrId.AES_CCM_12, 12, _bits),
        _aes_ccm(EncrId.AES_CCM_16, 16, _bits),
    ):
        _ENCR_TABLE[(_suite.id, _bits)] = _suite
_ENCR_TABLE[(EncrId.CHACHA20_POLY1305, 256)] = EncrSuite(
    EncrId.CHACHA20_POLY1305, "chacha20-poly1305", CipherKind.CHACHA20_POLY1305, 256, 36, 4, 8, 1,
    16, True, "rfc7539esp(chacha20,poly1305)", 128,
)  # fmt: skip
_ENCR_TABLE[(EncrId.NULL, 0)] = EncrSuite(
    EncrId.NULL, "null", CipherKind.NULL, 0, 0, 0, 0, 4, 0, False, "ecb(cipher_null)", None,
    ike_allowed=False,
)  # fmt: skip

# Transforms without a Key Length attribute: their single key size.
_ENCR_FIXED_BITS: dict[int, int] = {EncrId.CHACHA20_POLY1305: 256, EncrId.NULL: 0}


def encr_suite(encr_id: int, key_bits: int | None = None) -> EncrSuite:
    """The ENCR suite for a transform id and its Key Length attribute (None when absent)."""
    if key_bits is None:
        if encr_id not in _ENCR_FIXED_BITS:
            raise UnsupportedTransform(f"ENCR {encr_id} needs a key length")
        key_bits = _ENCR_FIXED_BITS[encr_id]
    elif encr_id in _ENCR_FIXED_BITS and key_bits != _ENCR_FIXED_BITS[encr_id]:
        # RFC 7634 §3 / RFC 2410: no Key Length attribute may be given for these.
        raise UnsupportedTransform(f"ENCR {encr_id} has no key length {key_bits}")
    try:
        return _ENCR_TABLE[(encr_id, key_bits)]
    except KeyError:
        raise UnsupportedTransform(f"ENCR {encr_id} with {key_bits}-bit key") from None


def supported_encr() -> frozenset[tuple[int, int | None]]:
    """(ENCR id, key bits) pairs we implement; key bits None for the ids without the attribute."""
    return frozenset(
        (encr_id, None if encr_id in _ENCR_FIXED_BITS else bits) for (encr_id, bits) in _ENCR_TABLE
    )


def supported_ike_encr() -> frozenset[tuple[int, int | None]]:
    """As supported_encr() but only the transforms allowed for the IKE SA itself."""
    return frozenset(pair for pair in supported_encr() if encr_suite(*pair).ike_allowed)


# --------------------------------------------------------------------------------------------
# PRF (RFC 7296 §3.3.2 Transform Type 2)

_PRF_TABLE: dict[int, PrfSuite] = {
    s.id: s
    for s in (
        PrfSuite(PrfId.HMAC_SHA1, "prf-hmac-sha1", MacKind.HMAC, "sha1", 20, 20, False),
        PrfSuite(PrfId.HMAC_SHA2_256, "prf-hmac-sha256", MacKind.HMAC, "sha256", 32, 32, False),
        PrfSuite(PrfId.HMAC_SHA2_384, "prf-hmac-sha384", MacKind.HMAC, "sha384", 48, 48, False),
        PrfSuite(PrfId.HMAC_SHA2_512, "prf-hmac-sha512", MacKind.HMAC, "sha512", 64, 64, False),
        PrfSuite(PrfId.AES128_XCBC, "prf-aes128-xcbc", MacKind.XCBC, None, 16, 16, True),
        PrfSuite(PrfId.AES128_CMAC, "prf-aes128-cmac", MacKind.CMAC, None, 16, 16, True),
    )
}


def prf_suite(prf_id: int) -> PrfSuite:
    try:
        return _PRF_TABLE[prf_id]
    except KeyError:
        raise UnsupportedTransform(f"PRF {prf_id}") from None


def supported_prf() -> frozenset[int]:
    return frozenset(_PRF_TABLE)


# --------------------------------------------------------------------------------------------
# INTEG (Transform Type 3)

_INTEG_TABLE: dict[int, IntegSuite] = {
    s.id: s
    for s in (
        IntegSuite(IntegId.HMAC_SHA1_96, "hmac-sha1-96", MacKind.HMAC, "sha1", 20, 12,
                   "hmac(sha1)", 96),
        IntegSuite(IntegId.HMAC_SHA2_256_128, "hmac-sha256-128", MacKind.HMAC, "sha256", 32, 16,
                   "hmac(sha256)", 128),
        IntegSuite(IntegId.HMAC_SHA2_384_192, "hmac-sha384-192", MacKind.HMAC, "sha384", 48, 24,
                   "hmac(sha384)", 192),
        IntegSuite(IntegId.HMAC_SHA2_512_256, "hmac-sha512-256", MacKind.HMAC, "sha512", 64, 32,
                   "hmac(sha512)", 256),
        IntegSuite(IntegId.AES_XCBC_96, "aes-xcbc-96", MacKind.XCBC, None, 16, 12,
                   "xcbc(aes)", 96),
        IntegSuite(IntegId.AES_CMAC_96, "aes-cmac-96", MacKind.CMAC, None, 16, 12,
                   "cmac(aes)", 96),
    )
}  # fmt: skip


def integ_suite(integ_id: int) -> IntegSuite:
    try:
        return _INTEG_TABLE[integ_id]
    except KeyError:
        raise UnsupportedTransform(f"INTEG {integ_id}") from None


def supported_integ() -> frozenset[int]:
    return frozenset(_INTEG_TABLE)


# --------------------------------------------------------------------------------------------
# KE (Transform Type 4 and ADDKE 1-7)

_KE_TABLE: dict[int, KeSuite] = {
    s.id: s
    for s in (
        KeSuite(KeId.MODP2048, "modp2048", "modp", 256, 256, modp_bits=2048, private_bytes=32),
        KeSuite(KeId.MODP3072, "modp3072", "modp", 384, 384, modp_bits=3072, private_bytes=40),
        KeSuite(KeId.MODP4096, "modp4096", "modp", 512, 512, modp_bits=4096, private_bytes=48),
        KeSuite(KeId.MODP6144, "modp6144", "modp", 768, 768, modp_bits=6144, private_bytes=56),
        KeSuite(KeId.MODP8192, "modp8192", "modp", 1024, 1024, modp_bits=8192, private_bytes=64),
        KeSuite(KeId.ECP256, "ecp256", "ecp", 64, 64, curve="secp256r1"),
        KeSuite(KeId.ECP384, "ecp384", "ecp", 96, 96, curve="secp384r1"),
        KeSuite(KeId.ECP521, "ecp521", "ecp", 132, 132, curve="secp521r1"),
        KeSuite(KeId.CURVE25519, "curve25519", "montgomery", 32, 32, curve="x25519"),
        KeSuite(KeId.CURVE448, "curve448", "montgomery", 56, 56, curve="x448"),
        # FIPS 203 Table 3: encapsulation key / ciphertext sizes.
        KeSuite(KeId.ML_KEM_768, "mlkem768", "mlkem", 1184, 1088, curve="ML-KEM-768"),
        KeSuite(KeId.ML_KEM_1024, "mlkem1024", "mlkem", 1568, 1568, curve="ML-KEM-1024"),
    )
}


def ke_suite(ke_id: int) -> KeSuite:
    try:
        return _KE_TABLE[ke_id]
    except KeyError:
        raise UnsupportedTransform(f"KE {ke_id}") from None


def supported_ke() -> frozenset[int]:
    return frozenset(_KE_TABLE)


# --------------------------------------------------------------------------------------------
# ESN (Transform Type 5): both values; the kernel does the work (XFRM_STATE_ESN).


def supported_esn() -> frozenset[int]:
    return frozenset({EsnId.NO_ESN, EsnId.ESN})
