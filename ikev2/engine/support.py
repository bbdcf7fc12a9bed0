"""What this implementation can negotiate, asked of the crypto layer's transform table, and
how a negotiated suite is named in logs and events (strongSwan's "AES_GCM_16_256/..." style)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..constants import (
    EncrId,
    EsnId,
    IntegId,
    KeId,
    PrfId,
    TransformType,
    enum_name,
)
from ..crypto import suites
from .proposals import NegotiatedSuite

_ENCR = suites.supported_encr()
_PRF = suites.supported_prf()
_INTEG = suites.supported_integ() | {IntegId.NONE}
_KE = suites.supported_ke() | {KeId.NONE}
_ESN = suites.supported_esn()

_SUPPORT: dict[int, Callable[[int, int | None], bool]] = {
    TransformType.ENCR: lambda i, bits: (i, bits) in _ENCR,
    TransformType.PRF: lambda i, _bits: i in _PRF,
    TransformType.INTEG: lambda i, _bits: i in _INTEG,
    TransformType.KE: lambda i, _bits: i in _KE,
    TransformType.ESN: lambda i, _bits: i in _ESN,
}


def crypto_supports(transform_type: int, transform_id: int, key_bits: int | None) -> bool:
    """True when our crypto layer implements this transform (RFC 7296 §3.3.2 types 1–5)."""
    check = _SUPPORT.get(transform_type)
    return check is not None and check(transform_id, key_bits)


def describe_suite(suite: NegotiatedSuite) -> str:
    """The suite as strongSwan logs it, e.g. AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519."""
    return _describe(
        suite.encr,
        suite.encr_key_bits,
        suite.integ,
        suite.prf,
        suite.ke,
        suite.esn,
        suite.additional_ke,
    )


@functools.lru_cache(maxsize=256)
def _describe(
    encr: int | None,
    encr_key_bits: int | None,
    integ: int | None,
    prf: int | None,
    ke: int | None,
    esn: bool,
    additional_ke: tuple[int, ...] = (),
) -> str:
    parts: list[str] = []
    if encr is not None:
        name = enum_name(EncrId, encr)
        parts.append(f"{name}_{encr_key_bits}" if encr_key_bits else name)
    if integ is not None:
        parts.append(enum_name(IntegId, integ))
    if prf is not None:
        parts.append("PRF_" + enum_name(PrfId, prf))
    if ke is not None:
        parts.append(enum_name(KeId, ke))
    # RFC 9370 additional key exchanges, as strongSwan 6 names them (KE1_ML_KEM_768, ...)
    parts += [f"KE{n}_{enum_name(KeId, k)}" for n, k in enumerate(additional_ke, 1)]
    if esn:
        parts.append(enum_name(EsnId, EsnId.ESN))
    return "/".join(parts)
