"""The real daemon under floods over loopback sockets while a legitimate initiator keeps connecting
(issue 18, RFC 7296 §2.6, RFC 7383).

`ikev2 daemon` (a separate process on 127.0.0.1, in-memory kernel, the DoS settings at their
defaults unless given) is attacked by a process of its own, one phase after the other:

- `init`: forged IKE_SA_INITs from a raw socket, each from another address of 127.64.0.0/10 and
  with another SPIi, at `--rate` per second (as many as this machine sends);
- `big`: the same with datagrams of `--size` octets (oversized messages);
- `auth`: a real initiator on `--sources` addresses that answers COOKIEs, completes
  IKE_SA_INIT and then sends garbage in its IKE_AUTH (half-open SAs that never authenticate);
- `frag`: the same, but it sends validly protected fragments 1..N-1 of an N-fragment IKE_AUTH
  of `--message` octets and never fragment N (reassembly that never completes).

During each flood of `--seconds` a legitimate PSK initiator (this process, an in-process engine
on 127.0.0.5-12, strongSwan's retransmission defaults) starts `--legit-rate` handshakes a second;
after the flood it waits until every one of them has finished. Reported per phase: datagrams the
attacker sent and at what rate, what the daemon's socket took and what the kernel dropped for it
(/proc/net/udp), COOKIEs demanded and the half-open count at the first demand (the activation
threshold), the half-open peak, the legitimate handshakes completed / started and their setup
latency p50/p99, and the daemon's RSS before, at the peak and after its half-open SAs expired.

    .venv/bin/python bench/bench_daemon_flood.py [--rate 40000] [--seconds 8]
        [--phases init,big,auth,frag]

Needs root (raw sockets). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flooders import (
    AuthFlooder,
    FragmentFlooder,
    attacker_conn,
    forged_inits,
    init_template,
    oversized,
)
from loadgen import Generator, cpu_seconds, percentile, rss_kib, start_daemon

from ikev2.engine.config import ConnectionConfig, Timers
from ikev2.log import configure_logging
from ikev2.service.udp import free_port_pair
from ikev2.testing.sources import psk_initiator

RESPONDER = "127.0.0.1"
LEGIT = tuple(f"127.0.0.{n}" for n in range(5, 13))
PSK = "flood bench secret, loopback only 7d2a"
FORGED_SOURCES = "127.64.0.0/10"

CONFIG = """
[daemon]
addresses = ["{addr}"]
port = {port}
nat_port = {nat_port}
control_socket = "{control}"
kernel = "memory"
log_level = "info"
metrics = "127.0.0.1:{metrics}"
{extra}

[connections.bench]
local_addrs = ["{addr}"]
proposals = "aes256gcm16-prfsha256-x25519"
dpd_delay = 0
[connections.bench.local]
id = "responder.bench"
[connections.bench.remote]
id = "initiator.bench"
[connections.bench.children.bench]
local_ts = ["10.2.0.0/16"]
remote_ts = ["10.1.0.0/16"]
esp_proposals = "aes256gcm16"

[secrets.bench]
ids = ["responder.bench", "initiator.bench"]
secret = "{psk}"
"""


class Responder:
    """The daemon process, its metrics endpoint and its sockets' kernel counters."""

    def __init__(self, extra: str, profile: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ikev2-flood-"))
        self.port = free_port_pair((RESPONDER,))
        self.metrics_port = free_port_pair((RESPONDER,))
        self.log_path = self.dir / "responder.log"
        config = self.dir / "responder.toml"
        config.write_text(CONFIG.format(addr=RESPONDER, port=self.port, nat_port=self.port + 1,
                          control=self.dir / "c.sock", metrics=self.metrics_port, psk=PSK,
                          extra=extra))  # fmt: skip
        self.proc = start_daemon(config, self.log_path, profile=profile, timeout=20)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cpu(self) -> float:
        return cpu_seconds([self.proc.pid])

    def rss(self) -> int:
        """VmRSS of the daemon and its workers (children), if any."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        pids = [self.proc.pid, *(int(p) for p in children.read_text().split())]
        return rss_kib(pids)

    def metrics(self) -> dict[str, float]:
        """The daemon's Prometheus counters we use, summed over their labels."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith("ikev2_"):
                continue
            name_labels, value = line.rsplit(" ", 1)
            name = name_labels.split("{")[0]
            if name == "ikev2_ike_sas" and 'state="established"' not in name_labels:
                name = "half_open"  # every state before established
            if name == "ikev2_udp_datagrams_total" and 'direction="rx"' in name_labels:
                name = "rx"
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped for our IKE socket (receive queue full)."""
        wanted = f"0100007F:{self.port:04X}"  # every worker's socket (SO_REUSEPORT)
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
        return sum(int(f[-1]) for f in (line.split() for line in lines) if f[1] == wanted)

    def first_cookie_at(self) -> int | None:
        """half_open of the first "COOKIE demanded" line: where COOKIEs switched on."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "COOKIE demanded" in line and "half_open=" in line:
                return int(line.split("half_open=")[1].split()[0])
        return None


def legit_conn(port: int) -> Callable[[str, str, int], ConnectionConfig]:
    def conn(name: str, address: str, local_port: int) -> ConnectionConfig:
        return psk_initiator(
            name, address, RESPONDER, PSK.encode(), local_id=b"initiator.bench", child="bench",
            local_port=local_port, remote_port=port, timers=Timers(dpd_delay=0),
        )  # fmt: skip

    return conn


def _attack(kind: str, args: argparse.Namespace, port: int, out: Any) -> None:
    """The attacker process: one phase, then its figures into `out` (a Queue)."""
    configure_logging("console", "error")
    template = init_template(RESPONDER, port, b"x")
    if kind == "init":
        result = forged_inits(RESPONDER, port, template, args.rate, args.seconds, FORGED_SOURCES)
    elif kind == "big":
        result = oversized(RESPONDER, port, args.size, args.rate, args.seconds, FORGED_SOURCES)
    else:
        sources = [f"127.2.{n // 250}.{n % 250 + 1}" for n in range(args.sources)]
        flooder: AuthFlooder | FragmentFlooder
        if kind == "auth":
            flooder = AuthFlooder(attacker_conn(RESPONDER, port), sources)
        else:
            flooder = FragmentFlooder(attacker_conn(RESPONDER, port), sources, args.message)
        result = flooder.flood(args.seconds, args.window)
        if isinstance(flooder, FragmentFlooder):
            result["fragments_sent"] = flooder.fragments_sent
        flooder.close()
    out.put(result)


def phase(kind: str, args: argparse.Namespace, responder: Responder) -> dict[str, Any]:
    gen = Generator(legit_conn(responder.port), LEGIT, ports=8)
    gen.record = True
    before = responder.metrics()
    drops_before = responder.kernel_drops()
    rss_before = responder.rss()
    cpu_before, wall_before = responder.cpu(), time.monotonic()
    queue: Any = multiprocessing.get_context("fork").Queue()
    attacker = multiprocessing.get_context("fork").Process(
        target=_attack, args=(kind, args, responder.port, queue)
    )
    attacker.start()
    time.sleep(0.2)  # the attacker is up before the legitimate initiator starts
    t0 = time.monotonic()
    started = 0
    rss_peak = rss_before
    half_open_peak = 0.0
    next_sample = t0
    while time.monotonic() - t0 < args.seconds:
        now = time.monotonic()
        while started < (now - t0) * args.legit_rate:
            gen._initiate(now)
            started += 1
        if now >= next_sample:
            rss_peak = max(rss_peak, responder.rss())
            next_sample = now + 0.5
        gen._poll(0.005)
    result = queue.get(timeout=120)
    attacker.join(30)
    during = gen.established  # before the attacker stopped
    cpu_flood, wall_flood = responder.cpu() - cpu_before, time.monotonic() - wall_before
    with_flood = responder.metrics()
    half_open_peak = max(half_open_peak, with_flood.get("half_open", 0.0))
    rx_flood = with_flood.get("rx", 0) - before.get("rx", 0)
    deadline = time.monotonic() + args.legit_wait
    while gen.established + gen.failed < started and time.monotonic() < deadline:
        gen._poll(0.05)
    gen.close()
    after = responder.metrics()
    lat = gen.latencies
    drops = responder.kernel_drops() - drops_before
    rx = after.get("rx", 0) - before.get("rx", 0)
    time.sleep(args.settle)  # the responder's half-open SAs expire (half_open_timeout)
    rss_after = responder.rss()
    settled = responder.metrics()
    return {
        "phase": kind,
        "attacker": result,
        "daemon_rx": int(rx),
        "kernel_drops": drops,
        # the daemon's share of a core during the flood, and its CPU per datagram it read
        "daemon_core_share": round(cpu_flood / wall_flood, 2),
        "daemon_cpu_us_per_datagram": round(cpu_flood / rx_flood * 1e6, 1) if rx_flood else None,
        "cookies_sent": int(
            after.get("ikev2_cookies_sent_total", 0) - before.get("ikev2_cookies_sent_total", 0)
        ),
        "half_open_at_end_of_flood": int(half_open_peak),
        "half_open_after_settle": int(settled.get("half_open", 0)),
        "legit_started": started,
        "legit_established_during_flood": during,
        "legit_established": gen.established,
        "legit_failed": gen.failed,
        "legit_ratio": round(gen.established / started, 4) if started else None,
        "latency_p50_ms": round(percentile(lat, 50) * 1000, 1) if lat else None,
        "latency_p99_ms": round(percentile(lat, 99) * 1000, 1) if lat else None,
        "rss_kib": [rss_before, rss_peak, rss_after],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="init,big,auth,frag")
    parser.add_argument("--rate", type=float, default=40000, help="forged datagrams per second")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=65000, help="octets of a 'big' datagram")
    parser.add_argument("--sources", type=int, default=500, help="auth/frag attacker addresses")
    parser.add_argument("--window", type=int, default=64, help="auth/frag handshakes in flight")
    parser.add_argument("--message", type=int, default=60000, help="frag: octets of the message")
    parser.add_argument("--legit-rate", type=float, default=25.0)
    parser.add_argument("--legit-wait", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=12.0, help="s to wait after a phase")
    parser.add_argument("--daemon", default="half_open_timeout = \"10s\"",
                        help="extra [daemon] lines")  # fmt: skip
    parser.add_argument("--profile", help="run the daemon under cProfile, stats to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_daemon_flood: needs root (raw sockets for forged sources)")
    configure_logging("console", "error")
    responder = Responder(args.daemon.replace("\\n", "\n"), args.profile)
    results = []
    try:
        warm = Generator(legit_conn(responder.port), LEGIT, ports=8)
        warm.run(20, 4)
        warm.close()
        for kind in args.phases.split(","):
            result = phase(kind, args, responder)
            print(json.dumps(result), flush=True)
            results.append(result)
        cookie_at = responder.first_cookie_at()
    finally:
        responder.stop()
    print(json.dumps({"bench": "daemon_flood", "cookie_activation_half_open": cookie_at,
                      "phases": results}))  # fmt: skip


if __name__ == "__main__":
    main()
