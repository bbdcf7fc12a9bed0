"""Our own daemon as a test peer: `ikev2 daemon` in a network namespace, driven through its
control socket with the `ikev2` CLI (up, down, list-sas --json, reload, rekey).

The configuration is written as TOML from nested dicts (`render_toml`); `--key-log` is always on
so the keys can be compared with strongSwan's (ikev2.testing.keycompare). Only the daemon this
object started is signalled, by its PID.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .keycompare import KeyLog, parse_key_log
from .process import ManagedProcess

READY = "ikev2: listening on"


def ikev2_command() -> Path:
    """The `ikev2` entry point next to the running interpreter (the project's venv)."""
    return Path(sys.executable).with_name("ikev2")


class DaemonError(RuntimeError):
    """Our daemon did not start or a CLI command failed; carries the output."""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)


def render_toml(tree: Mapping[str, Any], prefix: str = "") -> str:
    """TOML from nested mappings: scalars and lists first, then one [table] per mapping."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            tables.append((f"{prefix}{_toml_key(key)}", value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines)
    for name, table in tables:
        body = render_toml(table, f"{name}.")
        has_scalars = any(not isinstance(v, Mapping) for v in table.values())
        header = f"[{name}]\n" if has_scalars or not table else ""
        out += ("\n\n" if out else "") + header + body
    return out.strip() + "\n"


@dataclass
class CliResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class OurDaemon(ManagedProcess):
    """`ikev2 daemon` in namespace `ns` with its files under `workdir`."""

    def __init__(
        self, ns: str, workdir: Path, kernel: str = "memory", use_cli: bool = True
    ) -> None:
        """use_cli: up/down through the `ikev2` CLI (the contract); False talks to the control
        socket directly (the same JSON protocol), which saves a Python start under TCG."""
        self.ns = ns
        self.use_cli = use_cli
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kernel = kernel
        self.config_path = self.dir / "ikev2.toml"
        self.control_path = self.dir / "control.sock"
        self.key_log_path = self.dir / "keys.txt"
        self.log_path = self.dir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self, config: Mapping[str, Any]) -> None:
        """Write the TOML configuration (the [daemon] control_socket/kernel are filled in)."""
        tree = dict(config)
        daemon = dict(tree.get("daemon", {}))
        daemon.setdefault("control_socket", str(self.control_path))
        daemon.setdefault("kernel", self.kernel)
        tree = {"daemon": daemon, **{k: v for k, v in tree.items() if k != "daemon"}}
        self.config_path.write_text(render_toml(tree))

    def start(
        self, timeout: float = 20.0, log_level: str = "debug", clear_socket: bool = True
    ) -> None:
        """clear_socket=False leaves a control socket from a killed daemon where it is: the
        daemon must find it stale and take it over itself (service/control.py)."""
        argv = [
            "ip", "netns", "exec", self.ns, str(ikev2_command()), "daemon",
            "--config", str(self.config_path), "--control", str(self.control_path),
            "--log-format", "json", "--log-level", log_level,
            "--key-log", str(self.key_log_path), "--kernel", self.kernel,
        ]  # fmt: skip
        if clear_socket:
            self.control_path.unlink(missing_ok=True)
        out = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY in self.log():
                return
            if self.proc.poll() is not None:
                raise DaemonError(
                    f"ikev2 daemon exited {self.proc.returncode}: {shlex.join(argv)}\n{self.tail()}"
                )
            time.sleep(0.05)
        raise DaemonError(f"ikev2 daemon not ready after {timeout} s\n{self.tail()}")

    # --- the CLI --------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 30.0) -> CliResult:
        argv = [str(ikev2_command()), *args, "--control", str(self.control_path)]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False,
                env={**os.environ, "NO_COLOR": "1"},
            )  # fmt: skip
            return CliResult(argv, done.returncode, done.stdout, done.stderr)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return CliResult(argv, -1, out, f"[harness] timed out after {timeout} s")

    def up(
        self, name: str, timeout: float = 30.0, child: str | None = None, no_child: bool = False
    ) -> CliResult:
        """`ikev2 up NAME [--child CHILD | --no-child]` (RFC 6023: a childless IKE SA, then
        children under it)."""
        extra = ["--child", child] if child else []
        extra += ["--no-child"] if no_child else []
        if self.use_cli:
            args = ("up", name, "--timeout", str(int(timeout)), *extra)
            return self.cli(*args, timeout=timeout * 2 + 10)
        message: dict[str, Any] = {"cmd": "up", "name": name, "timeout": timeout}
        message.update({"child": child} if child else {})
        message.update({"no_child": True} if no_child else {})
        return self._socket_result(message, timeout * 2 + 10)

    def down(self, name: str, timeout: float = 30.0) -> CliResult:
        if self.use_cli:
            return self.cli("down", name, timeout=timeout)
        return self._socket_result({"cmd": "down", "target": name}, timeout)

    def _socket_result(self, message: Mapping[str, Any], timeout: float) -> CliResult:
        try:
            answer = self.control(message, timeout)
        except OSError as exc:
            return CliResult(["control", json.dumps(dict(message))], -1, "", str(exc))
        ok = bool(answer.get("ok"))
        return CliResult(
            ["control", json.dumps(dict(message))], 0 if ok else 1, json.dumps(answer), ""
        )

    def reload(self) -> CliResult:
        return self.cli("reload")

    def control(self, message: Mapping[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """One request on the control socket (newline-delimited JSON, the protocol the CLI
        speaks): cheaper than starting the CLI, which matters under TCG in the guest."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.control_path))
            sock.sendall(json.dumps(dict(message)).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        answer: dict[str, Any] = json.loads(data)
        return answer

    def list_sas(self, via_cli: bool = False) -> list[dict[str, Any]]:
        """`ikev2 list-sas --json` (via_cli) or the same list straight from the socket."""
        if not via_cli:
            answer = self.control({"cmd": "list-sas"})
            if not answer.get("ok"):
                raise DaemonError(f"list-sas failed: {answer}")
            return list(answer["sas"])
        done = self.cli("list-sas", "--json")
        if not done.ok:
            raise DaemonError(f"list-sas failed: {done.output}")
        data = json.loads(done.stdout)
        if isinstance(data, dict):  # tolerate {"sas": [...]}
            data = data.get("sas", data.get("ike_sas", []))
        return list(data)

    def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 15.0,
        interval: float = 0.1,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        sas = self.list_sas()
        while not predicate(sas):
            if time.monotonic() > deadline:
                raise DaemonError(f"condition not met after {timeout} s; SAs: {sas}")
            time.sleep(interval)
            sas = self.list_sas()
        return sas

    def help_text(self, *args: str) -> str:
        done = subprocess.run(
            [str(ikev2_command()), *args, "--help"], capture_output=True, text=True, check=False
        )
        return done.stdout + done.stderr

    # --- logs -----------------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines (anything else, like the ready line, is skipped)."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def key_log(self) -> KeyLog:
        """Both tables: FILE (ikev2_decryption_table) and FILE.esp_sa."""
        text = ""
        for path in (self.key_log_path, Path(f"{self.key_log_path}.esp_sa")):
            if path.exists():
                text += path.read_text()
        return parse_key_log(text)
