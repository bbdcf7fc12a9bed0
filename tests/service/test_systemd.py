"""systemd's side of Type=notify, played for real: a unix datagram socket as NOTIFY_SOCKET and the
real daemon process; READY=1 must come only when its UDP port and control socket answer, then
RELOADING=1/READY=1 around SIGHUP, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM.
The shipped unit file is checked with `systemd-analyze verify` where it is installed."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ikev2.config import load_config
from ikev2.engine import Engine
from ikev2.service.control import request
from ikev2.service.systemd import (
    STATUS_INTERVAL,
    Notifier,
    notify_address,
    unit_text,
    watchdog_interval,
)
from ikev2.service.udp import free_port_pair

from .daemons import MOON, SUN, side_config
from .test_metrics import ike_sa_from

IKE_SA_INIT = 34
RESPONSE_FLAG = 0x20


@dataclass
class Manager:
    """What systemd does for Type=notify: a datagram socket, and every message it got."""

    sock: socket.socket
    address: str  # the NOTIFY_SOCKET value
    messages: list[dict[str, str]] = field(default_factory=list)

    async def next(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        """The next message with `key` (those before it are kept in self.messages)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key} from the daemon; got {self.messages}")
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), left)
            message = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(message)
            if key in message:
                return message


@contextlib.contextmanager
def manager(abstract: bool = False) -> Iterator[Manager]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    directory = tempfile.mkdtemp(prefix="ikev2sd-")
    if abstract:
        name = f"ikev2-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        address = os.path.join(directory, "notify")
        sock.bind(address)
    try:
        yield Manager(sock, address)
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Started:
    process: asyncio.subprocess.Process
    port: int
    control: str
    moon_config: Path
    log: Path


@contextlib.asynccontextmanager
async def sun_daemon(env: dict[str, str], extra: str = "") -> AsyncIterator[Started]:
    workdir = Path(tempfile.mkdtemp(prefix="ikev2sd-"))
    port = free_port_pair((MOON, SUN))
    control = str(workdir / "sun.sock")
    config = workdir / "sun.toml"
    config.write_text(side_config("sun", port, control).replace("[daemon]\n", f"[daemon]\n{extra}"))
    moon = workdir / "moon.toml"
    moon.write_text(side_config("moon", port, str(workdir / "moon.sock")))
    log = workdir / "sun.log"
    with open(log, "wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ikev2.cli", "daemon", "--config", str(config),
            stdout=out, stderr=out, env={**os.environ, **env},
        )  # fmt: skip
    try:
        yield Started(process, port, control, moon, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def ike_sa_init_answered(moon_config: Path, port: int) -> bytes:
    """Send a real IKE_SA_INIT request (built by an engine from moon's config) to sun's port
    and return the answer."""
    engine = Engine(load_config(moon_config).engine)
    engine.initiate("net", time.monotonic())
    [datagram] = engine.datagrams_to_send()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((MOON, 0))
        sock.settimeout(5)
        sock.sendto(datagram.data, (SUN, port))
        answer, _ = sock.recvfrom(65535)
    return answer


def assert_port_taken(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(OSError) as exc:
        sock.bind((SUN, port))
    assert exc.value.errno == errno.EADDRINUSE


async def test_ready_after_the_port_answers_then_reload_and_stop() -> None:
    with manager() as sd:
        async with sun_daemon({"NOTIFY_SOCKET": sd.address}) as sun:
            ready = await sd.next("READY")
            # at READY=1 the IKE port is bound and answers, and so does the control socket
            assert_port_taken(sun.port)
            answer = ike_sa_init_answered(sun.moon_config, sun.port)
            assert answer[18] == IKE_SA_INIT and answer[19] & RESPONSE_FLAG
            assert request(sun.control, {"cmd": "stats"})["ok"] is True
            assert ready["READY"] == "1"
            assert ready["STATUS"].startswith(f"listening on {SUN}:{sun.port}")
            assert "1 connections" in ready["STATUS"]
            assert not any("READY" in m for m in sd.messages[:-1])

            # an IKE SA comes up: the STATUS= line follows within STATUS_INTERVAL
            _engine, sock = await asyncio.to_thread(ike_sa_from, sun.moon_config, MOON)
            deadline = time.monotonic() + STATUS_INTERVAL + 5
            status = ""
            while "1 IKE SAs established" not in status:
                status = (await sd.next("STATUS", deadline - time.monotonic()))["STATUS"]
            sock.close()

            sun.process.send_signal(signal.SIGHUP)
            reloading = await sd.next("RELOADING")
            assert reloading["RELOADING"] == "1"
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            assert 0 < now - int(reloading["MONOTONIC_USEC"]) < 10_000_000
            again = await sd.next("READY")
            assert again["STATUS"].startswith("listening on")

            sun.process.send_signal(signal.SIGTERM)
            stopping = await sd.next("STOPPING")
            assert stopping["STOPPING"] == "1"
            assert await asyncio.wait_for(sun.process.wait(), 15) == 0
            # no watchdog pings without WATCHDOG_USEC
            assert not any("WATCHDOG" in m for m in sd.messages)


async def test_watchdog_pings_at_half_the_timeout_on_an_abstract_socket() -> None:
    with manager(abstract=True) as sd:
        env = {"NOTIFY_SOCKET": sd.address, "WATCHDOG_USEC": "400000"}
        async with sun_daemon(env) as sun:
            await sd.next("READY")
            start = time.monotonic()
            pings = 0
            while time.monotonic() - start < 1.3:
                await sd.next("WATCHDOG")
                pings += 1
            # every 0.2 s: about 6 or 7 in 1.3 s, never as few as at the full timeout
            assert 5 <= pings <= 9, pings
            sun.process.send_signal(signal.SIGTERM)
            await sd.next("STOPPING")
            assert await asyncio.wait_for(sun.process.wait(), 15) == 0


async def test_workers_one_ready_from_the_supervisor_and_no_watchdog_for_another_pid() -> None:
    with manager() as sd:
        env = {"NOTIFY_SOCKET": sd.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
        async with sun_daemon(env, extra="workers = 2\n") as sun:
            ready = await sd.next("READY")
            assert "2 of 2 workers running" in ready["STATUS"]
            assert_port_taken(sun.port)
            answer = ike_sa_init_answered(sun.moon_config, sun.port)
            assert answer[18] == IKE_SA_INIT and answer[19] & RESPONSE_FLAG
            sun.process.send_signal(signal.SIGHUP)
            await sd.next("RELOADING")
            await sd.next("READY")
            sun.process.send_signal(signal.SIGTERM)
            await sd.next("STOPPING")
            assert await asyncio.wait_for(sun.process.wait(), 20) == 0
            readies = [m for m in sd.messages if "READY" in m]
            assert len(readies) == 2  # the start and the reload, from the supervisor only
            assert not any("WATCHDOG" in m for m in sd.messages)  # WATCHDOG_PID is not us


def test_notify_addresses_and_watchdog_interval() -> None:
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@abstract/name") == b"\0abstract/name"
    assert notify_address("") is None
    assert notify_address("vsock:2:1234") is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 7) is None
    assert watchdog_interval({}, 7) is None
    # outside systemd every call is a quiet no-op
    quiet = Notifier({})
    assert not quiet.enabled and quiet.ready("x") is False


def test_unit_file_and_systemd_analyze_verify() -> None:
    ikev2 = str(Path(sys.executable).with_name("ikev2"))
    done = subprocess.run(
        [ikev2, "systemd-unit", "--config", "/etc/ikev2/test.toml"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    text = done.stdout
    assert text == unit_text(ikev2, "/etc/ikev2/test.toml")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    keys: dict[str, list[str]] = {}
    for line in lines:
        if "=" in line:
            key, value = line.split("=", 1)
            keys.setdefault(key, []).append(value)
    assert keys["Type"] == ["notify"]
    assert keys["ExecStart"] == [f"{ikev2} daemon --config /etc/ikev2/test.toml --log-format json"]
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        assert sorted(keys[key][0].split()) == ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"]
    assert keys["ProtectSystem"] == ["strict"]
    assert keys["RuntimeDirectory"] == ["ikev2"] and keys["StateDirectory"] == ["ikev2"]
    assert "AF_NETLINK" in keys["RestrictAddressFamilies"][0].split()
    assert keys["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert "WatchdogSec" in keys
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd): unit not verified")
    with tempfile.TemporaryDirectory() as directory:
        unit = Path(directory) / "ikev2.service"
        unit.write_text(text)
        checked = subprocess.run(
            [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
        )
    # unknown or misspelt keys are only warnings ("Unknown key ..., ignoring"): none allowed in
    # ours; verify also loads the units installed here (Debian's freeradius.service warns about
    # MemoryLimit=), whose warnings are not ours
    others = re.compile(r"^/(usr/)?lib/systemd/system/(?!ikev2)\S+:")
    ours = [line for line in checked.stderr.splitlines() if line.strip() and not others.match(line)]
    assert checked.returncode == 0 and ours == [], checked.stderr
