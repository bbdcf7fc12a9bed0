"""Inbound child SPIs are unique within an engine (engine/spis.py, issue 17: at 100,000
children a random 32-bit draw repeats about once, and the kernel refuses the second SA)."""

from __future__ import annotations

import itertools

from ikev2.engine.config import EngineConfig
from ikev2.engine.env import Env
from ikev2.engine.events import ChildSaEstablished
from ikev2.engine.spis import REBUILD_FLOOR, SpiRegistry

from .pairing import Pair, psk_connections, seeded_env


def test_a_repeated_draw_is_drawn_again() -> None:
    draws = iter(
        [b"\x00\x00\x00\x05", b"\x12\x34\x56\x78", b"\x12\x34\x56\x78", b"\x0a\xbc\xde\xf0"]
    )
    registry = SpiRegistry(tuple)
    assert registry.draw(lambda n: next(draws)) == 0x12345678  # 5 is reserved (RFC 4303)
    assert registry.draw(lambda n: next(draws)) == 0x0ABCDEF0  # not 0x12345678 again


def test_the_registry_forgets_what_no_child_holds_any_more() -> None:
    counter = itertools.count(1000)
    registry = SpiRegistry(tuple)  # no live SAs: every rebuild empties it
    for _ in range(3 * REBUILD_FLOOR):
        registry.draw(lambda n: next(counter).to_bytes(4, "big"))
    assert len(registry._issued) <= REBUILD_FLOOR


def test_two_children_never_share_an_inbound_spi_even_when_the_random_source_repeats() -> None:
    """A responder whose SPI source gives the same value again and again still gives every
    child its own inbound SPI (the initiator draws them normally)."""
    repeating = itertools.cycle([b"\xab\xcd\x00\x01", b"\xab\xcd\x00\x01", b"\xab\xcd\x00\x02"])
    base = seeded_env(7)

    def spi_bytes(n: int) -> bytes:
        return next(repeating) if n == 4 else base.random_bytes(n)

    env_r = Env(random_bytes=base.random_bytes, utc_now=base.utc_now, spi_bytes=spi_bytes)
    conn_i, conn_r = psk_connections()
    pair = Pair(conn_i, conn_r, env_r=env_r, engine_r=EngineConfig((conn_r,)))
    pair.initiate()
    pair.run(until=5)
    pair.initiate()
    pair.run(until=10)
    spis = [e.spi_in for e in pair.r.of(ChildSaEstablished)]
    assert len(spis) == 2 and len(set(spis)) == 2, spis
