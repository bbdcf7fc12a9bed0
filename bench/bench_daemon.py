"""The responder daemon under load: CPU per handshake, handshakes per second, RSS per IKE SA.

A load generator (this process: one in-process Engine as initiator with its own UDP socket on
127.0.0.5) runs PSK + X25519 + AES-GCM handshakes with one child against `ikev2 daemon` (a
separate process on 127.0.0.1, in-memory kernel, cookie_threshold high, DPD off) over loopback
UDP, keeping WINDOW handshakes in flight. Measured on the responder process only:

- CPU µs per handshake: utime + stime from /proc/<pid>/stat over the measured handshakes;
- handshakes per second: wall clock over the same handshakes (the generator shares the 2 cores);
- RSS per IKE SA: VmRSS after WARMUP SAs, then again with WARMUP + COUNT SAs established.

Usage: .venv/bin/python bench/bench_daemon.py [--count 10000] [--window 64]
       [--log-level warning|info] [--loop asyncio|uvloop]
The last line is one JSON object. Targets: <= 500 µs of responder CPU per handshake, <= 10 KiB
of responder RSS per IKE SA.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ikev2.constants import IdType, ProtocolId
from ikev2.engine import Engine
from ikev2.engine.config import (
    AuthMethodName,
    ChildConfig,
    ConnectionConfig,
    Credentials,
    EngineConfig,
    Identity,
    Timers,
    TrafficSelectorSpec,
)
from ikev2.engine.events import IkeSaEstablished, IkeSaFailed
from ikev2.engine.proposal_strings import parse_proposals
from ikev2.log import configure_logging
from ikev2.service.control import request

RESPONDER = "127.0.0.1"
GENERATOR = "127.0.0.5"
PSK = "bench secret, loopback only 51d3c0"
WARMUP = 200
CLK_TCK = os.sysconf("SC_CLK_TCK")

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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    for port in range(25500, 26500, 2):
        try:
            for p in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((RESPONDER, p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


class Generator:
    """Initiator engine + UDP socket; runs handshakes until `count` more are established."""

    def __init__(self, responder_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((GENERATOR, 0))
        self.sock.setblocking(False)
        self.local = (ipaddress.ip_address(GENERATOR), self.sock.getsockname()[1])
        psk = Credentials(AuthMethodName.PSK, psk=PSK.encode())
        conn = ConnectionConfig(
            name="bench",
            local_addrs=(self.local[0],),
            remote_addrs=(ipaddress.ip_address(RESPONDER),),
            local_id=Identity(IdType.FQDN, b"initiator.bench"),
            local_auth=psk,
            remote_auth=psk,
            ike_proposals=parse_proposals("aes256gcm16-prfsha256-x25519", ProtocolId.IKE),
            children=(
                ChildConfig(
                    "bench",
                    (TrafficSelectorSpec(ipaddress.ip_network("10.1.0.0/16")),),
                    (TrafficSelectorSpec(ipaddress.ip_network("10.2.0.0/16")),),
                    parse_proposals("aes256gcm16", ProtocolId.ESP),
                ),
            ),
            local_port=self.local[1],
            remote_port=responder_port,
            timers=Timers(dpd_delay=0),
        )
        self.engine = Engine(EngineConfig((conn,)))
        self.established = 0
        self.failed = 0

    def _send(self) -> None:
        for d in self.engine.datagrams_to_send():
            with contextlib.suppress(BlockingIOError):  # the engine retransmits
                self.sock.sendto(d.data, (str(d.remote[0]), d.remote[1]))

    def _events(self, events: list[object]) -> int:
        finished = 0
        for event in events:
            if isinstance(event, IkeSaEstablished):
                self.established += 1
                finished += 1
            elif isinstance(event, IkeSaFailed):
                self.failed += 1
                finished += 1
        return finished

    def run(self, count: int, window: int, timeout: float = 300.0) -> None:
        started = inflight = 0
        target = self.established + count
        deadline = time.monotonic() + timeout
        while self.established < target:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"stuck: {self.established}/{target}, failed {self.failed}")
            while inflight < window and started < count + self.failed:
                self.engine.initiate("bench", now)
                started += 1
                inflight += 1
            self._send()
            timer = self.engine.get_timer()
            wait = 0.05 if timer is None else max(0.0, min(0.05, timer - now))
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                for _ in range(256):
                    try:
                        data, addr = self.sock.recvfrom(65535)
                    except BlockingIOError:
                        break
                    remote = (ipaddress.ip_address(addr[0]), addr[1])
                    events = self.engine.receive_datagram(data, remote, self.local, now)
                    inflight -= self._events(events)  # type: ignore[arg-type]
            now = time.monotonic()
            if timer is not None and timer <= now:
                inflight -= self._events(self.engine.handle_timer(now))  # type: ignore[arg-type]
        self._send()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--log-level", default="warning", choices=("warning", "info"))
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"))
    args = parser.parse_args()
    configure_logging("console", "warning")  # the generator's engine: quiet

    workdir = Path(tempfile.mkdtemp(prefix="ikev2-bench-"))
    port = free_port()
    control = str(workdir / "responder.sock")
    config = workdir / "responder.toml"
    config.write_text(RESPONDER_CONFIG.format(addr=RESPONDER, port=port, nat_port=port + 1,
                      control=control, log_level=args.log_level, psk=PSK))  # fmt: skip
    env = dict(os.environ)
    if args.loop == "asyncio":
        env["IKEV2_NO_UVLOOP"] = "1"
    log_path = workdir / "responder.log"
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "ikev2.cli", "daemon", "--config", str(config)],
            stdout=log, stderr=log, env=env,
        )  # fmt: skip
    try:
        for _ in range(300):
            if "listening on" in log_path.read_text():
                break
            if daemon.poll() is not None:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.05)
        generator = Generator(port)
        generator.run(WARMUP, args.window)
        time.sleep(0.3)
        rss_before = rss_kib(daemon.pid)
        cpu_before = cpu_seconds(daemon.pid)
        wall_before = time.monotonic()
        generator.run(args.count, args.window)
        wall = time.monotonic() - wall_before
        cpu = cpu_seconds(daemon.pid) - cpu_before
        time.sleep(0.3)
        rss_after = rss_kib(daemon.pid)
        stats = request(control, {"cmd": "stats"})
        result = {
            "bench": "daemon",
            "suite": "PSK/X25519/AES-GCM-256, one child, in-memory kernel",
            "loop": args.loop,
            "responder_log_level": args.log_level,
            "handshakes": args.count,
            "window": args.window,
            "responder_cpu_us_per_handshake": round(cpu / args.count * 1e6, 1),
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
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()


if __name__ == "__main__":
    main()
