"""Real IKE messages from an in-process engine, for tests that mutate them."""

from __future__ import annotations

from ikev2.engine import Engine
from ikev2.engine.config import EngineConfig
from ikev2.testing.sources import psk_initiator


def init_request() -> bytes:
    """An IKE_SA_INIT request (x25519, AES-GCM) as a throwaway initiator sends it."""
    conn = psk_initiator(
        "x",
        "127.0.0.3",
        "127.0.0.2",
        b"throwaway",
        local_id=b"x.example",
        child="x",
        nets=("10.9.0.0/24", "10.8.0.0/24"),
    )
    engine = Engine(EngineConfig((conn,)))
    engine.initiate("x", 0.0)
    [datagram] = engine.datagrams_to_send()
    return datagram.data
