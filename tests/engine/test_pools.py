"""Address pools (engine/pools.py): leases per identity, reconnect, rekey transfer, grace,
requested addresses, exhaustion; pure, no engine."""

from __future__ import annotations

import ipaddress

import pytest

from ikev2.constants import IdType
from ikev2.engine.config import Identity, PoolConfig
from ikev2.engine.pools import AddressPool, Pools

ip = ipaddress.ip_address


def ident(name: str) -> Identity:
    return Identity(IdType.FQDN, name.encode())


def pool(first: str, last: str, grace: float = 0.0, name: str = "rw") -> PoolConfig:
    return PoolConfig(name, ip(first), ip(last), grace=grace)


def test_distinct_identities_get_distinct_addresses_in_order() -> None:
    p = AddressPool(pool("10.3.0.1", "10.3.0.4"))
    got = [p.acquire(ident(f"c{n}"), n, None, 0.0) for n in range(4)]
    assert got == [ip("10.3.0.1"), ip("10.3.0.2"), ip("10.3.0.3"), ip("10.3.0.4")]


def test_exhaustion_returns_none_and_keeps_every_lease() -> None:
    p = AddressPool(pool("10.3.0.1", "10.3.0.2"))
    a = p.acquire(ident("a"), 1, None, 0.0)
    b = p.acquire(ident("b"), 2, None, 0.0)
    assert p.acquire(ident("c"), 3, None, 0.0) is None
    assert p.lease_of(ident("a")) == a and p.lease_of(ident("b")) == b
    assert p.lease_of(ident("c")) is None


def test_same_identity_shares_its_lease_between_ike_sas() -> None:
    """A reauthentication (§2.8.3) makes a second IKE SA of the same identity: same address,
    and it stays leased until both are gone."""
    p = AddressPool(pool("10.3.0.1", "10.3.0.9"))
    first = p.acquire(ident("a"), 1, None, 0.0)
    assert p.acquire(ident("a"), 2, None, 1.0) == first
    p.release(ident("a"), 1, 2.0)
    assert p.by_identity[ident("a")].online
    p.release(ident("a"), 2, 3.0)
    assert ident("a") not in p.by_identity


def test_reconnect_gets_the_previous_address_back() -> None:
    p = AddressPool(pool("10.3.0.1", "10.3.0.9"))
    p.acquire(ident("x"), 1, None, 0.0)
    old = p.acquire(ident("a"), 2, None, 0.0)
    p.release(ident("a"), 2, 1.0)
    p.acquire(ident("b"), 3, None, 2.0)  # takes a never-used address, not a's
    assert p.acquire(ident("a"), 4, None, 3.0) == old


def test_released_address_is_reused_once_fresh_ones_run_out() -> None:
    p = AddressPool(pool("10.3.0.1", "10.3.0.2"))
    p.acquire(ident("a"), 1, None, 0.0)
    p.acquire(ident("b"), 2, None, 0.0)
    p.release(ident("a"), 1, 1.0)
    assert p.acquire(ident("c"), 3, None, 2.0) == ip("10.3.0.1")
    # a's old address is gone now; a comes back to an exhausted pool
    assert p.acquire(ident("a"), 4, None, 3.0) is None


def test_grace_period_reserves_an_offline_lease() -> None:
    p = AddressPool(pool("10.3.0.1", "10.3.0.1", grace=60.0))
    p.acquire(ident("a"), 1, None, 0.0)
    p.release(ident("a"), 1, 10.0)
    assert p.acquire(ident("b"), 2, None, 69.0) is None  # reserved until 70
    view = p.view(69.0)
    assert view.offline == 1 and view.leases[0].reserved_until == 70.0
    assert p.acquire(ident("b"), 2, None, 70.0) == ip("10.3.0.1")
    assert p.lease_of(ident("a")) is None


def test_reconnect_within_grace_brings_the_lease_back_online() -> None:
    p = AddressPool(pool("10.3.0.1", "10.3.0.1", grace=60.0))
    p.acquire(ident("a"), 1, None, 0.0)
    p.release(ident("a"), 1, 10.0)
    assert p.acquire(ident("a"), 2, None, 30.0) == ip("10.3.0.1")
    # the stale offline entry from t=10 must not expire the lease at t=70
    assert p.acquire(ident("b"), 3, None, 100.0) is None
    assert p.view(100.0).online == 1


def test_requested_address_is_granted_when_free() -> None:
    p = AddressPool(pool("10.3.0.1", "10.3.0.100"))
    assert p.acquire(ident("a"), 1, ip("10.3.0.50"), 0.0) == ip("10.3.0.50")
    # taken: b gets the next fresh one instead
    assert p.acquire(ident("b"), 2, ip("10.3.0.50"), 0.0) == ip("10.3.0.1")
    # out of the pool or the wrong family: ignored
    assert p.acquire(ident("c"), 3, ip("192.0.2.9"), 0.0) == ip("10.3.0.2")
    # the address skipped over stays free for later clients, nothing is handed out twice
    got = {p.acquire(ident(f"n{k}"), 10 + k, None, 0.0) for k in range(97)}
    assert None not in got and len(got) == 97
    assert ip("10.3.0.50") not in got
    assert p.acquire(ident("last"), 999, None, 0.0) is None


def test_requested_address_far_into_a_large_ipv6_pool() -> None:
    p = AddressPool(pool("2001:db8::1", "2001:db8::ffff:ffff:ffff"))
    wanted = ip("2001:db8::ffff:0:1")
    assert p.acquire(ident("a"), 1, wanted, 0.0) == wanted
    assert p.acquire(ident("b"), 2, None, 0.0) == ip("2001:db8::1")


def test_offline_lease_moves_to_a_requested_address() -> None:
    p = AddressPool(pool("10.3.0.1", "10.3.0.9", grace=60.0))
    p.acquire(ident("a"), 1, None, 0.0)
    p.release(ident("a"), 1, 1.0)
    assert p.acquire(ident("a"), 2, ip("10.3.0.7"), 2.0) == ip("10.3.0.7")
    assert p.view(2.0).online == 1 and len(p.view(2.0).leases) == 1


def test_pools_transfer_on_rekey_and_release_on_delete() -> None:
    pools = Pools([pool("10.3.0.1", "10.3.0.9"), pool("fd00::1", "fd00::9", name="rw6")])
    names = ("rw", "rw6")
    v4 = pools.acquire(names, 4, ident("a"), 1, None, 0.0)
    v6 = pools.acquire(names, 6, ident("a"), 1, None, 0.0)
    assert v4 is not None and v4[0].name == "rw" and v4[1] == ip("10.3.0.1")
    assert v6 is not None and v6[0].name == "rw6" and v6[1] == ip("fd00::1")
    pools.transfer(1, 2)  # the IKE SA was rekeyed (§2.18)
    pools.release(1, 5.0)  # the old one's deletion releases nothing
    assert sorted(map(str, pools.holdings(2))) == ["10.3.0.1", "fd00::1"]
    assert pools.views(5.0)[0].leases[0].holders == (2,)
    pools.release(2, 6.0)
    assert all(not v.leases for v in pools.views(6.0))
    assert pools.holdings(2) == []


def test_second_pool_serves_when_the_first_is_exhausted() -> None:
    pools = Pools([pool("10.3.0.1", "10.3.0.1"), pool("10.4.0.1", "10.4.0.1", name="more")])
    a = pools.acquire(("rw", "more"), 4, ident("a"), 1, None, 0.0)
    b = pools.acquire(("rw", "more"), 4, ident("b"), 2, None, 0.0)
    assert a is not None and b is not None and (a[1], b[1]) == (ip("10.3.0.1"), ip("10.4.0.1"))
    assert pools.acquire(("rw", "more"), 4, ident("c"), 3, None, 0.0) is None
    assert pools.acquire(("rw", "more"), 6, ident("a"), 1, None, 0.0) is None  # no v6 pool


def test_reload_keeps_leases_of_unchanged_and_fitting_pools() -> None:
    pools = Pools([pool("10.3.0.1", "10.3.0.9")])
    pools.acquire(("rw",), 4, ident("a"), 1, ip("10.3.0.5"), 0.0)
    pools.update([pool("10.3.0.1", "10.3.0.9")])
    assert pools.holdings(1) == [ip("10.3.0.5")]
    pools.update([pool("10.3.0.4", "10.3.0.20")])  # changed, still contains .5
    assert pools.holdings(1) == [ip("10.3.0.5")]
    pools.update([pool("10.9.0.1", "10.9.0.9")])  # no longer fits
    assert pools.holdings(1) == []


def test_a_thousand_clients_get_distinct_leases_and_none_leaks() -> None:
    pools = Pools([pool("10.8.0.1", "10.8.3.232")])  # 1000 addresses
    got = [pools.acquire(("rw",), 4, ident(f"c{n}"), n, None, 0.0) for n in range(1000)]
    addresses = {g[1] for g in got if g is not None}
    assert len(addresses) == 1000
    assert pools.acquire(("rw",), 4, ident("one-too-many"), 5000, None, 0.0) is None
    for n in range(1000):
        pools.release(n, 1.0)
    view = pools.views(1.0)[0]
    assert view.online == 0 and view.leases == ()
    assert pools.acquire(("rw",), 4, ident("one-too-many"), 5000, None, 2.0) is not None


def test_bad_range_is_refused() -> None:
    with pytest.raises(ValueError):
        AddressPool(pool("10.3.0.9", "10.3.0.1"))
