"""Runs INSIDE the QEMU guest: MOBIKE (RFC 4555) with real ESP (issue 16's guest row).
strongSwan 5.9.8 (kernel-netlink) against our daemon (--kernel xfrm). The initiator (left) has
two links to the responder; while it pings through the child (10.1.0.1 -> 10.2.0.1, every
0.2 s), its first address is removed. It moves with UPDATE_SA_ADDRESSES; both kernels move the
child's SAs (same SPIs, replay state kept) and policies to the second link, and the pings go on.
Recorded: the pings lost during the move, the SPIs before and after, the kernels' SA endpoints.

    python guest_mobike.py RESULTS_DIR [SCENARIO ...]
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when run by path
sys.path.insert(0, str(Path(__file__).resolve().parent))  # guest_interop's helpers

from guest_interop import GuestScenario, process_state, run_all, xfrm_states

from ikev2.testing.interop import OURS_INITIATOR, OURS_RESPONDER, Peers, Spec
from ikev2.testing.topology import Peer, Topology, sh

FIRST, SECOND, GW, GW2 = "10.97.1.2", "10.97.2.2", "10.97.1.1", "10.97.2.1"
LEFT_HOST, RIGHT_HOST = "10.1.0.1", "10.2.0.1"
PINGS, INTERVAL = 60, 0.2
_SPEC = Spec("gm", ours_wildcard=True)
SCENARIOS = (
    GuestScenario("mobike-move-ping-esp-tunnel", OURS_INITIATOR, _SPEC),
    GuestScenario("mobike-move-ping-esp-tunnel", OURS_RESPONDER, _SPEC),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)


def two_links() -> Topology:
    made: list[str] = []
    left = Topology._new_ns("gm", "l", made)
    right = Topology._new_ns("gm", "r", made)
    Topology._veth(left, "vl", right, "vr")
    Topology._veth(left, "vl2", right, "vr2")
    Topology._addr(left, "vl", f"{FIRST}/24")
    Topology._addr(right, "vr", f"{GW}/24")
    Topology._addr(left, "vl2", f"{SECOND}/24")
    Topology._addr(right, "vr2", f"{GW2}/24")
    sh("ip", "-n", left, "route", "add", "default", "via", GW2)  # the path once FIRST is gone
    topo = Topology(Peer(left, FIRST, "vl"), Peer(right, GW, "vr"), None, made)
    topo.add_lo_address(left, f"{LEFT_HOST}/32")
    topo.add_lo_address(right, f"{RIGHT_HOST}/32")
    # inner routes: any route will do, the tunnel policy takes the packet
    sh("ip", "-n", left, "route", "add", "10.2.0.0/24", "dev", "vl2", "src", LEFT_HOST)
    sh("ip", "-n", right, "route", "add", "10.1.0.0/24", "dev", "vr2", "src", RIGHT_HOST)
    return topo


def _snapshot(peers: Peers) -> tuple[tuple[str, str], tuple[str, str]]:
    (mine,) = peers.ours.list_sas()
    (child,) = mine["children"]
    return (mine["spi_i"].lower(), mine["spi_r"].lower()), (
        child["spi_in"].lower().rjust(8, "0"),
        child["spi_out"].lower().rjust(8, "0"),
    )


def run(scenario: GuestScenario, workdir: Path) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    t0 = time.monotonic()
    phases: dict[str, float] = {}
    checks["_phases"] = phases

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - t0, 1)

    topo = two_links()
    peers: Peers | None = None
    try:
        peers = Peers(scenario.spec, topo, scenario.role, workdir, real_kernel=True).start()
        phase("started")
        peers.establish(timeout=90)
        phase("established")
        checks["children_and_keys_match"] = len(peers.check_children(expected=1)) == 1
        checks["mobike_negotiated"] = "peer supports MOBIKE" in peers.ss.log()
        ike_before, child_before = _snapshot(peers)
        ping = subprocess.Popen(
            ["ip", "netns", "exec", topo.left.ns, "ping", "-c", str(PINGS), "-i", str(INTERVAL),
             "-W", "1", "-I", LEFT_HOST, RIGHT_HOST],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        time.sleep(3)  # a few pings through the first path
        sh("ip", "-n", topo.left.ns, "addr", "del", f"{FIRST}/24", "dev", "vl")
        phase("address-removed")
        out, _ = ping.communicate(timeout=PINGS * INTERVAL + 60)
        phase("pinged")
        seqs = sorted({int(m) for m in re.findall(r"icmp_seq=(\d+)", out)})
        lost = PINGS - len(seqs)
        checks["_ping"] = out[-600:]
        checks["_lost_pings"] = lost
        checks["_received_seqs"] = seqs
        # traffic continues over the new path: the last ten pings all came back
        checks["pings_after_the_move"] = set(range(PINGS - 9, PINGS + 1)) <= set(seqs)
        checks["pings_before_the_move"] = bool(seqs) and seqs[0] <= 5
        checks["lost_at_most_3_s"] = lost <= 3 / INTERVAL
        ike_after, child_after = _snapshot(peers)
        checks["_spis"] = {"before": [ike_before, child_before], "after": [ike_after, child_after]}
        checks["same_ike_sa"] = ike_after == ike_before
        checks["same_child_spis"] = child_after == child_before
        (mine,) = peers.ours.list_sas()
        (theirs,) = peers.ss.list_sas()
        if peers.ours_initiates:
            checks["moved_both_sides"] = (
                mine["local"] == f"{SECOND}:4500" and theirs.remote_host == SECOND
            )
        else:
            checks["moved_both_sides"] = (
                mine["remote"] == f"{SECOND}:4500" and theirs.local_host == SECOND
            )
        ours_states, ss_states = xfrm_states(peers.ours.ns), xfrm_states(peers.ss.ns)
        spis = set(child_after)
        both = spis <= set(ours_states) and spis <= set(ss_states)
        checks["kernel_states_both_sides"] = both
        checks["kernel_sas_on_the_new_path"] = both and all(
            {states[s]["src"], states[s]["dst"]} == {SECOND, GW}
            for states in (ours_states, ss_states)
            for s in spis
        )
        checks["kernel_keys_equal"] = both and all(
            ours_states[s]["keys"] and ours_states[s]["keys"] == ss_states[s]["keys"] for s in spis
        )
        checks["_kernel"] = {s: {k: v for k, v in ours_states.get(s, {}).items() if k != "keys"}
                             for s in spis}  # fmt: skip
        policies = sh("ip", "-n", peers.ours.ns, "xfrm", "policy").stdout
        checks["_policies"] = policies[-1500:]
        checks["policies_on_the_new_path"] = FIRST not in policies and SECOND in policies
        phase("checked")
        if peers.ours_initiates:
            checks["down"] = peers.ours.down(scenario.spec.name).ok
        else:
            checks["down"] = peers.ss.terminate(ike=scenario.spec.name).ok
        peers.nothing_left(timeout=30)
        time.sleep(0.5)
        left = {s for s in spis if s in xfrm_states(peers.ours.ns) or s in xfrm_states(peers.ss.ns)}
        checks["zero_after_teardown"] = not left
        phase("down")
    except BaseException:
        checks["error"] = traceback.format_exc()[-4000:]
        if peers is not None:
            checks["_logs"] = peers.logs()[-8000:]
            checks["_ours_process"] = process_state(peers.ours.proc)
    finally:
        if peers is not None:
            peers.stop()
        topo.close()
    return checks


if __name__ == "__main__":
    sys.exit(run_all(SCENARIOS, run, "gm-"))
