"""The crypto layer: transform table, key derivation, SK payload protection, key exchange, AUTH.

Stateless and built on `cryptography` only. Never imports IO, clocks or the engine; randomness is
always injected by the caller (a `Callable[[int], bytes]`).

- suites.py  the one table of transforms (sizes, XFRM names) and the supported_* sets
- keymat.py  Prf, prf+, SKEYSEED / SK_*, IKE rekey, RFC 9370 key update, Child SA KEYMAT
- sk.py      SkCipher: SK / SKF body protect / unprotect (AEAD and encrypt-then-MAC)
- dh.py      KeyExchange for MODP / ECP / X25519 / X448 / ML-KEM with peer value checks
- auth.py    signed octets, PSK AUTH, signatures (RFC 7296, RFC 4754, RFC 7427)
- mac.py, der.py  helpers: keyed HMAC / AES-CMAC / AES-XCBC, the DER of AlgorithmIdentifiers
"""

from __future__ import annotations

from .auth import (
    choose_signature_hash,
    decode_signature_hash_algorithms,
    encode_signature_hash_algorithms,
    psk_auth_data,
    sign_auth,
    signed_octets,
    verify_auth,
    verify_psk_auth,
)
from .dh import KeyExchange, create_key_exchange
from .keymat import (
    ChildKeys,
    IkeKeys,
    Prf,
    derive_child_keys,
    derive_ike_keys,
    derive_rekeyed_ike_keys,
    prf_plus,
    update_ike_keys_additional_ke,
)
from .sk import SkCipher
from .suites import (
    EncrSuite,
    IntegSuite,
    KeSuite,
    PrfSuite,
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

__all__ = [
    "ChildKeys",
    "EncrSuite",
    "IkeKeys",
    "IntegSuite",
    "KeSuite",
    "KeyExchange",
    "Prf",
    "PrfSuite",
    "SkCipher",
    "UnsupportedTransform",
    "choose_signature_hash",
    "create_key_exchange",
    "decode_signature_hash_algorithms",
    "derive_child_keys",
    "derive_ike_keys",
    "derive_rekeyed_ike_keys",
    "encode_signature_hash_algorithms",
    "encr_suite",
    "integ_suite",
    "ke_suite",
    "prf_plus",
    "prf_suite",
    "psk_auth_data",
    "sign_auth",
    "signed_octets",
    "supported_encr",
    "supported_esn",
    "supported_ike_encr",
    "supported_integ",
    "supported_ke",
    "supported_prf",
    "update_ike_keys_additional_ke",
    "verify_auth",
    "verify_psk_auth",
]
