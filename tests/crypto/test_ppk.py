"""RFC 8784 §3, the PPK mixed into SK_d, SK_pi and SK_pr, against the RFC's formulas built here
with hmac and RFC 7296 §2.13's prf+ (not with keymat.py), and against strongSwan 6.0.6's own
derivation (fixtures/vectors/strongswan6-ppk.json, from its log)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ikev2.constants import EncrId, PrfId
from ikev2.crypto.keymat import IkeKeys, derive_ike_keys
from ikev2.crypto.ppk import mix_ppk
from ikev2.crypto.suites import encr_suite

from .vectors import h, load

PPK = bytes(range(32))
NI, NR = b"\x01" * 32, b"\x02" * 32
SPI_I, SPI_R = b"\x11" * 8, b"\x22" * 8
SHARED = b"\x44" * 32
HASHES = {PrfId.HMAC_SHA2_256: hashlib.sha256, PrfId.HMAC_SHA2_512: hashlib.sha512}


def prf_plus(hash_fn: object, key: bytes, seed: bytes, length: int) -> bytes:
    """RFC 7296 §2.13: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n)."""
    out, block, n = b"", b"", 1
    while len(out) < length:
        block = hmac.new(key, block + seed + bytes([n]), hash_fn).digest()  # type: ignore[arg-type]
        out, n = out + block, n + 1
    return out[:length]


def keys_for(prf_id: PrfId) -> IkeKeys:
    _seed, keys = derive_ike_keys(
        prf_id, encr_suite(EncrId.AES_GCM_16, 256), None, NI, NR, SHARED, SPI_I, SPI_R
    )
    return keys


@pytest.mark.parametrize("prf_id", list(HASHES))
def test_sk_d_pi_pr_are_prf_plus_of_the_ppk_over_the_old_keys(prf_id: PrfId) -> None:
    """SK_d = prf+ (PPK, SK_d'), SK_pi = prf+ (PPK, SK_pi'), SK_pr = prf+ (PPK, SK_pr'),
    each as long as the key it replaces (RFC 8784 §3)."""
    old = keys_for(prf_id)
    new = mix_ppk(prf_id, PPK, old)
    hash_fn = HASHES[prf_id]
    for name in ("sk_d", "sk_pi", "sk_pr"):
        before = getattr(old, name)
        assert getattr(new, name) == prf_plus(hash_fn, PPK, before, len(before)), name
        assert len(getattr(new, name)) == len(before) == hash_fn().digest_size
    # the SK payload keys are untouched: IKE_AUTH is protected by them already
    assert (new.sk_ei, new.sk_er, new.sk_ai, new.sk_ar) == (old.sk_ei, old.sk_er, old.sk_ai,
                                                            old.sk_ar)  # fmt: skip


def test_a_different_ppk_gives_different_keys() -> None:
    old = keys_for(PrfId.HMAC_SHA2_256)
    one = mix_ppk(PrfId.HMAC_SHA2_256, PPK, old)
    other = mix_ppk(PrfId.HMAC_SHA2_256, PPK[:-1] + b"\xff", old)
    assert one.sk_d != other.sk_d and one.sk_pi != other.sk_pi and one.sk_pr != other.sk_pr
    assert one.sk_d != old.sk_d


def test_aes_xcbc_prf_takes_a_ppk_of_any_length() -> None:
    """An AES128-XCBC PRF maps a 32-byte PPK to its 128-bit key (RFC 4434 §2): 16-byte keys."""
    _seed, old = derive_ike_keys(
        PrfId.AES128_XCBC, encr_suite(EncrId.AES_GCM_16, 128), None, NI, NR, SHARED, SPI_I, SPI_R
    )
    new = mix_ppk(PrfId.AES128_XCBC, PPK, old)
    assert len(new.sk_d) == len(old.sk_d) == 16 and new.sk_d != old.sk_d


def test_repr_shows_no_key() -> None:
    new = mix_ppk(PrfId.HMAC_SHA2_256, PPK, keys_for(PrfId.HMAC_SHA2_256))
    assert new.sk_d.hex() not in repr(new) and PPK.hex() not in repr(new)


def test_strongswan6_derivation() -> None:
    """strongSwan 6.0.6's SK_d, SK_pi, SK_pr after the PPK equal ours from its keys before."""
    vector = load("strongswan6-ppk.json")
    before, after = vector["before"], vector["after"]
    old = IkeKeys(h(before["sk_d"]), b"", b"", b"", b"", h(before["sk_pi"]), h(before["sk_pr"]))
    new = mix_ppk(PrfId.HMAC_SHA2_256, h(vector["ppk"]), old)
    assert (new.sk_d.hex(), new.sk_pi.hex(), new.sk_pr.hex()) == (
        after["sk_d"], after["sk_pi"], after["sk_pr"]
    )  # fmt: skip
