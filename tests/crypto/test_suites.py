"""The transform table: sizes from the RFCs and Linux XFRM names."""

from __future__ import annotations

import pytest

from ikev2.constants import EncrId, IntegId, KeId, PrfId
from ikev2.crypto.suites import (
    UnsupportedTransform,
    encr_suite,
    integ_suite,
    ke_suite,
    prf_suite,
    supported_encr,
    supported_esn,
    supported_ike_encr,
    supported_integ,
    supported_ke,
    supported_prf,
)


def test_encr_sizes_and_xfrm_names() -> None:
    gcm = encr_suite(EncrId.AES_GCM_16, 256)  # RFC 4106 §8.1: key + 4-byte salt
    assert (gcm.key_bytes, gcm.salt_bytes, gcm.iv_bytes, gcm.icv_bytes) == (36, 4, 8, 16)
    assert (gcm.xfrm_name, gcm.xfrm_icv_bits, gcm.aead) == ("rfc4106(gcm(aes))", 128, True)
    assert encr_suite(EncrId.AES_GCM_8, 128).xfrm_icv_bits == 64
    assert encr_suite(EncrId.AES_GCM_12, 192).key_bytes == 28
    chacha = encr_suite(EncrId.CHACHA20_POLY1305)  # RFC 7634 §2
    assert (chacha.key_bytes, chacha.xfrm_name) == (36, "rfc7539esp(chacha20,poly1305)")
    cbc = encr_suite(EncrId.AES_CBC, 192)
    assert (cbc.key_bytes, cbc.iv_bytes, cbc.block_bytes, cbc.xfrm_name) == (24, 16, 16, "cbc(aes)")
    ctr = encr_suite(EncrId.AES_CTR, 128)  # RFC 3686 §5.1: key + 4-byte nonce
    assert (ctr.key_bytes, ctr.iv_bytes, ctr.xfrm_name) == (20, 8, "rfc3686(ctr(aes))")
    null = encr_suite(EncrId.NULL)
    assert (null.xfrm_name, null.ike_allowed) == ("ecb(cipher_null)", False)
    assert (EncrId.NULL, None) in supported_encr() - supported_ike_encr()
    assert (EncrId.CHACHA20_POLY1305, None) in supported_ike_encr()


def test_unsupported_lookups() -> None:
    for call in (
        lambda: encr_suite(EncrId.AES_CBC, None),
        lambda: encr_suite(EncrId.AES_CBC, 512),
        lambda: encr_suite(EncrId.CHACHA20_POLY1305, 128),
        lambda: encr_suite(EncrId.DES3, 192),
        lambda: prf_suite(PrfId.HMAC_MD5),
        lambda: integ_suite(IntegId.HMAC_MD5_96),
        lambda: ke_suite(KeId.MODP1024),
    ):
        with pytest.raises(UnsupportedTransform):
            call()


def test_integ_prf_ke_tables() -> None:
    table = {i: (integ_suite(i).icv_bytes, integ_suite(i).xfrm_name, integ_suite(i).xfrm_trunc_bits)
             for i in supported_integ()}  # fmt: skip
    assert table[IntegId.HMAC_SHA1_96] == (12, "hmac(sha1)", 96)
    assert table[IntegId.HMAC_SHA2_256_128] == (16, "hmac(sha256)", 128)
    assert table[IntegId.HMAC_SHA2_384_192] == (24, "hmac(sha384)", 192)
    assert table[IntegId.HMAC_SHA2_512_256] == (32, "hmac(sha512)", 256)
    assert table[IntegId.AES_XCBC_96] == (12, "xcbc(aes)", 96)
    assert table[IntegId.AES_CMAC_96] == (12, "cmac(aes)", 96)
    assert supported_prf() == {2, 4, 5, 6, 7, 8}
    assert supported_ke() == {14, 15, 16, 17, 18, 19, 20, 21, 31, 32, 36, 37}
    assert ke_suite(KeId.ECP521).public_bytes_initiator == 132  # RFC 5903 §7
    assert ke_suite(KeId.ML_KEM_768).public_bytes_responder == 1088  # FIPS 203 table 3
    assert supported_esn() == {0, 1}
