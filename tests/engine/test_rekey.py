"""CREATE_CHILD_SA: additional children, child rekey (with and without PFS), IKE SA rekey,
lifetimes and kernel expiry (RFC 7296 §1.3, §2.8, §2.18), and rekeys over a lossy link."""

from __future__ import annotations

import collections
import ipaddress
import random
from dataclasses import replace

import pytest

from ikev2.constants import ProtocolId
from ikev2.engine.config import ChildConfig, Timers, TrafficSelectorSpec
from ikev2.engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
)
from ikev2.engine.proposal_strings import parse_proposals

from .pairing import Pair, Side, lifetime_pair, psk_connections, seeded_env, settle


def established_pair(**kwargs: object) -> tuple[Pair, int]:
    pair = Pair(*psk_connections(**kwargs))  # type: ignore[arg-type]
    sa_id = pair.initiate()
    pair.run(until=1)
    assert len(pair.i.of(ChildSaEstablished)) == len(pair.r.of(ChildSaEstablished)) >= 1
    return pair, sa_id


def live_children(side: Side) -> set[tuple[int, int]]:
    return {(c.spi_in, c.spi_out) for sa in side.engine.sas.values() for c in sa.children}


def assert_consistent(pair: Pair, children: int = 1, ike_sas: int = 1) -> None:
    """Both sides hold the same IKE SAs and the same children, mirrored."""
    ike_i = {(sa.spi_i, sa.spi_r) for sa in pair.i.engine.sas.values()}
    ike_r = {(sa.spi_i, sa.spi_r) for sa in pair.r.engine.sas.values()}
    assert ike_i == ike_r and len(ike_i) == ike_sas
    kids_i, kids_r = live_children(pair.i), live_children(pair.r)
    assert kids_i == {(o, i) for i, o in kids_r} and len(kids_i) == children
    for side in (pair.i, pair.r):  # every child's selectors are its own side's, not swapped
        for sa in side.engine.sas.values():
            for c in sa.children:
                assert [t.network for t in c.event.local_ts] == [
                    t.network for t in c.config.local_ts
                ]
                assert [t.network for t in c.event.remote_ts] == [
                    t.network for t in c.config.remote_ts
                ]
    for side in (pair.i, pair.r):  # the events tell the same story as the state
        made = {e.spi_in for e in side.of(ChildSaEstablished)}
        gone = {e.spi_in for e in side.of(ChildSaDeleted)}
        assert {spi for spi, _ in live_children(side)} == made - gone
        assert len(side.of(ChildSaDeleted)) == len(gone)  # never deleted twice


def no_gap(events: list[Event]) -> bool:
    """Make-before-break: once up, the number of live children never drops to zero."""
    live = 0
    seen = False
    for e in events:
        if isinstance(e, ChildSaEstablished):
            live += 1
            seen = True
        elif isinstance(e, ChildSaDeleted):
            live -= 1
            if seen and live == 0:
                return False
    return True


@pytest.mark.parametrize("by_initiator", [True, False])
@pytest.mark.parametrize("esp", ["aes256gcm16", "aes128-sha256-x25519"])
def test_child_rekey_make_before_break(by_initiator: bool, esp: str) -> None:
    pair, _sa_id = established_pair(esp=esp)
    side = pair.i if by_initiator else pair.r
    (old,) = side.of(ChildSaEstablished)
    (sa,) = side.engine.sas.values()
    side.events += side.engine.rekey_child(sa.id, old.spi_in, pair.now)
    pair.run(until=2)
    for s in (pair.i, pair.r):
        first, second = s.of(ChildSaEstablished)
        (deleted,) = s.of(ChildSaDeleted)
        assert deleted.spi_in == first.spi_in and first.reqid == second.reqid
        assert second.inbound.enc_key != first.inbound.enc_key
        assert no_gap(s.events)
    assert_consistent(pair)
    (ci,) = [e for e in pair.i.of(ChildSaEstablished)][1:]
    (cr,) = [e for e in pair.r.of(ChildSaEstablished)][1:]
    assert ci.outbound.enc_key == cr.inbound.enc_key and ci.inbound.enc_key == cr.outbound.enc_key


@pytest.mark.parametrize("by_initiator", [True, False])
def test_ike_rekey_moves_children_and_deletes_old(by_initiator: bool) -> None:
    pair, _ = established_pair()
    side = pair.i if by_initiator else pair.r
    (sa,) = side.engine.sas.values()
    old_spis = (sa.spi_i, sa.spi_r)
    side.events += side.engine.rekey_ike(sa.id, pair.now)
    pair.run(until=2)
    for s in (pair.i, pair.r):
        new = [e for e in s.of(IkeSaEstablished) if e.rekeyed_from is not None]
        assert len(new) == 1 and (new[0].spi_i, new[0].spi_r) != old_spis
        (gone,) = s.of(IkeSaDeleted)
        assert gone.reason == "rekeyed"
        assert not s.of(ChildSaDeleted)
    assert_consistent(pair)
    (new_sa,) = side.engine.sas.values()
    assert new_sa.initiator  # the rekey initiator is the new IKE SA's initiator (§2.18)
    # the new IKE SA works: a child rekey over it completes
    (child,) = new_sa.children
    side.events += side.engine.rekey_child(new_sa.id, child.spi_in, pair.now)
    pair.run(until=3)
    assert_consistent(pair)
    assert len(pair.i.of(ChildSaEstablished)) == 2


def test_two_children_under_one_ike_sa() -> None:
    conn_i, conn_r = psk_connections()
    extra_i = ChildConfig(
        "second",
        (TrafficSelectorSpec(ipaddress.ip_network("10.3.0.0/24")),),
        (TrafficSelectorSpec(ipaddress.ip_network("10.4.0.0/24")),),
        parse_proposals("aes128gcm16", ProtocolId.ESP),
    )
    extra_r = replace(extra_i, local_ts=extra_i.remote_ts, remote_ts=extra_i.local_ts)
    pair = Pair(
        replace(conn_i, children=(*conn_i.children, extra_i)),
        replace(conn_r, children=(*conn_r.children, extra_r)),
    )
    pair.initiate()
    pair.run(until=1)
    assert [e.child for e in pair.i.of(ChildSaEstablished)] == ["net", "second"]
    assert {e.child for e in pair.r.of(ChildSaEstablished)} == {"net", "second"}
    assert_consistent(pair, children=2)


def test_lifetimes_rekey_children_and_ike_sa_on_their_own() -> None:
    timers = Timers(ike_rekey_time=300, ike_life_time=400, dpd_delay=0)
    pair = lifetime_pair(timers, child_rekey=100, child_life=130)
    pair.initiate()
    pair.run(until=1000)
    for s in (pair.i, pair.r):
        assert len(s.of(ChildSaEstablished)) >= 9  # ~every 90–100 s
        assert len([e for e in s.of(IkeSaEstablished) if e.rekeyed_from]) >= 3
        assert no_gap(s.events)
    assert_consistent(pair)


def test_kernel_expire_soft_rekeys_and_hard_deletes() -> None:
    pair, _ = established_pair()
    (child,) = pair.i.of(ChildSaEstablished)
    pair.i.events += pair.i.engine.kernel_expire(ProtocolId.ESP, child.spi_in, False, pair.now)
    pair.run(until=2)
    assert len(pair.i.of(ChildSaEstablished)) == 2
    assert_consistent(pair)
    ((new_spi, _),) = live_children(pair.i)
    pair.i.events += pair.i.engine.kernel_expire(ProtocolId.ESP, new_spi, True, pair.now)
    pair.run(until=3)
    assert_consistent(pair, children=0)


@pytest.mark.parametrize("seed", range(12))
def test_rekeys_over_a_lossy_link_lose_and_duplicate_nothing(seed: int) -> None:
    timers = Timers(retransmit_tries=12, ike_rekey_time=350, ike_life_time=3000, dpd_delay=0)
    pair = lifetime_pair(timers, child_rekey=120, child_life=1000, seed=seed, loss=0.3)
    pair.initiate()
    pair.run(until=1200)
    settle(pair)  # let the exchanges under way finish without loss
    for s in (pair.i, pair.r):
        assert len(s.of(ChildSaEstablished)) >= 5
        assert no_gap(s.events)
    assert_consistent(pair)


@pytest.mark.parametrize("by_initiator", [True, False])
def test_an_ike_rekey_never_reuses_an_spi_in_use(by_initiator: bool) -> None:
    """The new IKE SA's SPI is unique among ours (the old IKE SA keeps its own until deleted)."""
    taken = bytes(range(1, 9))
    spis = collections.deque([taken, taken, bytes(range(2, 10))])
    rng = random.Random(5)

    def spi_bytes(size: int) -> bytes:
        return spis.popleft() if size == 8 and spis else rng.randbytes(size)

    env = replace(seeded_env(3), spi_bytes=spi_bytes)
    conn_i, conn_r = psk_connections()
    pair = Pair(conn_i, conn_r, **({"env_i": env} if by_initiator else {"env_r": env}))
    pair.initiate()
    pair.run(until=1)
    side = pair.i if by_initiator else pair.r
    (sa,) = side.engine.sas.values()
    assert sa.local_spi == taken
    side.events += side.engine.rekey_ike(sa.id, pair.now)
    pair.run(until=pair.now + 5)
    (new,) = side.engine.sas.values()
    assert new.local_spi == bytes(range(2, 10))
    assert_consistent(pair)
