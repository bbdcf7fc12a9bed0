"""A road warrior's routes (service/vip_routes.py) from the engine's own events: two engines
back to back (a gateway with v4/v6 pools, a client asking for both), the client's events fed to
VirtualIps over the in-memory address and route tables, as the driver feeds them.

What a strongSwan user expects (kernel-netlink's install_routes): the rule `220: from all
lookup 220` per family, and in table 220 one route per remote selector network, source the
virtual IP, via the next hop to the gateway; the same after a child rekey; nothing after the
delete."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from ikev2.config import parse_config
from ikev2.engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    Event,
    VirtualIpsAssigned,
    VirtualIpsReleased,
)
from ikev2.kernel.addresses import MemoryAddresses
from ikev2.kernel.routes import MemoryRoutes, Route
from ikev2.service.vip_routes import VipRoutes
from ikev2.service.vips import VirtualIps, make_virtual_ips
from tests.engine.pairing import ADDR_R, Pair
from tests.engine.test_config_payload import connect, remote_access

ip, net = ipaddress.ip_address, ipaddress.ip_network
HOP = ip("192.0.2.254")  # the client reaches the gateway through this router, on ifindex 7


class Client:
    """The service side of the client: what the driver does with each event."""

    def __init__(self) -> None:
        self.routes = MemoryRoutes({ADDR_R: (HOP, 7)})
        self.vips = VirtualIps(MemoryAddresses(), routes=VipRoutes(self.routes))
        self.seen = 0

    def feed(self, events: list[Event]) -> None:
        for event in events[self.seen :]:
            if isinstance(event, VirtualIpsAssigned):
                self.vips.assigned(event)
            elif isinstance(event, VirtualIpsReleased):
                self.vips.released(event)
            elif isinstance(event, ChildSaEstablished):
                self.vips.child_established(event)
            elif isinstance(event, ChildSaDeleted):
                self.vips.child_deleted(event)
        self.seen = len(events)


EXPECTED = [
    Route(net("10.2.0.0/24"), ip("10.3.0.1"), HOP, 7),
    Route(net("fd02::/64"), ip("fd03::1"), HOP, 7),
]


def test_routes_follow_the_child_through_rekey_and_delete() -> None:
    client_conn, gateway, engine_r = remote_access()
    pair = Pair(client_conn, gateway, engine_r=engine_r)
    client = Client()
    sa_id = connect(pair)
    client.feed(pair.i.events)
    assert client.routes.list() == EXPECTED
    assert client.routes.rules == {(4, 220), (6, 220)}
    # a child rekey: the new child is up before the old one goes; the routes stay, once each
    (child,) = pair.i.engine.sas[sa_id].children
    pair.i.events += pair.i.engine.rekey_child(sa_id, child.spi_in, pair.now)
    pair.run(until=pair.now + 10)
    client.feed(pair.i.events)
    assert len(pair.i.of(ChildSaEstablished)) == 2 and len(pair.i.of(ChildSaDeleted)) == 1
    assert client.routes.list() == EXPECTED
    # the delete: routes and rules go with the last child
    pair.i.events += pair.i.engine.terminate(sa_id, pair.now)
    pair.run(until=pair.now + 10)
    client.feed(pair.i.events)
    assert client.routes.list() == [] and client.routes.rules == set()


def test_no_route_without_a_virtual_ip_and_only_for_its_family() -> None:
    # only IPv4 asked for: the IPv6 remote selector gets no route (no v6 source)
    client_conn, gateway, engine_r = remote_access(vips=(ip("0.0.0.0"),))
    pair = Pair(client_conn, gateway, engine_r=engine_r)
    client = Client()
    connect(pair)
    client.feed(pair.i.events)
    assert client.routes.list() == EXPECTED[:1] and client.routes.rules == {(4, 220)}
    # a site-to-site child (no virtual IP): no routes at all
    plain = VipRoutes(MemoryRoutes())
    (established,) = pair.i.of(ChildSaEstablished)
    plain.child_up(established, [])
    assert plain.table.list() == []


def test_install_routes_config_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    assert parse_config("", path).daemon.install_routes is True  # strongSwan's default
    settings = parse_config("[daemon]\ninstall_routes = false\n", path).daemon
    assert settings.install_routes is False
    loop = asyncio.new_event_loop()
    try:
        assert make_virtual_ips("memory", "lo", "", loop, settings.install_routes).routes is None
        assert make_virtual_ips("memory", "lo", "", loop).routes is not None
    finally:
        loop.close()


def test_remove_all_at_shutdown_takes_routes_and_rules() -> None:
    client_conn, gateway, engine_r = remote_access()
    pair = Pair(client_conn, gateway, engine_r=engine_r)
    client = Client()
    connect(pair)
    client.feed(pair.i.events)
    assert client.routes.list()
    client.vips.remove_all()
    assert client.routes.list() == [] and client.routes.rules == set()
