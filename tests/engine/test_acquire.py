"""Trap policies and ACQUIREs (strongSwan's start_action = trap): the first packet of a trapped
child brings it up under an IKE SA of its connection that can carry it (CREATE_CHILD_SA, RFC 7296
§1.3.1), or a new IKE SA when there is none; repeated ACQUIREs for a child already being set up
start nothing more. Back-to-back engines, each with an in-memory kernel."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from ikev2.engine.config import TrafficSelectorSpec
from ikev2.engine.events import ChildSaDeleted, ChildSaEstablished, IkeSaEstablished
from ikev2.kernel import Direction
from ikev2.service.kernel_apply import POLICY_PRIORITY

from .kernels import KernelPair, KernelSide
from .pairing import Pair, psk_connections


def two_children() -> tuple[object, object]:
    """A connection with children `net` (10.1/24 - 10.2/24) and `web` (10.1/24 - 10.3/24)."""
    conn_i, conn_r = psk_connections()
    net_i, net_r = conn_i.children[0], conn_r.children[0]
    web_ts = (TrafficSelectorSpec(ipaddress.ip_network("10.3.0.0/24")),)
    web_i = replace(net_i, name="web", remote_ts=web_ts)
    web_r = replace(net_r, name="web", local_ts=web_ts)
    return replace(conn_i, children=(net_i, web_i)), replace(conn_r, children=(net_r, web_r))


def trapped(pair: KernelPair, side: KernelSide | None = None) -> list[int]:
    """Trap policies for every child of the side's connection; their reqids."""
    side = side or pair.i
    conn = side.side.engine.config.connections[0]
    return [side.trap(conn, child, index) for index, child in enumerate(conn.children)]


def ike_sas(side: KernelSide) -> list[int]:
    return sorted(side.side.engine.sas)


def child_names(side: KernelSide) -> list[str]:
    return sorted(c.config.name for sa in side.side.engine.sas.values() for c in sa.children)


def out_policy_reqid(side: KernelSide, remote_net: str) -> int:
    (policy,) = [
        p
        for p in side.kernel.list_policies()
        if p.direction is Direction.OUT and str(p.selector.dst) == remote_net
    ]
    return policy.templates[0].reqid


def test_first_acquire_initiates_an_ike_sa_with_that_child_only() -> None:
    pair = KernelPair(Pair(*two_children()))  # type: ignore[arg-type]
    net, web = trapped(pair)
    pair.i.acquire(web)
    pair.i.acquire(web)  # the kernel repeats ACQUIREs while packets keep coming
    pair.run(until=1)
    pair.i.acquire(web)  # and after the child is up
    pair.run(until=2)
    assert pair.i.acquires == 3
    assert len(ike_sas(pair.i)) == 1 and len(ike_sas(pair.r)) == 1
    assert child_names(pair.i) == ["web"] == child_names(pair.r)
    assert len(pair.pair.i.of(ChildSaEstablished)) == 1
    # the child's own policy is on top of the trap, with the trap's reqid (kernel_apply: the
    # kernel replaces its larval ACQUIRE state only by an SA of that reqid); `net` is still
    # only trapped
    assert out_policy_reqid(pair.i, "10.3.0.0/24") == web
    assert {sa.reqid for sa in pair.i.kernel.list_sas()} == {web}
    assert {p.priority for p in pair.i.kernel.list_policies() if p.templates[0].reqid == web} == {
        POLICY_PRIORITY
    }
    assert out_policy_reqid(pair.i, "10.2.0.0/24") == net


def test_acquire_for_another_child_creates_it_under_the_existing_ike_sa() -> None:
    pair = KernelPair(Pair(*two_children()))  # type: ignore[arg-type]
    net, web = trapped(pair)
    pair.i.acquire(net)
    pair.run(until=1)
    (sa_id,) = ike_sas(pair.i)
    pair.i.acquire(web)
    pair.i.acquire(web)
    pair.run(until=2)
    assert ike_sas(pair.i) == [sa_id]  # no second IKE SA
    assert child_names(pair.i) == ["net", "web"] == child_names(pair.r)
    assert len(pair.pair.i.of(IkeSaEstablished)) == 1
    assert len(pair.pair.i.of(ChildSaEstablished)) == 2


def test_a_deleted_child_comes_back_on_the_next_acquire() -> None:
    conn_i, conn_r = psk_connections()
    pair = KernelPair(Pair(conn_i, conn_r))
    (net,) = trapped(pair)
    pair.pair.initiate()  # start_action = start and trap, or `up`: the IKE SA exists
    pair.run(until=1)
    (sa_id,) = ike_sas(pair.i)
    ((spi_in, _),) = [(c.spi_in, c.spi_out) for c in pair.pair.i.engine.sas[sa_id].children]
    pair.pair.i.events += pair.pair.i.engine.terminate_child(sa_id, spi_in, pair.pair.now)
    pair.run(until=2)
    assert child_names(pair.i) == [] and ike_sas(pair.i) == [sa_id]
    assert out_policy_reqid(pair.i, "10.2.0.0/24") == net  # the trap is back in the kernel
    pair.i.acquire(net)
    pair.run(until=3)
    assert ike_sas(pair.i) == [sa_id] and len(ike_sas(pair.r)) == 1
    assert child_names(pair.i) == ["net"] == child_names(pair.r)
    assert len(pair.pair.i.of(ChildSaEstablished)) == 2
    assert len(pair.pair.i.of(ChildSaDeleted)) == 1


def test_the_responder_creates_the_child_under_the_peers_ike_sa() -> None:
    conn_i, conn_r = psk_connections()
    pair = KernelPair(Pair(conn_i, conn_r))
    (trap_r,) = trapped(pair, pair.r)
    pair.pair.initiate()
    pair.run(until=1)
    (sa_r,) = ike_sas(pair.r)
    ((spi_in, _),) = [(c.spi_in, c.spi_out) for c in pair.pair.r.engine.sas[sa_r].children]
    pair.pair.r.events += pair.pair.r.engine.terminate_child(sa_r, spi_in, pair.pair.now)
    pair.run(until=2)
    assert child_names(pair.r) == []
    pair.r.acquire(trap_r)
    pair.run(until=3)
    assert ike_sas(pair.r) == [sa_r]  # not a new IKE SA towards the initiator
    assert child_names(pair.r) == ["net"] == child_names(pair.i)
    (created,) = [e for e in pair.pair.r.of(ChildSaEstablished)][1:]
    assert created.ike_sa_id == sa_r


def test_acquires_while_the_ike_sa_is_set_up_queue_each_child_once() -> None:
    pair = KernelPair(Pair(*two_children()))  # type: ignore[arg-type]
    net, web = trapped(pair)
    pair.i.acquire(net)
    pair.i.sync(pair.pair.now)  # IKE_SA_INIT is out, nothing answered yet
    for _ in range(3):
        pair.i.acquire(web)
        pair.i.acquire(net)
    pair.run(until=2)
    assert len(ike_sas(pair.i)) == 1
    assert child_names(pair.i) == ["net", "web"] == child_names(pair.r)
    assert len(pair.pair.i.of(ChildSaEstablished)) == 2
