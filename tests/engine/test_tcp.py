"""IKE over TCP in the engine (engine/tcp.py, RFC 9329): two engines back to back over a
simulated TCP link that knows which connections (4-tuples) are open, can block UDP, and can put
a NAT (address and port rewrite) in front of the initiator."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from ikev2.engine.config import EngineConfig, Timers, Transport
from ikev2.engine.events import (
    ChildSaEstablished,
    Datagram,
    Endpoint,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaMoved,
)
from ikev2.engine.state import IkeState
from ikev2.engine.tcp import (
    TCP_INIT_UNANSWERED,
    UDP_INIT_UNANSWERED,
    TcpChange,
    TcpChangeKind,
    TcpConnect,
)

from .pairing import Pair, psk_connections

TIMERS = Timers(retransmit_timeout=1, retransmit_base=2, retransmit_tries=3, dpd_delay=0)
NAT_ADDR = ipaddress.ip_address("198.51.100.7")


class TcpPair(Pair):
    """Pair whose TcpConnect events open simulated connections (fresh ephemeral ports), and
    whose link carries a TCP datagram only on an open connection, in order."""

    def __init__(self, transport: Transport, *, nat: bool = False, **kwargs: object) -> None:
        conn_i, conn_r = psk_connections()
        conn_i = replace(conn_i, transport=transport, timers=TIMERS)
        conn_r = replace(conn_r, timers=TIMERS, remote_addrs=() if nat else conn_r.remote_addrs)
        super().__init__(conn_i, conn_r, engine_r=EngineConfig((conn_r,), tcp_port=4500), **kwargs)  # type: ignore[arg-type]
        self.open: set[tuple[Endpoint, Endpoint]] = set()  # (initiator side, responder side)
        self.next_port = 40000
        self.udp_blocked = False
        self.nat = nat
        self.nat_map: dict[Endpoint, Endpoint] = {}
        self.sent: list[tuple[str, Datagram]] = []
        self.refuse_connect = False
        self.handled = 0  # TcpConnect events acted on

    # --- the initiator's side of the NAT
    def _outside(self, endpoint: Endpoint) -> Endpoint:
        if not self.nat:
            return endpoint
        return self.nat_map.setdefault(endpoint, (NAT_ADDR, 61000 + len(self.nat_map)))

    def _inside(self, endpoint: Endpoint) -> Endpoint:
        return next((k for k, v in self.nat_map.items() if v == endpoint), endpoint)

    def initiate(self, name: str = "net") -> int:
        sa_id = self.i.engine.initiate(name, self.now)
        self.i.events += self.i.engine.take_events()
        return sa_id

    def connect_pending(self) -> None:
        connects = [e for e in self.i.events if isinstance(e, TcpConnect)]
        for event in connects[self.handled :]:
            self.handled += 1
            if True:
                if self.refuse_connect:
                    change = TcpChange(TcpChangeKind.FAILED, event.ike_sa_id, reason="refused")
                else:
                    local = (event.local, self.next_port)
                    self.next_port += 1
                    self.open.add((self._outside(local), event.remote))
                    change = TcpChange(TcpChangeKind.CONNECTED, event.ike_sa_id, local=local)
                self.i.events += self.i.engine.tcp_changed(change, self.now)

    def close_all(self) -> None:
        """Every open connection drops; both engines are told (each sees its own 4-tuple)."""
        for outside, responder in list(self.open):
            self.open.discard((outside, responder))
            inside = self._inside(outside)
            self.i.events += self.i.engine.tcp_changed(
                TcpChange(TcpChangeKind.CLOSED, local=inside, remote=responder), self.now
            )
            self.r.events += self.r.engine.tcp_changed(
                TcpChange(TcpChangeKind.CLOSED, local=responder, remote=outside), self.now
            )

    def _collect(self) -> None:
        self.connect_pending()
        for side, name in ((self.i, "i"), (self.r, "r")):
            for d in side.engine.datagrams_to_send():
                self.sent.append((name, d))
                self._carry(side, d)

    def step(self) -> bool:
        self._collect()
        if self.in_flight:
            target, d = self.in_flight.pop(0)
            target.events += target.engine.receive_datagram(
                d.data, d.local, d.remote, self.now, tcp=d.tcp
            )
            return True
        timers = [t for t in (self.i.engine.get_timer(), self.r.engine.get_timer()) if t]
        if not timers:
            return False
        self.now = max(self.now, min(timers))
        for side in (self.i, self.r):
            side.events += side.engine.handle_timer(self.now)
        return True

    def _carry(self, side: object, d: Datagram) -> None:
        if self.tamper is not None and self.tamper(side, d) is None:  # type: ignore[arg-type]
            return
        if side is self.i:
            outside = self._outside(d.local)
            if d.tcp and (outside, d.remote) not in self.open:
                return  # no connection: nothing leaves
            if not d.tcp and self.udp_blocked:
                return
            self.in_flight.append((self.r, replace(d, local=outside)))
        else:
            if d.tcp and (d.remote, d.local) not in self.open:
                return
            if not d.tcp and self.udp_blocked:
                return
            self.in_flight.append((self.i, replace(d, remote=self._inside(d.remote))))

    def run_until_failed(self, limit: float = 100.0) -> float:
        """Step until the initiator reports an IkeSaFailed; the time it did."""
        while not self.i.of(IkeSaFailed):
            assert self.now < limit and self.step()
        return self.now


def test_ike_over_tcp_connects_first_and_carries_everything_in_the_stream() -> None:
    pair = TcpPair(Transport.TCP)
    sa_id = pair.initiate()
    # §6.1: the connection first, to the TCP port; no IKE_SA_INIT before it is up
    (connect,) = [e for e in pair.i.events if isinstance(e, TcpConnect)]
    assert connect.remote[1] == 4500 and not connect.reconnect
    assert pair.i.engine.datagrams_to_send() == []
    pair.run(until=5)
    assert pair.i.of(IkeSaEstablished) and pair.r.of(IkeSaEstablished)
    assert pair.sent and all(d.tcp for _, d in pair.sent)
    sa_i = pair.i.engine.sas[sa_id]
    (sa_r,) = pair.r.engine.sas.values()
    assert sa_i.local[1] == 40000 and sa_r.remote == (sa_i.local[0], 40000)
    # §6.5: the hashes covered the TCP ports: no NAT seen, and none would float to 4500
    assert not (sa_i.nat_local or sa_i.nat_remote or sa_r.nat_local or sa_r.nat_remote)
    # §3.2: ESP goes in the same connection, never UDP-encapsulated
    (child_i,) = pair.i.of(ChildSaEstablished)
    (child_r,) = pair.r.of(ChildSaEstablished)
    assert child_i.encap_tcp and child_i.encap == (40000, 4500)
    assert child_r.encap_tcp and child_r.encap == (4500, 40000)


def test_nat_in_front_of_tcp_is_detected_but_changes_nothing() -> None:
    """§6.5: a NAT rewrites the initiator's address and port; both sides see it, nobody moves
    to port 4500 of UDP, ESP stays in the stream with the ports the responder sees."""
    pair = TcpPair(Transport.TCP, nat=True)
    sa_id = pair.initiate()
    pair.run(until=5)
    sa_i = pair.i.engine.sas[sa_id]
    (sa_r,) = pair.r.engine.sas.values()
    assert sa_i.nat_local and sa_r.nat_remote
    assert sa_i.remote == (sa_i.remote[0], 4500) and sa_r.remote == (NAT_ADDR, 61000)
    assert all(d.tcp for _, d in pair.sent)
    (child_r,) = pair.r.of(ChildSaEstablished)
    assert child_r.encap_tcp and child_r.encap == (4500, 61000)


@pytest.mark.parametrize("transport, sends", [(Transport.UDP, 4), (Transport.TCP, 1)])
def test_no_timed_retransmits_over_tcp(transport: Transport, sends: int) -> None:
    """§6.2: over TCP the request goes once and is given up after the span the UDP back-off
    takes (1 + 2 + 4 + 8 s); over UDP it goes 1 + retransmit_tries times."""
    pair = TcpPair(transport)
    pair.tamper = lambda side, d: None if side is pair.r else d  # the responder never answers
    pair.initiate()
    assert pair.run_until_failed() == pytest.approx(TIMERS.retransmit_span)
    assert len([d for who, d in pair.sent if who == "i"]) == sends
    (failed,) = pair.i.of(IkeSaFailed)
    tcp = transport is Transport.TCP
    assert failed.reason == (TCP_INIT_UNANSWERED if tcp else UDP_INIT_UNANSWERED)


def test_retransmitted_request_answered_only_on_a_new_connection() -> None:
    """§6.2: a duplicate on the connection that carried the request gets no second answer; the
    same request on a new connection gets the cached answer there."""
    pair = TcpPair(Transport.TCP)
    pair.initiate()
    pair.run(until=5)
    first_auth = next(d for who, d in pair.sent if who == "i" and d.data[18] == 35)  # IKE_AUTH
    (sa_r,) = pair.r.engine.sas.values()
    old = (sa_r.remote, sa_r.local)
    pair.r.engine.receive_datagram(first_auth.data, sa_r.remote, sa_r.local, pair.now, tcp=True)
    assert pair.r.engine.datagrams_to_send() == []
    new_remote = (sa_r.remote[0], 40999)
    pair.r.engine.receive_datagram(first_auth.data, new_remote, sa_r.local, pair.now, tcp=True)
    (again,) = pair.r.engine.datagrams_to_send()
    assert (
        again.tcp and again.remote == new_remote and again.data == sa_r.responses.last_response[0]
    )
    assert (sa_r.remote, sa_r.local) == old  # unauthenticated: the SA does not move for it


def test_initiator_reconnects_and_the_responder_follows() -> None:
    """§6.1: the connection drops; only the TCP Originator reconnects, then tells the peer with
    a liveness check; the responder moves the IKE SA to the new connection."""
    pair = TcpPair(Transport.TCP)
    sa_id = pair.initiate()
    pair.run(until=5)
    pair.close_all()
    reconnects = [e for e in pair.i.events if isinstance(e, TcpConnect) and e.reconnect]
    assert [e.ike_sa_id for e in reconnects] == [sa_id]
    assert not [e for e in pair.r.events if isinstance(e, TcpConnect)]
    (sa_r,) = pair.r.engine.sas.values()
    assert not sa_r.tcp.connected  # type: ignore[union-attr]
    pair.run(until=10)
    sa_i = pair.i.engine.sas[sa_id]
    assert sa_i.local[1] == 40001 and sa_r.remote[1] == 40001
    assert sa_r.tcp.connected and sa_i.state is IkeState.ESTABLISHED  # type: ignore[union-attr]
    assert not pair.i.of(IkeSaFailed) and not sa_i.requests.busy
    # §3.2: the children's kernel SAs (ESP in this stream) move to the new ports, in place
    ((old_i, new_i),) = pair.i.of(IkeSaMoved)[0].children
    ((old_r, new_r),) = pair.r.of(IkeSaMoved)[0].children
    assert (old_i.encap, new_i.encap) == ((40000, 4500), (40001, 4500))
    assert (old_r.encap, new_r.encap) == ((4500, 40000), (4500, 40001))
    assert new_i.spi_in == old_i.spi_in and new_i.encap_tcp and new_r.encap_tcp


def test_request_lost_with_the_connection_is_resent_on_the_new_one() -> None:
    pair = TcpPair(Transport.TCP)
    sa_id = pair.initiate()
    pair.run(until=5)
    pair.tamper = lambda side, d: None  # the connection dies with our request in it
    pair.i.events += pair.i.engine.rekey_ike(sa_id, pair.now)
    pair._collect()
    pair.tamper = None
    pair.close_all()
    pair.run(until=20)
    assert len(pair.i.of(IkeSaEstablished)) == 2  # the rekeyed IKE SA came up
    rekey = [d for who, d in pair.sent if who == "i" and d.data[18] == 36]  # CREATE_CHILD_SA
    assert len(rekey) == 2 and rekey[0].local != rekey[1].local  # once per connection


def test_connect_failure_fails_the_ike_sa() -> None:
    pair = TcpPair(Transport.TCP)
    pair.refuse_connect = True
    pair.initiate()
    pair.run(until=5)
    (failed,) = pair.i.of(IkeSaFailed)
    assert failed.reason == "TCP connection failed: refused"
    assert pair.sent == []


def test_udp_then_tcp_falls_back_when_udp_is_blocked() -> None:
    """§5.1: IKE_SA_INIT over UDP runs its retransmits unanswered, then the same connection
    comes up over TCP; keyingtries (1) is not used up by the fallback."""
    pair = TcpPair(Transport.UDP_THEN_TCP)
    pair.udp_blocked = True
    first = pair.initiate()
    pair.run(until=60)
    (failed,) = pair.i.of(IkeSaFailed)
    assert failed.ike_sa_id == first and failed.reason == UDP_INIT_UNANSWERED
    (up,) = pair.i.of(IkeSaEstablished)
    assert failed.retried_by == up.ike_sa_id  # an `up` follows it (service/driver.py)
    assert up.remote[1] == 4500 and pair.i.engine.sas[up.ike_sa_id].tcp is not None
    udp = [d for who, d in pair.sent if who == "i" and not d.tcp]
    assert len(udp) == 1 + TIMERS.retransmit_tries
    assert len(pair.i.of(ChildSaEstablished)) == 1


def test_plain_udp_does_not_fall_back() -> None:
    pair = TcpPair(Transport.UDP)
    pair.udp_blocked = True
    pair.initiate()
    pair.run(until=60)
    assert pair.i.of(IkeSaFailed) and not pair.i.of(IkeSaEstablished)
    assert not [e for e in pair.i.events if isinstance(e, TcpConnect)]


def test_udp_then_tcp_stays_on_udp_when_udp_works() -> None:
    pair = TcpPair(Transport.UDP_THEN_TCP)
    pair.initiate()
    pair.run(until=10)
    assert pair.i.of(IkeSaEstablished) and not any(d.tcp for _, d in pair.sent)


def test_a_message_over_udp_does_not_move_an_ike_sa_off_tcp() -> None:
    pair = TcpPair(Transport.TCP)
    sa_id = pair.initiate()
    pair.run(until=5)
    (sa_r,) = pair.r.engine.sas.values()
    before = (sa_r.remote, sa_r.local)
    pair.i.engine.rekey_ike(sa_id, pair.now)
    (request,) = pair.i.engine.datagrams_to_send()
    elsewhere = (request.local[0], 500)
    pair.r.engine.receive_datagram(request.data, elsewhere, sa_r.local, pair.now, tcp=False)
    (answer,) = pair.r.engine.datagrams_to_send()
    assert (sa_r.remote, sa_r.local) == before  # still the TCP connection
    assert answer.tcp and answer.remote == before[0]
