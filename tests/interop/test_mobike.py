"""MOBIKE (RFC 4555) and NAT rebinding (RFC 7296 §2.23) against strongSwan 5.9.8 on the host
(issue 16). strongSwan runs with kernel-libipsec, ours with the in-memory kernel (the host has no
ESP); both sides' list-sas must show the SAME IKE SA after the move, and a child rekey over the
new path must go through (keys checked against strongSwan's log). kernel-libipsec cannot update
an SA's addresses (its update_sa is NOT_SUPPORTED), so strongSwan rekeys its child right after
a move (ike_sa.c update_hosts); ours moves its child in place (its log and IkeSaMoved). The
child SPIs surviving the move on both sides is the guest's row (kernel-netlink, real XFRM).

- mobike_move: the initiator (left) has two links to the responder; its first address is
  removed. Ours notices it from rtnetlink (RTM_DELADDR), asks the routing table for the new
  source and sends UPDATE_SA_ADDRESSES; strongSwan as the client does the same on its own.
- mobike_nat_rebinding: the initiator sits behind a masquerading NAT whose mapping is flushed
  and whose port range changes (conntrack flushed over netlink): the initiator's liveness check
  carries NAT detection, sees the new mapping and updates the responder (RFC 4555 §3.8).
- nat_rebinding_without_mobike: the same with MOBIKE off on our side: the responder follows the
  peer's authenticated messages to the new mapping (RFC 7296 §2.23).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing.interop import OURS_INITIATOR, ROLES, Peers, Spec, ours_config
from ikev2.testing.netns import run_in_netns
from ikev2.testing.topology import Peer, Topology, nft, sh

pytestmark = pytest.mark.interop

PeersFactory = Callable[..., Peers]
FIRST, SECOND, GW, GW2 = "10.97.1.2", "10.97.2.2", "10.97.1.1", "10.97.2.1"
NAT_OUTSIDE = "10.98.2.1"


@pytest.fixture
def two_links(host_gate: None) -> Iterator[Topology]:
    """left (the initiator) -- two veths -- right: 10.97.1.2/.1 and 10.97.2.2/.1. The left's
    default route goes over the second link, so once its first address is gone the routing
    table picks 10.97.2.2 to reach 10.97.1.1."""
    made: list[str] = []
    try:
        left = Topology._new_ns("iopm", "l", made)
        right = Topology._new_ns("iopm", "r", made)
        Topology._veth(left, "vl", right, "vr")
        Topology._veth(left, "vl2", right, "vr2")
        Topology._addr(left, "vl", f"{FIRST}/24")
        Topology._addr(right, "vr", f"{GW}/24")
        Topology._addr(left, "vl2", f"{SECOND}/24")
        Topology._addr(right, "vr2", f"{GW2}/24")
        sh("ip", "-n", left, "route", "add", "default", "via", GW2)
        topo = Topology(Peer(left, FIRST, "vl"), Peer(right, GW, "vr"), None, made)
        topo.add_lo_address(left, "10.1.0.1/32")
        topo.add_lo_address(right, "10.2.0.1/32")
    except BaseException:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
        raise
    try:
        yield topo
    finally:
        topo.close()


@pytest.fixture
def natted_fresh(host_gate: None) -> Iterator[Topology]:
    """Topology.nat (left behind the masquerade), its own per test: the rule gets rewritten."""
    topo = Topology.nat("iopr")
    try:
        topo.add_lo_address(topo.left.ns, "10.1.0.1/32")
        topo.add_lo_address(topo.right.ns, "10.2.0.1/32")
        yield topo
    finally:
        topo.close()


def masquerade_to(topo: Topology, port: int) -> None:
    """The NAT's outside source port for new mappings is `port` (one port: a new mapping is
    a new port for sure)."""
    assert topo.nat_ns is not None
    sh("ip", "netns", "exec", topo.nat_ns, "nft", "flush", "chain", "ip", "ikev2nat", "post")
    nft(
        topo.nat_ns,
        'add rule ip ikev2nat post ip saddr 10.98.1.0/24 oifname "nr" meta l4proto udp '
        f"counter masquerade to :{port}\n"
        'add rule ip ikev2nat post ip saddr 10.98.1.0/24 oifname "nr" counter masquerade\n',
    )


def flush_conntrack(ns: str) -> None:
    """Forget every NAT mapping (IPCTNL_MSG_CT_DELETE without a tuple: `conntrack -F`)."""

    def body() -> int:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12) as sock:  # NETLINK_NETFILTER
            nfgen = struct.pack("=BBH", socket.AF_INET, 0, 0)
            header = struct.pack("=IHHII", 16 + len(nfgen), (1 << 8) | 2, 0x1 | 0x4, 1, 0)
            sock.sendto(header + nfgen, (0, 0))
            reply = sock.recv(4096)
            return int(struct.unpack("=i", reply[16:20])[0])

    assert run_in_netns(ns, body) == 0


def same_ike_sa(p: Peers, ike: tuple[str, str], children: frozenset[tuple[str, str]]) -> None:
    """The IKE SA survived; its child did too, or libipsec's rekey replaced it (see above)."""
    wait_until(lambda: _one_child(p), 20, p, "one child on each side after the move")
    now_ike, now_children = spis_of(p)
    assert now_ike == ike, p.logs()
    if now_children != children:
        assert "reinitiating already active tasks" in p.ss.log() or "CHILD_REKEY" in p.ss.log()
        assert _one_child(p), p.logs()


def spis_of(p: Peers) -> tuple[tuple[str, str], frozenset[tuple[str, str]]]:
    """The IKE SA's SPIs and its children's (in, out), after checking both sides agree."""
    mine, _theirs = p.ike_pair()
    children = frozenset((c["spi_in"], c["spi_out"]) for c in mine["children"])
    return (mine["spi_i"].lower(), mine["spi_r"].lower()), children


def wait_until(what: Callable[[], bool], timeout: float, p: Peers, doing: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.3)
    raise AssertionError(f"{doing}: not within {timeout:g} s\n{p.logs()}")


def rekey_child_over_the_new_path(p: Peers) -> None:
    """strongSwan rekeys the child: its request and our answer take the new path."""
    _ike, before = spis_of(p)
    assert p.ss.rekey(child=p.spec.children[0].name).ok, p.logs()
    wait_until(
        lambda: bool(spis_of(p)[1]) and spis_of(p)[1].isdisjoint(before) and _one_child(p),
        20, p, "child rekey after the move",
    )  # fmt: skip
    p.check_children(expected=1)


def _one_child(p: Peers) -> bool:
    try:
        mine, theirs = p.ike_pair()
    except AssertionError:
        return False
    return len(mine["children"]) == 1 and len(theirs.installed_children) == 1


def ours_side(p: Peers, tmp: Path, **conn: Any) -> None:
    """Rewrite our daemon's config (before start) with connection keys `conn`."""
    pos = p.pos
    tree = ours_config(
        p.spec, pos["ours_addr"], pos["ours_peer"], pos["ours_net"], pos["ss_net"],
        p.ours_initiates, tmp,
    )  # fmt: skip
    tree["connections"][p.spec.name].update(conn)
    p.ours.configure(tree)


@pytest.mark.parametrize("role", ROLES)
def test_mobike_move(role: str, two_links: Topology, peers: PeersFactory) -> None:
    p = peers(Spec("mobike-move", ours_wildcard=True), two_links, role).start()
    p.establish()
    ike, children = spis_of(p)
    assert "peer supports MOBIKE" in p.ss.log()
    mine, _theirs = p.ike_pair()
    assert mine["local" if p.ours_initiates else "remote"] == f"{FIRST}:4500"  # §3.3 float
    sh("ip", "-n", two_links.left.ns, "addr", "del", f"{FIRST}/24", "dev", "vl")

    def moved() -> bool:
        mine, theirs = p.ike_pair()
        if p.ours_initiates:
            return theirs.remote_host == SECOND and mine["local"] == f"{SECOND}:4500"
        return theirs.local_host == SECOND and mine["remote"] == f"{SECOND}:4500"

    wait_until(moved, 20, p, "the IKE SA moving to the second address")
    same_ike_sa(p, ike, children)
    log = p.ss.log()
    if p.ours_initiates:
        assert "UPDATE_SA_ADDRESSES" in log or "N(UPD_SA_ADDR)" in log, p.logs()
        assert "local address gone; moving" in p.ours.log()
    else:
        assert "IKE SA moved" in p.ours.log()
    rekey_child_over_the_new_path(p)


@pytest.mark.parametrize("role", ROLES)
def test_mobike_nat_rebinding(
    role: str, natted_fresh: Topology, peers: PeersFactory, tmp_path: Path
) -> None:
    topo = natted_fresh
    masquerade_to(topo, 21000)
    # the initiator's liveness checks watch the mapping (§3.8): its every 2 s, the responder's
    # every 10 s (a check answered keeps the other side's from starting)
    ours_fast = role == OURS_INITIATOR
    p = peers(Spec("mobike-nat", dpd_delay=10 if ours_fast else 2), topo, role)
    ours_side(p, tmp_path / "ours-files", dpd_delay="2s" if ours_fast else "10s")
    p.start()
    p.establish()
    ike, children = spis_of(p)
    assert _mapped_port(p) == "21000"
    # both compare a liveness check's NAT detection with the previous one's, not with
    # IKE_SA_INIT's (port 500, ike_natd.c): one check must be answered before the NAT rebinds
    wait_until(lambda: _natd_checks(p) >= 1, 20, p, "a liveness check with NAT detection")
    masquerade_to(topo, 22000)
    assert topo.nat_ns is not None
    flush_conntrack(topo.nat_ns)
    wait_until(lambda: _mapped_port(p) == "22000", 30, p, "following the new NAT mapping")
    same_ike_sa(p, ike, children)
    assert "UPDATE_SA_ADDRESSES" in p.ss.log() or "N(UPD_SA_ADDR)" in p.ss.log(), p.logs()
    rekey_child_over_the_new_path(p)


@pytest.mark.parametrize("role", ROLES)
def test_nat_rebinding_without_mobike(
    role: str, natted_fresh: Topology, peers: PeersFactory, tmp_path: Path
) -> None:
    topo = natted_fresh
    masquerade_to(topo, 21000)
    p = peers(Spec("nat-rebind", dpd_delay=2), topo, role)
    ours_side(p, tmp_path / "ours-files", mobike=False)
    p.start()
    p.establish()
    ike, children = spis_of(p)
    assert "peer supports MOBIKE" not in p.ss.log()
    masquerade_to(topo, 22000)
    assert topo.nat_ns is not None
    flush_conntrack(topo.nat_ns)
    wait_until(lambda: _mapped_port(p) == "22000", 30, p, "following the new NAT mapping")
    same_ike_sa(p, ike, children)
    rekey_child_over_the_new_path(p)


def _natd_checks(p: Peers) -> int:
    return sum(
        1
        for line in p.ss.log().splitlines()
        if "parsed INFORMATIONAL" in line and "N(NATD_S_IP)" in line
    )


def _mapped_port(p: Peers) -> str:
    """The NAT's outside port for the initiator, as the responder (outside) sees it."""
    mine, theirs = p.ike_pair()
    if p.ours_initiates:
        assert theirs.remote_host == NAT_OUTSIDE, theirs
        return theirs.remote_port
    host, _, port = str(mine["remote"]).rpartition(":")
    assert host == NAT_OUTSIDE, mine
    return port
