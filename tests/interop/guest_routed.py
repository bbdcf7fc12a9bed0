"""Runs INSIDE the QEMU guest (issue 14's guest rows): strongSwan 5.9.8 (kernel-netlink) against
our daemon (--kernel xfrm), real ESP.

- xfrm-interface: our child has if_id_in = if_id_out = 42 and xfrm_interface = "ipsec42"; the
  daemon makes the interface (RTM_NEWLINK kind xfrm). Traffic routed into ipsec42 is ESP on the
  wire and the pings pass; the same traffic routed around it (straight out of the veth) meets
  no policy (ours all carry if_id 42): it leaves in clear and strongSwan drops it. Both SAs and
  the three policies carry if_id 0x2a in our kernel.
- trap: our child has start_action = trap; the first ping hits the trap policy, the kernel
  sends an ACQUIRE, the tunnel comes up, and the pings go through as ESP. Whether the packet
  that triggered it was answered is recorded (Linux drops it while the SA is larval,
  xfrm_larval_drop = 1 by default).

    python guest_routed.py RESULTS_DIR [SCENARIO ...]
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when run by path
sys.path.insert(0, str(Path(__file__).resolve().parent))  # guest_interop's helpers

from guest_interop import GuestScenario, Sniffer, process_state, run_all, xfrm_states

from ikev2.testing.interop import OURS_INITIATOR, ChildSpec, Peers, Spec, ours_config
from ikev2.testing.topology import Topology, sh

SCENARIOS = (
    GuestScenario("xfrm-interface-esp-tunnel", OURS_INITIATOR, Spec("gx", children=(ChildSpec(),))),
    GuestScenario("trap-esp-tunnel", OURS_INITIATOR, Spec("gt", children=(ChildSpec(),))),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)
LEFT_HOST, RIGHT_HOST = "10.1.0.1", "10.2.0.1"
IF_ID, IFNAME = 42, "ipsec42"


def _ping(ns: str, count: int, interval: str = "0.5") -> tuple[int, str]:
    done = sh("ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", interval, "-W", "3",
              "-I", LEFT_HOST, RIGHT_HOST, check=False)  # fmt: skip
    m = re.search(r"(\d+) received", done.stdout)
    return (int(m.group(1)) if m else 0), done.stdout


def _configure_ours(peers: Peers, child: dict[str, Any]) -> None:
    pos = peers.pos
    tree = ours_config(peers.spec, pos["ours_addr"], pos["ours_peer"], pos["ours_net"],
                       pos["ss_net"], peers.ours_initiates, peers.ours.dir)  # fmt: skip
    tree["connections"][peers.spec.name]["children"]["net"].update(child)
    peers.ours.configure(tree)


def _interface(peers: Peers, topo: Topology, checks: dict[str, Any], workdir: Path) -> None:
    peers.establish(timeout=60)
    checks["children_and_keys_match"] = len(peers.check_children(expected=1)) == 1
    ns = peers.ours.ns
    link = sh("ip", "-n", ns, "-d", "link", "show", IFNAME, check=False).stdout
    checks["_link"] = link[-600:]
    checks["interface_made"] = "xfrm" in link and f"if_id {IF_ID:#x}" in link
    states = sh("ip", "-n", ns, "xfrm", "state").stdout
    policies = sh("ip", "-n", ns, "xfrm", "policy").stdout
    checks["sas_carry_if_id"] = states.count(f"if_id {IF_ID:#x}") == 2
    checks["policies_carry_if_id"] = policies.count(f"if_id {IF_ID:#x}") == 3
    checks["_policies"] = policies[-1500:]
    # routed into the interface: ESP
    sh("ip", "-n", ns, "route", "replace", "10.2.0.0/24", "dev", IFNAME, "src", LEFT_HOST)
    sh("ip", "-n", topo.right.ns, "route", "replace", "10.1.0.0/24", "via", topo.left.addr,
       "src", RIGHT_HOST)  # fmt: skip
    sniffer = Sniffer(ns, topo.left.dev, workdir / "wire-in.txt")
    received, out = _ping(ns, 4)
    wire = sniffer.stop()
    checks["_ping"], checks["_wire"] = out[-300:], wire
    checks["ping"] = received >= 3
    checks["wire_esp"] = wire["esp"] >= 3 and wire["cleartext_echo"] == 0
    before = {s: v["packets"] for s, v in xfrm_states(ns).items()}
    checks["counters_moved"] = len(before) == 2 and all(n > 0 for n in before.values())
    # routed around it: no policy without if_id 42 -> clear text, dropped by strongSwan
    sh("ip", "-n", ns, "route", "replace", "10.2.0.0/24", "via", topo.right.addr, "src", LEFT_HOST)
    sniffer = Sniffer(ns, topo.left.dev, workdir / "wire-around.txt")
    received, out = _ping(ns, 3)
    wire = sniffer.stop()
    checks["_around"] = {"ping": out[-300:], "wire": wire}
    checks["policies_match_only_that_if_id"] = (
        received == 0 and wire["esp"] == 0 and wire["cleartext_echo"] >= 3
    )
    after = {s: v["packets"] for s, v in xfrm_states(ns).items()}
    checks["sas_untouched_around"] = after == before


def _trap(peers: Peers, topo: Topology, checks: dict[str, Any], workdir: Path) -> None:
    ns = peers.ours.ns
    policies = sh("ip", "-n", ns, "xfrm", "policy").stdout
    checks["trap_installed"] = "dir out" in policies and not peers.ours.list_sas()
    sh("ip", "-n", ns, "route", "replace", "10.2.0.0/24", "via", topo.right.addr, "src", LEFT_HOST)
    sh("ip", "-n", topo.right.ns, "route", "replace", "10.1.0.0/24", "via", topo.left.addr,
       "src", RIGHT_HOST)  # fmt: skip
    sniffer = Sniffer(ns, topo.left.dev, workdir / "wire-trap.txt")
    received, out = _ping(ns, 6, "1")  # the first one triggers the ACQUIRE
    up = peers.ours.wait_for(
        lambda sas: any(sa.get("state") == "established" and sa.get("children") for sa in sas), 60
    )
    again, out2 = _ping(ns, 4)
    wire = sniffer.stop()
    checks["_ping"], checks["_wire"] = [out[-500:], out2[-300:]], wire
    checks["acquire_logged"] = "acquire" in peers.ours.log().lower()
    checks["tunnel_up_by_traffic"] = bool(up)
    checks["children_and_keys_match"] = len(peers.check_children(expected=1)) == 1
    checks["ping"] = again == 4 and received >= 1
    checks["wire_esp"] = wire["esp"] >= 8
    checks["_first_packet_answered"] = "icmp_seq=1 " in out
    checks["_first_series_received"] = received


def run(scenario: GuestScenario, workdir: Path) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    topo = Topology.pair("g")
    peers: Peers | None = None
    try:
        topo.add_lo_address(topo.left.ns, f"{LEFT_HOST}/32")
        topo.add_lo_address(topo.right.ns, f"{RIGHT_HOST}/32")
        peers = Peers(scenario.spec, topo, scenario.role, workdir, real_kernel=True)
        if scenario.name.startswith("xfrm-interface"):
            _configure_ours(
                peers, {"if_id_in": IF_ID, "if_id_out": IF_ID, "xfrm_interface": IFNAME}
            )
        else:
            _configure_ours(peers, {"start_action": "trap"})
        peers.start()
        (_interface if scenario.name.startswith("xfrm-interface") else _trap)(
            peers, topo, checks, workdir
        )
        checks["down"] = peers.ours.down(scenario.spec.name).ok
        peers.nothing_left(timeout=20)
        left = xfrm_states(peers.ours.ns)
        checks["zero_after_teardown"] = not left
        checks["_left"] = left
    except BaseException:
        checks["error"] = traceback.format_exc()[-4000:]
        if peers is not None:
            checks["_logs"] = peers.logs()[-6000:]
            checks["_ours_process"] = process_state(peers.ours.proc)
    finally:
        if peers is not None:
            peers.stop()
        if scenario.name.startswith("xfrm-interface"):  # the daemon removed it on shutdown
            link = sh("ip", "-n", topo.left.ns, "link", "show", IFNAME, check=False)
            checks["interface_removed_on_stop"] = link.returncode != 0
        topo.close()
    return checks


if __name__ == "__main__":
    sys.exit(run_all(SCENARIOS, run, "gr-"))
