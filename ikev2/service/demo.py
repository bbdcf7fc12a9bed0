"""`ikev2 demo`: two real daemons negotiate an IKE SA with a child, show it, and tear it down.

- As root: two network namespaces joined by a veth pair (10.99.0.1 "moon" <-> 10.99.0.2 "sun"),
  each daemon started inside its own with `ip netns exec`, on the standard ports 500/4500.
- Otherwise: both daemons on loopback (127.0.0.1 and 127.0.0.2, which Linux routes on lo) on a
  free unprivileged port.
The configs are fixtures/config/example.toml (moon, the initiator) and example-peer.toml (sun)
with only addresses, ports and control sockets changed. Each daemon picks its kernel with
`kernel = "auto"` (real XFRM if a probe ESP SA installs, else in memory) and the demo prints
which one it used and why. Namespaces, sockets and processes are removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .control import ControlError, request
from .udp import free_port_pair

CONFIG_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "config"
READY = "listening on"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer for what configs hold: tables, strings, numbers, bools, lists."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    out = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    text = "\n".join(out) + ("\n\n" if out else "")
    for key, value in data.items():
        if isinstance(value, dict):
            name = f'"{key}"' if not key.replace("_", "").replace("-", "").isalnum() else key
            text += to_toml(value, f"{prefix}.{name}" if prefix else name)
    return text


@dataclass
class Side:
    name: str
    config_file: str
    address: str
    peer: str
    namespace: str | None
    control: str = ""
    log: str = ""
    process: subprocess.Popen[bytes] | None = None


def _write_config(side: Side, workdir: Path, port: int, nat_port: int) -> Path:
    data = tomllib.loads((CONFIG_DIR / side.config_file).read_text())
    data["daemon"].update(
        addresses=[side.address], port=port, nat_port=nat_port, control_socket=side.control
    )
    for conn in data["connections"].values():
        conn.update(local_addrs=[side.address], remote_addrs=[side.peer],
                    local_port=port, remote_port=port)  # fmt: skip
    path = workdir / f"{side.name}.toml"
    path.write_text(to_toml(data))
    return path


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@contextlib.contextmanager
def _namespaces(moon: Side, sun: Side) -> Iterator[None]:
    """moon and sun namespaces and a veth pair between them; all removed afterwards."""
    assert moon.namespace and sun.namespace
    try:
        for ns in (moon.namespace, sun.namespace):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", "ikev2demo0", "netns", moon.namespace, "type", "veth",
             "peer", "name", "ikev2demo1", "netns", sun.namespace)  # fmt: skip
        for side, dev in ((moon, "ikev2demo0"), (sun, "ikev2demo1")):
            _run("ip", "-n", str(side.namespace), "addr", "add", f"{side.address}/24", "dev", dev)
            _run("ip", "-n", str(side.namespace), "link", "set", dev, "up")
        yield
    finally:
        for ns in (moon.namespace, sun.namespace):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _start(side: Side, config: Path) -> None:
    cmd = [sys.executable, "-m", "ikev2.cli", "daemon", "--config", str(config)]
    if side.namespace:
        cmd = ["ip", "netns", "exec", side.namespace, *cmd]
    with open(side.log, "wb") as log:
        side.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if READY in Path(side.log).read_text(errors="replace"):
            return
        if side.process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{side.name} daemon did not start:\n{Path(side.log).read_text()}")


def _stop(side: Side) -> int | None:
    if side.process is None or side.process.poll() is not None:
        return side.process.returncode if side.process else None
    side.process.send_signal(signal.SIGTERM)
    try:
        return side.process.wait(10)
    except subprocess.TimeoutExpired:
        side.process.kill()
        side.process.wait()
        return None


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(keep_logs: bool = False, loopback: bool = False) -> int:
    """The demo; `loopback` keeps to loopback even as root. Returns the exit code."""
    from .driver import format_sas

    started = time.monotonic()
    as_root = os.geteuid() == 0 and _has_ip() and not loopback
    tag = secrets.token_hex(3)
    if as_root:
        moon = Side("moon", "example.toml", "10.99.0.1", "10.99.0.2", f"ikev2demo-{tag}-moon")
        sun = Side("sun", "example-peer.toml", "10.99.0.2", "10.99.0.1", f"ikev2demo-{tag}-sun")
        where = "two network namespaces joined by a veth pair (we are root)"
    else:
        moon = Side("moon", "example.toml", "127.0.0.1", "127.0.0.2", None)
        sun = Side("sun", "example-peer.toml", "127.0.0.2", "127.0.0.1", None)
        where = "loopback, two daemons on 127.0.0.1 and 127.0.0.2 (no namespaces)"
    ok = False
    with tempfile.TemporaryDirectory(prefix="ikev2-demo-") as tmp:
        workdir = Path(tmp)
        port = 500 if as_root else free_port_pair([moon.address, sun.address])
        for side in (moon, sun):
            side.control, side.log = str(workdir / f"{side.name}.sock"), str(workdir / side.name)
        configs = {s.name: _write_config(s, workdir, port, 4500 if as_root else port + 1)
                   for s in (moon, sun)}  # fmt: skip
        _say(f"== ikev2 demo: {where}")
        _say(f"   configs: fixtures/config/example.toml (moon {moon.address}), "
             f"example-peer.toml (sun {sun.address}), UDP port {port}")  # fmt: skip
        scope = _namespaces(moon, sun) if as_root else contextlib.nullcontext()
        try:
            with scope:
                try:
                    ok = _negotiate(moon, sun, configs, format_sas)
                finally:
                    codes = {s.name: _stop(s) for s in (moon, sun)}
                    _say(f"== stopped both daemons (SIGTERM): exit codes {codes}")
                    ok = ok and all(code == 0 for code in codes.values())
                    if keep_logs or not ok:
                        for side in (moon, sun):
                            _say(f"--- {side.name} log")
                            with contextlib.suppress(OSError):
                                _say(Path(side.log).read_text(errors="replace").rstrip())
        except (RuntimeError, subprocess.CalledProcessError, ControlError, OSError) as exc:
            _say(f"demo failed: {exc}")
            ok = False
    _say(f"== demo {'succeeded' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


def _has_ip() -> bool:
    return subprocess.run(["ip", "-V"], capture_output=True, check=False).returncode == 0


def _negotiate(moon: Side, sun: Side, configs: dict[str, Path], format_sas: Any) -> bool:
    _start(sun, configs["sun"])
    _start(moon, configs["moon"])
    for side in (moon, sun):
        stats = request(side.control, {"cmd": "stats"}, 10)
        _say(f"   {side.name}: kernel = {stats.get('kernel')} ({stats.get('kernel_reason')})")
    _say("== moon: ikev2 up net")
    answer = request(moon.control, {"cmd": "up", "name": "net", "timeout": 20}, 25)
    if not answer.get("ok"):
        _say(f"   failed: {answer.get('error')}")
        return False
    for side in (moon, sun):
        sas = request(side.control, {"cmd": "list-sas"}, 10)["sas"]
        _say(f"== {side.name}: ikev2 list-sas")
        _say(format_sas(sas))
        if not sas or not sas[0]["children"]:
            _say(f"   {side.name} has no IKE SA with a child")
            return False
        stats = request(side.control, {"cmd": "stats"}, 10)
        _say(f"   {side.name} kernel ({stats.get('kernel')}): {stats.get('kernel_sas')} SAs, "
             f"{stats.get('kernel_policies')} policies installed")  # fmt: skip
    _say("== moon: SIGTERM (deletes the IKE SA with sun, removes its kernel state)")
    code = _stop(moon)
    left = request(sun.control, {"cmd": "list-sas"}, 10)["sas"]
    _say(f"   moon exited {code}; sun now has {len(left)} IKE SA(s)")
    return code == 0 and not left
