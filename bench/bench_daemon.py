"""The responder daemon under load: CPU per handshake, handshakes per second, RSS per IKE SA.

A load generator (this process: one in-process Engine as initiator with UDP sockets on
127.0.0.5-12) runs PSK + X25519 + AES-GCM handshakes with one child against `ikev2 daemon` (a
separate process on 127.0.0.1, in-memory kernel, cookie_threshold high, DPD off) over loopback
UDP, keeping WINDOW handshakes in flight. Measured on the responder process only:

- CPU µs per handshake: utime + stime from /proc/<pid>/stat over the measured handshakes;
- handshakes per second: wall clock over the same handshakes (the generator shares the 2 cores);
- RSS per IKE SA: VmRSS after WARMUP SAs, then again with WARMUP + COUNT SAs established.

`--workers N` runs the responder with `[daemon] workers = N` (SO_REUSEPORT): CPU and RSS are then
summed over the supervisor and its workers (RSS counts pages shared after the fork once per
process). The generator sends from `--ports` source ports on 8 addresses (one connection each):
new IKE SAs go to the worker of their peer's address, so the addresses spread the handshakes
over the workers; it runs in this one process and competes
with the workers for the same cores, so on a 2-core machine 2 workers cannot double the rate.

Usage: .venv/bin/python bench/bench_daemon.py [--count 10000] [--window 64] [--workers 1]
       [--ports 8] [--log-level warning|info] [--loop asyncio|uvloop]
The last line is one JSON object. Targets: <= 500 µs of responder CPU per handshake, <= 10 KiB
of responder RSS per IKE SA.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from loadgen import (
    ConnFactory,
    Generator,
    _cpu_seconds,
    cpu_seconds,
    own_cpu_seconds,
    rss_kib,
    start_daemon,
    stop_daemon,
)

from ikev2.engine.config import ConnectionConfig, Timers
from ikev2.log import configure_logging
from ikev2.service.control import request
from ikev2.service.udp import free_port_pair
from ikev2.testing.sources import psk_initiator

RESPONDER = "127.0.0.1"
# the generator's source addresses: a peer's IKE SAs all go to one worker (handoff.peer_worker),
# so several addresses stand for several peers
GENERATORS = tuple(f"127.0.0.{n}" for n in range(5, 13))
PSK = "bench secret, loopback only 51d3c0"
WARMUP = 200

RESPONDER_CONFIG = """
[daemon]
addresses = ["{addr}"]
port = {port}
nat_port = {nat_port}
control_socket = "{control}"
kernel = "memory"
log_level = "{log_level}"
cookie_threshold = 1000000
max_half_open = 1000000
block_threshold = 0  # the load generator sends from a few addresses
workers = {workers}

[connections.bench]
local_addrs = ["{addr}"]
proposals = "aes256gcm16-prfsha256-x25519"
dpd_delay = 0
[connections.bench.local]
id = "responder.bench"
[connections.bench.remote]
id = "%any"
[connections.bench.children.bench]
local_ts = ["10.2.0.0/16"]
remote_ts = ["10.1.0.0/16"]
esp_proposals = "aes256gcm16"

[secrets.bench]
secret = "{psk}"
"""


def psk_conn(responder_port: int) -> ConnFactory:
    def conn(name: str, address: str, port: int) -> ConnectionConfig:
        return psk_initiator(
            name, address, RESPONDER, PSK.encode(), local_id=b"initiator.bench", child="bench",
            local_port=port, remote_port=responder_port, timers=Timers(dpd_delay=0),
        )  # fmt: skip

    return conn


def write_config(workers: int, log_level: str = "warning") -> tuple[Path, Path, str, int]:
    """A fresh work directory with the responder's config: (directory, config file, control
    socket, IKE port)."""
    workdir = Path(tempfile.mkdtemp(prefix="ikev2-bench-"))
    port = free_port_pair((RESPONDER,))
    control = str(workdir / "responder.sock")
    config = workdir / "responder.toml"
    config.write_text(RESPONDER_CONFIG.format(addr=RESPONDER, port=port, nat_port=port + 1,
                      control=control, log_level=log_level, psk=PSK,
                      workers=workers))  # fmt: skip
    return workdir, config, control, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--log-level", default="warning", choices=("warning", "info"))
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"))
    parser.add_argument("--workers", type=int, default=1, help="responder processes")
    parser.add_argument("--ports", type=int, default=8, help="generator source ports")
    parser.add_argument("--profile", help="run the responder under cProfile, stats to this file")
    args = parser.parse_args()
    configure_logging("console", "warning")  # the generator's engine: quiet

    workdir, config, control, port = write_config(args.workers, args.log_level)
    env = dict(os.environ)
    if args.loop == "asyncio":
        env["IKEV2_NO_UVLOOP"] = "1"
    log_path = workdir / "responder.log"
    daemon = start_daemon(config, log_path, profile=args.profile, env=env, timeout=15)
    try:
        generator = Generator(psk_conn(port), GENERATORS, args.ports)
        generator.run(WARMUP, args.window)
        time.sleep(0.3)
        pids = [daemon.pid] + [
            w["pid"] for w in request(control, {"cmd": "stats"}).get("workers", [])
        ]
        rss_before = rss_kib(pids)
        per_before = [_cpu_seconds(pid) for pid in pids]
        cpu_before = sum(per_before)
        own_before = own_cpu_seconds()
        wall_before = time.monotonic()
        generator.run(args.count, args.window)
        wall = time.monotonic() - wall_before
        own = own_cpu_seconds() - own_before
        per_process = [_cpu_seconds(pid) - b for pid, b in zip(pids, per_before, strict=True)]
        cpu = cpu_seconds(pids) - cpu_before
        time.sleep(0.3)
        rss_after = rss_kib(pids)
        stats = request(control, {"cmd": "stats"})
        result = {
            "bench": "daemon",
            "suite": "PSK/X25519/AES-GCM-256, one child, in-memory kernel",
            "loop": args.loop,
            "workers": args.workers,
            "generator_ports": args.ports,
            "ike_sas_per_worker": [w["ike_sas"] for w in stats.get("workers", [stats])],
            "handed_off": stats.get("handed_off", 0),
            "responder_log_level": args.log_level,
            "handshakes": args.count,
            "window": args.window,
            "responder_cpu_us_per_handshake": round(cpu / args.count * 1e6, 1),
            "responder_cores_busy": round(cpu / wall, 2),
            "responder_cpu_s_per_process": [round(c, 2) for c in per_process],
            "generator_cpu_us_per_handshake": round(own / args.count * 1e6, 1),
            "handshakes_per_second": round(args.count / wall, 1),
            "responder_ike_sas": stats["ike_sas"],
            "responder_rss_kib_before": rss_before,
            "responder_rss_kib_after": rss_after,
            "rss_bytes_per_ike_sa": round((rss_after - rss_before) * 1024 / args.count),
            "failed": generator.failed,
            "targets": {"cpu_us_per_handshake": 500, "bytes_per_ike_sa": 10240},
        }
        print(f"responder CPU per handshake: {result['responder_cpu_us_per_handshake']} µs")
        print(f"handshakes per second:       {result['handshakes_per_second']}")
        print(f"responder RSS per IKE SA:    {result['rss_bytes_per_ike_sa']} bytes "
              f"({rss_before} -> {rss_after} KiB, {stats['ike_sas']} IKE SAs)")  # fmt: skip
        print(json.dumps(result))
    finally:
        stop_daemon(daemon)


if __name__ == "__main__":
    main()
