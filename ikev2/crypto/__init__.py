"""The crypto layer: transform table, key derivation, SK payload protection, key exchange, AUTH.

Stateless and built on `cryptography` only. Never imports IO, clocks or the engine; randomness is
always injected by the caller (a `Callable[[int], bytes]`).
"""

from __future__ import annotations
