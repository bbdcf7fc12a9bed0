"""No secret appears in repr() or str() of key-holding objects (DESIGN §4, secrets)."""

from __future__ import annotations

import os

import pytest

from ikev2.constants import KeId, PrfId
from ikev2.crypto.dh import create_key_exchange
from ikev2.crypto.keymat import ChildKeys, IkeKeys, Prf, derive_child_keys, derive_ike_keys
from ikev2.crypto.sk import SkCipher
from ikev2.crypto.suites import encr_suite, integ_suite


def _hexes(*secrets: bytes) -> list[str]:
    return [s.hex() for s in secrets if s] + [s.hex().upper() for s in secrets if s]


def test_ike_and_child_keys_hide_their_bytes() -> None:
    encr, integ = encr_suite(12, 256), integ_suite(12)
    _skeyseed, keys = derive_ike_keys(
        PrfId.HMAC_SHA2_256, encr, integ, os.urandom(32), os.urandom(32), os.urandom(32),
        os.urandom(8), os.urandom(8),
    )  # fmt: skip
    child = derive_child_keys(PrfId.HMAC_SHA2_256, keys.sk_d, encr, integ, b"n" * 32, b"m" * 32)
    for obj, secrets in (
        (keys, [getattr(keys, f) for f in IkeKeys.__dataclass_fields__]),
        (child, [getattr(child, f) for f in ChildKeys.__dataclass_fields__]),
    ):
        text = repr(obj) + str(obj)
        assert "bytes>" in text
        for secret in _hexes(*secrets):
            assert secret not in text
        for secret in secrets:
            assert repr(secret) not in text


@pytest.mark.parametrize("group", [KeId.CURVE25519, KeId.ECP256, KeId.MODP2048, KeId.ML_KEM_768])
def test_key_exchange_hides_its_private_key(group: int) -> None:
    drawn: list[bytes] = []

    def source(n: int) -> bytes:
        drawn.append(os.urandom(n))
        return drawn[-1]

    ke = create_key_exchange(group, source)
    ke.public_bytes  # noqa: B018
    text = repr(ke) + str(ke)
    assert drawn
    for secret in _hexes(*drawn):
        assert secret not in text
    assert "<private>" in text


def test_cipher_and_prf_hide_their_keys() -> None:
    key, integ_key = os.urandom(36), os.urandom(32)
    cipher = SkCipher(encr_suite(20, 256), key, None, b"")
    other = SkCipher(encr_suite(12, 128), key[:16], integ_suite(12), integ_key)
    prf = Prf(PrfId.HMAC_SHA2_256, integ_key)
    text = repr(cipher) + str(cipher) + repr(other) + str(other) + repr(prf) + str(prf)
    for secret in _hexes(key, integ_key):
        assert secret not in text
