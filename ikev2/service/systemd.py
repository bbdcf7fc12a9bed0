"""systemd integration: the sd_notify protocol on the standard library, and our unit file.

Protocol (sd_notify(3)): with `Type=notify`, systemd passes the path of a unix datagram socket
in $NOTIFY_SOCKET; the service sends newline-separated `KEY=VALUE` assignments to it, one
datagram per message. A path starting with '@' is in the abstract namespace (its first byte
becomes NUL). We send:

  READY=1 + STATUS=...       the config is loaded and the UDP sockets and control socket are bound
  RELOADING=1 + MONOTONIC_USEC=...   a SIGHUP reload begins (systemd >= 253 wants the timestamp)
  READY=1 + STATUS=...       it ended (refused or applied: the daemon runs either way)
  STOPPING=1                 SIGTERM: deleting IKE SAs, then exit
  WATCHDOG=1                 every WATCHDOG_USEC / 2 from the event loop, when WatchdogSec= is set
                             (and WATCHDOG_PID, if given, is us)
  STATUS=...                 again whenever it changed (checked every STATUS_INTERVAL), so
                             `systemctl status` shows the IKE SAs up now, not at start

Without $NOTIFY_SOCKET every call is a no-op, so the daemon runs unchanged outside systemd.
Sending never raises: a service manager that went away must not stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from ..log import get_logger

log = get_logger("ikev2.systemd")
UNIT_NAME = "ikev2.service"
STATUS_INTERVAL = 5.0  # seconds between checks whether the STATUS= line changed
DEFAULT_CONFIG = "/etc/ikev2/ikev2.toml"


def notify_address(value: str) -> str | bytes | None:
    """The address to send to for a $NOTIFY_SOCKET value: a path, or an abstract name (bytes,
    leading NUL) for '@name'; None when unusable (empty, or not a unix socket)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock: addresses (systemd 254) are not for us


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two WATCHDOG=1 pings (half the timeout, as sd_watchdog_enabled(3)
    advises), or None when the watchdog is off or meant for another process."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 2e6


class Notifier:
    """The daemon's side of NOTIFY_SOCKET. One per process that systemd watches (the main one)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = notify_address(env.get("NOTIFY_SOCKET", ""))
        self.interval = watchdog_interval(env, os.getpid()) if self.address else None
        self._sock: socket.socket | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._status: asyncio.Task[None] | None = None
        if self.address is not None:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except OSError as exc:
                log.warning("NOTIFY_SOCKET unusable", error=str(exc))
                self.address = None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> bool:
        """One datagram of KEY=VALUE lines (keys upper-cased); False when not delivered."""
        if self._sock is None or self.address is None:
            return False
        text = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            log.debug("sd_notify not delivered", error=str(exc))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready=1, status=status)

    def status(self, status: str) -> bool:
        return self.send(status=status)

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(reloading=1, status="reloading the configuration", monotonic_usec=usec)

    def stopping(self) -> bool:
        return self.send(stopping=1, status="stopping: deleting IKE SAs with their peers")

    def start_status(self, source: Callable[[], str], interval: float = STATUS_INTERVAL) -> None:
        """Send STATUS=source() whenever it differs from the last one sent."""
        if self.enabled and self._status is None:
            loop = asyncio.get_running_loop()
            self._status = loop.create_task(self._statuses(source, interval))

    async def _statuses(self, source: Callable[[], str], interval: float) -> None:
        last = source()
        while True:
            await asyncio.sleep(interval)
            try:
                now = source()
            except Exception as exc:  # a status line must never stop the daemon
                log.debug("status line failed", error=type(exc).__name__)
                continue
            if now != last:
                self.status(now)
                last = now

    def start_watchdog(self) -> None:
        """Ping from the event loop itself: a loop that hangs stops the pings, and systemd
        restarts us (WatchdogSec=, Restart=on-failure)."""
        if self.interval is None or self._watchdog is not None:
            return
        self._watchdog = asyncio.get_running_loop().create_task(self._pings(self.interval))

    async def _pings(self, interval: float) -> None:
        while True:
            self.send(watchdog=1)
            await asyncio.sleep(interval)

    def close(self) -> None:
        for task in (self._watchdog, self._status):
            if task is not None:
                task.cancel()
        self._watchdog = self._status = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def unit_text(executable: str | None = None, config: str = DEFAULT_CONFIG) -> str:
    """The unit file shipped in the package, with ExecStart pointing at `executable` (default:
    the `ikev2` entry point beside the running interpreter) and `config`."""
    template = resources.files(__package__).joinpath(UNIT_NAME).read_text()
    return template.replace("@IKEV2@", executable or default_executable()).replace(
        "@CONFIG@", config
    )


def default_executable() -> str:
    import shutil
    import sys

    beside = Path(sys.executable).with_name("ikev2")
    if beside.exists():
        return str(beside)
    return shutil.which("ikev2") or "/usr/local/bin/ikev2"
