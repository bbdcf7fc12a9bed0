"""Runs INSIDE the QEMU guest (the host has no sch_netem): our daemon (--kernel xfrm) against
another of ours, then against strongSwan 5.9.8 (kernel-netlink), over a veth impaired with tc
netem on both ends, N up / child rekey / IKE rekey / down cycles each.
tests/interop/test_guest_impair.py asserts the recorded checks.

    python guest_impair.py RESULTS_DIR [CYCLES] [ours,strongswan]

netem on each direction: 30 % loss, 100 ms delay with 200 ms jitter (which reorders), 5 %
duplication and 25 % of packets sent at once out of order (reordering). Our retransmission
schedule is shortened (1 s × 1.4^n, at most 10 s apart, 12 retransmits, about 85 s in all: a
request and its answer each cross with 70 %, so one exchange fails with 0.51^13) so a cycle takes
seconds, not minutes. Per cycle: moon brings the connection up (the control socket's `up`
answers when established: the time to establish), rekeys the child and then the IKE SA, and
deletes it; afterwards both daemons must list no IKE SA and both kernels hold no state or
policy of ours (orphans: 0 allowed). Recorded: successes per step, orphans, p50/p99 of the
time to establish, netem's own drop/duplicate counters.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when run by path

from ikev2.testing.daemon import OurDaemon
from ikev2.testing.interop import OURS_INITIATOR, Peers, Spec
from ikev2.testing.strongswan import Charon
from ikev2.testing.topology import Topology, sh

PSK = "impairment test secret 3c9e 55a1 07bd"
NETEM = ("loss", "30%", "delay", "100ms", "200ms", "duplicate", "5%", "reorder", "25%", "50%")
RETRANSMIT = {
    "retransmit_timeout": "1s",
    "retransmit_base": 1.4,
    "retransmit_tries": 12,
    "retransmit_limit": "10s",
}


def config(me: str, peer: str, my_id: str, peer_id: str, nets: tuple[str, str]) -> dict[str, Any]:
    return {
        "daemon": {"addresses": [me], "port": 500, "nat_port": 4500},
        "connections": {
            "imp": {
                "local_addrs": [me],
                "remote_addrs": [peer],
                "proposals": ["aes256gcm16-prfsha256-x25519"],
                "dpd_delay": "0s",
                "rekey_time": "0s",
                **RETRANSMIT,
                "local": {"auth": "psk", "id": my_id},
                "remote": {"auth": "psk", "id": peer_id},
                "children": {
                    "net": {
                        "local_ts": [nets[0]],
                        "remote_ts": [nets[1]],
                        "esp_proposals": ["aes256gcm16"],
                        "start_action": "none",
                        "rekey_time": "0s",
                    }
                },
            }
        },
        "secrets": {"imp": {"ids": [my_id, peer_id], "secret": PSK}},
    }


def kernel_left(ns: str) -> tuple[int, int]:
    """(XFRM states, XFRM policies) in ns; the running daemon's per-socket bypass policies
    (`socket in/out`, they go with its IKE sockets) are not counted."""
    states = sh("ip", "-n", ns, "xfrm", "state").stdout.count("\tproto ")
    policies = sh("ip", "-n", ns, "xfrm", "policy").stdout
    return states, len(re.findall(r"^src .*\n\s+dir ", policies, re.MULTILINE))


def wait(predicate: Any, timeout: float, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def established(daemon: OurDaemon) -> list[dict[str, Any]]:
    return [s for s in daemon.list_sas() if str(s.get("state")).upper() == "ESTABLISHED"]


class OurPeer:
    """sun as one of our daemons: its IKE SAs, and how to clear them."""

    def __init__(self, daemon: OurDaemon) -> None:
        self.daemon, self.ns = daemon, daemon.ns

    def sas(self) -> int:
        return len(self.daemon.list_sas())

    def clear(self) -> None:
        for sa in self.daemon.list_sas():
            self.daemon.control({"cmd": "down", "target": str(sa["id"])}, timeout=60)


class StrongswanPeer:
    """sun as strongSwan (kernel-netlink)."""

    def __init__(self, charon: Charon) -> None:
        self.charon, self.ns = charon, charon.ns

    def sas(self) -> int:
        return len(self.charon.list_sas())

    def clear(self) -> None:
        self.charon.terminate(ike="imp")


def cycle(moon: OurDaemon, sun: OurPeer | StrongswanPeer, record: dict[str, Any]) -> None:
    started = time.monotonic()
    up = moon.up("imp", timeout=90)
    if not up.ok:
        record["up_failed"] += 1
        record["_failures"].append(up.output[-300:])
    else:
        record["up_ok"] += 1
        record["_establish_s"].append(round(time.monotonic() - started, 3))
        [sa] = established(moon)
        spi = sa["children"][0]["spi_in"]
        answer = moon.control({"cmd": "rekey", "id": sa["id"], "child": spi})

        def child_rekeyed() -> bool:
            sas = established(moon)
            return (
                bool(sas)
                and any(c["spi_in"] != spi for c in sas[0]["children"])
                and all(c["spi_in"] != spi for c in sas[0]["children"])
            )

        ok = bool(answer.get("ok")) and bool(wait(child_rekeyed, 90))
        record["child_rekey_ok" if ok else "child_rekey_failed"] += 1
        if not ok:
            record["_failures"].append(("child rekey", answer))
        sas = established(moon)
        if sas:
            old = sas[0]["spi_i"]
            answer = moon.control({"cmd": "rekey", "id": sas[0]["id"]})

            def ike_rekeyed() -> bool:
                now = established(moon)
                return len(now) == 1 and now[0]["spi_i"] != old and len(now[0]["children"]) == 1

            ok = bool(answer.get("ok")) and bool(wait(ike_rekeyed, 90))
            record["ike_rekey_ok" if ok else "ike_rekey_failed"] += 1
            if not ok:
                record["_failures"].append(("IKE rekey", answer))
        # the control socket's down waits 10 s for the peer's answer unless told otherwise
        down = moon.control({"cmd": "down", "target": "imp", "timeout": 90}, timeout=100)
        record["down_ok" if down.get("ok") else "down_failed"] += 1
        if not down.get("ok"):
            record["_failures"].append(("down", down))
    # nothing may be left on either side once the dust settles (retransmits, late duplicates)
    clean = wait(
        lambda: not moon.list_sas() and not sun.sas()
        and kernel_left(moon.ns) == (0, 0) and kernel_left(sun.ns) == (0, 0),
        60,
    )  # fmt: skip
    if not clean:
        record["orphans"] += 1
        record["_orphans"].append({"moon": len(moon.list_sas()), "sun": sun.sas(),
                                   "kernel_moon": kernel_left(moon.ns),
                                   "kernel_sun": kernel_left(sun.ns)})  # fmt: skip
        OurPeer(moon).clear()  # start the next cycle from nothing
        sun.clear()


def run(workdir: Path, cycles: int, peer: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        key: 0
        for key in ("up_ok", "up_failed", "child_rekey_ok", "child_rekey_failed", "ike_rekey_ok",
                    "ike_rekey_failed", "down_ok", "down_failed", "orphans")
    }  # fmt: skip
    record.update(_failures=[], _orphans=[], _establish_s=[], cycles=cycles, peer=peer)
    topo = Topology.pair("n")
    daemons: list[OurDaemon] = []
    peers: Peers | None = None
    try:
        sh("modprobe", "sch_netem")
        sun: OurPeer | StrongswanPeer
        if peer == "ours":
            moon = OurDaemon(topo.left.ns, workdir / "moon", "xfrm", use_cli=False)
            theirs = OurDaemon(topo.right.ns, workdir / "sun", "xfrm", use_cli=False)
            moon.configure(config(topo.left.addr, topo.right.addr, "moon.imp", "sun.imp",
                                  ("10.1.0.0/24", "10.2.0.0/24")))  # fmt: skip
            theirs.configure(config(topo.right.addr, topo.left.addr, "sun.imp", "moon.imp",
                                    ("10.2.0.0/24", "10.1.0.0/24")))  # fmt: skip
            daemons = [theirs, moon]
            for daemon in daemons:
                daemon.start(timeout=120, log_level="info")
            sun = OurPeer(theirs)
        else:  # strongSwan 5.9.8 answers; its own requests retransmit like ours
            # strongSwan forgets an IKE SA as it answers its Delete and ignores requests for
            # unknown SPIs (it only logs them: no INVALID_IKE_SPI, RFC 7296 §2.21.4, which
            # would end our Delete at once). When that answer is lost we retransmit until we
            # give up: 8 retransmits (about 50 s) keep that inside the down command's wait
            spec = Spec("imp", ours_retransmit=(1.0, 1.4, 8))
            peers = Peers(spec, topo, OURS_INITIATOR, workdir, real_kernel=True,
                          ss_extra={"retransmit_tries": 12})  # fmt: skip
            peers.start()
            moon, sun = peers.ours, StrongswanPeer(peers.ss)
            daemons = [moon]
        for ns, dev in ((topo.left.ns, topo.left.dev), (topo.right.ns, topo.right.dev)):
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", *NETEM)
        t0 = time.monotonic()
        for _ in range(cycles):
            cycle(moon, sun, record)
        record["_seconds"] = round(time.monotonic() - t0, 1)
        times = sorted(record["_establish_s"])
        if times:
            record["_establish_p50_s"] = round(statistics.median(times), 2)
            record["_establish_p99_s"] = times[min(len(times) - 1, round(0.99 * len(times)))]
        record["_netem"] = [
            sh("ip", "netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", dev).stdout
            for ns, dev in ((topo.left.ns, topo.left.dev), (topo.right.ns, topo.right.dev))
        ]
        sent_dropped = [re.search(r"Sent \d+ bytes (\d+) pkt \(dropped (\d+)", t)
                        for t in record["_netem"]]  # fmt: skip
        record["_netem_sent_dropped"] = [
            (int(m.group(1)), int(m.group(2))) if m else None for m in sent_dropped
        ]
        retransmits = sum(d.log().count("retransmit") for d in daemons)
        record["_log_retransmit_lines"] = retransmits
    except BaseException:
        record["error"] = traceback.format_exc()[-4000:]
        record["_logs"] = "\n".join(d.tail(40) for d in daemons)[-6000:]
        if peers is not None:
            record["_logs"] += peers.ss.tail(40)
    finally:
        if peers is not None:
            peers.stop()
        else:
            for daemon in daemons:
                daemon.stop()
        topo.close()
    return record


def main() -> int:
    results = Path(sys.argv[1])
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    failed = 0
    for peer in (sys.argv[3] if len(sys.argv) > 3 else "ours,strongswan").split(","):
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="gn-") as tmp:
            record = run(Path(tmp), cycles, peer)
        record["seconds"] = round(time.monotonic() - start, 1)
        (results / f"impairment-{peer}.json").write_text(json.dumps(record, indent=1, default=str))
        print(f"impairment against {peer}: {record['seconds']} s", flush=True)
        failed += "error" in record
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
