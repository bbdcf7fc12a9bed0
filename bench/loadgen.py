"""The load generator the daemon benches share: one in-process Engine as IKE initiator with
non-blocking UDP sockets, plus the responder-side measurements (/proc CPU and RSS by PID).

`Generator` opens `ports` sockets round-robin over `addresses` (one connection per socket,
named by its port: a peer's new IKE SAs go to one worker, so several addresses stand for
several peers) and runs handshakes against one responder:

- `run(count, window)`: saturation, `window` handshakes in flight until `count` more are up;
- `run_rate(count, rate)`: a fixed rate of new handshakes per second (open loop; at most
  `window` in flight), for setup latency below saturation.

Both record each IKE SA's setup latency (initiate -> IkeSaEstablished, on this clock) in
`latencies` while `record` is set. `netns_enter` moves this thread into a named network
namespace (`ip netns add`), so the generator can run in one namespace and a responder in
another.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import ipaddress
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ikev2.engine import Engine
from ikev2.engine.config import ConnectionConfig, EngineConfig
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished, IkeSaFailed
from ikev2.testing.sources import spread_sockets

CLK_TCK = os.sysconf("SC_CLK_TCK")
CLONE_NEWNET = 0x40000000

# (name, local address, local port) -> the initiator connection of one socket
ConnFactory = Callable[[str, str, int], ConnectionConfig]


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes (all their threads), from /proc/<pid>/stat."""
    return sum(_cpu_seconds(pid) for pid in pids)


def rss_kib(pids: Sequence[int]) -> int:
    return sum(_rss_kib(pid) for pid in pids)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_daemon(
    config: Path,
    log_path: Path,
    *,
    profile: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> subprocess.Popen[bytes]:
    """`ikev2 daemon --config CONFIG` (under cProfile when `profile` names a stats file), its
    output to `log_path`; returns once it logs "listening on". A daemon that exits or does not
    get there within `timeout` s is killed and its log raised."""
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, *prefix, "-m", "ikev2.cli", "daemon", "--config", str(config)],
            stdout=log, stderr=log, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while "listening on" not in log_path.read_text(errors="replace"):
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            daemon.wait()
            raise RuntimeError(f"the responder did not start:\n{log_path.read_text()}")
        time.sleep(0.02)
    return daemon


def stop_daemon(daemon: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` s: a supervisor reaps its workers on SIGTERM
    (SIGKILL would leave them to init)."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def own_cpu_seconds() -> float:
    return sum(os.times()[:2])


def netns_enter(name: str) -> None:
    """setns(2) this thread into network namespace `name` (/run/netns/NAME). Sockets opened
    afterwards, and child processes started afterwards, live there."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Generator:
    """Initiator engine + one UDP socket (and connection) per source port."""

    def __init__(
        self,
        conn: ConnFactory,
        addresses: Sequence[str],
        ports: int = 8,
    ) -> None:
        made = spread_sockets(addresses, ports, rcvbuf=8 << 20)
        self.sockets = {port: sock for port, (sock, _) in made.items()}
        self.address = {port: address for port, (_, address) in made.items()}
        self.by_fd = {sock.fileno(): port for port, sock in self.sockets.items()}
        self.names = [f"gen{port}" for port in self.sockets]
        # no MOBIKE: with it an initiator floats to port 4500 for IKE_AUTH (RFC 4555 §3.3, as
        # strongSwan does), and the generator has a socket per source port, none on 4500
        self.engine = Engine(
            EngineConfig(
                tuple(
                    dataclasses.replace(conn(f"gen{p}", self.address[p], p), mobike=False)
                    for p in self.sockets
                )
            )
        )
        self.established = 0
        self.children = 0
        self.failed = 0
        self.failures: dict[str, int] = {}
        self.record = False
        self.latencies: list[float] = []
        self._started: dict[int, float] = {}
        self._next = 0

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()

    def _initiate(self, now: float) -> None:
        sa_id = self.engine.initiate(self.names[self._next % len(self.names)], now)
        self._next += 1
        self._started[sa_id] = time.monotonic()

    def _send(self) -> None:
        for d in self.engine.datagrams_to_send():
            with contextlib.suppress(BlockingIOError):  # the engine retransmits
                self.sockets[d.local[1]].sendto(d.data, (str(d.remote[0]), d.remote[1]))

    def _events(self, events: Sequence[object]) -> int:
        finished = 0
        for event in events:
            if isinstance(event, IkeSaEstablished):
                self.established += 1
                finished += 1
                started = self._started.pop(event.ike_sa_id, None)
                if self.record and started is not None:
                    self.latencies.append(time.monotonic() - started)
            elif isinstance(event, ChildSaEstablished):
                self.children += 1
            elif isinstance(event, IkeSaFailed):
                self.failed += 1
                self.failures[event.reason] = self.failures.get(event.reason, 0) + 1
                self._started.pop(event.ike_sa_id, None)
                finished += 1
        return finished

    def _poll(self, wait: float) -> int:
        """Send what the engine has, wait up to `wait` s for datagrams, feed them and due
        timers to the engine; the number of handshakes that finished."""
        self._send()
        now = time.monotonic()
        timer = self.engine.get_timer()
        if timer is not None:
            wait = max(0.0, min(wait, timer - now))
        finished = 0
        readable, _, _ = select.select(list(self.sockets.values()), [], [], wait)
        now = time.monotonic()
        for sock in readable:
            port = self.by_fd[sock.fileno()]
            local = (ipaddress.ip_address(self.address[port]), port)
            for _ in range(256):
                try:
                    data, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                remote = (ipaddress.ip_address(addr[0]), addr[1])
                finished += self._events(self.engine.receive_datagram(data, remote, local, now))
        timer = self.engine.get_timer()
        if timer is not None and timer <= now:
            finished += self._events(self.engine.handle_timer(now))
        return finished

    def run(self, count: int, window: int, timeout: float = 300.0) -> None:
        """Keep `window` handshakes in flight until `count` more IKE SAs are established."""
        started = inflight = 0
        target = self.established + count
        failed_before = self.failed
        deadline = time.monotonic() + timeout
        while self.established < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"stuck: {self.established}/{target}, failed {self.failures}")
            while inflight < window and started < count + self.failed - failed_before:
                self._initiate(time.monotonic())
                started += 1
                inflight += 1
            inflight -= self._poll(0.05)
        self._send()

    def run_rate(self, count: int, rate: float, window: int = 256, timeout: float = 300.0) -> None:
        """Start `rate` handshakes per second (open loop) until `count` more are established."""
        target = self.established + count
        started = inflight = 0
        failed_before = self.failed
        t0 = time.monotonic()
        deadline = t0 + timeout
        while self.established < target:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"stuck: {self.established}/{target}, failed {self.failures}")
            due = t0 + started / rate
            while (
                due <= now and inflight < window and started < count + self.failed - failed_before
            ):
                self._initiate(now)
                started += 1
                inflight += 1
                due = t0 + started / rate
            inflight -= self._poll(max(0.0, min(0.05, due - time.monotonic())))
        self._send()
