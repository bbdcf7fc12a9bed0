"""Message ID window (RFC 7296 §2.3) against strongSwan 5.9.8 on the host, both roles, PSK.

strongSwan's window is 1: it implements no window over 1 and never sends SET_WINDOW_SIZE
(charon has no such setting; it parses our notify and ignores it). So these rows prove that our
daemon with `[daemon] window_size = 4` falls back correctly: it announces 4 in IKE_AUTH, records
no window from strongSwan, and never has more than one request in flight towards it, while 8
children come up under one IKE SA.

- window_fallback, ours-initiator: `ikev2 up` of a connection with 8 children: the first rides
  in IKE_AUTH, the other 7 are queued at once and go one CREATE_CHILD_SA at a time.
- window_fallback, ours-responder: strongSwan brings up the IKE SA with c1, then our daemon
  gets 7 `ikev2 up --child` at once and initiates those CREATE_CHILD_SAs towards strongSwan.

Asserted from our engine state (list-sas: `window` = [1, 4], `peak_outstanding` = 1) and from
strongSwan's log (it parsed N(SET_WINSIZE) in our IKE_AUTH, sent none, and never dropped a
request of ours for an unexpected message ID).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ikev2.testing.interop import OURS_INITIATOR, ROLES, ChildSpec, Peers, Spec
from ikev2.testing.topology import Topology

from .test_site_to_site import ours_tree

pytestmark = pytest.mark.interop

PeersFactory = Callable[[Topology, str], Peers]
NAME = "window"
CHILDREN = 8
WINDOW = 4


def _child(k: int) -> ChildSpec:
    nets = (f"10.1.{k}.0/24", f"10.2.{k}.0/24")  # the initiator's (left's) view
    return ChildSpec(name=f"c{k}", ours_ts=nets, ss_ts=nets)


SPEC = Spec(NAME, children=tuple(_child(k) for k in range(1, CHILDREN + 1)))


@pytest.fixture(scope="module")
def subnets(pair: Topology) -> Topology:
    """An address on lo inside each child's selectors (kernel-libipsec needs one per side)."""
    for k in range(1, CHILDREN + 1):
        pair.add_lo_address(pair.left.ns, f"10.1.{k}.1/32")
        pair.add_lo_address(pair.right.ns, f"10.2.{k}.1/32")
    return pair


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[PeersFactory]:
    made: list[Peers] = []

    def make(topo: Topology, role: str) -> Peers:
        p = Peers(SPEC, topo, role, tmp_path / f"run{len(made)}")
        made.append(p)
        tree = ours_tree(p, tmp_path / f"ours-files{len(made)}")
        tree["daemon"]["window_size"] = WINDOW
        p.ours.configure(tree)
        return p.start()

    yield make
    for p in made:
        p.stop()


def _all_up(p: Peers) -> None:
    p.ours.wait_for(lambda sas: len(sas) == 1 and len(sas[0]["children"]) == CHILDREN, timeout=30)
    p.ss.wait_for(lambda sas: sum(len(s.installed_children) for s in sas) == CHILDREN, timeout=30)


@pytest.mark.parametrize("role", ROLES)
def test_window_fallback(role: str, subnets: Topology, peers: PeersFactory) -> None:
    p = peers(subnets, role)
    if role == OURS_INITIATOR:
        done = p.ours.up(NAME, timeout=30)
        assert done.ok, f"{done.output}\n{p.logs()}"
    else:
        result = p.ss.initiate(child="c1", timeout=20)
        assert result.ok, f"{result.output}\n{p.logs()}"
        with ThreadPoolExecutor(CHILDREN) as pool:  # 7 `up --child` at once
            ups = list(pool.map(lambda k: p.ours.up(NAME, 30, child=f"c{k}"), range(2, 9)))
        assert all(u.ok for u in ups), "\n".join(u.output for u in ups) + p.logs()
    _all_up(p)
    pairs = p.check_children(expected=CHILDREN)  # one IKE SA, keys equal, SPIs mirrored
    assert sorted(m["name"] for m, _ in pairs) == [f"c{k}" for k in range(1, CHILDREN + 1)]
    assert len({m["spi_in"] for m, _ in pairs} | {m["spi_out"] for m, _ in pairs}) == 16
    (ours,) = p.ours.list_sas()
    # strongSwan announced nothing: we send one request at a time, and take 4 ourselves
    assert ours["window"] == [1, WINDOW] and ours["peak_outstanding"] == 1, ours
    message = "IKE_AUTH request" if role == OURS_INITIATOR else "IKE_AUTH response"
    assert p.ss.received(message, "SET_WINSIZE"), p.logs()
    log = p.ss.log()
    assert "SET_WINSIZE" not in "".join(ln for ln in log.splitlines() if "generating" in ln)
    assert "expected" not in "".join(ln for ln in log.splitlines() if "received message ID" in ln)
