"""Runs INSIDE the QEMU guest (issue 14): IPComp (RFC 3173) with real XFRM, `ipcomp` on both
sides of the child.

- ipcomp-esp-tunnel--ours-initiator / --ours-responder: strongSwan 5.9.8 (kernel-netlink,
  `ipcomp = yes`) against our daemon (--kernel xfrm, `ipcomp = true`). Both list the child
  with mirrored CPIs (strongSwan's cpi-in / cpi-out), both kernels hold an IPComp SA per
  direction (proto comp, deflate, tunnel mode) and the ESP SAs in transport mode under them.
- ipcomp-esp-tunnel--ours-ours: two of our daemons, the same checks, plus a child rekey that
  keeps IPComp with new CPIs.

In each: large compressible pings (1,200 octets of 0xaa) go through, the IPComp SAs count
them, ESP on the wire is far shorter than the payload (so it was compressed before it was
encrypted) and no echo crosses in clear; small pings (sent uncompressed, RFC 3173 §2.2) go
through too (the inbound IPComp template is optional). After `down` no ESP or IPComp state is
left in either kernel.

    python guest_ipcomp.py RESULTS_DIR [SCENARIO ...]
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

from ikev2.testing.daemon import OurDaemon
from ikev2.testing.interop import (
    LEFT_NET,
    OURS_INITIATOR,
    OURS_RESPONDER,
    RIGHT_NET,
    ChildSpec,
    Peers,
    Spec,
    ours_config,
    positions,
)
from ikev2.testing.topology import Topology, sh

OURS_OURS = "ours-ours"
SPEC = Spec("gc", children=(ChildSpec(ipcomp=True),))
SCENARIOS = (
    GuestScenario("ipcomp-esp-tunnel", OURS_INITIATOR, SPEC),
    GuestScenario("ipcomp-esp-tunnel", OURS_RESPONDER, SPEC),
    GuestScenario("ipcomp-esp-tunnel", OURS_OURS, SPEC),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)
LEFT_HOST, RIGHT_HOST = "10.1.0.1", "10.2.0.1"
BIG = 1200  # ICMP payload octets, all 0xaa: deflate makes a few dozen of them
MODULES = ("ipcomp", "ipcomp6", "xfrm_ipcomp", "xfrm4_tunnel", "tunnel4")


def _modules(checks: dict[str, Any]) -> None:
    """The guest kernel's IPComp: the modules load (deflate is built into Debian's kernel)."""
    done = sh("modprobe", "-a", *MODULES, check=False)
    crypto = Path("/proc/crypto").read_text()
    checks["_modprobe"] = (done.returncode, (done.stderr or "").strip()[-300:])
    checks["kernel_has_ipcomp"] = done.returncode == 0 and "name         : deflate" in crypto


def _ping(ns: str, count: int, size: int | None) -> tuple[int, str]:
    extra = ["-s", str(size), "-p", "aa"] if size else []
    done = sh("ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.3", "-W", "3",
              *extra, "-I", LEFT_HOST, RIGHT_HOST, check=False)  # fmt: skip
    m = re.search(r"(\d+) received", done.stdout)
    return (int(m.group(1)) if m else 0), done.stdout


def _esp_lengths(path: Path) -> list[int]:
    lengths = []
    for line in path.read_text().splitlines():
        m = re.search(r"ESP\(spi=\S+\), length (\d+)", line)
        if m:
            lengths.append(int(m.group(1)))
    return lengths


def _routes(topo: Topology) -> None:
    sh("ip", "-n", topo.left.ns, "route", "replace", RIGHT_NET, "via", topo.right.addr,
       "src", LEFT_HOST)  # fmt: skip
    sh("ip", "-n", topo.right.ns, "route", "replace", LEFT_NET, "via", topo.left.addr,
       "src", RIGHT_HOST)  # fmt: skip


def _traffic(topo: Topology, checks: dict[str, Any], workdir: Path, tag: str = "") -> None:
    """Big compressible pings and small ones through the tunnel, watched on both veths."""
    sniffers = [
        Sniffer(topo.left.ns, topo.left.dev, workdir / f"wire-left{tag}.txt"),
        Sniffer(topo.right.ns, topo.right.dev, workdir / f"wire-right{tag}.txt"),
    ]
    big, out_big = _ping(topo.left.ns, 5, BIG)
    small, out_small = _ping(topo.left.ns, 3, None)
    wire: dict[str, int] = {}
    for sniffer in sniffers:
        for kind, n in sniffer.stop().items():
            wire[kind] = wire.get(kind, 0) + n
    lengths = [n for s in sniffers for n in _esp_lengths(s.out)]
    checks[f"_ping{tag}"] = [out_big[-300:], out_small[-200:]]
    checks[f"_wire{tag}"] = {**wire, "esp_lengths": sorted(set(lengths))}
    checks[f"big_pings{tag}"] = big >= 4
    checks[f"small_pings{tag}"] = small >= 2
    checks[f"wire_esp{tag}"] = wire["esp"] >= 14 and wire["cleartext_echo"] == 0
    # the 1,228-octet echoes went out compressed inside ESP: nothing on the wire near that size
    checks[f"wire_compressed{tag}"] = bool(lengths) and max(lengths) < BIG // 2


def _kernel(ns: str, cpis: tuple[str, str], spis: tuple[str, str]) -> dict[str, bool]:
    """One kernel's view of an IPComp child: both IPComp SAs (tunnel mode, deflate, traffic
    counted) and both ESP SAs in transport mode; the policies carry the IPComp template."""
    states = xfrm_states(ns)
    text = sh("ip", "-n", ns, "xfrm", "state").stdout
    policies = sh("ip", "-n", ns, "xfrm", "policy").stdout
    comp = [states.get(c.rjust(8, "0")) for c in cpis]
    esp = [states.get(s.rjust(8, "0")) for s in spis]
    comp_ok = [c is not None and c["proto"] == "comp" and c["mode"] == "tunnel" for c in comp]
    esp_ok = [e is not None and e["proto"] == "esp" and e["mode"] == "transport" for e in esp]
    return {
        "comp_sas": all(comp_ok) and text.count("comp deflate") >= 2,
        "comp_counted": all(c is not None and c["packets"] > 0 for c in comp),
        "esp_transport": all(esp_ok),
        "policy_templates": policies.count("proto comp") >= 3 and "level use" in policies,
    }


def _cpis(child: dict[str, Any]) -> tuple[str, str]:
    return str(child.get("cpi_in", "")), str(child.get("cpi_out", ""))


def _spis(child: dict[str, Any]) -> tuple[str, str]:
    return str(child["spi_in"]), str(child["spi_out"])


def _no_state_left(*namespaces: str) -> bool:
    for ns in namespaces:
        text = sh("ip", "-n", ns, "xfrm", "state").stdout
        if "proto esp" in text or "proto comp" in text:
            return False
    return True


def _with_strongswan(scenario: GuestScenario, topo: Topology, checks: dict[str, Any],
                     workdir: Path) -> Peers:  # fmt: skip
    peers = Peers(scenario.spec, topo, scenario.role, workdir, real_kernel=True)
    try:
        peers.start()
        peers.establish(timeout=60)
        ((child, twin),) = peers.check_children(expected=1)
        checks["children_and_keys_match"] = True
        cpi_in, cpi_out = _cpis(child)
        theirs = (str(twin.raw.get("cpi-in", "")), str(twin.raw.get("cpi-out", "")))
        checks["_cpis"] = {"ours": (cpi_in, cpi_out), "strongswan": theirs}
        checks["cpis_negotiated"] = bool(cpi_in and cpi_out) and theirs == (cpi_out, cpi_in)
        _routes(topo)
        _traffic(topo, checks, workdir)
        spis = _spis(child)
        for who, ns, c, s in (("ours", peers.ours.ns, (cpi_in, cpi_out), spis),
                              ("strongswan", peers.ss.ns, theirs, spis[::-1])):  # fmt: skip
            for name, ok in _kernel(ns, c, s).items():
                checks[f"{name}_{who}"] = ok
        if not all(v for k, v in checks.items() if k.startswith("comp_counted")):
            checks["_xfrm_ours"] = sh("ip", "-n", peers.ours.ns, "-s", "xfrm", "state").stdout[
                -3000:
            ]
        if peers.ours_initiates:
            checks["down"] = peers.ours.down(scenario.spec.name).ok
        else:
            checks["down"] = peers.ss.terminate(ike=scenario.spec.name).ok
        peers.nothing_left(timeout=20)
        time.sleep(0.5)
        checks["zero_after_teardown"] = _no_state_left(peers.ours.ns, peers.ss.ns)
    except BaseException:
        checks["_logs"] = peers.logs()[-6000:]
        checks["_ours_process"] = process_state(peers.ours.proc)
        raise
    finally:
        peers.stop()
    return peers


def _rekeyed(daemon: OurDaemon, old_spi: str) -> dict[str, Any] | None:
    sas = daemon.wait_for(
        lambda sas: any(c["spi_in"] != old_spi for sa in sas for c in sa.get("children", ()))
        and all(len(sa.get("children", ())) == 1 for sa in sas), timeout=60)  # fmt: skip
    return next((c for sa in sas for c in sa["children"] if c["spi_in"] != old_spi), None)


def _ours_ours(scenario: GuestScenario, topo: Topology, checks: dict[str, Any],
               workdir: Path) -> None:  # fmt: skip
    left_pos = positions(topo, True)
    right_pos = positions(topo, False)
    left = OurDaemon(topo.left.ns, workdir / "left", kernel="xfrm", use_cli=False)
    right = OurDaemon(topo.right.ns, workdir / "right", kernel="xfrm", use_cli=False)
    daemons = [left, right]
    try:
        # the same Spec both ways: each daemon plays moon to the other's sun
        left_tree = ours_config(SPEC, left_pos["ours_addr"], left_pos["ours_peer"], LEFT_NET,
                                RIGHT_NET, True, workdir / "left")  # fmt: skip
        right_tree = ours_config(SPEC, right_pos["ours_addr"], right_pos["ours_peer"], RIGHT_NET,
                                 LEFT_NET, False, workdir / "right")  # fmt: skip
        conn = right_tree["connections"][SPEC.name]
        conn["local"]["id"], conn["remote"]["id"] = conn["remote"]["id"], conn["local"]["id"]
        left.configure(left_tree)
        right.configure(right_tree)
        right.start(timeout=240)
        left.start(timeout=240)
        checks["up"] = left.up(SPEC.name, timeout=60).ok
        ((mine,),) = [sa["children"] for sa in left.list_sas()]
        ((theirs,),) = [sa["children"] for sa in right.list_sas()]
        checks["_children"] = {"left": mine, "right": theirs}
        checks["cpis_negotiated"] = bool(_cpis(mine)[0] and _cpis(mine)[1]) and _cpis(
            mine) == _cpis(theirs)[::-1]  # fmt: skip
        _routes(topo)
        _traffic(topo, checks, workdir)
        for who, daemon, child in (("left", left, mine), ("right", right, theirs)):
            for name, ok in _kernel(daemon.ns, _cpis(child), _spis(child)).items():
                checks[f"{name}_{who}"] = ok
        # a rekey of the child keeps IPComp, with new CPIs (RFC 7296 §2.8, a CREATE_CHILD_SA)
        (sa,) = left.list_sas()
        answer = left.control({"cmd": "rekey", "id": sa["id"], "child": mine["spi_in"]})
        checks["_rekey"] = answer
        new = _rekeyed(left, mine["spi_in"])
        checks["_rekeyed_child"] = new
        checks["rekey_keeps_ipcomp"] = (
            new is not None and all(_cpis(new)) and set(_cpis(new)).isdisjoint(_cpis(mine))
        )
        if new is not None:
            _traffic(topo, checks, workdir, tag="_after_rekey")
            kernel = _kernel(left.ns, _cpis(new), _spis(new))
            checks["comp_counted_after_rekey"] = kernel["comp_counted"]
        checks["down"] = left.down(SPEC.name).ok
        left.wait_for(lambda sas: not sas, 20)
        right.wait_for(lambda sas: not sas, 20)
        time.sleep(0.5)
        checks["zero_after_teardown"] = _no_state_left(left.ns, right.ns)
    except BaseException:
        checks["_logs"] = "\n".join(d.tail(80) for d in daemons)[-8000:]
        raise
    finally:
        for daemon in daemons:
            daemon.stop()


def run(scenario: GuestScenario, workdir: Path) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    t0 = time.monotonic()
    topo = Topology.pair("c")
    try:
        _modules(checks)
        topo.add_lo_address(topo.left.ns, f"{LEFT_HOST}/32")
        topo.add_lo_address(topo.right.ns, f"{RIGHT_HOST}/32")
        if scenario.role == OURS_OURS:
            _ours_ours(scenario, topo, checks, workdir)
        else:
            _with_strongswan(scenario, topo, checks, workdir)
    except BaseException:
        checks["error"] = traceback.format_exc()[-4000:]
    finally:
        topo.close()
        checks["_seconds"] = round(time.monotonic() - t0, 1)
    return checks


if __name__ == "__main__":
    sys.exit(run_all(SCENARIOS, run, "gc-"))
