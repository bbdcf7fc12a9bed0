"""MOBIKE (RFC 4555) and the NAT endpoint updates of RFC 7296 §2.23, two engines back to back.

Each test checks what crossed the link (the Tap opens every message) and what each side ends up
believing: its IKE SA's endpoints, and the IkeSaMoved events the service would apply to the
kernel (same SPIs and keys, new tunnel endpoints and encapsulation).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from ikev2.constants import ExchangeType, NotifyType
from ikev2.engine.config import Timers
from ikev2.engine.events import (
    ChildSaEstablished,
    Datagram,
    Endpoint,
    IkeSaDeleted,
    IkeSaMoved,
)
from ikev2.engine.ike_sa import IkeSa
from ikev2.engine.state import IkeState
from ikev2.engine.tasks import mobike
from ikev2.wire import NotifyPayload

from .pairing import ADDR_I, ADDR_R, Pair, Side, psk_connections, settle, with_
from .wiretap import Seen, Tap

NEW_I = ipaddress.ip_address("198.51.100.7")
THIRD_I = ipaddress.ip_address("203.0.113.9")
NAT_IP = ipaddress.ip_address("192.0.2.100")
EXTRA_R = ipaddress.ip_address("192.0.2.22")


def only_sa(side: Side) -> IkeSa:
    sas = [sa for sa in side.engine.sas.values() if sa.state is IkeState.ESTABLISHED]
    assert len(sas) == 1, sas
    return sas[0]


def make_pair(**kw: object) -> tuple[Pair, Tap]:
    conn_i, conn_r = psk_connections()
    extra_i = kw.pop("conn_i", {})
    extra_r = kw.pop("conn_r", {})
    assert isinstance(extra_i, dict) and isinstance(extra_r, dict)
    pair = Pair(with_(conn_i, **extra_i), with_(conn_r, **extra_r), **kw)  # type: ignore[arg-type]
    tap = Tap(pair)
    pair.initiate()
    pair.run(until=30)
    return pair, tap


def updates(tap: Tap) -> list[Seen]:
    return [
        s
        for s in tap.of("INFORMATIONAL", response=False)
        if "UPDATE_SA_ADDRESSES" in s.notify_names
    ]


def answers_to(tap: Tap, request: Seen) -> list[Seen]:
    return [
        s
        for s in tap.of("INFORMATIONAL", response=True)
        if s.sender != request.sender and s.message_id == request.message_id
    ]


def chain(pair: Pair, hook: Callable[[Side, Datagram], Datagram | None]) -> None:
    """Put `hook` after the tap (the tap sees what the sender sent, the peer gets the rest)."""
    tap = pair.tamper
    assert tap is not None

    def both(side: Side, d: Datagram) -> Datagram | None:
        return hook(side, tap(side, d))

    pair.tamper = both


class Nat:
    """A NAT in front of the initiator: its packets leave from (NAT_IP, port); answers to
    that mapping reach it. `rebind()` gives it a new mapped port (the old mapping is gone)."""

    def __init__(self, pair: Pair, port: int = 40000) -> None:
        self.pair, self.port = pair, port
        self.inside: Endpoint | None = None

    def rebind(self) -> None:
        self.port += 1

    def __call__(self, side: Side, d: Datagram) -> Datagram | None:
        if side is self.pair.i:
            self.inside = d.local
            return Datagram(d.data, d.remote, (NAT_IP, self.port))
        if d.remote != (NAT_IP, self.port) or self.inside is None:
            return None  # a flushed mapping: dropped at the NAT
        return Datagram(d.data, self.inside, d.local)


# --- negotiation (§3.3)
def test_both_sides_negotiate_mobike_in_ike_auth_and_float_to_4500() -> None:
    pair, tap = make_pair()
    sa_i, sa_r = only_sa(pair.i), only_sa(pair.r)
    assert mobike.enabled(sa_i) and mobike.enabled(sa_r)
    assert "MOBIKE_SUPPORTED" in tap.notify_names("IKE_AUTH", response=False)
    assert "MOBIKE_SUPPORTED" in tap.notify_names("IKE_AUTH", response=True)
    # no NAT here, yet IKE_AUTH already runs on 4500 (§3.3), and the responder follows
    assert sa_i.local[1] == sa_i.remote[1] == 4500
    assert sa_r.remote == (ADDR_I, 4500) and sa_r.local == (ADDR_R, 4500)
    assert not pair.i.of(IkeSaMoved) and not pair.r.of(IkeSaMoved)


@pytest.mark.parametrize("off", ["conn_i", "conn_r"])
def test_mobike_off_on_either_side_is_not_negotiated(off: str) -> None:
    pair, tap = make_pair(**{off: {"mobike": False}})
    assert not mobike.enabled(only_sa(pair.i)) and not mobike.enabled(only_sa(pair.r))
    assert "MOBIKE_SUPPORTED" not in tap.notify_names("IKE_AUTH", response=True)
    assert pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now) == []
    pair.run(until=pair.now + 5)
    assert only_sa(pair.r).remote[0] == ADDR_I  # nothing moved
    assert "UPDATE_SA_ADDRESSES" not in tap.notify_names("INFORMATIONAL", response=False)


def test_additional_addresses_are_announced_in_ike_auth() -> None:
    pair, _tap = make_pair(conn_r={"local_addrs": (ADDR_R, EXTRA_R)})
    state = only_sa(pair.i).mobike
    assert state is not None and state.peer_addresses == (EXTRA_R,)


# --- the initiator moves (§3.5)
def assert_children_moved(event: IkeSaMoved, local: ipaddress._BaseAddress) -> None:
    assert event.children, "no child moved"
    for old, new in event.children:
        assert isinstance(old, ChildSaEstablished) and isinstance(new, ChildSaEstablished)
        assert (new.spi_in, new.spi_out) == (old.spi_in, old.spi_out)  # same SAs
        assert new.inbound.enc_key == old.inbound.enc_key
        assert local in (new.inbound.dst, new.inbound.src)


def test_initiator_moves_and_responder_follows_with_same_spis() -> None:
    pair, tap = make_pair()
    sa_i, sa_r = only_sa(pair.i), only_sa(pair.r)
    spis = {(c.spi_in, c.spi_out) for c in sa_r.children}
    events = pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now, (THIRD_I,))
    pair.i.events += events
    assert [type(e) for e in events] == [IkeSaMoved]  # the kernel moves at once here
    pair.run(until=pair.now + 10)
    assert sa_i.local == (NEW_I, 4500) and sa_r.remote == (NEW_I, 4500)
    assert {(c.spi_in, c.spi_out) for c in sa_r.children} == spis
    (moved_r,) = pair.r.of(IkeSaMoved)
    assert moved_r.old_remote == (ADDR_I, 4500) and moved_r.remote == (NEW_I, 4500)
    assert_children_moved(moved_r, ADDR_R)
    ((_old, new),) = moved_r.children
    assert new.outbound.dst == NEW_I and new.inbound.src == NEW_I and new.encap is None
    request = updates(tap)[-1]
    wanted = {"UPDATE_SA_ADDRESSES", "COOKIE2", "NAT_DETECTION_SOURCE_IP",
              "NAT_DETECTION_DESTINATION_IP", "ADDITIONAL_IP4_ADDRESS"}  # fmt: skip
    assert wanted <= set(request.notify_names)
    (answer,) = answers_to(tap, request)
    assert "COOKIE2" in answer.notify_names
    assert sa_r.mobike is not None and sa_r.mobike.peer_addresses == (THIRD_I,)
    assert not sa_i.nat_local and not sa_r.nat_remote
    # the IKE SA keeps working over the new path: a rekey of the child goes through
    pair.i.engine.rekey_child(sa_i.id, sa_i.children[0].spi_in, pair.now)
    pair.run(until=pair.now + 10)
    assert len(sa_r.children) == 1 and {(c.spi_in, c.spi_out) for c in sa_r.children} != spis


def test_without_additional_addresses_the_update_says_so() -> None:
    pair, tap = make_pair()
    pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now)
    pair.run(until=pair.now + 10)
    (request,) = updates(tap)
    assert "NO_ADDITIONAL_ADDRESSES" in request.notify_names
    state = only_sa(pair.r).mobike
    assert state is not None and state.peer_addresses == ()


@pytest.mark.parametrize("seed", range(6))
def test_move_survives_loss_and_retransmits_from_the_new_address(seed: int) -> None:
    pair, _tap = make_pair(seed=seed)
    sa_i, sa_r = only_sa(pair.i), only_sa(pair.r)
    pair.loss, pair.duplicate, pair.reorder = 0.4, 0.1, 0.2
    pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now)
    pair.run(until=pair.now + 4)
    settle(pair)
    assert sa_i.state is IkeState.ESTABLISHED and sa_r.state is IkeState.ESTABLISHED
    assert sa_r.remote == (NEW_I, 4500)


def test_lost_answer_is_replayed_to_the_new_address() -> None:
    pair, tap = make_pair()
    sa_i, sa_r = only_sa(pair.i), only_sa(pair.r)
    dropped: list[Datagram] = []

    def drop_first_answer(side: Side, d: Datagram) -> Datagram | None:
        if side is pair.r and not dropped and tap.seen[-1].response:
            dropped.append(d)
            return None
        return d

    chain(pair, drop_first_answer)
    pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now)
    pair.run(until=pair.now + 30)
    assert dropped and dropped[0].remote == (NEW_I, 4500)
    sent = updates(tap)
    assert len(sent) == 2 and sent[0] == sent[1]  # the request and its retransmit
    answers = answers_to(tap, sent[0])
    assert len(answers) == 2 and all("COOKIE2" in a.notify_names for a in answers)
    assert sa_i.requests.outstanding is None and sa_r.remote == (NEW_I, 4500)
    assert len(pair.r.of(IkeSaMoved)) == 1  # the retransmit was answered, not processed


def test_a_second_move_while_the_first_is_out_ends_at_the_last_address() -> None:
    pair, tap = make_pair()
    sa_i, sa_r = only_sa(pair.i), only_sa(pair.r)
    pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now)
    pair.i.engine.local_address_changed(NEW_I, THIRD_I, pair.now)
    pair.i.engine.local_address_changed(THIRD_I, NEW_I, pair.now)
    pair.i.engine.local_address_changed(NEW_I, THIRD_I, pair.now)  # coalesced in the queue
    pair.run(until=pair.now + 20)
    assert sa_i.local[0] == THIRD_I and sa_r.remote == (THIRD_I, 4500)
    assert len(updates(tap)) == 2


def test_cookie2_mismatch_closes_the_ike_sa() -> None:
    pair, _tap = make_pair()
    sa_i = only_sa(pair.i)
    exchange = mobike.UpdateSaAddresses()
    exchange.cookie2 = b"\x01" * 16
    answer = (NotifyPayload(NotifyType.COOKIE2, data=b"\x02" * 16),)
    exchange.process_i(sa_i, answer, pair.now)
    assert sa_i.state is IkeState.CLOSED
    assert any("COOKIE2" in e.reason for e in pair.i.engine._drain() if isinstance(e, IkeSaDeleted))


def test_unasked_update_from_the_original_responder_is_ignored() -> None:
    pair, _tap = make_pair()
    sa_i = only_sa(pair.i)
    before = (sa_i.local, sa_i.remote)
    sa_i.reply_path = ((NEW_I, 4500), (ADDR_I, 4500))
    answer = mobike.respond(sa_i, (NotifyPayload(NotifyType.UPDATE_SA_ADDRESSES),))
    assert answer == [] and (sa_i.local, sa_i.remote) == before


# --- §3.9 NO_NATS_ALLOWED
def test_no_nats_allowed_refuses_an_update_through_a_nat() -> None:
    pair, tap = make_pair(conn_i={"mobike_no_nats": True}, conn_r={"remote_addrs": ()})
    sa_r = only_sa(pair.r)
    nat = Nat(pair)
    pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now)
    chain(pair, nat)
    pair.run(until=pair.now + 10)
    (answer,) = answers_to(tap, updates(tap)[0])
    assert answer.notify_names == ("UNEXPECTED_NAT_DETECTED",)
    assert sa_r.remote == (ADDR_I, 4500)  # not moved
    assert not pair.r.of(IkeSaMoved)


def test_no_nats_allowed_without_a_nat_moves() -> None:
    pair, tap = make_pair(conn_i={"mobike_no_nats": True})
    pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now)
    pair.run(until=pair.now + 10)
    assert "NO_NATS_ALLOWED" in tap.of("INFORMATIONAL", response=False)[-1].notify_names
    assert only_sa(pair.r).remote == (NEW_I, 4500)


# --- NAT rebinding
def natted_pair(mobike_on: bool) -> tuple[Pair, Tap, Nat]:
    conn_i, conn_r = psk_connections()
    timers = Timers(dpd_delay=10.0)
    pair = Pair(
        with_(conn_i, mobike=mobike_on, timers=timers),
        with_(conn_r, mobike=mobike_on, remote_addrs=()),
    )
    tap = Tap(pair)
    nat = Nat(pair)
    chain(pair, nat)
    pair.initiate()
    pair.run(until=5)
    return pair, tap, nat


def test_nat_rebinding_found_by_liveness_check_starts_an_update() -> None:
    pair, tap, nat = natted_pair(True)
    sa_i, sa_r = only_sa(pair.i), only_sa(pair.r)
    assert sa_i.nat_local and sa_r.nat_remote and sa_r.remote == (NAT_IP, 40000)
    (child,) = sa_r.children
    assert child.event.encap == (4500, 40000)
    # the first check records the mapping (IKE_SA_INIT's ran on port 500): no update
    pair.run(until=pair.now + 12)
    assert updates(tap) == [] and sa_i.mobike is not None and sa_i.mobike.natd_peer
    nat.rebind()
    pair.run(until=pair.now + 25)
    # the liveness check carried NAT detection (§3.8); its answer showed the new mapping
    checks = [s for s in tap.of("INFORMATIONAL", response=False) if s.sender == "initiator"]
    assert any("NAT_DETECTION_SOURCE_IP" in s.notify_names for s in checks)
    assert any("UPDATE_SA_ADDRESSES" in s.notify_names for s in checks)
    assert sa_r.remote == (NAT_IP, 40001)
    (moved,) = pair.r.of(IkeSaMoved)
    ((old, new),) = moved.children
    assert old.encap == (4500, 40000) and new.encap == (4500, 40001)
    assert (new.spi_in, new.spi_out) == (old.spi_in, old.spi_out)


def test_without_mobike_the_responder_follows_the_nat_rfc7296_2_23() -> None:
    pair, tap, nat = natted_pair(False)
    sa_r = only_sa(pair.r)
    nat.rebind()
    pair.run(until=pair.now + 25)  # the next liveness check comes from the new mapping
    assert sa_r.remote == (NAT_IP, 40001)
    (moved,) = pair.r.of(IkeSaMoved)
    ((old, new),) = moved.children
    assert new.encap == (4500, 40001) and new.spi_in == old.spi_in
    assert not any("UPDATE_SA_ADDRESSES" in s.notify_names for s in tap.seen)


def test_responder_answers_to_where_a_request_came_from() -> None:
    pair, tap = make_pair()
    sa_i, sa_r = only_sa(pair.i), only_sa(pair.r)
    # the initiator's address changed under it, without telling the engine: with MOBIKE the
    # responder does not move (§3.5), but answers the liveness check where it came from
    sa_i.local = (NEW_I, 4500)
    sa_i.start_exchange(mobike.liveness(sa_i), pair.now)
    pair.run(until=pair.now + 5)
    assert sa_i.requests.outstanding is None and sa_r.remote == (ADDR_I, 4500)
    assert tap.of("INFORMATIONAL", response=True)[-1].exchange == ExchangeType.INFORMATIONAL


def test_rekeyed_ike_sa_keeps_mobike_and_can_move() -> None:
    pair, _tap = make_pair()
    pair.i.engine.rekey_ike(only_sa(pair.i).id, pair.now)
    pair.run(until=pair.now + 10)
    sa_i, sa_r = only_sa(pair.i), only_sa(pair.r)
    assert mobike.enabled(sa_i) and mobike.enabled(sa_r)
    pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now)
    pair.run(until=pair.now + 10)
    assert sa_r.remote == (NEW_I, 4500) and len(pair.r.of(IkeSaMoved)) == 1


def test_update_never_answered_ends_the_ike_sa() -> None:
    pair, _tap = make_pair()
    sa_i = only_sa(pair.i)
    chain(pair, lambda side, d: None)
    pair.i.engine.local_address_changed(ADDR_I, NEW_I, pair.now)
    pair.run(until=pair.now + 3000)
    assert sa_i.state is IkeState.CLOSED
    reasons = [e.reason for e in pair.i.events if isinstance(e, IkeSaDeleted)]
    assert reasons == ["peer did not answer UPDATE_SA_ADDRESSES"]


def test_eap_road_warrior_negotiates_mobike_and_moves() -> None:
    """MOBIKE_SUPPORTED rides in the first IKE_AUTH request and the last answer (§3.3), also
    when EAP rounds lie between (RFC 7296 §2.16)."""
    from .test_eap_auth import eap_connections

    pair = Pair(*eap_connections())
    tap = Tap(pair)
    pair.initiate()
    pair.run(until=5)
    sa_i, sa_r = only_sa(pair.i), only_sa(pair.r)
    assert mobike.enabled(sa_i) and mobike.enabled(sa_r)
    auth = tap.of("IKE_AUTH", response=True)
    assert "MOBIKE_SUPPORTED" in auth[-1].notify_names  # the last answer, with the AUTH
    assert all("MOBIKE_SUPPORTED" not in a.notify_names for a in auth[:-1])
    pair.i.engine.local_address_changed(sa_i.local[0], NEW_I, pair.now)
    pair.run(until=pair.now + 10)
    assert sa_r.remote == (NEW_I, 4500)
