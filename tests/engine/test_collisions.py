"""The collision matrix (RFC 7296 §2.8.1, §2.8.2, §2.25): two operations on the same SA started
by both peers at the same instant, with nonces fixed so that each side wins in turn. Every case
must end with the same SA set on both sides: no duplicate, no missing SA, nothing deleted twice.

Each test watches the link with a wire tap (tests/engine/wiretap.py) and builds its row of the
table from what it observed (the notify types and Delete payloads on the wire, which SAs
survived, the SA events on each side), then asserts that observation, so a row can only say
what the test saw and the test fails when the behaviour changes. The table and how it is
published (docs/collisions.md, only on request): tests/engine/collision_table.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from ikev2.engine.config import Timers
from ikev2.engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    IkeSaDeleted,
    IkeSaEstablished,
)

from .collision_table import SIDES, Row, finish, record
from .pairing import Pair, Side, psk_connections
from .test_rekey import assert_consistent
from .wiretap import Tap

LOW, HIGH = b"\x00" * 32, b"\xff" * 32


@pytest.fixture(scope="module", autouse=True)
def results(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    finish(request)


def established() -> tuple[Pair, Tap]:
    timers = Timers(dpd_delay=0)
    conn_i, conn_r = psk_connections()
    pair = Pair(replace(conn_i, timers=timers), replace(conn_r, timers=timers))
    pair.initiate()
    pair.run(until=1)
    return pair, Tap(pair)


def the_sa(side: Side) -> int:
    (sa_id,) = side.engine.sas
    return sa_id


def the_child(side: Side) -> int:
    ((spi_in, _),) = {(c.spi_in, c.spi_out) for sa in side.engine.sas.values() for c in sa.children}
    return spi_in


def children(side: Side) -> set[int]:
    return {c.spi_in for sa in side.engine.sas.values() for c in sa.children}


def sides(pair: Pair, winner: str) -> tuple[Side, Side]:
    return (pair.i, pair.r) if winner == "initiator" else (pair.r, pair.i)


def name(pair: Pair, side: Side) -> str:
    return "initiator" if side is pair.i else "responder"


def losing_nonce_first(pair: Pair, loser: Side) -> None:
    """The loser's next nonce (its own request's) is the lowest of the four (§2.8.1)."""
    (pair.nonces_i if loser is pair.i else pair.nonces_r).append(LOW)
    (pair.nonces_r if loser is pair.i else pair.nonces_i).append(HIGH)


def deleted_reasons(side: Side, spi_in: int) -> list[str]:
    return [e.reason for e in side.of(ChildSaDeleted) if e.spi_in == spi_in]


def same_on_both(pair: Pair, fact: Callable[[Side], object]) -> object:
    """A fact that must read the same on both sides (the table says "on both sides")."""
    value = fact(pair.i)
    assert fact(pair.r) == value
    return value


def times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def errors_from(tap: Tap, kind: str, sender: str) -> list[str]:
    """The error notifies `sender` answered `kind` requests with, in order (§3.10.1)."""
    return [
        n
        for s in tap.of(kind, response=True)
        if s.sender == sender
        for code, n in zip(s.notifies, s.notify_names, strict=True)
        if code < 16384
    ]


def refused(errors: list[str]) -> str:
    return f"refused with {', '.join(dict.fromkeys(errors))}" if errors else "not refused"


def child_spi(spi: bytes) -> int:
    return int.from_bytes(spi, "big")


Act = Callable[[Side, Pair], None]


def rekey_child(side: Side, pair: Pair) -> None:
    side.events += side.engine.rekey_child(the_sa(side), the_child(side), pair.now)


def delete_child(side: Side, pair: Pair) -> None:
    side.events += side.engine.terminate_child(the_sa(side), the_child(side), pair.now)


def rekey_ike(side: Side, pair: Pair) -> None:
    side.events += side.engine.rekey_ike(the_sa(side), pair.now)


def delete_ike(side: Side, pair: Pair) -> None:
    side.events += side.engine.terminate(the_sa(side), pair.now)


@pytest.mark.parametrize("winner", SIDES)
def test_simultaneous_child_rekey(winner: str) -> None:
    pair, tap = established()
    win, lose = sides(pair, winner)
    old_win, old_lose = the_child(win), the_child(lose)
    losing_nonce_first(pair, lose)
    rekey_child(win, pair)
    rekey_child(lose, pair)
    pair.run(until=10)
    assert_consistent(pair, children=1)
    # the new child each side asked for: its inbound SPI is the one its request proposed
    (win_request,) = [s for s in tap.of("CREATE_CHILD_SA", response=False) if s.sender == winner]
    (survivor,) = children(win)
    owner = "winner's" if child_spi(win_request.proposed_spis[0]) == survivor else "loser's"
    # the winner deletes the old child, the loser its own redundant new one (§2.8.1)
    assert deleted_reasons(win, old_win) == ["deleted by us"]
    assert deleted_reasons(lose, old_lose) == ["deleted by peer"]
    redundant = [e for e in lose.of(ChildSaDeleted) if e.spi_in != old_lose]
    assert [e.reason for e in redundant] == ["deleted by us"]
    made = same_on_both(pair, lambda s: len(s.of(ChildSaEstablished)))
    gone = same_on_both(pair, lambda s: len(s.of(ChildSaDeleted)))
    assert (made, gone) == (3, 2)  # the old, two new; the old and the redundant one gone
    result = f"one new child ({owner}); old and redundant deleted"
    assert result == "one new child (winner's); old and redundant deleted"
    wire = tap.summary()
    assert wire == "requests: CREATE_CHILD_SA ×2, INFORMATIONAL ×2; Delete payloads: ESP ×2"
    record(
        "test_simultaneous_child_rekey",
        winner,
        Row("child rekey × child rekey", winner, result, wire),
    )


@pytest.mark.parametrize("winner", SIDES)
def test_simultaneous_ike_rekey(winner: str) -> None:
    pair, tap = established()
    win, lose = sides(pair, winner)
    child = the_child(win)
    losing_nonce_first(pair, lose)
    rekey_ike(win, pair)
    rekey_ike(lose, pair)
    pair.run(until=60)
    assert_consistent(pair, children=1, ike_sas=1)
    (win_request,) = [s for s in tap.of("CREATE_CHILD_SA", response=False) if s.sender == winner]
    (survivor,) = win.engine.sas.values()
    assert survivor.initiator  # the winner's rekey made it (§2.18)
    owner = "winner's" if survivor.spi_i == win_request.proposed_spis[0] else "loser's"
    kept = the_child(win) == child and not win.of(ChildSaDeleted) and not lose.of(ChildSaDeleted)
    for side in (win, lose):
        made = {e.ike_sa_id for e in side.of(IkeSaEstablished)}
        gone = [e.ike_sa_id for e in side.of(IkeSaDeleted)]
        (alive,) = side.engine.sas
        # the old IKE SA and the redundant new one, each once
        assert len(made) == 3 and sorted(gone) == sorted(made - {alive})
    result = (
        f"{owner} new IKE SA {'keeps' if kept else 'loses'} the child; old and redundant deleted"
    )
    assert result == "winner's new IKE SA keeps the child; old and redundant deleted"
    wire = tap.summary()
    assert wire == "requests: CREATE_CHILD_SA ×2, INFORMATIONAL ×3; Delete payloads: IKE ×3"
    record(
        "test_simultaneous_ike_rekey", winner, Row("IKE rekey × IKE rekey", winner, result, wire)
    )


@pytest.mark.parametrize("rekeyer", SIDES)
def test_child_rekey_against_child_delete(rekeyer: str) -> None:
    pair, tap = established()
    rek, dele = sides(pair, rekeyer)
    rekey_child(rek, pair)
    delete_child(dele, pair)
    pair.run(until=10)
    assert_consistent(pair, children=0)
    deleted = same_on_both(pair, lambda s: len(s.of(ChildSaDeleted)))
    made = same_on_both(pair, lambda s: len(s.of(ChildSaEstablished)))
    assert (deleted, made) == (1, 1)  # the rekey made no child
    errors = errors_from(tap, "CREATE_CHILD_SA", name(pair, dele))
    result = f"child deleted, rekey {refused(errors)}"
    assert result == "child deleted, rekey refused with TEMPORARY_FAILURE"  # §2.25.1
    wire = tap.summary()
    assert wire == (
        "requests: CREATE_CHILD_SA ×1, INFORMATIONAL ×1; "
        "errors answered: TEMPORARY_FAILURE ×1; Delete payloads: ESP ×1"
    )
    row = Row("child rekey × child delete", f"{rekeyer} rekeys", result, wire)
    record("test_child_rekey_against_child_delete", rekeyer, row)


def test_child_delete_against_child_delete() -> None:
    pair, tap = established()
    delete_child(pair.i, pair)
    delete_child(pair.r, pair)
    pair.run(until=10)
    assert_consistent(pair, children=0)
    deleted = same_on_both(pair, lambda s: len(s.of(ChildSaDeleted)))
    assert isinstance(deleted, int)
    result = f"child deleted {times(deleted)} on each side"
    assert result == "child deleted once on each side"
    wire = tap.summary()
    assert wire == "requests: INFORMATIONAL ×2; Delete payloads: ESP ×2"
    row = Row("child delete × child delete", "both", result, wire)
    record("test_child_delete_against_child_delete", "", row)


@pytest.mark.parametrize("ike_rekeyer", SIDES)
def test_child_rekey_while_ike_rekey(ike_rekeyer: str) -> None:
    pair, tap = established()
    ike_side, child_side = sides(pair, ike_rekeyer)
    rekey_ike(ike_side, pair)
    rekey_child(child_side, pair)
    pair.run(until=300)  # both answer TEMPORARY_FAILURE (§2.25.2), both retry later
    assert_consistent(pair, children=1, ike_sas=1)
    first = tap.of("CREATE_CHILD_SA", response=True)[:2]
    deferred = sorted(s.sender for s in first if "TEMPORARY_FAILURE" in s.notify_names)
    done = same_on_both(
        pair,
        lambda s: (
            [e.reason for e in s.of(IkeSaDeleted)] == ["rekeyed"]
            and len(s.of(ChildSaEstablished)) == 2
            and len(s.of(ChildSaDeleted)) == 1
        ),
    )
    ike_sas = same_on_both(pair, lambda s: len(s.engine.sas))
    kids = same_on_both(pair, lambda s: len(children(s)))
    assert (ike_sas, kids) == (1, 1)
    result = (
        f"{'both' if deferred == list(SIDES) else 'not both'} deferred, "
        f"then {'both done' if done else 'not both done'}: one IKE SA, one child"
    )
    assert result == "both deferred, then both done: one IKE SA, one child"
    wire = tap.summary()
    assert wire == (
        "requests: CREATE_CHILD_SA ×4, INFORMATIONAL ×2; "
        "errors answered: TEMPORARY_FAILURE ×2; Delete payloads: ESP ×1, IKE ×1"
    )
    row = Row("IKE rekey × child rekey", f"{ike_rekeyer} rekeys the IKE SA", result, wire)
    record("test_child_rekey_while_ike_rekey", ike_rekeyer, row)


@pytest.mark.parametrize("deleter", SIDES)
def test_ike_delete_against_ike_rekey(deleter: str) -> None:
    pair, tap = established()
    dele, rek = sides(pair, deleter)
    delete_ike(dele, pair)
    rekey_ike(rek, pair)
    pair.run(until=60)
    assert_consistent(pair, children=0, ike_sas=0)
    gone = same_on_both(pair, lambda s: (len(s.of(IkeSaDeleted)), len(s.of(ChildSaDeleted))))
    assert gone == (1, 1)
    errors = errors_from(tap, "CREATE_CHILD_SA", name(pair, dele))
    result = f"IKE SA and child deleted on both sides; rekey {refused(errors)}"
    assert result == "IKE SA and child deleted on both sides; rekey refused with TEMPORARY_FAILURE"
    wire = tap.summary()
    assert wire == (
        "requests: CREATE_CHILD_SA ×1, INFORMATIONAL ×1; "
        "errors answered: TEMPORARY_FAILURE ×1; Delete payloads: IKE ×1"
    )
    row = Row("IKE delete × IKE rekey", f"{deleter} deletes", result, wire)
    record("test_ike_delete_against_ike_rekey", deleter, row)


def test_ike_delete_against_ike_delete() -> None:
    pair, tap = established()
    delete_ike(pair.i, pair)
    delete_ike(pair.r, pair)
    pair.run(until=60)
    assert_consistent(pair, children=0, ike_sas=0)
    gone = same_on_both(pair, lambda s: (len(s.of(IkeSaDeleted)), len(s.of(ChildSaDeleted))))
    assert gone == (1, 1)
    result = f"deleted {times(gone[0])} on each side"  # type: ignore[index]
    assert result == "deleted once on each side"
    wire = tap.summary()
    assert wire == "requests: INFORMATIONAL ×2; Delete payloads: IKE ×2"
    record(
        "test_ike_delete_against_ike_delete",
        "",
        Row("IKE delete × IKE delete", "both", result, wire),
    )
