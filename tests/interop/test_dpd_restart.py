"""dpd_action = restart against strongSwan 5.9.8 on the host (issue 14): the peer is killed
(SIGKILL, no Delete) and started again with the same configuration; the side that stayed up
finds it dead by its liveness check (RFC 7296 §2.4: dpd_delay, then the §2.1 retransmits run
out) and, because its child says restart, initiates a new IKE SA with the child, to the fresh
peer, without any `up` from the test.

- ours_restarts: our child has dpd_action = restart, strongSwan is killed and restarted.
  Both roles: the original IKE SA was ours (ours-initiator) or strongSwan's (ours-responder);
  like strongSwan, we restart whenever the connection names the peer's address, so in both
  the new IKE SA is ours.
- strongswan_restarts: strongSwan's child has dpd_action = restart, our daemon is killed and
  restarted (its control socket left behind, stale); strongSwan re-initiates in both roles and
  our fresh daemon answers.

Each row: the new SPIs differ from the old, both sides list the same IKE SA and child (SPIs,
selectors and keys, Peers.check_children), exactly one of each, and the restarting side's log
says it was DPD that restarted it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from ikev2.testing.interop import ROLES, Peers, Spec, ours_config, swanctl_config
from ikev2.testing.strongswan import IkeSaInfo
from ikev2.testing.topology import Topology

pytestmark = pytest.mark.interop

PeersFactory = Callable[[Spec, Topology, str], Peers]
# liveness check after 2 s of quiet, then retransmits after 1 s x 1.4^n, 3 of them: the peer is
# dead about 9 s after it vanished (strongSwan's harness timers are the same: strongswan.py)
SPEC = Spec("dpd-restart", dpd_delay=2, ours_retransmit=(1.0, 1.4, 3))
RECOVERY = 40.0  # s: DPD (~9 s) plus a new IKE SA, with room on a busy 2-core machine


def configure(p: Peers, restarting: str, files_dir: Path) -> None:
    """dpd_action = restart and dpd_delay on the `restarting` side ("ours" or "ss") only; the
    other side runs no liveness check of its own (it is the one killed)."""
    pos = p.pos
    tree = ours_config(
        p.spec, pos["ours_addr"], pos["ours_peer"], pos["ours_net"], pos["ss_net"],
        p.ours_initiates, files_dir,
    )  # fmt: skip
    conn = tree["connections"][p.spec.name]
    files = swanctl_config(
        p.spec, "sun", pos["ss_addr"], pos["ss_peer"], pos["ss_net"], pos["ours_net"],
        initiator=not p.ours_initiates,
    )  # fmt: skip
    ss_conn: dict[str, Any] = cast(dict[str, Any], files.conf["connections"])[p.spec.name]
    if restarting == "ours":
        conn["children"]["net"]["dpd_action"] = "restart"
        ss_conn["dpd_delay"] = "0"
    else:
        ss_conn["children"]["net"]["dpd_action"] = "restart"
        conn["dpd_delay"] = "0s"
    p.ours.configure(tree)
    p.ss.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)


def established(p: Peers, restarting: str, files_dir: Path) -> tuple[Peers, tuple[str, str]]:
    """Configured with restart on the `restarting` side, started, the child up on both sides:
    the peers and the IKE SA's SPIs as ours lists them."""
    configure(p, restarting, files_dir)
    p.start()
    p.establish()
    p.check_children(expected=1)
    return p, ours_spis(p.ike_pair()[0])


def ours_spis(sa: dict[str, Any]) -> tuple[str, str]:
    return str(sa["spi_i"]).lower(), str(sa["spi_r"]).lower()


def ss_spis(sa: IkeSaInfo) -> tuple[str, str]:
    return sa.spi_i, sa.spi_r


def one_new_pair(p: Peers, old: tuple[str, str], ours_initiated: bool) -> tuple[str, str]:
    """Wait for the new IKE SA with its child on both sides; check it is the only one on
    each, the same SA with the same child, under SPIs other than `old`."""

    def ours_new(sas: list[dict[str, Any]]) -> bool:
        return any(str(sa.get("state")).upper() == "ESTABLISHED" and sa["children"]
                   and ours_spis(sa) != old for sa in sas)  # fmt: skip

    def ss_new(sas: list[IkeSaInfo]) -> bool:
        return any(sa.state == "ESTABLISHED" and sa.installed_children and ss_spis(sa) != old
                   for sa in sas)  # fmt: skip

    p.ours.wait_for(ours_new, RECOVERY)
    p.ss.wait_for(ss_new, 10)
    p.ours_initiates = ours_initiated  # who initiated the NEW IKE SA (ike_pair checks it)
    mine, theirs = p.ike_pair()
    new = ours_spis(mine)
    assert new == ss_spis(theirs) and new[0] != old[0] and new[1] != old[1], (old, new)
    assert len(p.ours.list_sas()) == 1 and len(p.ss.list_sas()) == 1, p.logs()
    p.check_children(expected=1)
    return new


@pytest.mark.parametrize("role", ROLES)
def test_dpd_restart_ours_restarts(
    role: str, pair: Topology, peers: PeersFactory, tmp_path: Path
) -> None:
    p, old = established(peers(SPEC, pair, role), "ours", tmp_path / "ours-files")
    p.ss.kill()  # no Delete: our IKE SA stays until DPD finds the peer gone
    p.ss.start()
    p.ss.load()  # the same configuration, no SA: it answers our DPD with nothing
    one_new_pair(p, old, ours_initiated=True)
    events = p.ours.log_events()
    dead = [e for e in events if str(e.get("reason", "")).startswith("peer dead")]
    restarted = [e for e in events if e.get("event") == "dpd_action restart"]
    assert dead and restarted, "our log does not say DPD found the peer dead and restarted"
    assert restarted[0]["children"] == ["net"] and restarted[0]["reason"].startswith("peer dead")
    assert "initiating IKE_SA" not in p.ss.log(), "the restarted strongSwan initiated"


@pytest.mark.parametrize("role", ROLES)
def test_dpd_restart_strongswan_restarts(
    role: str, pair: Topology, peers: PeersFactory, tmp_path: Path
) -> None:
    p, old = established(peers(SPEC, pair, role), "ss", tmp_path / "ours-files")
    p.ours.kill()  # no Delete; its control socket stays behind
    assert p.ours.control_path.exists(), "a SIGKILLed daemon leaves its control socket"
    p.ours.start(clear_socket=False)  # our daemon itself must take over the stale socket
    one_new_pair(p, old, ours_initiated=False)
    log = p.ss.log()
    assert "giving up after 3 retransmits" in log, "strongSwan's DPD did not find us dead"
    assert re.search(r"restarting CHILD_SA net", log), "strongSwan did not restart the child"
    # the fresh daemon knew none of the liveness checks' SPIs: it dropped them (RFC 7296 §2.21.4
    # allows an INVALID_IKE_SPI answer; an unauthenticated one would change nothing here)
    drops = [e for e in p.ours.log_events() if e.get("reason") == "unknown IKE SPI"]
    assert drops, "strongSwan's liveness checks never reached our restarted daemon"
