"""CP in IKE_AUTH (RFC 7296 §2.19, §3.15), engines back to back: a gateway with v4/v6 pools and
road-warrior clients with `vips`; the child SAs are applied to the in-memory kernel.

    HDR, SK {IDi, AUTH, CP(CFG_REQUEST), SAi2, TSi, TSr}  -->
                     <--  HDR, SK {IDr, AUTH, CP(CFG_REPLY), SAr2, TSi, TSr}
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from ikev2.constants import CfgAttr, CfgType, NotifyType
from ikev2.engine.config import ConnectionConfig, EngineConfig, PoolConfig, TrafficSelectorSpec
from ikev2.engine.events import (
    ChildSaEstablished,
    ChildSaFailed,
    IkeSaEstablished,
    VirtualIpsAssigned,
    VirtualIpsReleased,
)
from ikev2.engine.tasks import config_payload
from ikev2.kernel import Direction
from ikev2.kernel.memory import InMemoryKernel
from ikev2.service.kernel_apply import KernelApplier, selector_pairs
from ikev2.wire import CfgAttribute, CpPayload

from .pairing import Pair, Side, fqdn, psk_connections, with_

ip = ipaddress.ip_address
net = ipaddress.ip_network
ANY4, ANY6 = ip("0.0.0.0"), ip("::")


def specs(*nets: str) -> tuple[TrafficSelectorSpec, ...]:
    return tuple(TrafficSelectorSpec(net(n)) for n in nets)


def remote_access(
    v4: tuple[str, str] = ("10.3.0.1", "10.3.0.9"),
    v6: tuple[str, str] | None = ("fd03::1", "fd03::9"),
    vips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (ANY4, ANY6),
    grace: float = 0.0,
) -> tuple[ConnectionConfig, ConnectionConfig, EngineConfig]:
    """A client asking for `vips` and a gateway with pools rw4 (and rw6), any client ID."""
    conn_i, conn_r = psk_connections()
    client_child = replace(
        conn_i.children[0],
        local_ts=specs("0.0.0.0/0", "::/0"),
        remote_ts=specs("10.2.0.0/24", "fd02::/64"),
    )
    gateway_child = replace(
        conn_r.children[0],
        local_ts=specs("10.2.0.0/24", "fd02::/64"),
        remote_ts=specs("10.3.0.0/24", "fd03::/64"),
    )
    client = with_(conn_i, children=(client_child,), vips=vips)
    pools = [
        PoolConfig(
            "rw4",
            ip(v4[0]),
            ip(v4[1]),
            dns=(ip("10.2.0.53"),),
            subnets=(net("10.2.0.0/24"),),
            dns_domains=("corp.example",),
            grace=grace,
        )
    ]
    if v6 is not None:
        pools.append(PoolConfig("rw6", ip(v6[0]), ip(v6[1]), dns=(ip("fd02::53"),), grace=grace))
    gateway = with_(
        conn_r, children=(gateway_child,), remote_id=None, pools=tuple(p.name for p in pools)
    )
    return client, gateway, EngineConfig((gateway,), pools=tuple(pools))


def connect(pair: Pair, name: str = "net") -> int:
    sa_id = pair.initiate(name)
    pair.run(until=pair.now + 10)
    return sa_id


def another_client(pair: Pair, client: ConnectionConfig, seed: int) -> Pair:
    """A second road warrior (its own engine) against the same gateway engine."""
    other = Pair(client, client, seed=seed)
    other.r = Side(pair.r.engine)
    other.now = pair.now
    return other


def test_v4_and_v6_leases_dns_and_narrowed_selectors() -> None:
    client, gateway, engine_r = remote_access()
    pair = Pair(client, gateway, engine_r=engine_r)
    connect(pair)
    assigned = pair.i.of(VirtualIpsAssigned)
    assert len(assigned) == 1
    event = assigned[0]
    assert event.vips == (ip("10.3.0.1"), ip("fd03::1"))
    assert event.dns == (ip("10.2.0.53"), ip("fd02::53"))
    assert event.subnets == (net("10.2.0.0/24"),)
    assert event.dns_domains == ("corp.example",)
    # the client's side of the child is its virtual IP, on both ends (§2.9 narrowing)
    (child_i,) = pair.i.of(ChildSaEstablished)
    (child_r,) = pair.r.of(ChildSaEstablished)
    assert [str(t.network) for t in child_i.local_ts] == ["10.3.0.1/32", "fd03::1/128"]
    assert [str(t.network) for t in child_r.remote_ts] == ["10.3.0.1/32", "fd03::1/128"]
    # the views: list-sas shows the virtual IPs on both sides
    (view_i,) = pair.i.engine.list_sas()
    (view_r,) = pair.r.engine.list_sas()
    assert view_i.local_vips == ("10.3.0.1", "fd03::1") and view_i.remote_vips == ()
    assert view_r.remote_vips == ("10.3.0.1", "fd03::1") and view_r.local_vips == ()
    # the gateway's kernel policies name the leased address, not the pool
    kernel = InMemoryKernel()
    KernelApplier(kernel).child_established(child_r)
    inbound = {str(p.selector.src) for p in kernel.list_policies() if p.direction is Direction.IN}
    assert inbound == {"10.3.0.1/32", "fd03::1/128"}
    pools = {v.name: v for v in pair.r.engine.list_pools(pair.now)}
    assert pools["rw4"].online == 1 and pools["rw4"].leases[0].identity == "moon.example"


def test_reconnect_and_rekey_keep_the_lease_delete_releases_it() -> None:
    client, gateway, engine_r = remote_access()
    pair = Pair(client, gateway, engine_r=engine_r)
    sa_id = connect(pair)
    pair.i.events += pair.i.engine.rekey_ike(sa_id, pair.now)
    pair.run(until=pair.now + 10)
    rekeyed = [e for e in pair.r.of(IkeSaEstablished) if e.rekeyed_from is not None]
    assert len(rekeyed) == 1
    new_r = rekeyed[0].ike_sa_id
    assert sorted(map(str, pair.r.engine.pools.holdings(new_r))) == ["10.3.0.1", "fd03::1"]
    (view_r,) = pair.r.engine.list_sas()
    assert view_r.remote_vips == ("10.3.0.1", "fd03::1")
    assert pair.i.of(VirtualIpsReleased) == []  # a rekey removes nothing
    # delete: the client removes its addresses, the gateway's lease goes
    (new_i,) = pair.i.engine.sas
    pair.i.events += pair.i.engine.terminate(new_i, pair.now)
    pair.run(until=pair.now + 10)
    (released,) = pair.i.of(VirtualIpsReleased)
    assert released.vips == (ip("10.3.0.1"), ip("fd03::1"))
    assert all(v.online == 0 for v in pair.r.engine.list_pools(pair.now))
    # someone else connects meanwhile; the first client still gets its old address back
    other = another_client(pair, with_(client, local_id=fqdn("other.example")), seed=7)
    connect(other)
    assert other.i.of(VirtualIpsAssigned)[0].vips == (ip("10.3.0.2"), ip("fd03::2"))
    pair.now = other.now
    connect(pair)
    assert pair.i.of(VirtualIpsAssigned)[-1].vips == (ip("10.3.0.1"), ip("fd03::1"))


def test_client_asking_for_a_specific_address_gets_it() -> None:
    client, gateway, engine_r = remote_access(vips=(ip("10.3.0.7"),))
    pair = Pair(client, gateway, engine_r=engine_r)
    connect(pair)
    assert pair.i.of(VirtualIpsAssigned)[0].vips == (ip("10.3.0.7"),)
    (child_r,) = pair.r.of(ChildSaEstablished)
    assert [str(t.network) for t in child_r.remote_ts] == ["10.3.0.7/32"]


def test_exhausted_pool_answers_internal_address_failure_and_keeps_the_ike_sa() -> None:
    client, gateway, engine_r = remote_access(v4=("10.3.0.1", "10.3.0.1"), v6=None)
    pair = Pair(client, gateway, engine_r=engine_r)
    first = connect(pair)
    other = another_client(pair, with_(client, local_id=fqdn("late.example")), seed=9)
    connect(other)
    # §3.15.4: the IKE SA is up, the child is refused with INTERNAL_ADDRESS_FAILURE
    assert len(other.i.of(IkeSaEstablished)) == 1
    (failed,) = other.i.of(ChildSaFailed)
    assert failed.notify is NotifyType.INTERNAL_ADDRESS_FAILURE
    assert other.i.of(ChildSaEstablished) == [] and other.i.of(VirtualIpsAssigned) == []
    (late_view,) = other.i.engine.list_sas()
    assert late_view.state == "established" and late_view.children == ()
    # nothing else torn down: the first client keeps its SA, child and lease
    assert first in pair.i.engine.sas and len(pair.i.engine.list_sas()[0].children) == 1
    gateway_views = {v.remote_id: v for v in pair.r.engine.list_sas()}
    assert len(gateway_views["moon.example"].children) == 1
    assert gateway_views["late.example"].children == ()
    assert gateway_views["late.example"].remote_vips == ()


def test_one_family_exhausted_gives_the_other_familys_child_only() -> None:
    client, gateway, engine_r = remote_access(v4=("10.3.0.1", "10.3.0.1"))
    pair = Pair(client, gateway, engine_r=engine_r)
    connect(pair)
    other = another_client(pair, with_(client, local_id=fqdn("late.example")), seed=11)
    connect(other)
    assert other.i.of(VirtualIpsAssigned)[0].vips == (ip("fd03::2"),)
    (child_i,) = other.i.of(ChildSaEstablished)
    assert [str(t.network) for t in child_i.local_ts] == ["fd03::2/128"]
    # TSr keeps both families; the policies pair only same-family selectors: IPv6 only
    pairs = list(selector_pairs(child_i.local_ts, child_i.remote_ts))
    assert [(str(o.src), str(o.dst)) for o, _ in pairs] == [("fd03::2/128", "fd02::/64")]


def test_gateway_with_pools_requires_a_cp_request() -> None:
    client, gateway, engine_r = remote_access()
    pair = Pair(with_(client, vips=()), gateway, engine_r=engine_r)
    connect(pair)
    (failed,) = pair.i.of(ChildSaFailed)
    assert failed.notify is NotifyType.FAILED_CP_REQUIRED
    assert all(v.online == 0 for v in pair.r.engine.list_pools(pair.now))


def test_gateway_delete_releases_within_grace_then_frees() -> None:
    client, gateway, engine_r = remote_access(v4=("10.3.0.1", "10.3.0.1"), v6=None, grace=60)
    pair = Pair(client, gateway, engine_r=engine_r)
    connect(pair)
    (sa_r,) = pair.r.engine.sas
    pair.r.events += pair.r.engine.terminate(sa_r, pair.now)
    pair.run(until=pair.now + 10)
    assert pair.i.of(VirtualIpsReleased)
    (view,) = pair.r.engine.list_pools(pair.now)
    assert view.online == 0 and view.offline == 1  # reserved for moon
    other = another_client(pair, with_(client, local_id=fqdn("late.example")), seed=13)
    connect(other)
    assert other.i.of(ChildSaFailed)[0].notify is NotifyType.INTERNAL_ADDRESS_FAILURE
    later = another_client(pair, with_(client, local_id=fqdn("later.example")), seed=15)
    later.now = pair.now + 120
    connect(later)
    assert later.i.of(VirtualIpsAssigned)[0].vips == (ip("10.3.0.1"),)


def test_malformed_reply_attributes_are_ignored() -> None:
    """Bad network input never raises: short, long and garbage values are skipped."""
    bad = [
        CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b"\x0a\x03"),
        CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, bytes(16)),
        CfgAttribute(CfgAttr.INTERNAL_IP4_SUBNET, b"\x0a\x00\x00\x00\xff\x00\xff\x00"),
        CfgAttribute(CfgAttr.INTERNAL_IP6_SUBNET, bytes(16) + b"\xc8"),
        CfgAttribute(CfgAttr.INTERNAL_DNS_DOMAIN, b"\xff\xfe"),
        CfgAttribute(CfgAttr.INTERNAL_IP4_DNS, b"12345"),
    ]
    for attr in bad:
        assert config_payload.decode_address(attr.attr_type, attr.value) is None
        assert config_payload.decode_subnet(attr.attr_type, attr.value) is None
    assert config_payload.decode_domain(b"\xff\xfe") is None
    assert config_payload.decode_domain(b"a b;rm") is None
    good = config_payload.decode_subnet(
        CfgAttr.INTERNAL_IP4_SUBNET, bytes([10, 2, 0, 0, 255, 255, 255, 0])
    )
    assert good == net("10.2.0.0/24")
    # a client answered with only garbage keeps its IKE SA and installs nothing
    client, gateway, engine_r = remote_access()
    pair = Pair(client, gateway, engine_r=engine_r)
    sa_id = connect(pair)
    sa = pair.i.engine.sas[sa_id]
    config_payload.process_reply(sa, [CpPayload(CfgType.CFG_REPLY, tuple(bad))])
    assert sa.cp is not None and sa.cp.local_vips == ()
    assert not any(isinstance(e, VirtualIpsAssigned) for e in sa.outbox.events)


def test_child_rekey_and_reauthentication_keep_the_virtual_ip() -> None:
    """§2.8: a rekeyed child (the client proposes 0.0.0.0/0 again) is narrowed to the lease
    again; §2.8.3: a reauthentication's new IKE SA gets the same lease, which outlives the
    old IKE SA's deletion, and the client never loses its address."""
    client, gateway, engine_r = remote_access()
    pair = Pair(client, gateway, engine_r=engine_r)
    sa_id = connect(pair)
    (child,) = pair.i.engine.sas[sa_id].children
    pair.i.events += pair.i.engine.rekey_child(sa_id, child.spi_in, pair.now)
    pair.run(until=pair.now + 10)
    rekeyed = pair.r.of(ChildSaEstablished)
    assert len(rekeyed) == 2
    assert [str(t.network) for t in rekeyed[1].remote_ts] == ["10.3.0.1/32", "fd03::1/128"]
    pair.i.events += pair.i.engine.reauthenticate(sa_id, pair.now)
    pair.run(until=pair.now + 10)
    assert [e.vips for e in pair.i.of(VirtualIpsAssigned)] == [
        (ip("10.3.0.1"), ip("fd03::1")),
        (ip("10.3.0.1"), ip("fd03::1")),
    ]
    (new_r,) = pair.r.engine.sas  # the old IKE SA is gone
    assert sorted(map(str, pair.r.engine.pools.holdings(new_r))) == ["10.3.0.1", "fd03::1"]
    (view,) = pair.r.engine.list_pools(pair.now)[:1]
    assert view.online == 1 and view.leases[0].holders == (new_r,)
    # the client was told the old IKE SA's addresses are released; the new one holds them
    assert len(pair.i.of(VirtualIpsReleased)) == 1
    (view_i,) = pair.i.engine.list_sas()
    assert view_i.local_vips == ("10.3.0.1", "fd03::1")


def test_garbage_cp_request_attributes_never_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Malformed INTERNAL_IP4/6_ADDRESS values in a CFG_REQUEST count as 'any address'; an
    unknown attribute type is ignored (strict engines re-raise our own bugs)."""
    client, gateway, engine_r = remote_access()
    pair = Pair(with_(client, vips=()), gateway, engine_r=engine_r)
    garbage = CpPayload(
        CfgType.CFG_REQUEST,
        (
            CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b"\x01\x02\x03"),
            CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, b"\xff" * 40),
            CfgAttribute(0x7ABC, b"whatever"),
            CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b"\x0a\x03\x00\x05"),  # a second one
        ),
    )
    monkeypatch.setattr(config_payload, "request", lambda sa: [garbage])
    connect(pair)
    (child_r,) = pair.r.of(ChildSaEstablished)
    assert [str(t.network) for t in child_r.remote_ts] == ["10.3.0.1/32", "fd03::1/128"]
