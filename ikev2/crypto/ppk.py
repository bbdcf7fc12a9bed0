"""Post-quantum preshared keys mixed into the IKE SA keys (RFC 8784 §3).

Once IKE_SA_INIT (and any IKE_INTERMEDIATE key update, RFC 9370 §2.2.2) has produced
SK_d', SK_pi' and SK_pr', both peers replace those three with

    SK_d  = prf+ (PPK, SK_d')
    SK_pi = prf+ (PPK, SK_pi')
    SK_pr = prf+ (PPK, SK_pr')

each as long as the key it replaces (the PRF's preferred key length, RFC 7296 §2.14). SK_e* and
SK_a* stay: IKE_AUTH is already protected by them, and the PPK only enters the AUTH payloads
(through SK_pi/SK_pr) and every key derived from SK_d afterwards (child SAs, IKE SA rekeys).
"""

from __future__ import annotations

from dataclasses import replace

from .keymat import IkeKeys, Prf, prf_plus


def mix_ppk(prf_id: int, ppk: bytes, keys: IkeKeys) -> IkeKeys:
    """The IKE SA keys with the PPK mixed into SK_d, SK_pi and SK_pr (RFC 8784 §3)."""
    prf = Prf(prf_id, ppk)  # keyed with the PPK; AES-XCBC/CMAC map its length (RFC 4434 §2)
    return replace(
        keys,
        sk_d=prf_plus(prf, keys.sk_d, len(keys.sk_d)),
        sk_pi=prf_plus(prf, keys.sk_pi, len(keys.sk_pi)),
        sk_pr=prf_plus(prf, keys.sk_pr, len(keys.sk_pr)),
    )
