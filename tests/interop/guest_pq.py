"""Runs INSIDE the QEMU guest: the post-quantum hybrid with real ESP (issue 15's guest rows).
strongSwan 6.0.6 (the .cache build, kernel-netlink; the guest sees the host root read-only, so
the prefix is there) against our daemon (--kernel xfrm): an IKE SA of x25519 + ML-KEM-768
(one IKE_INTERMEDIATE, RFC 9370 §2.2.1), then
- hybrid-pfs-followup: its child rekeyed with PFS x25519 + ADDKE1 ML-KEM-768 (CREATE_CHILD_SA
  then one IKE_FOLLOWUP_KE, §2.2.4), and pings through the NEW child;
- hybrid-ppk-ike-rekey: the IKE SA also keyed with a post-quantum preshared key (RFC 8784),
  then the IKE SA rekeyed with x25519 + ML-KEM-768 (CREATE_CHILD_SA then one IKE_FOLLOWUP_KE),
  and pings through the child, which moved to the new IKE SA with its PPK-derived keys.
One JSON file per scenario; tests/interop/test_guest_pq.py asserts every recorded check.

    python guest_pq.py RESULTS_DIR [SCENARIO ...]
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when run by path
sys.path.insert(0, str(Path(__file__).resolve().parent))  # guest_interop's helpers

from guest_interop import GuestScenario, Sniffer, process_state, run_all, xfrm_states

from ikev2.testing.interop import OURS_INITIATOR, OURS_RESPONDER, ChildSpec, Peers, PpkSpec, Spec
from ikev2.testing.strongswan import STRONGSWAN6
from ikev2.testing.topology import Topology, sh

HYBRID = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
PFS_CHILD = "aes256gcm16-x25519-ke1_mlkem768"
_SPEC = Spec(
    "gpq",
    ours_ike=(HYBRID,),
    ss_ike=(HYBRID,),
    children=(ChildSpec(ours_proposals=(PFS_CHILD,), ss_proposals=(PFS_CHILD,)),),
)
_PPK = PpkSpec((("ppk-guest", "3c9e51a7" * 8),), ppk_id="ppk-guest", required=True)
_PPK_SPEC = Spec("gpqk", ours_ike=(HYBRID,), ss_ike=(HYBRID,), ours_ppk=_PPK, ss_ppk=_PPK)
IKE_REKEY = "hybrid-ppk-ike-rekey-esp-tunnel"
# the rekeying side is the role's, as in the host rows: ours-initiator: ours, else strongSwan
SCENARIOS = (
    GuestScenario("hybrid-pfs-followup-esp-tunnel", OURS_INITIATOR, _SPEC),
    GuestScenario("hybrid-pfs-followup-esp-tunnel", OURS_RESPONDER, _SPEC),
    GuestScenario(IKE_REKEY, OURS_INITIATOR, _PPK_SPEC),
    GuestScenario(IKE_REKEY, OURS_RESPONDER, _PPK_SPEC),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)
LEFT_HOST, RIGHT_HOST = "10.1.0.1", "10.2.0.1"


def _count(pattern: str, text: str) -> int:
    return len(set(re.findall(pattern, text)))


def _rekey_child(peers: Peers, role: str) -> str:
    """`role`'s side rekeys the one child; waits for both to hold one new child. Old spi_in."""
    (mine,) = peers.ours.list_sas()
    (old,) = mine["children"]
    if role == OURS_INITIATOR:
        done = peers.ours.cli("rekey", str(mine["id"]), "--child", old["spi_in"])
        assert done.ok, done.output
    else:
        result = peers.ss.rekey(child="net")
        assert result.ok, result.output
    peers.ours.wait_for(lambda sas: bool(sas) and [c["spi_in"] for c in sas[0]["children"]]
                        not in ([], [old["spi_in"]]), timeout=60)  # fmt: skip
    peers.ss.wait_for(lambda sas: len(sas[0].installed_children) == 1, timeout=60)
    return str(old["spi_in"])


def _rekey_ike(peers: Peers, role: str) -> tuple[str, str]:
    """`role`'s side rekeys the IKE SA; waits until both hold just the new one. Old SPIs."""
    (mine,) = peers.ours.list_sas()
    old = (mine["spi_i"], mine["spi_r"])
    if role == OURS_INITIATOR:  # over the control socket: a CLI start under TCG takes ~30 s
        answer = peers.ours.control({"cmd": "rekey", "id": mine["id"]}, timeout=90)
        assert answer.get("ok"), answer
    else:
        result = peers.ss.rekey(ike=peers.spec.name)
        assert result.ok, result.output
    peers.ours.wait_for(lambda sas: len(sas) == 1 and (sas[0]["spi_i"], sas[0]["spi_r"]) != old
                        and sas[0]["state"].upper() == "ESTABLISHED", timeout=60)  # fmt: skip
    peers.ss.wait_for(lambda sas: len(sas) == 1 and (sas[0].spi_i, sas[0].spi_r) != old,
                      timeout=60)  # fmt: skip
    return old


def _rekey_checks(scenario: GuestScenario, peers: Peers, checks: dict[str, Any]) -> str:
    """Rekey as the scenario says and record its checks; the spi_in the child had before."""
    followups = r"(?:generating|parsed) IKE_FOLLOWUP_KE request (\d+) \[ KE N\(ADD_KE\)"
    if scenario.name != IKE_REKEY:
        old_in = _rekey_child(peers, scenario.role)
        log = peers.ss.log()
        checks["pfs_child_selected"] = bool(
            re.search(r"selected proposal: ESP:AES_GCM_16_256/CURVE_25519/\S*KE1_ML_KEM_768", log)
        )
        checks["one_followup_ke"] = _count(followups, log) == 1
        return old_in
    (mine,) = peers.ours.list_sas()
    (first,) = peers.ss.list_sas()
    checks["ppk_used"] = (
        "using PPK for PPK_ID 'ppk-guest'" in peers.ss.log()
        and mine["ppk"] is True
        and first.raw.get("ppk") == "yes"
    )
    (child,) = mine["children"]
    old_spis = _rekey_ike(peers, scenario.role)
    (new,) = peers.ours.list_sas()
    (theirs,) = peers.ss.list_sas()
    checks["ike_rekeyed_hybrid"] = (
        (new["spi_i"], new["spi_r"]) != old_spis
        and theirs.raw.get("dh-group") == "CURVE_25519"
        and theirs.raw.get("ake1") == "ML_KEM_768"
        and new["ppk"] is True  # the new IKE SA's keys come from the PPK's SK_d (§2.18)
    )
    checks["one_followup_ke"] = _count(followups, peers.ss.log()) == 1
    checks["child_moved"] = [c["spi_in"] for c in new["children"]] == [child["spi_in"]]
    return "(moved, not rekeyed)"


def run(scenario: GuestScenario, workdir: Path) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    t0 = time.monotonic()
    phases: dict[str, float] = {}
    checks["_phases"] = phases

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - t0, 1)

    topo = Topology.pair("q")
    peers: Peers | None = None
    try:
        topo.add_lo_address(topo.left.ns, f"{LEFT_HOST}/32")
        topo.add_lo_address(topo.right.ns, f"{RIGHT_HOST}/32")
        peers = Peers(
            scenario.spec, topo, scenario.role, workdir, real_kernel=True, install=STRONGSWAN6
        ).start()
        phase("started")
        peers.establish(timeout=90)
        phase("established")
        log = peers.ss.log()
        checks["strongswan6"] = "Starting IKE charon daemon (strongSwan 6.0.6" in log
        checks["hybrid_ike_sa"] = (
            "selected proposal: IKE:AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519/KE1_ML_KEM_768"
            in log
        )
        checks["one_intermediate"] = (
            _count(r"(?:generating|parsed) IKE_INTERMEDIATE request (\d+) \[ KE", log) == 1
        )
        old_in = _rekey_checks(scenario, peers, checks)
        phase("rekeyed")
        pairs = peers.check_children(expected=1)  # SPIs mirrored, keys equal strongSwan's log
        child, _ = pairs[0]
        checks["children_and_keys_match"] = len(pairs) == 1 and child["spi_in"] != old_in
        checks["_child"] = child
        phase("checked")
        sh("ip", "-n", topo.left.ns, "route", "replace", "10.2.0.0/24", "via", topo.right.addr,
           "src", LEFT_HOST)  # fmt: skip
        sh("ip", "-n", topo.right.ns, "route", "replace", "10.1.0.0/24", "via", topo.left.addr,
           "src", RIGHT_HOST)  # fmt: skip
        sniffers = [
            Sniffer(topo.left.ns, topo.left.dev, workdir / "wire-left.txt"),
            Sniffer(topo.right.ns, topo.right.dev, workdir / "wire-right.txt"),
        ]
        ping = sh("ip", "netns", "exec", topo.left.ns, "ping", "-c", "4", "-i", "0.3", "-W", "3",
                  "-I", LEFT_HOST, RIGHT_HOST, check=False)  # fmt: skip
        phase("pinged")
        wire: dict[str, int] = {}
        for sniffer in sniffers:
            for kind, n in sniffer.stop().items():
                wire[kind] = wire.get(kind, 0) + n
        received = re.search(r"(\d+) received", ping.stdout)
        checks["ping"] = received is not None and int(received.group(1)) >= 3
        checks["_ping"] = ping.stdout[-300:]
        checks["_wire"] = wire
        checks["wire_esp"] = wire["esp"] >= 6
        checks["no_cleartext_echo"] = wire["cleartext_echo"] == 0
        # the NEW child's SAs, in both kernels, with equal keys, carried the pings
        ours_states, ss_states = xfrm_states(peers.ours.ns), xfrm_states(peers.ss.ns)
        spis = {child["spi_in"].lower().rjust(8, "0"), child["spi_out"].lower().rjust(8, "0")}
        both = spis <= set(ours_states) and spis <= set(ss_states)
        checks["kernel_states_both_sides"] = both
        checks["kernel_keys_equal"] = both and all(
            ours_states[s]["keys"] and ours_states[s]["keys"] == ss_states[s]["keys"] for s in spis
        )
        checks["counters_moved"] = both and all(ours_states[s]["packets"] > 0 for s in spis)
        phase("kernel-checked")
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
            checks["_logs"] = peers.logs()[-6000:]
            checks["_ours_process"] = process_state(peers.ours.proc)
    finally:
        if peers is not None:
            peers.stop()
        topo.close()
    return checks


if __name__ == "__main__":
    sys.exit(run_all(SCENARIOS, run, "gpq-"))
