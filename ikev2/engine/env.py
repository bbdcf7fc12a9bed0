"""What the engine gets from outside instead of reaching for it: randomness and wall time.

Monotonic time arrives with every input as `now`; the wall clock is only needed to check
certificate validity. Tests inject fixed sources so nonces, SPIs and DH keys are reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


def _system_utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Env:
    """random_bytes feeds SPIs, DH private keys, IVs and (unless `nonce` is given) nonces;
    tests give `nonce` to decide who wins a rekey collision (RFC 7296 §2.8.1)."""

    random_bytes: Callable[[int], bytes] = os.urandom
    utc_now: Callable[[], datetime] = _system_utc_now
    nonce: Callable[[int], bytes] | None = None
    # the SPIs we allocate (IKE 8 bytes, ESP/AH 4) when given: service workers tag them
    spi_bytes: Callable[[int], bytes] | None = None
