"""Childless IKE SAs (RFC 6023) against strongSwan 5.9.8 on the host, both roles, PSK.

- childless_force: the initiator has `childless = force`: its IKE_AUTH carries no SA, TSi, TSr
  (read off strongSwan's log of the message) and the child follows in CREATE_CHILD_SA; the
  responder announced N(CHILDLESS_IKEV2_SUPPORTED) in IKE_SA_INIT. Keys compared both ways.
- childless_then_child: the IKE SA alone (`ikev2 up --no-child` / `swanctl --initiate --ike`),
  then children under it (`ikev2 up --child` / `swanctl --initiate --child`), one IKE SA.
- childless_refused: ours-responder with `force` refuses strongSwan's IKE_AUTH that carries a
  child (INVALID_SYNTAX, strongSwan's own answer); ours-initiator with `force` gives up before
  IKE_AUTH against a strongSwan with `never` (it does not announce the extension).
- childless_never: ours-responder with `never` does not announce it, so strongSwan with `force`
  refuses to go on by itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ikev2.testing.interop import OURS_INITIATOR, OURS_RESPONDER, ROLES, Peers, Spec
from ikev2.testing.topology import Topology

from .test_site_to_site import ours_tree, ss_files

pytestmark = pytest.mark.interop

PeersFactory = Callable[..., Peers]
NAME = "s2s"


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[PeersFactory]:
    made: list[Peers] = []

    def make(topo: Topology, role: str, ours: str | None, theirs: str | None) -> Peers:
        """Peers for Spec(NAME) with `childless` set on our side and/or strongSwan's."""
        p = Peers(Spec(NAME), topo, role, tmp_path / f"run{len(made)}")
        made.append(p)
        if ours is not None:
            tree = ours_tree(p, tmp_path / f"ours-files{len(made)}")
            tree["connections"][NAME]["childless"] = ours
            p.ours.configure(tree)
        if theirs is not None:
            files = ss_files(p)
            files.conf["connections"][NAME]["childless"] = theirs  # type: ignore[index]
            p.ss.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)
        return p.start()

    yield make
    for p in made:
        p.stop()


def auth_lines(p: Peers, verb: str) -> list[str]:
    """strongSwan's log of the IKE_AUTH request: `generating` (it sent it) or `parsed`."""
    return re.findall(rf"{verb} IKE_AUTH request 1 \[[^\]]*\]", p.ss.log())


def carries_child(line: str) -> bool:
    return bool(re.search(r"\[.* (SA|TSi|TSr)\b", line))


@pytest.mark.parametrize("role", ROLES)
def test_childless_force(role: str, pair: Topology, peers: PeersFactory) -> None:
    ours_init = role == OURS_INITIATOR
    p = peers(pair, role, "force" if ours_init else None, None if ours_init else "force")
    p.establish()
    (auth,) = auth_lines(p, "parsed" if ours_init else "generating")
    assert not carries_child(auth), auth
    verb = "parsed" if ours_init else "generating"
    assert re.search(rf"{verb} CREATE_CHILD_SA request 2 \[ SA No TSi TSr", p.ss.log()), p.logs()
    if ours_init:
        assert p.ss.sent("IKE_SA_INIT response", "CHDLESS_SUP"), p.logs()
    else:
        assert p.ss.received("IKE_SA_INIT response", "CHDLESS_SUP"), p.logs()
    p.check_children(expected=1)


@pytest.mark.parametrize("role", ROLES)
def test_childless_then_child(role: str, pair: Topology, peers: PeersFactory) -> None:
    p = peers(pair, role, None, None)
    if role == OURS_INITIATOR:
        done = p.ours.up(NAME, timeout=20, no_child=True)
        assert done.ok, f"{done.output}\n{p.logs()}"
    else:
        result = p.ss.initiate(ike=NAME, timeout=20)
        assert result.ok, f"{result.output}\n{p.logs()}"
    ours, theirs = p.ike_pair()
    assert ours["children"] == [] and not theirs.installed_children
    (auth,) = auth_lines(p, "parsed" if role == OURS_INITIATOR else "generating")
    assert not carries_child(auth), auth
    # strongSwan creates no duplicate of a child it has ("existing duplicate"); ours does, as
    # swanctl --initiate --child against a peer that accepts it (strongSwan does)
    for count in (1, 2) if role == OURS_INITIATOR else (1,):
        if role == OURS_INITIATOR:
            done = p.ours.up(NAME, timeout=20, child="net")
            assert done.ok, f"{done.output}\n{p.logs()}"
        else:
            result = p.ss.initiate(child="net", timeout=20)
            assert result.ok, f"{result.output}\n{p.logs()}"
        p.ours.wait_for(lambda sas, n=count: len(sas) == 1 and len(sas[0]["children"]) == n)
        p.ss.wait_for(lambda sas, n=count: sum(len(s.installed_children) for s in sas) == n)
        p.check_children(expected=count)  # still the one IKE SA (ike_pair inside)


@pytest.mark.parametrize("role", ROLES)
def test_childless_refused(role: str, pair: Topology, peers: PeersFactory) -> None:
    if role == OURS_RESPONDER:  # strongSwan allow (child in IKE_AUTH), ours force
        p = peers(pair, role, "force", None)
        p.initiate_expecting_failure()
        assert p.ss.received("IKE_AUTH response", "INVAL_SYN"), p.logs()
        assert "carries a child SA" in p.ours.log()
    else:  # ours force, strongSwan never: no CHILDLESS_IKEV2_SUPPORTED, no IKE_AUTH from us
        p = peers(pair, role, "force", "never")
        output = p.initiate_expecting_failure()
        assert "does not support childless" in output, output
        assert not p.ss.sent("IKE_SA_INIT response", "CHDLESS_SUP"), p.logs()
        assert not auth_lines(p, "parsed"), p.logs()
    p.nothing_left()


@pytest.mark.parametrize("role", [OURS_RESPONDER])
def test_childless_never(role: str, pair: Topology, peers: PeersFactory) -> None:
    p = peers(pair, role, "never", "force")
    p.initiate_expecting_failure()
    assert not p.ss.received("IKE_SA_INIT response", "CHDLESS_SUP"), p.logs()
    assert "peer does not support childless IKE_SA initiation" in p.ss.log(), p.logs()
    assert not auth_lines(p, "generating"), p.logs()
    # strongSwan drops its IKE SA without a word (RFC 6023 gives it nothing to say), so ours
    # stays half-open until half_open_timeout: nothing established on either side
    p.ss.wait_for(lambda sas: not sas, 10)
    assert all(sa["state"] == "init-done" for sa in p.ours.list_sas()), p.logs()
