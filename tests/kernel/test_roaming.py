"""kernel/roaming.py against the real kernel in a fresh network namespace (root): the address
monitor sees our addresses come and go (RTM_NEWADDR / RTM_DELADDR), and the route lookup names
the source address that reaches a peer, which moves when the first address goes away (what
MOBIKE's initiator moves to, RFC 4555 §3.5)."""

from __future__ import annotations

import subprocess
import time
from ipaddress import ip_address

import pytest

from ikev2.kernel.roaming import AddressEvent, MemoryRoaming, NetlinkRoaming
from ikev2.testing.netns import run_in_netns

FIRST, SECOND = ip_address("10.81.0.2"), ip_address("10.82.0.2")
PEER = ip_address("192.0.2.99")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.mark.root
def test_address_events_and_source_for_a_peer_follow_the_routes(netns: str) -> None:
    def body() -> tuple[object, ...]:
        for name in ("r0", "r1"):
            _ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
            _ip("link", "set", name, "up")
            _ip("link", "set", f"{name}p", "up")
        roaming = NetlinkRoaming()
        try:
            _ip("addr", "add", f"{FIRST}/24", "dev", "r0")
            _ip("addr", "add", f"{SECOND}/24", "dev", "r1")
            _ip("route", "add", f"{PEER}/32", "via", "10.81.0.1", "metric", "10")
            _ip("route", "add", f"{PEER}/32", "via", "10.82.0.1", "metric", "20")
            first = roaming.source_for(PEER)
            _ip("addr", "del", f"{FIRST}/24", "dev", "r0")  # its routes go with it
            second = roaming.source_for(PEER)
            time.sleep(0.1)
            events = roaming.read_events()
            unknown = roaming.source_for(ip_address("2001:db8::9"))  # no IPv6 route at all
        finally:
            roaming.close()
        return first, second, events, unknown

    first, second, events, unknown = run_in_netns(netns, body)
    assert (first, second, unknown) == (FIRST, SECOND, None)
    assert [(e.address, e.added) for e in events if isinstance(e, AddressEvent)] == [
        (FIRST, True),
        (SECOND, True),
        (FIRST, False),
    ]


def test_memory_roaming_hands_out_what_it_was_given() -> None:
    roaming = MemoryRoaming()
    try:
        roaming.routes[PEER] = SECOND
        roaming.emit(AddressEvent(FIRST, False, 3))
        assert roaming.read_events() == [AddressEvent(FIRST, False, 3)]
        assert roaming.read_events() == []
        assert roaming.source_for(PEER) == SECOND and roaming.source_for(FIRST) is None
    finally:
        roaming.close()
