"""Runs INSIDE the QEMU guest: our daemon (--kernel xfrm, initiator) against strongSwan
(kernel-netlink) with real ESP and a ping flowing; then `kill -9` ours and start it again.
tests/interop/test_guest_crash.py asserts every check recorded here.

    python guest_crash.py RESULTS_DIR

What is checked, in order:
- the tunnel carries pings (ESP on the veth, counters move); a ping runs all along, every 0.2 s;
- SIGKILL leaves our kernel state behind (the SAs and policies are still there: the check
  that the flush below has something to do) and the control socket file (stale);
- the restart is not blocked by the stale socket; at start the daemon flushes what it owns
  (flush_owned: SAs and policies in its reqid range) and says so in its log; none of the
  old SPIs is in our kernel afterwards;
- with start_action = start the daemon brings the tunnel up again by itself, with
  INITIAL_CONTACT (RFC 7296 §2.4) in its IKE_AUTH; strongSwan (unique = no, so it honours
  INITIAL_CONTACT) deletes its old IKE SA and child: it holds exactly one IKE SA, the new one,
  and its kernel only the new SPIs; our kernel holds exactly the new child's 2 SAs and as
  many policies as before the crash (out, in, fwd);
- traffic is back, and the outage (the last ping reply before the restart to the first after)
  is shorter than one DPD interval (dpd_delay), and no ping reply was lost while our daemon
  was dead (the kernel forwards without it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when run by path

from ikev2.testing.daemon import READY, ikev2_command, render_toml
from ikev2.testing.interop import (
    OURS_INITIATOR,
    ChildSpec,
    Peers,
    Spec,
    ours_config,
    swanctl_config,
)
from ikev2.testing.topology import Topology, sh

DPD = 30  # s: strongSwan's and our dpd_delay in this scenario
SPEC = Spec(
    "crash",
    dpd_delay=DPD,
    children=(ChildSpec(mode="tunnel", proto="esp", ours_proposals=("aes256gcm16",),
                        ss_proposals=("aes256gcm16",)),),
)  # fmt: skip
PING_LINE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)")


def xfrm(ns: str) -> tuple[set[str], int]:
    """(SPIs of the XFRM states, number of XFRM policies) in namespace ns; the per-socket
    bypass policies of a running daemon's IKE sockets (`socket in/out`) are not counted: they
    go with the socket."""
    states = sh("ip", "-n", ns, "xfrm", "state").stdout
    spis = {m.rjust(8, "0") for m in re.findall(r"spi 0x([0-9a-f]+)", states)}
    policies = sh("ip", "-n", ns, "xfrm", "policy").stdout
    return spis, len(re.findall(r"^src .*\n\s+dir ", policies, re.MULTILINE))


def restart(peers: Peers, timeout: float = 120.0) -> float:
    """Start our daemon again exactly as OurDaemon.start does, but leave the old control socket
    where the killed process left it. Returns the time it was started."""
    ours = peers.ours
    argv = [
        "ip", "netns", "exec", ours.ns, str(ikev2_command()), "daemon",
        "--config", str(ours.config_path), "--control", str(ours.control_path),
        "--log-format", "json", "--log-level", "debug",
        "--key-log", str(ours.key_log_path), "--kernel", ours.kernel,
    ]  # fmt: skip
    started = time.monotonic()
    with open(ours.log_path, "ab") as out:
        ours.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = started + timeout
    while time.monotonic() < deadline:
        if ours.log().count(READY) >= 2:
            return started
        if ours.proc.poll() is not None:
            raise RuntimeError(f"restart exited {ours.proc.returncode}:\n{ours.tail()}")
        time.sleep(0.1)
    raise RuntimeError(f"restart not ready after {timeout} s:\n{ours.tail()}")


def replies(path: Path) -> list[float]:
    """Monotonic-ish (wall clock of the guest) times of the ping replies so far."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return [float(m.group(1)) for line in text.splitlines() if (m := PING_LINE.match(line))]


def wait(predicate: Any, timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def run(workdir: Path) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    topo = Topology.pair("k")
    peers: Peers | None = None
    pinger: subprocess.Popen[bytes] | None = None
    try:
        topo.add_lo_address(topo.left.ns, "10.1.0.1/32")
        topo.add_lo_address(topo.right.ns, "10.2.0.1/32")
        peers = Peers(SPEC, topo, OURS_INITIATOR, workdir, real_kernel=True)
        pos = peers.pos
        files = swanctl_config(SPEC, "sun", pos["ss_addr"], pos["ss_peer"], pos["ss_net"],
                               pos["ours_net"], initiator=False)  # fmt: skip
        conn = files.conf["connections"]["crash"]  # type: ignore[index]
        conn["unique"] = "no"  # type: ignore[index]  # strongSwan's default: honours INITIAL_CONTACT
        peers.ss.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)
        peers.start()
        peers.establish(timeout=60)
        [(first, _twin)] = peers.check_children(expected=1)
        old_spis = {first["spi_in"].rjust(8, "0"), first["spi_out"].rjust(8, "0")}
        [old_ss] = [sa for sa in peers.ss.list_sas() if sa.state == "ESTABLISHED"]
        sh("ip", "-n", topo.left.ns, "route", "replace", "10.2.0.0/24", "via", topo.right.addr,
           "src", "10.1.0.1")  # fmt: skip
        sh("ip", "-n", topo.right.ns, "route", "replace", "10.1.0.0/24", "via", topo.left.addr,
           "src", "10.2.0.1")  # fmt: skip
        ping_log = workdir / "ping.txt"
        with open(ping_log, "wb") as out:
            pinger = subprocess.Popen(
                ["ip", "netns", "exec", topo.left.ns, "ping", "-D", "-i", "0.2", "-W", "1",
                 "-I", "10.1.0.1", "10.2.0.1"], stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        checks["ping_before"] = bool(wait(lambda: len(replies(ping_log)) >= 5, 30))
        before_states, before_policies = xfrm(topo.left.ns)
        checks["_before"] = {"spis": sorted(before_states), "policies": before_policies}

        # --- kill -9 ---------------------------------------------------------------------------
        assert peers.ours.proc is not None
        killed_at = time.time()
        os.kill(peers.ours.proc.pid, signal.SIGKILL)
        peers.ours.proc.wait(10)
        replies_at_kill = len(replies(ping_log))
        time.sleep(3)
        crashed_states, crashed_policies = xfrm(topo.left.ns)
        checks["crash_left_kernel_state"] = old_spis <= crashed_states and crashed_policies == 3
        checks["stale_control_socket_left"] = peers.ours.control_path.exists()
        # while no daemon runs, the kernel still forwards over the old SAs
        checks["traffic_while_dead"] = len(replies(ping_log)) >= replies_at_kill + 10
        checks["_crashed"] = {"spis": sorted(crashed_states), "policies": crashed_policies}

        # --- restart, bringing the tunnel up by itself (start_action = start) -------------------
        tree = ours_config(SPEC, pos["ours_addr"], pos["ours_peer"], pos["ours_net"],
                           pos["ss_net"], True, workdir / "ours")  # fmt: skip
        tree["connections"]["crash"]["children"]["net"]["start_action"] = "start"
        tree["daemon"].update(control_socket=str(peers.ours.control_path), kernel="xfrm")
        peers.ours.config_path.write_text(render_toml(tree))
        restart_wall = time.time()
        started = restart(peers)
        ready_after = time.monotonic() - started
        events = peers.ours.log_events()
        flushed = [e for e in events if e.get("event") == "removed kernel state of an earlier run"]
        checks["flushed_on_start"] = len(flushed) == 1 and flushed[0].get("sas", 0) >= 2
        checks["_flushed"] = flushed

        def up_again() -> list[dict[str, Any]] | None:
            sas = [s for s in peers.ours.list_sas() if str(s.get("state")).upper() == "ESTABLISHED"]
            return sas if sas and sas[0]["children"] else None

        sas = wait(up_again, 60)
        checks["reestablished_by_itself"] = bool(sas)
        [new] = sas
        new_spis = {new["children"][0]["spi_in"].rjust(8, "0"),
                    new["children"][0]["spi_out"].rjust(8, "0")}  # fmt: skip
        checks["_new_spis"] = sorted(new_spis)
        # RFC 7296 §2.4: in the first IKE_AUTH after the restart as in the very first one
        contact = re.compile(r"parsed IKE_AUTH request \d+ \[.*\bN\(INIT_CONTACT\)")
        checks["initial_contact_sent"] = len(contact.findall(peers.ss.log())) >= 2

        def peer_replaced() -> bool:
            theirs = [sa for sa in peers.ss.list_sas() if sa.state == "ESTABLISHED"]
            return (
                len(theirs) == 1
                and theirs[0].spi_i == new["spi_i"].lower()
                and {c.spi_in for c in theirs[0].installed_children}
                == {new["children"][0]["spi_out"].rjust(8, "0")}
            )

        checks["peer_sas_replaced"] = bool(wait(peer_replaced, DPD))
        checks["_peer_sas"] = [(sa.spi_i, sa.state, [c.spi_in for c in sa.children])
                               for sa in peers.ss.list_sas()]  # fmt: skip
        checks["_old_peer_spi_i"] = old_ss.spi_i
        ss_states, _ = xfrm(topo.right.ns)
        checks["peer_kernel_only_new"] = ss_states == new_spis
        ours_states, ours_policies = xfrm(topo.left.ns)
        checks["no_stale_state_of_ours"] = ours_states == new_spis and not (old_spis & ours_states)
        checks["no_stale_policy_of_ours"] = ours_policies == before_policies == 3
        checks["_after"] = {"ours": sorted(ours_states), "policies": ours_policies,
                            "peer": sorted(ss_states)}  # fmt: skip

        # --- traffic back within one DPD interval ---------------------------------------------
        # the old SAs carry the pings until the new daemon flushes them; the outage runs from
        # the last reply before that flush (its log line's time) to the first reply after it
        flush_at = datetime.fromisoformat(flushed[0]["timestamp"]).timestamp()

        def back() -> bool:
            return any(t > flush_at for t in replies(ping_log))

        checks["traffic_back"] = bool(wait(back, DPD))
        times = replies(ping_log)
        last_before = max((t for t in times if t <= flush_at), default=killed_at)
        first_after = min((t for t in times if t > flush_at), default=None)
        gap = None if first_after is None else round(first_after - last_before, 2)
        checks["outage_within_one_dpd_interval"] = gap is not None and gap < DPD
        checks["_timeline"] = {
            "kill_to_restart_s": round(restart_wall - killed_at, 1),
            "restart_to_ready_s": round(ready_after, 1),
            "restart_to_flush_s": round(flush_at - restart_wall, 1),
            "outage_s": gap,
            "flush_to_reply_s": None if first_after is None else round(first_after - flush_at, 2),
            "dpd_delay_s": DPD,
            "replies": len(times),
        }
        checks["down"] = peers.ours.down("crash").ok
    except BaseException:
        checks["error"] = traceback.format_exc()[-4000:]
        if peers is not None:
            checks["_logs"] = peers.logs()[-6000:]
    finally:
        if pinger is not None:
            pinger.send_signal(signal.SIGINT)
            try:
                pinger.wait(5)
            except subprocess.TimeoutExpired:
                pinger.kill()
        if peers is not None:
            peers.stop()
        topo.close()
    return checks


def main() -> int:
    results = Path(sys.argv[1])
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gc-") as tmp:
        checks = run(Path(tmp))
    record = {"name": "kill-9-restart", "seconds": round(time.monotonic() - start, 1),
              "checks": checks}  # fmt: skip
    (results / "kill-9-restart.json").write_text(json.dumps(record, indent=1, default=str))
    print(f"kill-9-restart: {record['seconds']} s", flush=True)
    ok = "error" not in checks and all(
        v is True for k, v in checks.items() if not k.startswith("_")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
