"""RFC 5685 redirects between three engines: a client, gateway A and gateway B (tasks/redirect.py).

No sockets: a small network hands each datagram to the engine owning its destination address,
with a seeded lossy link, so every run reproduces.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from ikev2.constants import ExchangeType, NotifyType
from ikev2.engine import Engine
from ikev2.engine.config import ConnectionConfig, EngineConfig, IPAddress, RedirectConfig, Timers
from ikev2.engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    Datagram,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRedirected,
)
from ikev2.engine.state import IkeState
from ikev2.engine.tasks.ike_init import error_response
from ikev2.engine.tasks.redirect import decode_gateway, encode_gateway, parse_gateway
from ikev2.errors import UsageError
from ikev2.wire import NoncePayload, decode_message

from .pairing import ADDR_I, ADDR_R, psk_connections, seeded_env

ADDR_B = ipaddress.ip_address("192.0.2.3")
A, B, C = ADDR_R, ADDR_B, ADDR_I  # gateway A, gateway B, the client


class Net:
    """Engines by address; datagrams go to the engine of their destination address."""

    def __init__(self, engines: dict[IPAddress, Engine], *, seed: int = 1, loss: float = 0.0):
        self.engines = engines
        self.events: dict[IPAddress, list[Event]] = {a: [] for a in engines}
        self.sent: list[Datagram] = []  # everything sent, lost or not
        self.flight: list[Datagram] = []
        self.now = 0.0
        self.rng = random.Random(seed)
        self.loss = loss
        self.tamper: Callable[[Datagram], list[Datagram]] | None = None

    def _collect(self) -> None:
        for engine in self.engines.values():
            for d in engine.datagrams_to_send():
                self.sent.append(d)
                for out in self.tamper(d) if self.tamper else [d]:
                    if self.rng.random() >= self.loss:
                        self.flight.append(out)

    def run(self, until: float = 600.0, max_steps: int = 20_000) -> None:
        for _ in range(max_steps):
            self._collect()
            if self.flight:
                d = self.flight.pop(0)
                target = self.engines.get(d.remote[0])
                if target is not None:
                    events = target.receive_datagram(d.data, d.local, d.remote, self.now)
                    self.events[d.remote[0]] += events
                continue
            timers = [t for e in self.engines.values() if (t := e.get_timer()) is not None]
            if not timers or min(timers) > until:
                return
            self.now = max(self.now, min(timers))
            for address, engine in self.engines.items():
                self.events[address] += engine.handle_timer(self.now)
        raise AssertionError("network did not settle")

    def of(self, address: IPAddress, cls: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events[address] if isinstance(e, cls)]

    def init_requests_to(self, address: IPAddress) -> list[Datagram]:
        return [
            d
            for d in self.sent
            if d.remote[0] == address
            and decode_message(d.data).header.exchange == ExchangeType.IKE_SA_INIT
            and not decode_message(d.data).header.is_response
        ]


def gateways(
    on_a: RedirectConfig | None = None, on_b: RedirectConfig | None = None, **client: object
) -> tuple[ConnectionConfig, ConnectionConfig, ConnectionConfig]:
    """The client's connection (to A), gateway A's and gateway B's (same identity and PSK)."""
    conn_c, conn_a = psk_connections()
    # no liveness checks: over a lossy link they would end IKE SAs at random (§2.4)
    conn_c = replace(conn_c, timers=Timers(dpd_delay=0))
    conn_a = replace(conn_a, timers=Timers(dpd_delay=0))
    conn_b = replace(conn_a, local_addrs=(B,))
    conn_a = replace(conn_a, redirect=on_a or RedirectConfig())
    conn_b = replace(conn_b, redirect=on_b or RedirectConfig())
    conn_c = replace(conn_c, redirect=replace(conn_c.redirect, **client))  # type: ignore[arg-type]
    return conn_c, conn_a, conn_b


def network(conns: tuple[ConnectionConfig, ...], **kwargs: object) -> Net:
    conn_c, conn_a, conn_b = conns
    return Net(
        {
            C: Engine(EngineConfig((conn_c,)), seeded_env(11), strict=True),
            A: Engine(EngineConfig((conn_a,)), seeded_env(12), strict=True),
            B: Engine(EngineConfig((conn_b,)), seeded_env(13), strict=True),
        },
        **kwargs,  # type: ignore[arg-type]
    )


def notify_types(d: Datagram) -> set[int]:
    return {n.notify_type for n in decode_message(d.data).notifies}


TO_B = RedirectConfig(to=(str(B),))


# --- the GW identity (§4.2)
@pytest.mark.parametrize("text", ["192.0.2.7", "2001:db8::7", "gw2.example.org"])
def test_gateway_identity_round_trips(text: str) -> None:
    gateway = parse_gateway(text)
    nonce = bytes(range(32))
    assert decode_gateway(encode_gateway(gateway, nonce)) == (gateway, nonce)
    assert decode_gateway(encode_gateway(gateway)) == (gateway, b"")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01", b"\x01\x05\xc0\x00\x02", b"\x09\x01x", b"\x01\x03abc", b"\x03\x02\xff\xfe"],
)
def test_malformed_gateway_identity_is_none(data: bytes) -> None:
    assert decode_gateway(data) is None


def test_bad_target_text_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_gateway("not a host!")


# --- IKE_SA_INIT (§3.2-§3.4)
@pytest.mark.parametrize(("seed", "loss"), [(1, 0.0), (2, 0.3), (3, 0.3), (4, 0.4)])
def test_init_redirect_is_followed(seed: int, loss: float) -> None:
    net = network(gateways(on_a=TO_B), seed=seed, loss=loss)
    sa_id = net.engines[C].initiate("net", net.now)
    net.run()
    [up] = net.of(C, IkeSaEstablished)
    assert up.ike_sa_id == sa_id and up.remote == (B, 4500)  # the same IKE SA, now at B
    assert [e.gateway for e in net.of(C, IkeSaRedirected)] == [str(B)]
    assert len(net.of(C, ChildSaEstablished)) == 1
    assert not net.engines[A].sas  # A keeps no state for a redirect
    assert [v.state for v in net.engines[B].list_sas()] == ["established"]
    first_to_a = net.init_requests_to(A)[0]
    assert NotifyType.REDIRECT_SUPPORTED in notify_types(first_to_a)
    to_b = net.init_requests_to(B)[-1]
    came_from = decode_message(to_b.data).notify(NotifyType.REDIRECTED_FROM)
    assert came_from is not None and decode_gateway(came_from.data) == (A, b"")
    assert NotifyType.REDIRECT_SUPPORTED not in notify_types(to_b)
    # A's REDIRECT carried our nonce of the request it answered (§3.3)
    a_answers = [d for d in net.sent if d.local[0] == A]
    assert a_answers and all(NotifyType.REDIRECT in notify_types(d) for d in a_answers)


def test_no_redirect_without_support() -> None:
    net = network(gateways(on_a=TO_B, follow=False))
    net.engines[C].initiate("net", net.now)
    net.run()
    [up] = net.of(C, IkeSaEstablished)
    assert up.remote == (A, 4500)  # §3.2: no redirect unasked (4500: RFC 4555 §3.3)
    assert not any(NotifyType.REDIRECT_SUPPORTED in notify_types(d) for d in net.sent)


def test_forged_redirect_is_ignored() -> None:
    """A REDIRECT whose nonce is not ours (an off-path forger) changes nothing: the real
    answer from A still sets the IKE SA up with A."""
    net = network(gateways())
    forged: list[Datagram] = []

    def forge(d: Datagram) -> list[Datagram]:
        message = decode_message(d.data)
        if d.remote[0] == A and message.header.exchange == ExchangeType.IKE_SA_INIT:
            nonce = message.find(NoncePayload)
            assert nonce is not None
            wrong = bytes(b ^ 0xFF for b in nonce.data)
            packet = error_response(message, NotifyType.REDIRECT, encode_gateway(B, wrong))
            forged.append(Datagram(packet, d.local, d.remote))
            return [forged[-1], d]  # the forgery arrives first
        return [d]

    net.tamper = forge
    net.engines[C].initiate("net", net.now)
    net.run()
    assert forged
    [up] = net.of(C, IkeSaEstablished)
    assert up.remote == (A, 4500)
    assert not net.of(C, IkeSaRedirected) and not net.init_requests_to(B)


@pytest.mark.parametrize("limit", [5, 2])
def test_redirect_loop_is_cut(limit: int) -> None:
    """A sends us to B and B back to A: we follow `limit` redirects, then the IKE SA fails."""
    back_to_a = RedirectConfig(to=(str(A),))
    net = network(gateways(on_a=TO_B, on_b=back_to_a, limit=limit))
    net.engines[C].initiate("net", net.now)
    net.run()
    assert len(net.of(C, IkeSaRedirected)) == limit
    [failed] = net.of(C, IkeSaFailed)
    assert "redirect loop" in failed.reason
    assert len(net.init_requests_to(A)) + len(net.init_requests_to(B)) == limit + 1
    assert not net.of(C, IkeSaEstablished) and not net.engines[C].sas


def test_redirect_loop_window_slides() -> None:
    """Redirects older than `period` no longer count (strongSwan's sliding window)."""
    net = network(gateways(on_a=TO_B, limit=1, period=100.0))
    net.engines[C].initiate("net", net.now)
    net.run()
    assert len(net.of(C, IkeSaEstablished)) == 1
    net.now += 101.0
    net.engines[C].initiate("net", net.now)
    net.run(until=net.now + 5)
    assert len(net.of(C, IkeSaEstablished)) == 2  # followed again: the first fell out


def test_fqdn_target_is_not_followed() -> None:
    net = network(gateways(on_a=RedirectConfig(to=("gw2.example.org",))))
    net.engines[C].initiate("net", net.now)
    net.run()
    [failed] = net.of(C, IkeSaFailed)
    assert "gw2.example.org" in failed.reason and "resolving" in failed.reason


# --- IKE_AUTH (§3.5)
@pytest.mark.parametrize(("seed", "loss"), [(1, 0.0), (5, 0.3), (6, 0.3)])
def test_auth_redirect_is_followed(seed: int, loss: float) -> None:
    net = network(gateways(on_a=RedirectConfig(to=(str(B),), on="auth")), seed=seed, loss=loss)
    old = net.engines[C].initiate("net", net.now)
    net.run()
    [moved] = net.of(C, IkeSaRedirected)
    assert moved.ike_sa_id == old and moved.new_ike_sa_id != old
    [up] = net.of(C, IkeSaEstablished)  # only the new one: the old one never counted as up
    assert up.ike_sa_id == moved.new_ike_sa_id and up.remote == (B, 4500)
    assert [e.ike_sa_id for e in net.of(C, ChildSaEstablished)] == [up.ike_sa_id]
    assert list(net.engines[C].sas) == [up.ike_sa_id]
    assert not net.engines[A].sas  # the client deleted the redirected IKE SA (§3.5)
    assert not net.of(A, ChildSaEstablished)  # A made no child for it


def test_auth_redirected_sa_expires_at_the_gateway() -> None:
    """A client that never deletes the redirected IKE SA: A deletes it after its half-open
    timeout (§3.5)."""
    net = network(gateways(on_a=RedirectConfig(to=(str(B),), on="auth")))

    def drop_delete(d: Datagram) -> list[Datagram]:
        header = decode_message(d.data).header
        to_a = d.remote[0] == A and header.exchange == ExchangeType.INFORMATIONAL
        return [] if to_a and not header.is_response else [d]

    net.tamper = drop_delete
    net.engines[C].initiate("net", net.now)
    net.run(until=29.0)
    assert [v.state for v in net.engines[A].list_sas()] == ["established"]
    net.run(until=31.0)  # the half-open timeout from IKE_AUTH
    assert not net.engines[A].sas
    assert len(net.of(A, IkeSaDeleted)) == 1


# --- established IKE SA (§3.6)
@pytest.mark.parametrize(("seed", "loss"), [(1, 0.0), (7, 0.3), (8, 0.3)])
def test_established_redirect_is_followed(seed: int, loss: float) -> None:
    net = network(gateways(), seed=seed, loss=loss)
    old = net.engines[C].initiate("net", net.now)
    net.run(until=150.0)
    [a_sa] = net.engines[A].sas
    assert net.engines[C].sas[old].state is IkeState.ESTABLISHED
    net.events[C].clear()
    net.events[C] += net.engines[A].redirect(a_sa, str(B), net.now)
    net.run(until=net.now + 200)
    [moved] = net.of(C, IkeSaRedirected)
    assert moved.ike_sa_id == old
    [up] = net.of(C, IkeSaEstablished)
    assert up.ike_sa_id == moved.new_ike_sa_id and up.remote == (B, 4500)
    # make-before-break: the new child is up before the old one goes (over a lossy link A
    # may delete the old IKE SA first, after its half-open timeout: §3.6)
    order = [type(e) for e in net.events[C] if isinstance(e, ChildSaEstablished | ChildSaDeleted)]
    assert sorted(order, key=str) == [ChildSaDeleted, ChildSaEstablished]
    if loss == 0:
        assert order == [ChildSaEstablished, ChildSaDeleted]
    assert list(net.engines[C].sas) == [up.ike_sa_id]
    assert not net.engines[A].sas
    [b_view] = net.engines[B].list_sas()
    assert b_view.state == "established"


def test_established_redirect_needs_an_established_sa() -> None:
    net = network(gateways())
    net.engines[C].initiate("net", net.now)
    assert net.engines[A].redirect(99, str(B), net.now) == []
    with pytest.raises(UsageError):
        net.engines[A].redirect(99, "no such host!", net.now)


def test_established_redirect_refused_when_not_following() -> None:
    net = network(gateways(follow=False))
    old = net.engines[C].initiate("net", net.now)
    net.run(until=20.0)
    [a_sa] = net.engines[A].sas
    net.engines[A].redirect(a_sa, str(B), net.now)
    net.run(until=net.now + 10)
    assert not net.of(C, IkeSaRedirected)
    assert list(net.engines[C].sas) == [old]  # kept until A deletes it after its timeout
    net.run(until=net.now + 60)
    assert not net.engines[A].sas and not net.engines[C].sas


def test_random_gateway_data_never_raises() -> None:
    """Peer bytes: decode_gateway answers a (gateway, nonce) pair or None, never an exception."""
    rng = random.Random(5685)
    seen = 0
    for _ in range(5000):
        data = bytes([rng.choice((1, 2, 3, 0, 9))]) + rng.randbytes(rng.randrange(0, 40))
        parsed = decode_gateway(data)
        if parsed is not None:
            seen += 1
            assert decode_gateway(encode_gateway(*parsed)) == parsed
    assert seen > 0
