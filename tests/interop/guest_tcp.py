"""Runs INSIDE the QEMU guest: IKE over TCP (RFC 9329) between two of our daemons (--kernel xfrm)
in two namespaces, UDP to ports 500/4500 dropped by nftables. strongSwan 5.9.8 and 6.0.6 have
no TCP transport (docs/interop.md), so both ends are ours.

- tcp-udp-blocked: both connections `transport = "tcp"`, UDP dropped in both namespaces. The
  IKE SA comes up over one TCP connection to port 4500. ESP in that stream needs the kernel's
  espintcp (CONFIG_INET_ESPINTCP): where the guest kernel has it, pings go through as ESP in
  TCP; where it does not (Debian 12's 6.1 kernel), the row records that, and that the child SA
  was refused by the kernel while the IKE SA over TCP stayed up.
- udp-then-tcp-fallback: the initiator says `udp-then-tcp`, the responder's namespace drops
  UDP: IKE_SA_INIT over UDP is dropped (counted), then the IKE SA comes up over TCP.

One JSON file per scenario; tests/interop/test_guest_tcp.py asserts every recorded check.

    python guest_tcp.py RESULTS_DIR [SCENARIO ...]
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when run by path

from ikev2.testing.daemon import OurDaemon
from ikev2.testing.topology import Topology, sh

PSK = "guest-tcp secret 5b7e0c19d2a84f36"
LEFT_HOST, RIGHT_HOST = "10.1.0.1", "10.2.0.1"
TCP_PORT = 4500
SCENARIOS = ("tcp-udp-blocked", "udp-then-tcp-fallback")


def config(me: str, peer: str, ids: tuple[str, str], nets: tuple[str, str], transport: str) -> Any:
    return {
        "daemon": {"addresses": [me], "tcp_port": TCP_PORT},
        "connections": {
            "tcp": {
                "local_addrs": [me],
                "remote_addrs": [peer],
                "proposals": "aes256gcm16-prfsha256-x25519",
                "transport": transport,
                # over TCP the whole span (5 + 7.5 + 11.25 s) is one wait (RFC 9329 §6.2):
                # long enough for the peer's first child install under TCG
                "retransmit_timeout": "5s",
                "retransmit_base": 1.5,
                "retransmit_tries": 2,
                "dpd_delay": "0s",
                "local": {"auth": "psk", "id": ids[0]},
                "remote": {"auth": "psk", "id": ids[1]},
                "children": {
                    "tcp": {
                        "local_ts": [nets[0]],
                        "remote_ts": [nets[1]],
                        "esp_proposals": ["aes256gcm16"],
                    }
                },
            }
        },
        "secrets": {"psk": {"ids": list(ids), "secret": PSK}},
    }


class Wire:
    """tcpdump of what one namespace sends: TCP to/from 4500, UDP, ESP and ICMP echo, counted."""

    def __init__(self, ns: str, dev: str, out: Path) -> None:
        self.out = out
        self.handle = open(out, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-i", dev, "-n", "-l", "-U", "-Q", "out",
             f"tcp port {TCP_PORT} or udp or esp or icmp"],
            stdout=self.handle, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.7)  # tcpdump is slow to attach under TCG

    def stop(self) -> dict[str, int]:
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.handle.close()
        counts = {"tcp": 0, "udp": 0, "esp": 0, "cleartext_echo": 0}
        for line in self.out.read_text().splitlines():
            if "ESP(spi" in line:
                counts["esp"] += 1
            elif "ICMP echo" in line:
                counts["cleartext_echo"] += 1
            elif "UDP" in line or ".500:" in line:
                counts["udp"] += 1
            elif "Flags [" in line:
                counts["tcp"] += 1
        return counts


def espintcp_available() -> tuple[bool, str]:
    """Whether the guest kernel has espintcp: the module loads, or it is built in."""
    done = sh("modprobe", "espintcp", check=False)
    built_in = (
        Path("/proc/config.gz").exists()
        and "CONFIG_INET_ESPINTCP=y" in sh("sh", "-c", "zcat /proc/config.gz", check=False).stdout
    )
    return done.returncode == 0 or built_in, (done.stderr or done.stdout).strip()[-300:]


def run(name: str, workdir: Path) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    t0 = time.monotonic()
    phases: dict[str, float] = {}
    checks["_phases"] = phases

    def phase(label: str) -> None:
        phases[label] = round(time.monotonic() - t0, 1)

    topo = Topology.pair("t")
    daemons: list[OurDaemon] = []
    try:
        have_espintcp, why = espintcp_available()
        checks["_espintcp"] = have_espintcp
        checks["_espintcp_modprobe"] = why
        topo.add_lo_address(topo.left.ns, f"{LEFT_HOST}/32")
        topo.add_lo_address(topo.right.ns, f"{RIGHT_HOST}/32")
        left_transport = "tcp" if name == "tcp-udp-blocked" else "udp-then-tcp"
        left = OurDaemon(topo.left.ns, workdir / "left", kernel="xfrm", use_cli=False)
        right = OurDaemon(topo.right.ns, workdir / "right", kernel="xfrm", use_cli=False)
        daemons += [left, right]
        ids = ("left.example", "right.example")
        left.configure(config(topo.left.addr, topo.right.addr, ids, ("10.1.0.0/24", "10.2.0.0/24"),
                              left_transport))  # fmt: skip
        right.configure(config(topo.right.addr, topo.left.addr, ids[::-1],
                               ("10.2.0.0/24", "10.1.0.0/24"), "tcp"))  # fmt: skip
        if name == "tcp-udp-blocked":
            topo.drop_udp(topo.left.ns)
            topo.drop_udp(topo.right.ns)
        else:
            topo.drop_udp(topo.right.ns)  # IKE_SA_INIT over UDP never reaches the responder
        right.start(timeout=240)  # a Python start under TCG on a loaded host: up to ~100 s
        left.start(timeout=240)
        phase("started")
        checks["tcp_listener"] = f"{topo.right.addr}:{TCP_PORT} (TCP)" in right.log()
        wires = [
            Wire(topo.left.ns, topo.left.dev, workdir / "wire-left.txt"),
            Wire(topo.right.ns, topo.right.dev, workdir / "wire-right.txt"),
        ]
        first = left.up("tcp", timeout=60)
        checks["_up"] = first.output[-400:]
        if name == "udp-then-tcp-fallback":
            checks["up_followed_the_fallback"] = first.ok  # one `up`: UDP unanswered, then TCP
            left.wait_for(lambda sas: any(s["state"] == "established" for s in sas), timeout=90)
        phase("established")
        (mine,) = [s for s in left.list_sas() if s["state"] == "established"]
        (theirs,) = right.list_sas()
        checks["_sas"] = {"left": mine, "right": theirs}
        checks["ike_over_tcp"] = (
            theirs["state"] == "established"
            and mine["remote"] == f"{topo.right.addr}:{TCP_PORT}"
            and theirs["remote"] == mine["local"]
            and int(mine["local"].rsplit(":", 1)[1]) not in (500, 4500)
        )
        checks["no_nat_seen"] = not (mine["nat_local"] or mine["nat_remote"])
        sh("ip", "-n", topo.left.ns, "route", "replace", "10.2.0.0/24", "via", topo.right.addr,
           "src", LEFT_HOST)  # fmt: skip
        sh("ip", "-n", topo.right.ns, "route", "replace", "10.1.0.0/24", "via", topo.left.addr,
           "src", RIGHT_HOST)  # fmt: skip
        ping = sh("ip", "netns", "exec", topo.left.ns, "ping", "-c", "4", "-i", "0.3", "-W", "3",
                  "-I", LEFT_HOST, RIGHT_HOST, check=False)  # fmt: skip
        phase("pinged")
        wire: dict[str, dict[str, int]] = {}
        for side, sniffer in zip(("left", "right"), wires, strict=True):
            wire[side] = sniffer.stop()
        checks["_wire"] = wire
        checks["_ping"] = ping.stdout[-300:]
        received = re.search(r"(\d+) received", ping.stdout)
        pings = int(received.group(1)) if received else 0
        checks["ike_in_tcp_on_the_wire"] = wire["left"]["tcp"] > 0 and wire["right"]["tcp"] > 0
        if name == "tcp-udp-blocked":
            checks["no_udp_sent"] = wire["left"]["udp"] == 0 and wire["right"]["udp"] == 0
            checks["nothing_dropped"] = (
                topo.dropped(topo.left.ns) + topo.dropped(topo.right.ns) == 0
            )
        else:
            checks["udp_dropped"] = topo.dropped(topo.right.ns) >= 3  # 1 + 2 retransmits
            checks["fallback_logged"] = "no answer over UDP; trying TCP" in left.log()
        checks["no_esp_outside_tcp"] = wire["left"]["esp"] == 0 and wire["right"]["esp"] == 0
        states = sh("ip", "-n", topo.left.ns, "xfrm", "state").stdout
        checks["_xfrm_left"] = states[-1500:]
        if have_espintcp:
            checks["ping_through_esp_in_tcp"] = pings >= 3
            checks["no_cleartext_echo"] = wire["left"]["cleartext_echo"] == 0
            checks["kernel_sa_espintcp"] = "espintcp" in states
        else:
            # the child SA with TCP encapsulation is refused by this kernel; the IKE SA lives
            refused = "kernel refused child SA" in left.log() and "espintcp" in left.log()
            checks["child_refused_without_espintcp"] = refused
            checks["no_kernel_sa_left"] = "proto esp" not in states
            checks["ike_sa_survives"] = any(s["state"] == "established" for s in left.list_sas())
        phase("checked")
        checks["down"] = left.down("tcp").ok
        phase("down")
    except BaseException:
        checks["error"] = traceback.format_exc()[-4000:]
        checks["_logs"] = "\n".join(d.tail(80) for d in daemons)[-8000:]
    finally:
        for daemon in daemons:
            daemon.stop()
        topo.close()
    return checks


def run_one(name: str, results: Path) -> bool:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gtcp-") as tmp:
        checks = run(name, Path(tmp))
    record = {"name": name, "seconds": round(time.monotonic() - start, 1), "checks": checks}
    (results / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
    print(f"{name}: {record['seconds']} s", flush=True)
    return "error" not in checks and all(
        v is True for k, v in checks.items() if not k.startswith("_")
    )


def main() -> int:
    results = Path(sys.argv[1])
    wanted = set(sys.argv[2:])
    ok = [run_one(s, results) for s in SCENARIOS if not wanted or s in wanted]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
