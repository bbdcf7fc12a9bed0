"""Message ID window > 1 (RFC 7296 §2.3, [daemon] window_size): SET_WINDOW_SIZE in IKE_AUTH,
up to min(peer's window, ours) requests in flight, a responder that takes requests in any order
inside its window and replays (never reprocesses) the last `window` answers, and exclusive
IKE-SA-wide exchanges."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from ikev2.constants import NotifyType, ProtocolId
from ikev2.engine.config import ChildConfig, ConnectionConfig, TrafficSelectorSpec
from ikev2.engine.events import ChildSaEstablished, Datagram, IkeSaEstablished
from ikev2.engine.ike_sa import IkeSa
from ikev2.engine.proposal_strings import parse_proposals
from ikev2.engine.tasks import window_size
from ikev2.engine.tasks.create_child import CreateChildExchange
from ikev2.engine.window import RequestClass, ResponseWindow
from ikev2.wire import NotifyPayload, decode_message

from .pairing import Pair, Side, psk_connections, settle

CHILDREN = 8


def _child(k: int, local: str, remote: str) -> ChildConfig:
    return ChildConfig(
        name=f"c{k}",
        local_ts=(TrafficSelectorSpec(ipaddress.ip_network(local.format(k))),),
        remote_ts=(TrafficSelectorSpec(ipaddress.ip_network(remote.format(k))),),
        proposals=parse_proposals("aes256gcm16", ProtocolId.ESP),
    )


def _with_children(conn: ConnectionConfig, initiator: bool) -> ConnectionConfig:
    """The connection's own child plus c1..c8 on subnets 10.1.k/24 <-> 10.2.k/24."""
    ours, theirs = ("10.1.{}.0/24", "10.2.{}.0/24")[:: 1 if initiator else -1]
    extra = tuple(_child(k, ours, theirs) for k in range(1, CHILDREN + 1))
    return replace(conn, children=(*conn.children, *extra))


def window_pair(window_i: int = 4, window_r: int = 4, seed: int = 1) -> tuple[Pair, int]:
    """An established IKE SA between engines with these [daemon] window_size values."""
    conn_i, conn_r = psk_connections()
    pair = Pair(_with_children(conn_i, True), _with_children(conn_r, False), seed=seed)
    for side, size in ((pair.i, window_i), (pair.r, window_r)):
        side.engine.update_config(replace(side.engine.config, window_size=size))
    sa_id = pair.i.engine.initiate("net", pair.now, children=conn_i.children)
    pair.run(until=1)
    assert len(pair.i.of(IkeSaEstablished)) == len(pair.r.of(IkeSaEstablished)) == 1
    return pair, sa_id


def the_sa(side: Side) -> IkeSa:
    (sa,) = side.engine.sas.values()
    return sa


def start_children(pair: Pair, count: int = CHILDREN) -> list[Datagram]:
    """`up net --child cK` for K = 1..count at one instant; what the initiator sent."""
    for k in range(1, count + 1):
        pair.i.engine.initiate_child("net", f"c{k}", pair.now)
    return pair.i.engine.datagrams_to_send()


def deliver(pair: Pair, to: Side, datagrams: list[Datagram]) -> list[Datagram]:
    """Hand datagrams to one side; what it sent back."""
    for d in datagrams:
        to.events += to.engine.receive_datagram(d.data, d.local, d.remote, pair.now)
    return to.engine.datagrams_to_send()


def mids(datagrams: list[Datagram]) -> list[int]:
    return [decode_message(d.data).header.message_id for d in datagrams]


def assert_all_children_up(pair: Pair, count: int) -> None:
    """`count` children on each side, mirrored, all with distinct SPIs."""
    kids_i = {(c.spi_in, c.spi_out) for c in the_sa(pair.i).children}
    kids_r = {(c.spi_in, c.spi_out) for c in the_sa(pair.r).children}
    assert len(kids_i) == len(kids_r) == count
    assert kids_i == {(o, i) for i, o in kids_r}
    spis = [spi for pair_ in kids_i for spi in pair_]
    assert len(set(spis)) == 2 * count
    names = sorted(c.config.name for c in the_sa(pair.i).children)
    assert names == sorted(["net", *(f"c{k}" for k in range(1, count))])


def test_both_sides_announce_their_window_and_take_the_smaller() -> None:
    pair, _ = window_pair(window_i=4, window_r=6)
    sa_i, sa_r = the_sa(pair.i), the_sa(pair.r)
    assert (sa_i.requests.size, sa_r.requests.size) == (4, 4)  # min(peer's, ours)
    assert (sa_i.responses.size, sa_r.responses.size) == (4, 6)  # ours


def test_eight_children_go_four_at_a_time_and_all_come_up() -> None:
    pair, _ = window_pair()
    sa_i = the_sa(pair.i)
    first = start_children(pair)
    assert len(first) == 4  # four requests out before any answer came back
    assert len(set(mids(first))) == 4 and len(sa_i.requests.slots) == 4
    assert len(sa_i.queue) == CHILDREN - 4
    pair.in_flight += [(pair.r, d) for d in first]
    most = 0
    while pair.in_flight or sa_i.requests.busy or sa_i.queue:
        pair.step()
        most = max(most, len(sa_i.requests.slots))
    assert most == 4  # never more than the window
    (view,) = pair.i.engine.list_sas()
    assert view.window == (4, 4) and view.peak_outstanding == 4  # what list-sas shows
    assert_all_children_up(pair, CHILDREN + 1)
    assert len(pair.r.of(ChildSaEstablished)) == CHILDREN + 1


def test_both_sides_start_children_at_once() -> None:
    """Each side has four of its own requests out and answers four of the other's."""
    pair, _ = window_pair()
    sa_r = the_sa(pair.r)
    for k in range(1, 5):
        pair.i.engine.initiate_child("net", f"c{k}", pair.now)
    for k in range(5, CHILDREN + 1):
        sa_r.start_exchange(CreateChildExchange(sa_r.conn.child(f"c{k}"), 100 + k), pair.now)
    assert len(the_sa(pair.i).requests.slots) == len(sa_r.requests.slots) == 4
    settle(pair)
    assert_all_children_up(pair, CHILDREN + 1)


def test_a_duplicated_request_in_the_window_is_replayed_not_reprocessed() -> None:
    pair, _ = window_pair()
    sa_r = the_sa(pair.r)
    first = start_children(pair, 4)
    second = first[1]  # the second request (mid 3), before the first arrived
    answer = deliver(pair, pair.r, [second])
    made = len(pair.r.of(ChildSaEstablished))
    assert len(answer) == 1 and sa_r.responses.expected_id == 2  # mid 2 still awaited
    again = deliver(pair, pair.r, [second])
    assert [d.data for d in again] == [d.data for d in answer]  # the cached bytes
    assert len(pair.r.of(ChildSaEstablished)) == made  # no second child for it
    assert sa_r.responses.classify(mids([second])[0]) is RequestClass.RETRANSMIT


def test_a_request_beyond_the_window_is_dropped() -> None:
    pair, _ = window_pair()
    sa_i, sa_r = the_sa(pair.i), the_sa(pair.r)
    sa_i.requests.size = 5  # as a peer that ignores the window we announced
    first = start_children(pair, 5)
    assert mids(first) == [2, 3, 4, 5, 6]
    answers = deliver(pair, pair.r, [first[4]])  # mid 6: outside [2, 5]
    assert answers == [] and sa_r.responses.expected_id == 2
    assert len(pair.r.of(ChildSaEstablished)) == 1  # only IKE_AUTH's
    answers = deliver(pair, pair.r, first[:4])
    assert len(answers) == 4 and sa_r.responses.expected_id == 6
    deliver(pair, pair.i, answers)
    last = deliver(pair, pair.r, [first[4]])  # its retransmit, now inside the window
    assert mids(last) == [6] and sa_r.responses.expected_id == 7
    deliver(pair, pair.i, last)
    assert_all_children_up(pair, 6)


def test_ids_below_the_window_that_are_not_cached_are_dropped() -> None:
    window = ResponseWindow(first_id=2)
    window.size = 4
    for mid in (2, 3, 4, 5, 6, 7):
        assert window.classify(mid) is RequestClass.NEW
        window.answered(mid, (bytes([mid]),))
    assert window.expected_id == 8
    assert [window.classify(m) for m in (3, 4, 7)] == [
        RequestClass.INVALID,  # answered but no longer among the last four
        RequestClass.RETRANSMIT,
        RequestClass.RETRANSMIT,
    ]
    assert window.cached(5) == (b"\x05",) and window.classify(12) is RequestClass.INVALID


def test_towards_a_peer_that_announced_nothing_one_request_is_out() -> None:
    pair, _ = window_pair(window_i=4, window_r=1)
    sa_i, sa_r = the_sa(pair.i), the_sa(pair.r)
    assert sa_i.requests.size == 1 and sa_r.responses.size == 1
    first = start_children(pair)
    assert len(first) == 1
    pair.in_flight += [(pair.r, d) for d in first]
    while pair.in_flight or sa_i.requests.busy or sa_i.queue:
        pair.step()
        assert len(sa_i.requests.slots) <= 1
    assert_all_children_up(pair, CHILDREN + 1)
    (view,) = pair.i.engine.list_sas()
    assert view.window == (1, 4) and view.peak_outstanding == 1  # we still take 4 at once


def test_the_initiator_announces_nothing_at_window_one() -> None:
    """Default window_size 1: no SET_WINDOW_SIZE, so the responder keeps one at a time."""
    pair, _ = window_pair(window_i=1, window_r=4)
    assert the_sa(pair.r).requests.size == 1 and the_sa(pair.i).responses.size == 1
    assert len(start_children(pair)) == 1


@settings(max_examples=25, deadline=None)
@given(st.permutations(range(4)), st.integers(0, 3))
def test_requests_of_a_window_in_any_order(order: list[int], duplicate: int) -> None:
    pair, _ = window_pair()
    sa_r = the_sa(pair.r)
    first = start_children(pair, 4)
    shuffled = [first[k] for k in order]
    answers = deliver(pair, pair.r, [*shuffled[:2], first[duplicate], *shuffled[2:]])
    assert sorted(mids(answers)) == sorted([2, 3, 4, 5, mids(first)[duplicate]])
    assert sa_r.responses.expected_id == 6
    assert len(pair.r.of(ChildSaEstablished)) == 5  # IKE_AUTH's and one per request
    deliver(pair, pair.i, answers[::-1])  # the answers in reverse order too
    assert not the_sa(pair.i).requests.busy
    assert_all_children_up(pair, 5)


def test_each_outstanding_request_has_its_own_retransmit_timer() -> None:
    pair, _ = window_pair()
    sa_i = the_sa(pair.i)
    first = start_children(pair, 5)
    assert len(first) == 4
    pair.now += 1.0
    deliver(pair, pair.i, deliver(pair, pair.r, first[:1]))  # only mid 2 is answered
    assert [o.message_id for o in sa_i.requests.slots] == [3, 4, 5, 6]  # mid 6 took its place
    deadline = pair.i.engine.get_timer()
    assert deadline is not None
    pair.now = deadline
    pair.i.events += pair.i.engine.handle_timer(pair.now)
    resent = pair.i.engine.datagrams_to_send()
    assert sorted(mids(resent)) == [3, 4, 5]  # mid 6 was sent later: its timer is later
    assert all(d.data == o.data for d, o in zip(resent, first[1:], strict=True))
    settle(pair)
    assert_all_children_up(pair, 6)


def test_an_ike_rekey_waits_for_the_window_and_goes_alone() -> None:
    pair, sa_id = window_pair()
    sa_i = the_sa(pair.i)
    for k in range(1, 4):
        pair.i.engine.initiate_child("net", f"c{k}", pair.now)
    pair.i.events += pair.i.engine.rekey_ike(sa_id, pair.now)
    pair.i.engine.initiate_child("net", "c4", pair.now)
    assert len(sa_i.requests.slots) == 3  # the rekey waits for the three children
    seen_alone = False
    while pair.in_flight or any(s.requests.busy or s.queue for s in pair.i.engine.sas.values()):
        pair.step()
        for sa in list(pair.i.engine.sas.values()):
            flying = sa.in_flight()
            if any(getattr(x, "is_ike_rekey", False) for x in flying):
                assert len(flying) == 1  # nothing else is out with the IKE rekey
                seen_alone = True
    assert seen_alone
    settle(pair)
    live = [sa for sa in pair.i.engine.sas.values() if not sa.closed]
    assert len(live) == 1 and live[0].id != sa_id  # the rekeyed IKE SA took the children
    assert len(live[0].children) == 5
    (peer,) = pair.r.engine.sas.values()
    assert (live[0].requests.size, peer.responses.size) == (4, 4)  # the windows stay
    for k in range(5, CHILDREN + 1):
        pair.i.engine.initiate_child("net", f"c{k}", pair.now)
    assert len(live[0].requests.slots) == 4  # four at once on the new IKE SA too
    settle(pair)
    assert len(live[0].children) == CHILDREN + 1 == len(peer.children)


def _notify(data: bytes) -> NotifyPayload:
    return NotifyPayload(NotifyType.SET_WINDOW_SIZE, data=data)


def test_a_malformed_set_window_size_is_ignored() -> None:
    pair, _ = window_pair(window_i=8, window_r=1)
    sa = the_sa(pair.i)
    for data in (b"", b"\x00\x04", struct.pack("!I", 0), b"\x00" * 8):
        window_size.learn(sa, [_notify(data)])
        assert sa.requests.size == 1
    window_size.learn(sa, [_notify(struct.pack("!I", 2**32 - 1))])
    assert sa.requests.size == 8  # never more than our own window


def test_eight_children_over_a_lossy_reordering_link() -> None:
    """Lost, duplicated and reordered requests and answers inside the window: retransmits
    and cached answers bring every child up once on both sides."""
    for seed in range(1, 6):
        pair, _ = window_pair(seed=seed)
        pair.loss, pair.duplicate, pair.reorder = 0.15, 0.2, 0.5
        start_children(pair)
        pair.in_flight.clear()  # the first four are lost: timers resend them
        pair.run(until=200)
        settle(pair)
        assert_all_children_up(pair, CHILDREN + 1)
        assert len(pair.r.of(ChildSaEstablished)) == CHILDREN + 1  # none processed twice


def test_answers_after_an_unanswered_one_open_no_room() -> None:
    """§2.3: the window slides from the oldest unanswered request, not by a count: with mid 2
    unanswered and 3, 4 and 5 answered, mid 6 would lie outside the peer's window."""
    pair, _ = window_pair()
    sa_i = the_sa(pair.i)
    first = start_children(pair)
    answers = deliver(pair, pair.r, first)
    assert deliver(pair, pair.i, answers[1:]) == []  # nothing new goes out
    assert [o.message_id for o in sa_i.requests.slots] == [2]
    assert mids(deliver(pair, pair.i, answers[:1])) == [6, 7, 8, 9]
