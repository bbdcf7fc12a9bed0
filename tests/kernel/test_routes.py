"""kernel/routes.py against the real kernel in a fresh network namespace (root): the next hop
to a peer (RTM_GETROUTE), a route in table 220 with the virtual IP as source and the routing
rule (RTM_NEWROUTE / RTM_NEWRULE) appear to our dump and to `ip route` / `ip rule`, and go
again (RTM_DELROUTE / RTM_DELRULE). MemoryRoutes keeps the same contract."""

from __future__ import annotations

import socket
import subprocess
from ipaddress import ip_address, ip_network

import pytest

from ikev2.kernel.routes import MemoryRoutes, NetlinkRoutes, Route

VIP4, VIP6 = ip_address("10.3.0.7"), ip_address("fd03::7")
GW4, GW6 = ip_address("10.99.0.2"), ip_address("fd99::2")
PEER4 = ip_address("10.98.0.9")  # behind GW4: reached via it


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def _setup() -> int:
    """A veth link with the client's outer addresses, a route to a peer behind GW4, the
    virtual IPs on lo; returns the link's ifindex."""
    _ip("link", "set", "lo", "up")
    _ip("link", "add", "wan0", "type", "veth", "peer", "name", "wan1")  # no dummy module here
    _ip("link", "set", "wan0", "up")
    _ip("link", "set", "wan1", "up")
    _ip("addr", "add", "10.99.0.1/24", "dev", "wan0")
    _ip("-6", "addr", "add", "fd99::1/64", "dev", "wan0", "nodad")
    _ip("route", "add", "10.98.0.0/24", "via", str(GW4))
    _ip("addr", "add", f"{VIP4}/32", "dev", "lo")
    _ip("-6", "addr", "add", f"{VIP6}/128", "dev", "lo", "nodad")
    return socket.if_nametoindex("wan0")  # /sys is the host's in a setns(2) child


@pytest.mark.root
def test_route_and_rule_appear_and_disappear_in_a_fresh_netns(netns: str) -> None:
    from ikev2.testing.netns import run_in_netns

    def body() -> tuple[object, ...]:
        wan = _setup()
        table = NetlinkRoutes()
        try:
            hop_direct = table.next_hop(GW4)
            hop_via = table.next_hop(PEER4)
            hop6 = table.next_hop(GW6)
            r4 = Route(ip_network("10.2.0.0/24"), VIP4, GW4, wan)
            r4b = Route(ip_network("10.5.0.0/16"), VIP4, None, wan)
            r6 = Route(ip_network("fd02::/64"), VIP6, GW6, wan)
            rules = (table.add_rule(4), table.add_rule(6), table.add_rule(4))
            added = (table.add(r4), table.add(r4b), table.add(r6), table.add(r4))
            listed = sorted(table.list(), key=str)
            shown = _ip("route", "show", "table", "220") + _ip(
                "-6", "route", "show", "table", "220"
            )
            rule_shown = _ip("rule", "show") + _ip("-6", "rule", "show")
            for route in (r4, r4b, r6, r6):  # the second r6: gone already, fine
                table.delete(route)
            table.delete_rule(4)
            table.delete_rule(6)
            table.delete_rule(6)
            after = table.list()
            rule_after = _ip("rule", "show")
        finally:
            table.close()
        return (
            hop_direct,
            hop_via,
            hop6,
            rules,
            added,
            listed,
            shown,
            rule_shown,
            after,
            rule_after,
            wan,
        )

    (hop_direct, hop_via, hop6, rules, added, listed, shown, rule_shown, after, rule_after,
     wan) = run_in_netns(netns, body)  # fmt: skip
    assert hop_direct == (None, wan) and hop_via == (GW4, wan) and hop6 == (None, wan)
    assert rules == (True, True, False)
    assert added == (True, True, True, False)
    assert [str(r.dst) for r in listed] == ["10.2.0.0/24", "10.5.0.0/16", "fd02::/64"]  # type: ignore[attr-defined]
    assert all(r.table == 220 for r in listed)  # type: ignore[attr-defined]
    assert "10.2.0.0/24 via 10.99.0.2 dev wan0 proto static src 10.3.0.7" in shown
    assert "10.5.0.0/16 dev wan0 proto static scope link src 10.3.0.7" in shown
    assert "fd02::/64 via fd99::2 dev wan0 proto static src fd03::7" in shown
    assert "220:\tfrom all lookup 220" in rule_shown
    assert after == [] and "lookup 220" not in rule_after


def test_memory_routes_keep_the_same_contract() -> None:
    table = MemoryRoutes({GW4: (None, 3)})
    route = Route(ip_network("10.2.0.0/24"), VIP4, None, 3)
    assert table.next_hop(GW4) == (None, 3)
    assert table.add_rule(4) is True and table.add_rule(4) is False
    assert table.add(route) is True and table.add(route) is False
    assert table.list() == [route] and table.list(table=221) == []
    table.delete(route)
    table.delete(route)
    table.delete_rule(4)
    assert table.list() == [] and table.rules == set()
