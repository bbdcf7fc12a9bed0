"""What this implementation can negotiate, asked of the crypto layer's transform table, and
how a negotiated suite is named in logs and events (strongSwan's "AES_GCM_16_256/..." style)."""

from __future__ import annotations

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
    parts: list[str] = []
    if suite.encr is not None:
        name = enum_name(EncrId, suite.encr)
        parts.append(f"{name}_{suite.encr_key_bits}" if suite.encr_key_bits else name)
    if suite.integ is not None:
        parts.append(enum_name(IntegId, suite.integ))
    if suite.prf is not None:
        parts.append("PRF_" + enum_name(PrfId, suite.prf))
    if suite.ke is not None:
        parts.append(enum_name(KeId, suite.ke))
    if suite.esn:
        parts.append(enum_name(EsnId, EsnId.ESN))
    return "/".join(parts)
