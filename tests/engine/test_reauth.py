"""IKE SA reauthentication (RFC 7296 §2.8.3; strongSwan's reauth_time and make_before_break):
a new IKE SA with full authentication takes over every child, in both roles, make-before-break
and break-before-make, on its own timer, over a lossy link, and when the peer refuses it."""

from __future__ import annotations

import gc
import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest

from ikev2.config import parse_config
from ikev2.constants import ExchangeType, NotifyType, ProtocolId
from ikev2.engine import reauth
from ikev2.engine.config import ChildConfig, ConnectionConfig, EngineConfig, Timers
from ikev2.engine.config import TrafficSelectorSpec as Ts
from ikev2.engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    Datagram,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
)
from ikev2.engine.ike_sa import IkeSa
from ikev2.engine.proposal_strings import parse_proposals
from ikev2.engine.state import IkeState
from ikev2.engine.tasks import ike_auth
from ikev2.wire import NotifyPayload

from .pairing import Pair, Side, psk_connections, settle
from .test_rekey import assert_consistent, live_children, no_gap

CHILDREN = ("net", "second", "third")
EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "config" / "example.toml"


def connections(children: int = 2, **changes: object) -> tuple[ConnectionConfig, ConnectionConfig]:
    """The PSK pair of pairing.py with `children` children (distinct selectors, one reqid each)."""
    conn_i, conn_r = psk_connections()
    extra_i = [
        ChildConfig(
            CHILDREN[n],
            (Ts(ipaddress.ip_network(f"10.{2 * n + 1}.0.0/24")),),
            (Ts(ipaddress.ip_network(f"10.{2 * n + 2}.0.0/24")),),
            parse_proposals("aes128gcm16", ProtocolId.ESP),
        )
        for n in range(1, children)
    ]
    extra_r = [replace(c, local_ts=c.remote_ts, remote_ts=c.local_ts) for c in extra_i]
    conn_i = replace(conn_i, children=(*conn_i.children, *extra_i), **changes)  # type: ignore[arg-type]
    conn_r = replace(conn_r, children=(*conn_r.children, *extra_r), **changes)  # type: ignore[arg-type]
    return conn_i, conn_r


def established(pair: Pair, children: int = 2) -> None:
    pair.initiate()
    pair.run(until=pair.now + 1)
    for side in (pair.i, pair.r):
        assert len(side.of(ChildSaEstablished)) == children
    assert_consistent(pair, children=children)


def only_sa(side: Side) -> IkeSa:
    (sa,) = side.engine.sas.values()
    return sa


def snapshot(side: Side) -> tuple[int, bytes, dict[str, int], set[int]]:
    """The IKE SA's id and SPI, each child's reqid by name, and the inbound child SPIs."""
    sa = only_sa(side)
    return (
        sa.id,
        sa.spi_i + sa.spi_r,
        {c.config.name: c.reqid for c in sa.children},
        {c.spi_in for c in sa.children},
    )


def replaced_before_deleted(events: list[Event], old_spis: set[int]) -> bool:
    """Make-before-break: each old child is deleted only after a new child with its name is up."""
    up: set[str] = set()
    for e in events:
        if isinstance(e, ChildSaEstablished) and e.spi_in not in old_spis:
            up.add(e.child)
        elif isinstance(e, ChildSaDeleted) and e.spi_in in old_spis and e.child not in up:
            return False
    return True


def no_gap_per_child(events: list[Event]) -> bool:
    """Once a child config is up, it always has at least one live child SA (its selectors never
    fall between two SAs)."""
    live: dict[str, int] = {}
    for e in events:
        if isinstance(e, ChildSaEstablished):
            live[e.child] = live.get(e.child, 0) + 1
        elif isinstance(e, ChildSaDeleted):
            live[e.child] -= 1
            if live[e.child] == 0:
                return False
    return True


def assert_replaced(pair: Pair, before: dict[str, tuple[int, bytes, dict[str, int], set[int]]]):  # type: ignore[no-untyped-def]
    """One IKE SA per side, a new one, with the same child configs and new child SPIs."""
    for name, side in (("i", pair.i), ("r", pair.r)):
        old_id, old_spis, old_reqids, old_children = before[name]
        new_id, new_spis, reqids, children = snapshot(side)
        assert new_id != old_id and new_spis != old_spis
        assert set(reqids) == set(old_reqids)
        assert not children & old_children
        gone = [e for e in side.of(IkeSaDeleted) if e.ike_sa_id == old_id]
        assert len(gone) == 1
        assert {e.spi_in for e in side.of(ChildSaDeleted)} == old_children


@pytest.fixture
def auth_payloads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """(IKE SA id, INITIAL_CONTACT sent?) for every IKE_AUTH request built."""
    seen: list[tuple[int, bool]] = []
    build = ike_auth.IkeAuthExchange.build_i

    def spy(self: ike_auth.IkeAuthExchange, sa: IkeSa, now: float):  # type: ignore[no-untyped-def]
        payloads = build(self, sa, now)
        contact = any(
            isinstance(p, NotifyPayload) and p.notify_type == NotifyType.INITIAL_CONTACT
            for p in payloads
        )
        seen.append((sa.id, contact))
        return payloads

    monkeypatch.setattr(ike_auth.IkeAuthExchange, "build_i", spy)
    return seen


@pytest.mark.parametrize("children", [2, 3])
@pytest.mark.parametrize("by_initiator", [True, False])
def test_make_before_break(
    by_initiator: bool, children: int, auth_payloads: list[tuple[int, bool]]
) -> None:
    pair = Pair(*connections(children))
    established(pair, children)
    before = {"i": snapshot(pair.i), "r": snapshot(pair.r)}
    side, peer = (pair.i, pair.r) if by_initiator else (pair.r, pair.i)
    old = only_sa(side)
    side.events += side.engine.reauthenticate(old.id, pair.now)
    most_on_peer = 1
    deadline = pair.now + 5
    while pair.now < deadline and pair.step():  # the peer keeps both until told (unique=no)
        most_on_peer = max(most_on_peer, len(peer.engine.sas))
    assert most_on_peer == 2
    assert_replaced(pair, before)
    assert_consistent(pair, children=children)
    new = only_sa(side)
    assert new.initiator  # the side that reauthenticates initiates the new IKE SA
    (event,) = [e for e in side.of(IkeSaEstablished) if e.reauth_of is not None]
    assert event.reauth_of == old.id and event.ike_sa_id == new.id
    (gone,) = side.of(IkeSaDeleted)
    assert gone.reason == "reauthenticated"
    (gone,) = peer.of(IkeSaDeleted)
    assert gone.reason == "deleted by peer"
    for s in (pair.i, pair.r):
        old_spis = before["i" if s is pair.i else "r"][3]
        assert replaced_before_deleted(s.events, old_spis)
        assert no_gap_per_child(s.events)
        # the same reqids on both sides: the kernel policies stay where they are
        assert snapshot(s)[2] == before["i" if s is pair.i else "r"][2]
    # the first IKE_AUTH announced INITIAL_CONTACT; the reauthentication's did not (§2.8.3)
    assert [contact for _sa, contact in auth_payloads] == [True, False]
    assert auth_payloads[1][0] == new.id


@pytest.mark.parametrize("by_initiator", [True, False])
def test_break_before_make(by_initiator: bool) -> None:
    conn_i, conn_r = connections(2)
    if by_initiator:
        conn_i = replace(conn_i, make_before_break=False)
    else:
        conn_r = replace(conn_r, make_before_break=False)
    pair = Pair(conn_i, conn_r)
    established(pair)
    before = {"i": snapshot(pair.i), "r": snapshot(pair.r)}
    side = pair.i if by_initiator else pair.r
    side.events += side.engine.reauthenticate(only_sa(side).id, pair.now)
    pair.run(until=pair.now + 5)
    assert_replaced(pair, before)
    assert_consistent(pair, children=2)
    for s, key in ((pair.i, "i"), (pair.r, "r")):
        old_spis = before[key][3]
        kinds = [
            "old gone" if isinstance(e, ChildSaDeleted) else "new up"
            for e in s.events
            if isinstance(e, ChildSaDeleted)
            or (isinstance(e, ChildSaEstablished) and e.spi_in not in old_spis)
        ]
        assert kinds == ["old gone"] * 2 + ["new up"] * 2  # break first, then make
        assert len(s.of(IkeSaEstablished)) == 2
    assert only_sa(side).initiator
    assert snapshot(side)[2] == before["i" if side is pair.i else "r"][2]


@pytest.mark.parametrize("on_initiator", [True, False])
def test_reauth_time_fires_on_its_own_side_only(on_initiator: bool) -> None:
    timers = Timers(reauth_time=300, dpd_delay=0)
    conn_i, conn_r = connections(2)
    if on_initiator:
        conn_i = replace(conn_i, timers=timers)
    else:
        conn_r = replace(conn_r, timers=timers)
    pair = Pair(conn_i, conn_r)
    established(pair)
    pair.run(until=1000)
    side, peer = (pair.i, pair.r) if on_initiator else (pair.r, pair.i)
    reauths = [e for e in side.of(IkeSaEstablished) if e.reauth_of is not None]
    assert len(reauths) == 3  # ~270–300 s apart (jitter), up to 1000 s
    assert all(e.initiator for e in reauths)
    assert not [e for e in peer.of(IkeSaEstablished) if e.reauth_of is not None]
    assert not [e for s in (pair.i, pair.r) for e in s.of(IkeSaEstablished) if e.rekeyed_from]
    for s in (pair.i, pair.r):
        assert no_gap_per_child(s.events)
        assert len(s.of(ChildSaEstablished)) == 2 * 4
    assert_consistent(pair, children=2)


def test_reauth_time_equal_to_rekey_time_reauthenticates() -> None:
    timers = Timers(ike_rekey_time=300, reauth_time=300, ike_life_time=330, dpd_delay=0)
    conn_i, conn_r = connections(1, timers=timers)
    pair = Pair(conn_i, conn_r)
    established(pair, 1)
    pair.run(until=1000)
    for s in (pair.i, pair.r):
        assert not [e for e in s.of(IkeSaEstablished) if e.rekeyed_from]
        assert not [e for e in s.of(IkeSaDeleted) if "lifetime" in e.reason]
    reauths = [e for s in (pair.i, pair.r) for e in s.of(IkeSaEstablished) if e.reauth_of]
    assert len(reauths) == 3  # every ~270–300 s, by whichever side comes first
    assert_consistent(pair, children=1)


def test_rekeys_keep_the_reauthentication_deadline() -> None:
    """§2.8.3: rekeying is not reauthenticating; the deadline survives IKE rekeys."""
    timers = Timers(ike_rekey_time=100, reauth_time=350, ike_life_time=400, dpd_delay=0)
    conn_i, conn_r = connections(1)
    pair = Pair(replace(conn_i, timers=timers), conn_r)
    established(pair, 1)
    pair.run(until=350)
    rekeys = [e for e in pair.i.of(IkeSaEstablished) if e.rekeyed_from]
    assert len(rekeys) >= 2
    assert [e for e in pair.i.of(IkeSaEstablished) if e.reauth_of]
    assert_consistent(pair, children=1)


def lossy(children: int, seed: int, *, by_initiator: bool = True) -> Pair:
    """30 % loss, 12 retransmits, child rekeys every ~150 s, reauth_time 300 s on one side."""
    timers = Timers(retransmit_tries=12, reauth_time=300, ike_life_time=3000, dpd_delay=0)
    conn_i, conn_r = connections(children)
    kids_i = tuple(replace(c, rekey_time=150, life_time=1000) for c in conn_i.children)
    kids_r = tuple(replace(c, rekey_time=150, life_time=1000) for c in conn_r.children)
    off = replace(timers, reauth_time=0)
    return Pair(
        replace(conn_i, timers=timers if by_initiator else off, children=kids_i),
        replace(conn_r, timers=off if by_initiator else timers, children=kids_r),
        seed=seed,
        loss=0.3,
    )


@pytest.mark.parametrize("seed", range(16))
def test_reauth_over_a_lossy_link_loses_and_duplicates_nothing(seed: int) -> None:
    pair = lossy(2, seed)
    pair.initiate()
    pair.run(until=1000)
    settle(pair)
    for s in (pair.i, pair.r):
        names = sorted(c.config.name for sa in s.engine.sas.values() for c in sa.children)
        assert names == ["net", "second"]  # none lost, none twice
        assert no_gap(s.events) and no_gap_per_child(s.events)
    assert [e for e in pair.i.of(IkeSaEstablished) if e.reauth_of]
    assert_consistent(pair, children=2)


@pytest.mark.parametrize(
    ("by_initiator", "seed"), [(False, 2), (False, 10), (False, 15), (True, 24)]
)
def test_reauth_of_three_children_over_a_lossy_link(by_initiator: bool, seed: int) -> None:
    """Seeds where the responder's attempt hung on IKE_AUTH after the peer dropped the
    half-open IKE SA, and where the initiator lost a child still being created."""
    pair = lossy(3, seed, by_initiator=by_initiator)
    pair.initiate()
    pair.run(until=1500, max_steps=200_000)
    settle(pair)
    side = pair.i if by_initiator else pair.r
    assert [e for e in side.of(IkeSaEstablished) if e.reauth_of]
    for s in (pair.i, pair.r):
        assert len(s.engine.peers._keys) == len(s.engine.sas)
    assert_consistent(pair, children=3)


def test_refused_reauthentication_keeps_the_old_sa_and_retries() -> None:
    conn_i, conn_r = connections(2)
    pair = Pair(conn_i, conn_r)
    established(pair)
    before_i, before_r = snapshot(pair.i), snapshot(pair.r)
    # the peer now expects another PSK: it refuses our IKE_AUTH (AUTHENTICATION_FAILED)
    wrong = replace(conn_r.remote_auth, psk=b"another secret entirely, for this test")
    pair.r.engine.update_config(EngineConfig((replace(conn_r, remote_auth=wrong),)))
    pair.i.events += pair.i.engine.reauthenticate(before_i[0], pair.now)
    pair.run(until=pair.now + 100)
    failed = pair.i.of(IkeSaFailed)
    assert len(failed) >= 2  # a retry after RETRY_AFTER_FAILURE failed too
    assert all(e.notify is NotifyType.AUTHENTICATION_FAILED for e in failed)
    assert snapshot(pair.i) == before_i and snapshot(pair.r) == before_r
    for s in (pair.i, pair.r):
        assert not s.of(ChildSaDeleted) and not s.of(IkeSaDeleted)
    assert_consistent(pair, children=2)
    # once the peer accepts us again, the next attempt replaces the old IKE SA
    pair.r.engine.update_config(EngineConfig((conn_r,)))
    pair.run(until=pair.now + reauth.RETRY_AFTER_FAILURE + reauth.CHECK_INTERVAL + 5)
    assert_replaced(pair, {"i": before_i, "r": before_r})
    assert_consistent(pair, children=2)


def test_failing_reauthentication_ends_at_the_hard_lifetime() -> None:
    timers = Timers(reauth_time=100, ike_life_time=400, dpd_delay=0)
    conn_i, conn_r = connections(1)
    pair = Pair(replace(conn_i, timers=timers), conn_r)
    established(pair, 1)
    wrong = replace(conn_r.remote_auth, psk=b"another secret entirely, for this test")
    pair.r.engine.update_config(EngineConfig((replace(conn_r, remote_auth=wrong),)))
    pair.run(until=399)
    assert len(pair.i.of(IkeSaFailed)) >= 3 and not pair.i.of(IkeSaDeleted)
    pair.run(until=420)
    (gone,) = pair.i.of(IkeSaDeleted)
    assert gone.reason == "deleted by us"
    assert not pair.i.engine.sas and not pair.r.engine.sas
    assert_consistent(pair, children=0, ike_sas=0)


def test_a_new_ike_sa_reauthenticates_only_once_it_replaced_the_old_one() -> None:
    pair = Pair(*connections(2))
    established(pair)
    old = only_sa(pair.i)
    pair.i.events += pair.i.engine.reauthenticate(old.id, pair.now)
    while old.reauth_by is None or old.reauth_by.state is not IkeState.ESTABLISHED:
        assert pair.step()
    new = old.reauth_by
    assert reauth.completing(new)  # its second child is still being made
    new.reauth_at = pair.now  # its own reauth_time comes now
    new.touch()
    pair.i.events += pair.i.engine.reauthenticate(new.id, pair.now)  # and a command too
    pair.i.events += pair.i.engine.handle_timer(pair.now)
    assert len(pair.i.engine.sas) == 2 and new.reauth_by is None
    assert new.reauth_at is not None and new.reauth_at > pair.now  # it looks again later
    pair.run(until=pair.now + 5)
    assert only_sa(pair.i) is new
    assert_consistent(pair, children=2)
    pair.run(until=pair.now + reauth.CHECK_INTERVAL)  # then the postponed one goes ahead
    assert [e for e in pair.i.of(IkeSaEstablished) if e.reauth_of == new.id]
    assert_consistent(pair, children=2)


def test_reauthenticate_refuses_what_it_cannot_do() -> None:
    pair = Pair(*connections(1))
    established(pair, 1)
    sa = only_sa(pair.i)
    assert pair.i.engine.reauthenticate(12345, pair.now) == []
    pair.i.engine.reauthenticate(sa.id, pair.now)
    assert sa.reauth_by is not None
    assert not reauth.start(sa, pair.now)  # one under way already
    pair.run(until=pair.now + 5)
    assert len(pair.i.engine.sas) == 1 and sa.id not in pair.i.engine.sas
    assert live_children(pair.i)


def test_config_keys() -> None:
    text = EXAMPLE.read_text()
    base = parse_config(text, EXAMPLE).engine.connections[0]
    assert base.timers.reauth_time == 0 and base.make_before_break
    text = text.replace(
        'rekey_time = "4h"        # IKE SA rekeying',
        'rekey_time = "4h"\nreauth_time = "1h"\nmake_before_break = false',
    )
    conn = parse_config(text, EXAMPLE).engine.connections[0]
    assert conn.timers.reauth_time == 3600 and not conn.make_before_break
    assert conn.timers.ike_life_time == 3600 + 1440  # over_time: 10 % of the longer time


# --- regressions: attempts that race other exchanges, fail late, hang, or outlive the config
def lose(
    pair: Pair, sa: IkeSa, exchange: int, until: float = 1e9, *, answers: bool = False
) -> None:
    """Every request of this exchange type the initiator sends on `sa` (or every answer of the
    peer, with `answers`) is lost until `until`."""
    sender = pair.r if answers else pair.i

    def tamper(side: Side, d: Datagram) -> Datagram | None:
        ours = side is sender and d.data[:8] == sa.spi_i and d.data[18] == exchange
        return None if ours and pair.now < until else d

    pair.tamper = tamper


def test_children_still_being_created_are_recreated_on_the_new_sa() -> None:
    pair = Pair(*connections(3))
    old = pair.i.engine.sas[pair.initiate()]
    while old.state is not IkeState.ESTABLISHED:
        assert pair.step()
    assert old.pending is not None and old.queue  # 'second' is out, 'third' queued
    pair.i.events += pair.i.engine.reauthenticate(old.id, pair.now)
    settle(pair)
    assert old.id not in pair.i.engine.sas
    for s in (pair.i, pair.r):
        assert sorted(c.config.name for c in only_sa(s).children) == sorted(CHILDREN)
        assert no_gap_per_child(s.events)
    assert_consistent(pair, children=3)


@pytest.mark.parametrize("make_before_break", [True, False])
def test_an_ike_rekey_in_flight_does_not_keep_the_replaced_sa(make_before_break: bool) -> None:
    pair = Pair(*connections(2, make_before_break=make_before_break))
    established(pair)
    old = only_sa(pair.i)
    lose(pair, old, ExchangeType.CREATE_CHILD_SA, until=pair.now + 1)  # the rekey stays out
    pair.i.events += pair.i.engine.rekey_ike(old.id, pair.now)
    pair.i.events += pair.i.engine.reauthenticate(old.id, pair.now)
    settle(pair)
    pair.run(until=pair.now + 100)
    assert_consistent(pair, children=2)
    sa = only_sa(pair.i)
    assert sa.reauth_by is None and [e for e in pair.i.of(IkeSaEstablished) if e.reauth_of]
    assert [e for e in pair.i.of(IkeSaEstablished) if e.rekeyed_from]


def test_a_reauthenticated_sa_does_not_keep_its_predecessors_alive() -> None:
    conn_i, conn_r = connections(1)
    pair = Pair(replace(conn_i, timers=Timers(reauth_time=300, dpd_delay=0)), conn_r)
    established(pair, 1)
    gc.collect()
    before = sum(isinstance(o, IkeSa) for o in gc.get_objects())
    pair.run(until=3000, max_steps=100_000)
    assert len([e for e in pair.i.of(IkeSaEstablished) if e.reauth_of]) >= 9
    gc.collect()
    assert sum(isinstance(o, IkeSa) for o in gc.get_objects()) <= before
    assert only_sa(pair.i).reauth_of is None  # done replacing: no link to the closed one


def test_an_established_new_sa_that_fails_is_deleted_with_the_peer() -> None:
    pair = Pair(*connections(2, timers=Timers(dpd_delay=0, retransmit_tries=2)))
    established(pair)
    old = only_sa(pair.i)
    pair.i.events += pair.i.engine.reauthenticate(old.id, pair.now)
    assert old.reauth_by is not None
    new = old.reauth_by
    lose(pair, new, ExchangeType.CREATE_CHILD_SA)  # IKE_AUTH goes through, 'second' never does
    pair.run(until=pair.now + 26)
    assert new.closed and list(pair.i.engine.sas) == [old.id]
    assert_consistent(pair, children=2)  # the peer was told: no orphan IKE SA or child there
    pair.tamper = None
    pair.run(until=pair.now + reauth.RETRY_AFTER_FAILURE + reauth.CHECK_INTERVAL + 10)
    assert old.id not in pair.i.engine.sas
    assert [e for e in pair.i.of(IkeSaEstablished) if e.reauth_of == old.id]
    assert_consistent(pair, children=2)


@pytest.mark.parametrize("answers", [False, True])
def test_a_hanging_attempt_is_abandoned_and_retried(answers: bool) -> None:
    """The peer forgets the half-open new IKE SA after its half-open timeout; retransmitting
    IKE_AUTH for the whole retransmit span (hours with 12 tries) would leave nothing when the
    old IKE SA's hard lifetime comes. When only the answers were lost, the peer holds the new
    IKE SA: the abandoned attempt deletes it there."""
    timers = Timers(retransmit_tries=12, dpd_delay=0, ike_life_time=400)
    pair = Pair(*connections(2, timers=timers))
    established(pair)
    old = only_sa(pair.i)
    pair.i.events += pair.i.engine.reauthenticate(old.id, pair.now)
    assert old.reauth_by is not None
    first = old.reauth_by
    lose(pair, first, ExchangeType.IKE_AUTH, answers=answers)
    pair.run(until=pair.now + 100)
    assert (2 in [e.ike_sa_id for e in pair.r.of(IkeSaEstablished)]) is answers
    (failed,) = pair.i.of(IkeSaFailed)
    assert failed.ike_sa_id == first.id and first.closed
    assert [e for e in pair.i.of(IkeSaEstablished) if e.reauth_of == old.id]
    assert_consistent(pair, children=2)


def test_invalid_ike_spi_for_the_new_ike_auth_ends_the_attempt() -> None:
    """§2.21.4: the peer answers our IKE_AUTH retransmit with INVALID_IKE_SPI (it forgot the
    half-open IKE SA): the attempt ends at once, the old IKE SA stays and tries again."""
    conn_i, conn_r = connections(2, timers=Timers(retransmit_tries=12, dpd_delay=0))
    conn_i = replace(conn_i, timers=replace(conn_i.timers, half_open_timeout=60))
    conn_r = replace(conn_r, timers=replace(conn_r.timers, half_open_timeout=10))
    pair = Pair(conn_i, conn_r)
    established(pair)
    old, start = only_sa(pair.i), pair.now
    pair.i.events += pair.i.engine.reauthenticate(old.id, pair.now)
    assert old.reauth_by is not None
    first = old.reauth_by
    lose(pair, first, ExchangeType.IKE_AUTH, until=start + 10.5)  # then the peer forgot it
    pair.run(until=start + 20)
    (failed,) = pair.i.of(IkeSaFailed)
    assert failed.ike_sa_id == first.id and "INVALID_IKE_SPI" in failed.reason
    pair.run(until=start + 80)
    assert [e for e in pair.i.of(IkeSaEstablished) if e.reauth_of == old.id]
    assert_consistent(pair, children=2)


def test_reauthentication_uses_the_connection_as_configured_now() -> None:
    """§2.8.3: a reload that rotates the credentials applies to the next reauthentication; a
    connection removed from the config is reauthenticated as it was."""
    conn_i, conn_r = connections(1)
    conn_i = replace(conn_i, timers=Timers(reauth_time=300, dpd_delay=0))
    pair = Pair(conn_i, conn_r)
    established(pair, 1)
    psk = b"the rotated pre-shared key, long enough for tests"

    def rotate(c: ConnectionConfig) -> ConnectionConfig:
        return replace(
            c,
            local_auth=replace(c.local_auth, psk=psk),
            remote_auth=replace(c.remote_auth, psk=psk),
        )

    pair.i.engine.update_config(EngineConfig((rotate(conn_i),)))
    pair.r.engine.update_config(EngineConfig((rotate(conn_r),)))
    pair.run(until=400)
    assert not pair.i.of(IkeSaFailed)
    assert len([e for e in pair.i.of(IkeSaEstablished) if e.reauth_of]) == 1
    assert only_sa(pair.i).conn.local_auth.psk == psk
    pair.i.engine.update_config(EngineConfig((replace(conn_i, name="other"),)))
    pair.run(until=700)
    assert len([e for e in pair.i.of(IkeSaEstablished) if e.reauth_of]) == 2
    assert only_sa(pair.i).conn.name == "net" and not pair.i.of(IkeSaFailed)
    assert_consistent(pair, children=1)


def test_a_failing_reauthentication_does_not_stop_ike_rekeys() -> None:
    timers = Timers(ike_rekey_time=100, reauth_time=250, ike_life_time=0, dpd_delay=0)
    conn_i, conn_r = connections(1)
    pair = Pair(replace(conn_i, timers=timers), conn_r)
    established(pair, 1)
    wrong = replace(conn_r.remote_auth, psk=b"another secret entirely, for this test")
    pair.r.engine.update_config(EngineConfig((replace(conn_r, remote_auth=wrong),)))
    pair.run(until=1500, max_steps=100_000)
    assert len(pair.i.of(IkeSaFailed)) >= 10
    assert len([e for e in pair.i.of(IkeSaEstablished) if e.rekeyed_from]) >= 12  # ~100 s
    assert_consistent(pair, children=1)


@pytest.mark.parametrize(
    "new_state", [IkeState.INIT_SENT, IkeState.AUTH_SENT, IkeState.ESTABLISHED]
)
def test_terminating_the_old_sa_ends_its_reauthentication(new_state: IkeState) -> None:
    pair = Pair(*connections(2))
    established(pair)
    old = only_sa(pair.i)
    pair.i.events += pair.i.engine.reauthenticate(old.id, pair.now)
    while (old.reauth_by and old.reauth_by.state) is not new_state:
        assert pair.step()
    pair.i.events += pair.i.engine.terminate(old.id, pair.now)
    settle(pair)
    pair.run(until=pair.now + 100)
    assert_consistent(pair, children=0, ike_sas=0)
