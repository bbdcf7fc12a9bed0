"""Runs INSIDE the QEMU guest (a kernel with ESP): remote access with real XFRM, both roles.
One JSON file per scenario goes to the results share; tests/interop/test_guest_remote_access.py
asserts every recorded check.

    python guest_remote_access.py RESULTS_DIR [SCENARIO ...]

`gateway--ours-responder`: our daemon (--kernel xfrm) is the gateway with pools; a strongSwan
road warrior (kernel-netlink, install_virtual_ip) gets 10.3.0.1, pings 10.2.0.1 behind the
gateway from it through the tunnel, and our kernel's policies and states name 10.3.0.1/32.
`client--ours-initiator`: our daemon is the road warrior against a strongSwan gateway with
swanctl pools: netlink puts 10.4.0.1/32 and fd04::1/128 on its lo (kernel/addresses.py) and
the route to 10.2.0.0/24 from 10.4.0.1 in table 220 with rule 220 (kernel/routes.py), it
pings 10.2.0.1 from 10.4.0.1 through the tunnel by that route, and `down` removes the
addresses, the route and the rule again.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when run by path

from ikev2.testing.daemon import OurDaemon
from ikev2.testing.interop import OURS_INITIATOR, OURS_RESPONDER
from ikev2.testing.remote_access import (
    ours_client,
    ours_gateway,
    ss_gateway,
    ss_road_warriors,
    vips_of,
)
from ikev2.testing.strongswan import Charon
from ikev2.testing.topology import Topology, sh

TARGET = "10.2.0.1"  # on the gateway's lo, inside BEHIND


def _ping(ns: str, source: str) -> tuple[bool, str]:
    done = sh("ip", "netns", "exec", ns, "ping", "-c", "4", "-i", "0.3", "-W", "3", "-I", source,
              TARGET, check=False)  # fmt: skip
    received = re.search(r"(\d+) received", done.stdout)
    return received is not None and int(received.group(1)) >= 3, done.stdout[-300:]


def _packets(ns: str) -> int:
    """The largest packet counter of any XFRM state in `ns` (ip -s xfrm state)."""
    text = sh("ip", "-n", ns, "-s", "xfrm", "state").stdout
    counts = [int(n) for n in re.findall(r"(\d+)\(packets\)", text)]
    return max(counts, default=0)


def _routes(topo: Topology, vip_net: str, vip: str) -> None:
    """Inner routes (the harness's charons install none): the client reaches BEHIND from its
    virtual IP, the gateway answers the pool through the veth; XFRM policies take both."""
    sh("ip", "-n", topo.left.ns, "route", "replace", "10.2.0.0/24", "via", topo.right.addr,
       "src", vip)  # fmt: skip
    sh("ip", "-n", topo.right.ns, "route", "replace", vip_net, "via", topo.left.addr)


def gateway(topo: Topology, workdir: Path, checks: dict[str, Any]) -> None:
    ss = Charon(topo.left.ns, workdir / "ss", kernel="netlink",
                extra={"install_virtual_ip": True})  # fmt: skip
    ours = OurDaemon(topo.right.ns, workdir / "ours", kernel="xfrm", use_cli=False)
    ours.configure(ours_gateway(topo.right.addr, "10.3.0.0/28"))
    ss.configure(ss_road_warriors(topo.left.addr, topo.right.addr))
    try:
        ss.start()
        ss.load()
        ours.start(timeout=120)
        checks["established"] = ss.initiate(child="net", ike="rw", timeout=60).ok
        sas = ss.wait_for(lambda sas: any(s.installed_children for s in sas), timeout=30)
        checks["strongswan_got_vips"] = vips_of(dict(sas[0].raw)) == ["10.3.0.1", "fd03::1"]
        checks["_strongswan_sa"] = dict(sas[0].raw)
        (mine,) = ours.list_sas()
        checks["ours_lists_remote_vips"] = mine["remote_vips"] == ["10.3.0.1", "fd03::1"]
        _routes(topo, "10.3.0.0/28", "10.3.0.1")
        checks["ping"], checks["_ping"] = _ping(topo.left.ns, "10.3.0.1")
        policy = sh("ip", "-n", topo.right.ns, "xfrm", "policy").stdout
        checks["_gateway_policy"] = policy[-3000:]
        checks["gateway_policy_names_lease"] = (
            "src 10.3.0.1/32 dst 10.2.0.0/24" in policy
            and "src 10.2.0.0/24 dst 10.3.0.1/32" in policy
        )
        checks["gateway_counters_moved"] = _packets(topo.right.ns) >= 3
        checks["down"] = ss.terminate(ike="rw").ok
        ours.wait_for(lambda sas: not sas, timeout=30)
        time.sleep(0.5)
        after = sh("ip", "-n", topo.right.ns, "xfrm", "policy").stdout
        checks["zero_after_teardown"] = "10.3.0.1" not in after
    except BaseException:
        checks["error"] = traceback.format_exc()[-4000:]
        checks["_logs"] = f"{ss.tail(60)}\n---\n{ours.tail(40)}"
    finally:
        ours.stop()
        ss.stop()


def client(topo: Topology, workdir: Path, checks: dict[str, Any]) -> None:
    ss = Charon(topo.right.ns, workdir / "ss", kernel="netlink")
    ours = OurDaemon(topo.left.ns, workdir / "ours", kernel="xfrm", use_cli=False)
    ours.configure(ours_client(topo.left.addr, topo.right.addr))
    ss.configure(ss_gateway(topo.right.addr, topo.left.addr))
    try:
        ss.start()
        ss.load()
        ours.start(timeout=120)
        up = ours.up("rw", timeout=60)
        checks["established"] = up.ok
        (mine,) = ours.wait_for(lambda sas: any(s.get("children") for s in sas), timeout=30)
        checks["ours_got_vips"] = mine["local_vips"] == ["10.4.0.1", "fd04::1"]
        lo = sh("ip", "-n", topo.left.ns, "addr", "show", "dev", "lo").stdout
        checks["_lo"] = lo
        checks["vips_on_lo"] = "inet 10.4.0.1/32" in lo and "inet6 fd04::1/128" in lo
        # our routes, as strongSwan's install_routes: rule 220, table 220 from the virtual IP
        # (service/vip_routes.py); only the strongSwan gateway's way back is added here
        sh("ip", "-n", topo.right.ns, "route", "replace", "10.4.0.0/28", "via", topo.left.addr)
        table = sh("ip", "-n", topo.left.ns, "route", "show", "table", "220").stdout
        rules = sh("ip", "-n", topo.left.ns, "rule", "show").stdout
        checks["_table_220"], checks["_rules"] = table, rules
        checks["route_from_vip"] = bool(
            re.search(r"^10\.2\.0\.0/24 .*proto static .*src 10\.4\.0\.1", table, re.M)
        )
        checks["rule_220"] = "220:\tfrom all lookup 220" in rules
        checks["ping"], checks["_ping"] = _ping(topo.left.ns, "10.4.0.1")
        policy = sh("ip", "-n", topo.left.ns, "xfrm", "policy").stdout
        checks["_client_policy"] = policy[-3000:]
        checks["client_policy_from_vip"] = "src 10.4.0.1/32 dst 10.2.0.0/24" in policy
        checks["client_counters_moved"] = _packets(topo.left.ns) >= 3
        checks["down"] = ours.down("rw").ok
        ours.wait_for(lambda sas: not sas, timeout=30)
        time.sleep(0.5)
        lo_after = sh("ip", "-n", topo.left.ns, "addr", "show", "dev", "lo").stdout
        checks["vips_removed"] = "10.4.0.1" not in lo_after and "fd04::1" not in lo_after
        table_after = sh("ip", "-n", topo.left.ns, "route", "show", "table", "220").stdout
        rules_after = sh("ip", "-n", topo.left.ns, "rule", "show").stdout
        checks["routes_removed"] = table_after.strip() == "" and "lookup 220" not in rules_after
        checks["zero_after_teardown"] = _packets(topo.left.ns) == 0
    except BaseException:
        checks["error"] = traceback.format_exc()[-4000:]
        checks["_logs"] = f"{ss.tail(60)}\n---\n{ours.tail(40)}"
    finally:
        ours.stop()
        ss.stop()


Scenario = Callable[[Topology, Path, dict[str, Any]], None]
SCENARIOS: dict[str, tuple[str, str, Scenario]] = {
    f"gateway--{OURS_RESPONDER}": ("gateway", OURS_RESPONDER, gateway),
    f"client--{OURS_INITIATOR}": ("client", OURS_INITIATOR, client),
}


def run_one(key: str, results: Path) -> bool:
    name, role, body = SCENARIOS[key]
    start = time.monotonic()
    checks: dict[str, Any] = {}
    topo = Topology.pair("ra")
    try:
        topo.add_lo_address(topo.right.ns, f"{TARGET}/32")
        with tempfile.TemporaryDirectory(prefix="gra-") as tmp:
            body(topo, Path(tmp), checks)
    except BaseException:
        checks["error"] = traceback.format_exc()[-4000:]
    finally:
        topo.close()
    record = {"name": name, "role": role, "seconds": round(time.monotonic() - start, 1),
              "checks": checks}  # fmt: skip
    (results / f"{key}.json").write_text(json.dumps(record, indent=1, default=str))
    print(f"{key}: {record['seconds']} s", flush=True)
    return "error" not in checks and all(
        v is True for k, v in checks.items() if not k.startswith("_")
    )


def main() -> int:
    # the first Python start under TCG reads every module over 9p (> 60 s on a busy host):
    # pay it once here, not inside the first scenario's daemon start
    sh(sys.executable, "-c", "import ikev2.cli, ikev2.service.daemon, ikev2.testing.strongswan",
       timeout=300)  # fmt: skip
    results = Path(sys.argv[1])
    wanted = set(sys.argv[2:])
    ok = [run_one(key, results) for key in SCENARIOS if not wanted or key in wanted]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
