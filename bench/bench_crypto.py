"""Crypto micro-benchmarks: median microseconds per operation; last stdout line is one JSON object.

Run: .venv/bin/python bench/bench_crypto.py
Targets (DESIGN §4): IKE key schedule <= 12 us, AES-GCM SK protect/unprotect <= 3 us.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ikev2.constants import EncrId, IntegId, PrfId
from ikev2.crypto.keymat import derive_child_keys, derive_ike_keys
from ikev2.crypto.sk import SkCipher
from ikev2.crypto.suites import encr_suite, integ_suite

ROUNDS = 15
MESSAGE_BYTES = 300


def median_us(function: Callable[[], object], number: int = 2000) -> float:
    """Median over ROUNDS runs of the mean time of `number` calls, in microseconds."""
    function()
    runs = timeit.repeat(function, number=number, repeat=ROUNDS)
    return statistics.median(runs) / number * 1e6


def main() -> None:
    gcm = encr_suite(EncrId.AES_GCM_16, 256)
    cbc = encr_suite(EncrId.AES_CBC, 256)
    sha256_128 = integ_suite(IntegId.HMAC_SHA2_256_128)
    prf = PrfId.HMAC_SHA2_256
    ni, nr, shared = os.urandom(32), os.urandom(32), os.urandom(32)
    spi_i, spi_r = os.urandom(8), os.urandom(8)
    _, keys = derive_ike_keys(prf, gcm, None, ni, nr, shared, spi_i, spi_r)

    results: dict[str, float] = {}
    results["ike_key_schedule_gcm256_prf_sha256_us"] = median_us(
        lambda: derive_ike_keys(prf, gcm, None, ni, nr, shared, spi_i, spi_r)
    )
    results["child_keymat_gcm256_us"] = median_us(
        lambda: derive_child_keys(prf, keys.sk_d, gcm, None, ni, nr)
    )
    results["child_keymat_cbc256_sha256_us"] = median_us(
        lambda: derive_child_keys(prf, keys.sk_d, cbc, sha256_128, ni, nr)
    )

    associated = os.urandom(32)
    plaintext = os.urandom(MESSAGE_BYTES)
    counter = iter(range(1 << 62))

    def counter_iv(n: int) -> bytes:  # what the engine does for AEAD: a message counter
        return next(counter).to_bytes(n)

    for label, cipher, iv_source in (
        ("gcm256", SkCipher(gcm, keys.sk_ei, None, b""), counter_iv),
        ("cbc256_sha256_128", SkCipher(cbc, bytes(32), sha256_128, bytes(32)), os.urandom),
    ):
        body = cipher.protect(associated, plaintext, iv_source)
        results[f"sk_protect_{label}_{MESSAGE_BYTES}B_us"] = median_us(
            lambda c=cipher, s=iv_source: c.protect(associated, plaintext, s)
        )
        results[f"sk_unprotect_{label}_{MESSAGE_BYTES}B_us"] = median_us(
            lambda c=cipher, b=body: c.unprotect(associated, b)
        )

    for name, value in results.items():
        print(f"{name:45s} {value:8.2f}")
    print(json.dumps({name: round(value, 2) for name, value in results.items()}))


if __name__ == "__main__":
    main()
