"""RFC 5685 redirects against strongSwan 5.9.8 on the host (issue 16), both roles.

The gateway side owns a second address, GW_B (10.99.0.3, on lo of the right namespace: the left
one reaches it over the veth by ARP), and a second connection bound to it: the redirect target.

- ours gateway, strongSwan client (it follows redirects by default, charon.follow_redirects):
  our REDIRECT in IKE_SA_INIT (redirect_on = "init", §3.3), in IKE_AUTH (§3.5; strongSwan
  5.9.8 aborts with a double free there: xfail, AUTH_CRASH), and on the established IKE SA by
  `ikev2 redirect ID --to GW_B` (§3.6). strongSwan ends with one IKE SA,
  to GW_B, sent with REDIRECTED_FROM, and its child twin with equal keys.
- strongSwan gateway, ours client: `swanctl --redirect --ike NAME --gateway GW_B` on the
  established IKE SA (§3.6). strongSwan 5.9.8 redirects in IKE_SA_INIT and IKE_AUTH only
  through a redirect provider (redirect_manager's providers), and no plugin of 5.9.8 or 6.0.6
  registers one (Debian ships none): those two rows cannot be served by it.
- sw6 rows: the three redirects by us with strongSwan 6.0.6 (built from /work/shared/vendor) as
  the client; it sets the IKE SA authenticated before following an IKE_AUTH redirect.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import strongswan
from ikev2.testing.gates import need
from ikev2.testing.interop import (
    OURS_INITIATOR,
    OURS_RESPONDER,
    Peers,
    Spec,
    ours_config,
    swanctl_config,
)
from ikev2.testing.strongswan import DEBIAN, STRONGSWAN6, Install
from ikev2.testing.topology import Topology

pytestmark = pytest.mark.interop

GW_B = "10.99.0.3"
# strongSwan 5.9.8's client, redirected in IKE_AUTH, resets the IKE SA as if still connecting
# (handle_redirect runs before COND_AUTHENTICATED is set) inside the IKE_AUTH task and aborts:
# "free(): double free detected in tcache 2" (6.0.6 sets the condition first)
AUTH_CRASH = "strongSwan 5.9.8 client crashes (double free) when redirected in IKE_AUTH"
NAME = "redirect"


@pytest.fixture(scope="module")
def gateways(pair: Topology) -> Topology:
    pair.add_lo_address(pair.right.ns, f"{GW_B}/32")  # the gateway side, in either role
    return pair


@pytest.fixture
def peers(tmp_path: Path, gateways: Topology) -> Iterator[Any]:
    made: list[Peers] = []

    def make(role: str, install: Install = DEBIAN) -> Peers:
        p = Peers(Spec(NAME), gateways, role, tmp_path / f"run{len(made)}", install=install)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def _wait(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _moved_to_b(p: Peers) -> bool:
    ss = [sa for sa in p.ss.list_sas() if sa.state == "ESTABLISHED"]
    ours = [sa for sa in p.ours.list_sas() if str(sa["state"]).upper() == "ESTABLISHED"]
    ss_ok = [sa.remote_host if not p.ours_initiates else sa.local_host for sa in ss] == [GW_B]
    side = "local" if not p.ours_initiates else "remote"
    ours_ok = [str(sa[side]).rpartition(":")[0] for sa in ours] == [GW_B]  # 500 or 4500
    return ss_ok and ours_ok and len(ss) == len(ours) == 1 and bool(ss[0].installed_children)


@pytest.mark.parametrize("role", [OURS_RESPONDER])
@pytest.mark.parametrize(
    "when",
    [
        "init",
        pytest.param("auth", marks=pytest.mark.xfail(strict=True, reason=AUTH_CRASH)),
        "established",
    ],
)
def test_redirect_by_us(when: str, role: str, peers: Any, tmp_path: Path) -> None:
    redirect_by_us(peers(role), when, tmp_path)


@pytest.mark.sw6
@pytest.mark.parametrize("role", [OURS_RESPONDER])
@pytest.mark.parametrize("when", ["init", "auth", "established"])
def test_sw6_redirect_by_us(when: str, role: str, peers: Any, tmp_path: Path) -> None:
    """strongSwan 6.0.6 as the client: it follows the IKE_AUTH redirect that crashes 5.9.8."""
    need(strongswan.missing6() is None, strongswan.missing6() or "")
    p = peers(role, STRONGSWAN6)
    redirect_by_us(p, when, tmp_path)
    assert "strongSwan 6.0.6" in p.ss.log()


def redirect_by_us(p: Peers, when: str, tmp_path: Path) -> None:
    pos = p.pos
    tree = ours_config(p.spec, pos["ours_addr"], pos["ours_peer"], pos["ours_net"],
                       pos["ss_net"], False, tmp_path / "ours-files")  # fmt: skip
    conn = tree["connections"][NAME]
    target = copy.deepcopy(conn)
    target["local_addrs"] = [GW_B]
    tree["connections"][f"{NAME}-b"] = target
    tree["daemon"].setdefault("addresses", [pos["ours_addr"]]).append(GW_B)
    if when != "established":
        conn["redirect_to"] = [GW_B]
        conn["redirect_on"] = when
    p.ours.configure(tree)
    p.start()
    if when == "established":
        p.establish()
        [sa] = p.ours.list_sas()
        done = p.ours.cli("redirect", str(sa["id"]), "--to", GW_B)
        assert done.ok, done.output
    elif when == "init":
        p.establish(timeout=30)
    else:  # swanctl reports the child of the redirected IKE SA as failed: it comes up at GW_B
        p.ss.initiate(child=p.spec.children[0].name, timeout=30)
    assert _wait(lambda: _moved_to_b(p)), p.logs()
    assert p.ss.sent("IKE_SA_INIT request", "REDIR_FROM"), p.ss.tail(60)
    if when == "init":
        assert p.ss.sent("IKE_SA_INIT request", "REDIR_SUP")
        assert p.ss.received("IKE_SA_INIT response", "REDIR")
    elif when == "auth":
        assert p.ss.received("IKE_AUTH response", "REDIR")
    else:
        assert p.ss.received("INFORMATIONAL request", "REDIR")
    p.check_children(expected=1)


@pytest.mark.parametrize("role", [OURS_INITIATOR])
def test_redirect_by_strongswan(role: str, peers: Any) -> None:
    p = peers(role)
    pos = p.pos
    files = swanctl_config(p.spec, "sun", pos["ss_addr"], pos["ss_peer"], pos["ss_net"],
                           pos["ours_net"], initiator=False)  # fmt: skip
    conns = files.conf["connections"]
    assert isinstance(conns, dict)
    target = copy.deepcopy(conns[NAME])
    target["local_addrs"] = GW_B  # type: ignore[index]
    conns[f"{NAME}-b"] = target
    p.ss.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)
    p.start()
    p.establish()
    p.ss.swanctl("--redirect", "--ike", NAME, "--gateway", GW_B)
    assert _wait(lambda: _moved_to_b(p)), p.logs()
    assert p.ss.received("IKE_SA_INIT request", "REDIR_FROM"), p.ss.tail(60)
    assert p.ss.sent("INFORMATIONAL request", "REDIR")
    p.check_children(expected=1)
