"""Real daemon processes on loopback for the service tests.

Each test gets a fresh pair: "moon" on 127.0.0.1 and "sun" on 127.0.0.2 (Linux routes all of
127/8 on lo), on a random free port pair, with the in-memory kernel, control sockets and logs in a
short temporary directory. Daemons run as `python -m ikev2.cli daemon` and the CLI is run as a
new user would; every process is killed by its PID at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ikev2.service.udp import free_port_pair

PSK = "service-test secret 9f1c2e7a55d04b3e"
MOON, SUN = "127.0.0.1", "127.0.0.2"


def connection(
    name: str,
    me: str,
    peer: str,
    port: int,
    local_id: str,
    remote_id: str,
    local_ts: str,
    remote_ts: str,
    start_action: str = "none",
) -> str:
    return f"""
[connections.{name}]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
local_port = {port}
remote_port = {port}
proposals = "aes256gcm16-prfsha256-x25519"
dpd_delay = "30s"
[connections.{name}.local]
auth = "psk"
id = "{local_id}"
[connections.{name}.remote]
auth = "psk"
id = "{remote_id}"
[connections.{name}.children.{name}]
local_ts = ["{local_ts}"]
remote_ts = ["{remote_ts}"]
esp_proposals = ["aes256gcm16", "aes128-sha256"]
start_action = "{start_action}"
"""


def side_config(
    side: str, port: int, control: str, extra: str = "", names: tuple[str, ...] = ("net",)
) -> str:
    me, peer = (MOON, SUN) if side == "moon" else (SUN, MOON)
    ids = ("moon.example", "sun.example")
    local_id, remote_id = ids if side == "moon" else ids[::-1]
    text = f"""
[daemon]
addresses = ["{me}"]
port = {port}
nat_port = {port + 1}
control_socket = "{control}"
kernel = "memory"
cookie_threshold = 1000
"""
    for index, name in enumerate(names):
        nets = (f"10.{index}.1.0/24", f"10.{index}.2.0/24")
        lts, rts = nets if side == "moon" else nets[::-1]
        text += connection(name, me, peer, port, local_id, remote_id, lts, rts)
    return (
        text
        + extra
        + f"""
[secrets.moon-sun]
ids = ["moon.example", "sun.example"]
secret = "{PSK}"
"""
    )


@dataclass
class Daemon:
    name: str
    config: Path
    control: str
    log: Path
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # added to the daemon's environment
    process: asyncio.subprocess.Process | None = None
    _log_file: Any = field(default=None, repr=False)

    async def start(self, timeout: float = 15.0) -> None:
        self._log_file = open(self.log, "wb")  # noqa: SIM115 (closed in stop)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ikev2.cli", "daemon", "--config", str(self.config),
            *self.args, stdout=self._log_file, stderr=self._log_file,
            env={**os.environ, **self.env},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "listening on" in self.log.read_text(errors="replace"):
                return
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} did not start:\n{self.log.read_text()}")

    async def cli(self, *args: str, timeout: float = 30.0) -> tuple[int, str, str]:
        """Run `ikev2 ARGS --control <ours>`; returns (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ikev2.cli", *args, "--control", self.control,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def sas(self) -> list[dict[str, Any]]:
        code, out, err = await self.cli("list-sas", "--json")
        assert code == 0, err
        result = json.loads(out)
        assert isinstance(result, list)
        return result

    async def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def stop(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        assert self.process.returncode is not None
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)


@dataclass
class Pair:
    moon: Daemon
    sun: Daemon
    port: int
    workdir: Path


@contextlib.asynccontextmanager
async def daemon_pair(
    moon_args: tuple[str, ...] = (),
    names: tuple[str, ...] = ("net",),
    moon_env: dict[str, str] | None = None,
) -> AsyncIterator[Pair]:
    workdir = Path(tempfile.mkdtemp(prefix="ikev2t-"))
    port = free_port_pair((MOON, SUN))
    daemons = {}
    for side, args in (("sun", ()), ("moon", moon_args)):
        control = str(workdir / f"{side}.sock")
        config = workdir / f"{side}.toml"
        config.write_text(side_config(side, port, control, names=names))
        env = (moon_env or {}) if side == "moon" else {}
        daemons[side] = Daemon(side, config, control, workdir / f"{side}.log", args, env)
    try:
        await daemons["sun"].start()
        await daemons["moon"].start()
        yield Pair(daemons["moon"], daemons["sun"], port, workdir)
    finally:
        for daemon in daemons.values():
            if daemon.process is not None and daemon.process.returncode is None:
                with contextlib.suppress(Exception):
                    await daemon.stop(5)
            daemon.kill()
            if daemon._log_file is not None:
                daemon._log_file.close()


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Await an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)
