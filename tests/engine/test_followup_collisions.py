"""Collisions while RFC 9370 IKE_FOLLOWUP_KE exchanges are out (issue 15): both peers rekey the
same child, or the IKE SA, with additional key exchanges (x25519 + ML-KEM-768), nonces fixed so
each side wins in turn (RFC 7296 §2.8.1, §2.8.2). Either both start at the same instant (both
follow-ups out during the collision), or the second starts only once the first side's
IKE_FOLLOWUP_KE request is on the wire. No SA may be lost or duplicated, nothing deleted twice,
and every surviving SA's keys agree on both sides. Each test records its row of
docs/collisions.md (tests/engine/collision_table.py) from what it observed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from ikev2.constants import KeId
from ikev2.engine.config import Timers
from ikev2.engine.events import ChildSaDeleted, ChildSaEstablished, IkeSaDeleted, IkeSaEstablished

from .collision_table import SIDES, Row, finish, record
from .pairing import Pair, Side, psk_connections, quiescent
from .test_collisions import (
    Act,
    child_spi,
    losing_nonce_first,
    name,
    rekey_child,
    rekey_ike,
    sides,
)
from .test_rekey import assert_consistent
from .wiretap import Tap

HYBRID = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
PFS = "aes256gcm16-x25519-ke1_mlkem768"
ML_KEM = f"KE1_{KeId.ML_KEM_768.name}"


@pytest.fixture(scope="module", autouse=True)
def results(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    finish(request)


@dataclass
class Run:
    pair: Pair
    tap: Tap
    lead: Side  # who started first (or, at the same instant, the first called)
    other: Side


def established() -> Pair:
    timers = Timers(dpd_delay=0)  # no liveness checks in the wire summary
    conn_i, conn_r = psk_connections(HYBRID, PFS)
    pair = Pair(replace(conn_i, timers=timers), replace(conn_r, timers=timers))
    pair.initiate()
    pair.run(until=1)
    assert len(pair.i.of(ChildSaEstablished)) == len(pair.r.of(ChildSaEstablished)) == 1
    return pair


def followups_from(tap: Tap, sender: str) -> int:
    return sum(1 for s in tap.of("IKE_FOLLOWUP_KE", response=False) if s.sender == sender)


def collide(first: Act, second: Act, lead: str, loser: str | None, *, staggered: bool) -> Run:
    """`lead`'s side does `first`, the other `second`: at the same instant, or (staggered) once
    the lead's IKE_FOLLOWUP_KE request is on the wire, not yet delivered. `loser`'s next nonce
    is the lowest (§2.8.1). Runs until both sides are quiet."""
    pair = established()
    a, b = sides(pair, lead)
    tap = Tap(pair)
    if loser is not None:
        losing_nonce_first(pair, pair.i if loser == "initiator" else pair.r)
    first(a, pair)
    if staggered:
        for _ in range(1000):
            pair._collect()  # the tap sees what is put on the link, before it is delivered
            if followups_from(tap, lead):
                break
            assert pair.step(), "the lead's exchange stopped before its IKE_FOLLOWUP_KE"
        assert followups_from(tap, lead) == 1 and pair.in_flight
    second(b, pair)
    pair.run(until=60)  # every exchange ends within a second here; lifetimes are hours away
    assert quiescent(pair)
    return Run(pair, tap, a, b)


def check(run: Run, *, ike_sas: int = 1) -> None:
    """One IKE SA and one child on both sides with equal keys, every rekey ran its follow-up
    exchange, nothing deleted twice."""
    pair = run.pair
    assert_consistent(pair, children=1, ike_sas=ike_sas)
    for sa_i in pair.i.engine.sas.values():
        (sa_r,) = [s for s in pair.r.engine.sas.values() if s.spi_i == sa_i.spi_i]
        assert sa_i.keys == sa_r.keys
    events_i = {e.spi_in: e for e in pair.i.of(ChildSaEstablished)}
    events_r = {e.spi_in: e for e in pair.r.of(ChildSaEstablished)}
    for sa in pair.i.engine.sas.values():
        for child in sa.children:
            mine, theirs = events_i[child.spi_in], events_r[child.spi_out]
            assert mine.outbound.enc_key == theirs.inbound.enc_key
            assert mine.inbound.enc_key == theirs.outbound.enc_key
    for side in (pair.i, pair.r):
        assert followups_from(run.tap, name(pair, side)) >= 1
        gone = [e.spi_in for e in side.of(ChildSaDeleted)]
        assert len(gone) == len(set(gone))  # never deleted twice
        ike_gone = [e.ike_sa_id for e in side.of(IkeSaDeleted)]
        assert len(ike_gone) == len(set(ike_gone))


def the_child_suite(side: Side) -> str:
    (child,) = [c for sa in side.engine.sas.values() for c in sa.children]
    return str(child.event.suite)


def child_outcome(run: Run) -> str:
    """What became of the child on both sides: the counts of children made and deleted."""
    made = {len(s.of(ChildSaEstablished)) for s in (run.pair.i, run.pair.r)}
    gone = {len(s.of(ChildSaDeleted)) for s in (run.pair.i, run.pair.r)}
    assert len(made) == len(gone) == 1, (made, gone)
    suites = {the_child_suite(s).endswith(ML_KEM) for s in (run.pair.i, run.pair.r)}
    with_kem = "x25519 + ML-KEM-768" if suites == {True} else "NOT hybrid"
    return (
        f"one child ({with_kem}): {made.pop() - 1} made by the rekeys, "
        f"{gone.pop()} deleted (old and redundant)"
    )


def ike_outcome(run: Run) -> str:
    kept = not run.pair.i.of(ChildSaDeleted) and not run.pair.r.of(ChildSaDeleted)
    rekeyed = [
        e for s in (run.pair.i, run.pair.r) for e in s.of(IkeSaEstablished) if e.rekeyed_from
    ]
    hybrid = all(e.suite.endswith(ML_KEM) for e in rekeyed)
    return (
        f"one IKE SA ({'x25519 + ML-KEM-768' if hybrid else 'NOT hybrid'}), "
        f"child {'moved, never deleted' if kept else 'DELETED'}"
    )


@pytest.mark.parametrize("winner", SIDES)
def test_simultaneous_child_rekey_with_followups(winner: str) -> None:
    loser = SIDES[1 - SIDES.index(winner)]
    run = collide(rekey_child, rekey_child, winner, loser, staggered=False)
    check(run)
    result = child_outcome(run)
    assert (
        result
        == "one child (x25519 + ML-KEM-768): 2 made by the rekeys, 2 deleted (old and redundant)"
    )
    wire = run.tap.summary()
    assert wire == (
        "requests: CREATE_CHILD_SA ×2, IKE_FOLLOWUP_KE ×2, INFORMATIONAL ×2; "
        "Delete payloads: ESP ×2"
    )
    row = Row("child rekey × child rekey, with follow-ups", winner, result, wire)
    record("test_simultaneous_child_rekey_with_followups", winner, row)


@pytest.mark.parametrize("winner", SIDES)
def test_simultaneous_ike_rekey_with_followups(winner: str) -> None:
    loser = SIDES[1 - SIDES.index(winner)]
    run = collide(rekey_ike, rekey_ike, winner, loser, staggered=False)
    check(run)
    (survivor,) = sides(run.pair, winner)[0].engine.sas.values()
    assert survivor.initiator  # the winner's rekey made it (§2.18)
    result = ike_outcome(run)
    assert result == "one IKE SA (x25519 + ML-KEM-768), child moved, never deleted"
    wire = run.tap.summary()
    assert wire == (
        "requests: CREATE_CHILD_SA ×2, IKE_FOLLOWUP_KE ×2, INFORMATIONAL ×3; "
        "Delete payloads: IKE ×3"
    )
    row = Row("IKE rekey × IKE rekey, with follow-ups", winner, result, wire)
    record("test_simultaneous_ike_rekey_with_followups", winner, row)


@pytest.mark.parametrize("ike_rekeyer", SIDES)
def test_child_rekey_while_ike_rekey_with_followups(ike_rekeyer: str) -> None:
    run = collide(rekey_ike, rekey_child, ike_rekeyer, None, staggered=False)
    check(run)
    first = run.tap.of("CREATE_CHILD_SA", response=True)[:2]
    deferred = sorted(s.sender for s in first if "TEMPORARY_FAILURE" in s.notify_names)
    hybrid = the_child_suite(run.pair.i).endswith(ML_KEM) and all(
        e.suite.endswith(ML_KEM)
        for s in (run.pair.i, run.pair.r)
        for e in s.of(IkeSaEstablished)
        if e.rekeyed_from
    )
    result = (
        f"{'both' if deferred == list(SIDES) else 'not both'} deferred, then both done: one IKE "
        f"SA and one child ({'x25519 + ML-KEM-768' if hybrid else 'NOT hybrid'})"
    )
    assert result == "both deferred, then both done: one IKE SA and one child (x25519 + ML-KEM-768)"
    wire = run.tap.summary()
    assert wire == (
        "requests: CREATE_CHILD_SA ×4, IKE_FOLLOWUP_KE ×2, INFORMATIONAL ×2; "
        "errors answered: TEMPORARY_FAILURE ×2; Delete payloads: ESP ×1, IKE ×1"
    )
    row = Row("IKE rekey × child rekey, with follow-ups", f"{ike_rekeyer} rekeys the IKE SA",
              result, wire)  # fmt: skip
    record("test_child_rekey_while_ike_rekey_with_followups", ike_rekeyer, row)


@pytest.mark.parametrize("leader", SIDES)
def test_child_rekey_during_the_peers_followup(leader: str) -> None:
    """The leader's child rekey is in its IKE_FOLLOWUP_KE when the peer rekeys the same child;
    the leader's nonce is the lowest, so its nearly finished child is the redundant one: it
    deletes that one, the peer the old one, and the peer's child (made after its own
    follow-up) is the one left."""
    run = collide(rekey_child, rekey_child, leader, leader, staggered=True)
    check(run)
    (lead_request,) = [s for s in run.tap.of("CREATE_CHILD_SA", response=False)
                       if s.sender == leader]  # fmt: skip
    (survivor,) = {c.spi_in for sa in run.lead.engine.sas.values() for c in sa.children}
    assert child_spi(lead_request.proposed_spis[0]) != survivor  # the follower's child stayed
    result = child_outcome(run)
    assert (
        result
        == "one child (x25519 + ML-KEM-768): 2 made by the rekeys, 2 deleted (old and redundant)"
    )
    wire = run.tap.summary()
    assert wire == (
        "requests: CREATE_CHILD_SA ×2, IKE_FOLLOWUP_KE ×2, INFORMATIONAL ×2; "
        "Delete payloads: ESP ×2"
    )
    row = Row("child rekey × child rekey, during the peer's follow-up",
              f"{leader} leads (and loses)", result, wire)  # fmt: skip
    record("test_child_rekey_during_the_peers_followup", leader, row)


@pytest.mark.parametrize("leader", SIDES)
def test_ike_rekey_during_the_peers_followup(leader: str) -> None:
    """The leader's IKE rekey is in its IKE_FOLLOWUP_KE when the peer rekeys the IKE SA too;
    the leader loses: its new IKE SA is deleted, and the children wait on the old one until
    the peer's new IKE SA is made here (its follow-up done), then move to it."""
    run = collide(rekey_ike, rekey_ike, leader, leader, staggered=True)
    check(run)
    (survivor,) = run.other.engine.sas.values()
    assert survivor.initiator  # the follower's rekey made it (§2.18)
    result = ike_outcome(run)
    assert result == "one IKE SA (x25519 + ML-KEM-768), child moved, never deleted"
    wire = run.tap.summary()
    assert wire == (
        "requests: CREATE_CHILD_SA ×2, IKE_FOLLOWUP_KE ×2, INFORMATIONAL ×2; "
        "Delete payloads: IKE ×2"
    )
    row = Row("IKE rekey × IKE rekey, during the peer's follow-up",
              f"{leader} leads (and loses)", result, wire)  # fmt: skip
    record("test_ike_rekey_during_the_peers_followup", leader, row)
