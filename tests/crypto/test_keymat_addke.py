"""RFC 9370 key schedules built here from the RFC's formulas with hmac, against keymat.py:
§2.2.2 (the update after each IKE_INTERMEDIATE) and §2.2.4 (child KEYMAT and rekeyed SKEYSEED
with the IKE_FOLLOWUP_KE secrets after the nonces, as strongSwan 6 derives them)."""

from __future__ import annotations

import hashlib
import hmac

from ikev2.constants import EncrId, PrfId
from ikev2.crypto.keymat import (
    derive_child_keys,
    derive_rekeyed_ike_keys,
    update_ike_keys_additional_ke,
)
from ikev2.crypto.suites import encr_suite

SHA256 = PrfId.HMAC_SHA2_256
GCM = encr_suite(EncrId.AES_GCM_16, 256)  # 36-byte keys (32 + 4 salt), no integrity keys
NI, NR = b"\x01" * 32, b"\x02" * 32
SPI_I, SPI_R = b"\x11" * 8, b"\x22" * 8
SK_D = b"\x33" * 32
SK0, SK1, SK2 = b"\x44" * 32, b"\x55" * 32, b"\x66" * 32


def prf(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def prf_plus(key: bytes, seed: bytes, length: int) -> bytes:
    out, block, n = b"", b"", 1
    while len(out) < length:
        block = prf(key, block + seed + bytes([n]))
        out, n = out + block, n + 1
    return out[:length]


def test_child_keymat_puts_the_additional_secrets_after_the_nonces() -> None:
    keys = derive_child_keys(SHA256, SK_D, GCM, None, NI, NR, SK0, (SK1, SK2))
    keymat = prf_plus(SK_D, SK0 + NI + NR + SK1 + SK2, 2 * 36)
    assert keys.encr_i == keymat[:36] and keys.encr_r == keymat[36:]
    plain = derive_child_keys(SHA256, SK_D, GCM, None, NI, NR, SK0)
    assert plain.encr_i == prf_plus(SK_D, SK0 + NI + NR, 36) != keys.encr_i


def test_rekeyed_skeyseed_with_additional_secrets() -> None:
    skeyseed, keys = derive_rekeyed_ike_keys(
        SHA256, SK_D, SHA256, GCM, None, SK0, NI, NR, SPI_I, SPI_R, (SK1,)
    )
    assert skeyseed == prf(SK_D, SK0 + NI + NR + SK1)
    keymat = prf_plus(skeyseed, NI + NR + SPI_I + SPI_R, 32 + 36 + 36 + 32 + 32)
    assert keys.sk_d == keymat[:32] and keys.sk_ei == keymat[32:68]


def test_update_after_an_intermediate_exchange() -> None:
    skeyseed, keys = update_ike_keys_additional_ke(
        SHA256, SK_D, GCM, None, SK1, NI, NR, SPI_I, SPI_R
    )
    assert skeyseed == prf(SK_D, SK1 + NI + NR)
    keymat = prf_plus(skeyseed, NI + NR + SPI_I + SPI_R, 32 + 36 + 36 + 32 + 32)
    assert (keys.sk_d, keys.sk_pr) == (keymat[:32], keymat[-32:])
