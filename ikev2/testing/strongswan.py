"""strongSwan as a test peer: one charon per network namespace (TESTBED §2).

`Charon` writes strongswan.conf, swanctl.conf and the credentials into its own directory,
starts charon (/usr/lib/ipsec/charon for Debian's 5.9.8) inside a namespace with a private /run
(the pid file path is compiled in), loads the configuration with swanctl (explicit plugin
lists on both sides) and drives it with swanctl subprocesses over its own vici socket: initiate,
terminate, rekey, list-sas (parsed from `--pretty`). Its log runs at ike/chd level 4, so the
SK_* and child keys it derives can be read back (`child_keys`, `ike_keys`: strongswan_log) and
compared with ours.

`Install` says which strongSwan runs: `DEBIAN` (5.9.8 from the Debian packages, the default)
or `STRONGSWAN6` (6.0.6 built from source into .cache by strongswan_build, with ML-KEM and
RFC 9370); both run with the same configuration, swanctl driving and log parsing.

Only the charon this object started is ever signalled, by its PID.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from . import strongswan_build
from .process import ManagedProcess

# the level-4 log parsers, re-exported: callers import them from here
from .strongswan_log import ChildKeys as ChildKeys
from .strongswan_log import IkeKeys as IkeKeys
from .strongswan_log import LogDump as LogDump
from .strongswan_log import child_keys as child_keys
from .strongswan_log import ike_keys as ike_keys
from .strongswan_log import log_dumps as log_dumps

CHARON = Path("/usr/lib/ipsec/charon")
SWANCTL = Path("/usr/sbin/swanctl")
# openssl gives AES, ChaCha20-Poly1305, MODP, ECP, X25519/X448, RSA, ECDSA and EdDSA here
# (Debian's curve25519/chapoly plugins are not packaged); kdf is required by 5.9.8.
CHARON_PLUGINS = "random nonce x509 constraints pubkey pkcs1 pkcs8 pem openssl kdf"
# EAP (RFC 7296 §2.16) for tests/interop/test_eap.py: MSCHAPv2's MD4/DES come from openssl
CHARON_PLUGINS += " eap-identity eap-md5 eap-mschapv2 eap-tls"
# the first kernel plugin to register an IPsec backend wins: libipsec must precede netlink
TAIL_PLUGINS = "kernel-netlink socket-default vici"
SWANCTL_PLUGINS = "pem pkcs1 pkcs8 x509 pubkey openssl random nonce"
PLUGIN_DIR = CHARON.parent / "plugins"
# Debian 12's package of every plugin the harness loads (`dpkg -S libstrongswan-NAME.so`):
# the openssl plugin is not in the charon package, and without it nothing hashes.
PLUGIN_PACKAGES = {
    "openssl": "libstrongswan-standard-plugins",
    "kernel-libipsec": "libcharon-extra-plugins",
    "eap-identity": "libcharon-extra-plugins",
    "eap-md5": "libcharon-extra-plugins",
    "eap-tls": "libcharon-extra-plugins",
    "eap-mschapv2": "libcharon-extauth-plugins",
    "socket-default": "strongswan-libcharon",
    "vici": "strongswan-swanctl",
    **{
        name: "libstrongswan"
        for name in [
            "random",
            "nonce",
            "x509",
            "constraints",
            "pubkey",
            "pkcs1",
            "pkcs8",
            "pem",
            "kdf",
            "kernel-netlink",
        ]
    },
}


@dataclass(frozen=True)
class Install:
    """One strongSwan installation the harness can run: its programs, plugin directory, the
    plugins a harness charon and swanctl load from it, and how to get what is missing."""

    name: str  # "5.9.8 (Debian)" ...
    charon: Path
    swanctl: Path
    plugin_dir: Path
    charon_plugins: str
    tail_plugins: str  # after the optional kernel-libipsec (the first IPsec backend wins)
    swanctl_plugins: str
    packages: Mapping[str, str] = field(default_factory=dict)  # plugin -> Debian package
    fix: str = ""  # how to install it all, when no per-plugin package applies

    def plugins(self) -> list[str]:
        """Every plugin a harness charon or swanctl may load, in load order, no repeats."""
        names = f"{self.charon_plugins} kernel-libipsec {self.tail_plugins} {self.swanctl_plugins}"
        return list(dict.fromkeys(names.split()))


DEBIAN = Install(
    "5.9.8 (Debian)", CHARON, SWANCTL, PLUGIN_DIR, CHARON_PLUGINS, TAIL_PLUGINS, SWANCTL_PLUGINS,
    PLUGIN_PACKAGES, "apt-get install strongswan-charon strongswan-swanctl",
)  # fmt: skip
STRONGSWAN6 = Install(
    f"{strongswan_build.VERSION} (built into .cache)",
    strongswan_build.charon(),
    strongswan_build.swanctl(),
    strongswan_build.plugin_dir(),
    strongswan_build.CHARON_PLUGINS,
    strongswan_build.TAIL_PLUGINS,
    strongswan_build.SWANCTL_PLUGINS,
    fix=f"run {strongswan_build.BUILD_COMMAND} (builds it into .cache, a few minutes)",
)

ConfValue: TypeAlias = str | int | bool | Sequence[str] | Mapping[str, "ConfValue"]


class CharonError(RuntimeError):
    """charon or swanctl did not do what was asked; the message carries their output."""


def render_conf(tree: Mapping[str, ConfValue], indent: int = 0) -> str:
    """strongSwan's settings syntax (strongswan.conf and swanctl.conf) from nested mappings:
    lists are comma-joined, booleans become yes/no."""
    pad = "  " * indent
    out: list[str] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.append(f"{pad}{key} {{")
            out.append(render_conf(value, indent + 1))
            out.append(f"{pad}}}")
        elif isinstance(value, bool):
            out.append(f"{pad}{key} = {'yes' if value else 'no'}")
        elif isinstance(value, str | int):
            out.append(f"{pad}{key} = {value}")
        else:
            out.append(f"{pad}{key} = {', '.join(value)}")
    return "\n".join(line for line in out if line)


# --- swanctl --list-sas --pretty ----------------------------------------------------------------


def parse_pretty(text: str) -> dict[str, Any]:
    """The vici message tree swanctl prints with --pretty (`name {`, `key = value`,
    `key = [` ... `]`, `}`); events of one name merge, so split them first (pretty_events)."""
    root: dict[str, Any] = {}
    stack: list[dict[str, Any]] = [root]
    in_list: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if in_list is not None:
            if line == "]":
                in_list = None
            else:
                in_list.append(line)
            continue
        if line.endswith("{"):
            name = line[:-1].strip()
            child = stack[-1].setdefault(name, {})
            stack.append(child)
        elif line == "}":
            if len(stack) > 1:
                stack.pop()
        elif " = " in line:
            key, value = line.split(" = ", 1)
            if value == "[":
                in_list = []
                stack[-1][key] = in_list
            else:
                stack[-1][key] = value
    return root


@dataclass(frozen=True)
class ChildSaInfo:
    name: str
    uniqueid: str
    reqid: str
    state: str
    mode: str
    protocol: str
    spi_in: str
    spi_out: str
    encap: bool
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class IkeSaInfo:
    name: str
    uniqueid: str
    state: str
    initiator: bool
    local_host: str
    local_port: str
    remote_host: str
    remote_port: str
    local_id: str
    remote_id: str
    spi_i: str
    spi_r: str
    nat_local: bool
    nat_remote: bool
    children: tuple[ChildSaInfo, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def installed_children(self) -> tuple[ChildSaInfo, ...]:
        return tuple(c for c in self.children if c.state == "INSTALLED")


def _children(tree: Mapping[str, Any]) -> tuple[ChildSaInfo, ...]:
    out = []
    for child in (tree.get("child-sas") or {}).values():
        out.append(
            ChildSaInfo(
                name=child.get("name", ""),
                uniqueid=child.get("uniqueid", ""),
                reqid=child.get("reqid", ""),
                state=child.get("state", ""),
                mode=child.get("mode", ""),
                protocol=child.get("protocol", ""),
                spi_in=child.get("spi-in", ""),
                spi_out=child.get("spi-out", ""),
                encap=child.get("encap") == "yes",
                local_ts=tuple(child.get("local-ts", ())),
                remote_ts=tuple(child.get("remote-ts", ())),
                raw=child,
            )
        )
    return tuple(out)


def pretty_events(text: str) -> list[str]:
    """The top-level blocks of swanctl's --pretty output, one per vici event: swanctl prints one
    `list-sa event` per IKE SA, and two IKE SAs of one connection carry the same name inside
    theirs, so they must be parsed apart (merged, the second's children joined the first)."""
    blocks: list[list[str]] = []
    depth = 0
    for line in text.splitlines():
        stripped = line.strip()
        if depth == 0 and stripped.endswith("{"):
            blocks.append([])
        if blocks:
            blocks[-1].append(line)
        depth += stripped.endswith("{") - (stripped == "}")
    return ["\n".join(block) for block in blocks]


def sas_from_pretty(text: str) -> list[IkeSaInfo]:
    out = []
    for tree in map(parse_pretty, pretty_events(text)):
        for name, sa in (tree.get("list-sa event") or {}).items():
            out.append(
                IkeSaInfo(
                    name=name,
                    uniqueid=sa.get("uniqueid", ""),
                    state=sa.get("state", ""),
                    initiator=sa.get("initiator") == "yes",
                    local_host=sa.get("local-host", ""),
                    local_port=sa.get("local-port", ""),
                    remote_host=sa.get("remote-host", ""),
                    remote_port=sa.get("remote-port", ""),
                    local_id=sa.get("local-id", ""),
                    remote_id=sa.get("remote-id", ""),
                    spi_i=sa.get("initiator-spi", ""),
                    spi_r=sa.get("responder-spi", ""),
                    nat_local=sa.get("nat-local") == "yes",
                    nat_remote=sa.get("nat-remote") == "yes",
                    children=_children(sa),
                    raw=sa,
                )
            )
    return out


# --- the daemon ---------------------------------------------------------------------------------


def charon_version(install: Install = DEBIAN) -> str:
    """ "5.9.8" from `swanctl --version` (the installed strongSwan)."""
    done = subprocess.run(
        [str(install.swanctl), "--version"], capture_output=True, text=True, check=False,
        timeout=10,
    )  # fmt: skip
    m = re.search(r"strongSwan (\S+)", done.stdout + done.stderr)
    return m.group(1) if m else "unknown"


def harness_plugins(install: Install = DEBIAN) -> list[str]:
    """Every plugin a harness charon or swanctl may load, in load order, without repeats."""
    return install.plugins()


def missing_plugins(plugin_dir: Path = PLUGIN_DIR, install: Install = DEBIAN) -> list[str]:
    """One line per harness plugin absent from `plugin_dir`, naming the Debian package."""
    lines = []
    for name in install.plugins():
        path = plugin_dir / f"libstrongswan-{name}.so"
        if not path.exists():
            package = install.packages.get(name)
            fix = f"apt-get install {package}" if package else install.fix
            lines.append(f"strongSwan plugin '{name}' missing ({path}): {fix or 'reinstall'}")
    return lines


_PREFLIGHT_DONE: set[str] = set()  # Install.name


def preflight(plugin_dir: Path | None = None, install: Install = DEBIAN) -> None:
    """Raise CharonError, one line per missing piece, before a charon starts without the
    plugins it is told to load (charon itself fails later, in a far less obvious way). A
    strongSwan 6 that is not (completely) built is one line: what to run."""
    if plugin_dir is None and install.name in _PREFLIGHT_DONE:
        return
    if install is STRONGSWAN6 and plugin_dir is None:
        problems = [p for p in (missing6(),) if p]
    else:
        problems = [p for p in (available(install),) if p]
        problems += missing_plugins(plugin_dir or install.plugin_dir, install)
    if problems:
        raise CharonError("\n".join(problems))
    if plugin_dir is None:
        _PREFLIGHT_DONE.add(install.name)


def available(install: Install = DEBIAN) -> str | None:
    """None when charon and swanctl are installed, else what is missing."""
    for path in (install.charon, install.swanctl):
        if not path.exists():
            return f"{path} missing ({install.fix})"
    return None


def missing6() -> str | None:
    """None when strongSwan 6 is built with every plugin the harness loads, else one line
    naming what is absent and the command that builds it."""
    absent = strongswan_build.missing_pieces(plugins=strongswan_build.PLUGINS)
    if not absent:
        return None
    more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
    return (
        f"strongSwan {strongswan_build.VERSION} is not built ({absent[0]} missing{more}): "
        f"{STRONGSWAN6.fix}"
    )


@dataclass
class Result:
    argv: list[str]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Charon(ManagedProcess):
    """One charon in namespace `ns`, configured and run from directory `workdir`.

    kernel: "libipsec" (userspace ESP, host; always UDP-encapsulated) or "netlink" (real XFRM,
    the QEMU guest). `extra` is merged into the `charon { }` section of strongswan.conf."""

    def __init__(
        self,
        ns: str,
        workdir: Path,
        *,
        kernel: str = "libipsec",
        extra: Mapping[str, ConfValue] | None = None,
        log_levels: Mapping[str, int] | None = None,
        install: Install = DEBIAN,
    ) -> None:
        self.install = install
        self.ns = ns
        self.dir = workdir
        self.kernel = kernel
        self.extra = dict(extra or {})
        self.log_levels = {
            "default": 1,
            "ike": 4,
            "chd": 4,
            "cfg": 2,
            "knl": 2,
            "net": 2,
            "enc": 1,
            "esp": 1,
            "lib": 1,
            "asn": 1,
            "job": 1,
            "mgr": 1,
            **(log_levels or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.swanctl_dir = self.dir / "swanctl"
        self.log_path = self.dir / "charon.log"
        self.vici = self.dir / "charon.vici"
        for sub in ("x509", "x509ca", "private", "pkcs8"):
            (self.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)

    # --- configuration ------------------------------------------------------------------------

    def strongswan_conf(self) -> str:
        libipsec = " kernel-libipsec " if self.kernel == "libipsec" else " "
        plugins = self.install.charon_plugins + libipsec + self.install.tail_plugins
        charon: dict[str, ConfValue] = {
            "load": plugins,
            "port": 500,
            "port_nat_t": 4500,
            "install_routes": False,
            "install_virtual_ip": False,
            "dos_protection": False,
            "init_limit_half_open": 0,
            "cookie_threshold": 1000000,
            "block_threshold": 1000000,
            "retransmit_tries": 3,
            "retransmit_timeout": 1,
            "retransmit_base": "1.4",
            "plugins": {"vici": {"socket": f"unix://{self.vici}"}},
            "syslog": {"daemon": {"default": -1}},
            "filelog": {
                "main": {
                    "path": str(self.log_path),
                    "time_format": "%H:%M:%S",
                    "time_add_ms": True,
                    "ike_name": True,
                    "append": False,
                    "flush_line": True,
                    **{k: v for k, v in self.log_levels.items()},
                }
            },
        }
        merged = _merge(charon, self.extra)
        swanctl = {"load": self.install.swanctl_plugins}
        return render_conf({"charon": merged, "swanctl": swanctl}) + "\n"

    def configure(
        self,
        swanctl: Mapping[str, ConfValue],
        *,
        certs: Sequence[Path] = (),
        cacerts: Sequence[Path] = (),
        keys: Sequence[Path] = (),
    ) -> None:
        """Write strongswan.conf, swanctl.conf and copy the credentials where swanctl finds
        them (x509/, x509ca/, private/). Call load() afterwards when charon already runs."""
        (self.dir / "strongswan.conf").write_text(self.strongswan_conf())
        (self.swanctl_dir / "swanctl.conf").write_text(render_conf(swanctl) + "\n")
        for sub in ("x509", "x509ca", "private"):
            for old in (self.swanctl_dir / sub).iterdir():
                old.unlink()
        for src, sub in [(c, "x509") for c in certs] + [(c, "x509ca") for c in cacerts]:
            shutil.copy(src, self.swanctl_dir / sub / src.name)
        for key in keys:
            shutil.copy(key, self.swanctl_dir / "private" / key.name)

    # --- process ------------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "STRONGSWAN_CONF": str(self.dir / "strongswan.conf"),
            "SWANCTL_DIR": str(self.swanctl_dir),
        }

    def start(self, timeout: float = 15.0) -> None:
        preflight(install=self.install)
        if not (self.dir / "strongswan.conf").exists():
            (self.dir / "strongswan.conf").write_text(self.strongswan_conf())
        self.vici.unlink(missing_ok=True)
        out = open(self.dir / "charon.stdout", "wb")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "sh",
                "-c",
                f"mount -t tmpfs tmpfs /run && exec {shlex.quote(str(self.install.charon))}",
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: nothing here signals ours
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CharonError(
                    f"charon in {self.ns} exited {self.proc.returncode}:\n{self.tail()}"
                )
            if self.vici.exists() and self.swanctl("--stats", check=False, timeout=5).ok:
                return
            time.sleep(0.05)
        raise CharonError(f"charon in {self.ns} not ready after {timeout} s:\n{self.tail()}")

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM our charon (by PID), SIGKILL if it lingers."""
        return super().stop(timeout)

    # --- swanctl ------------------------------------------------------------------------------

    def swanctl(self, *args: str, check: bool = True, timeout: float = 30.0) -> Result:
        argv = [str(self.install.swanctl), *args, "--uri", f"unix://{self.vici}"]
        try:
            done = subprocess.run(
                argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
            result = Result(argv, done.returncode, done.stdout + done.stderr)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            result = Result(argv, -1, out + f"\n[harness] timed out after {timeout} s")
        if check and not result.ok:
            raise CharonError(f"{shlex.join(argv)} exited {result.returncode}:\n{result.output}")
        return result

    def load(self) -> Result:
        (self.dir / "strongswan.conf").write_text(self.strongswan_conf())
        return self.swanctl("--load-all", "--noprompt")

    def initiate(
        self, child: str | None = None, ike: str | None = None, timeout: int = 15
    ) -> Result:
        args = ["--initiate", "--timeout", str(timeout)]
        args += ["--child", child] if child else []
        args += ["--ike", ike] if ike else []
        return self.swanctl(*args, check=False, timeout=timeout + 10)

    def terminate(self, *, ike: str | None = None, child: str | None = None,
                  ike_id: str | None = None, child_id: str | None = None,
                  force: bool = False, timeout: int = 10) -> Result:  # fmt: skip
        args = ["--terminate", "--timeout", str(timeout)]
        for flag, value in (("--ike", ike), ("--child", child), ("--ike-id", ike_id),
                            ("--child-id", child_id)):  # fmt: skip
            if value:
                args += [flag, value]
        if force:
            args.append("--force")
        return self.swanctl(*args, check=False, timeout=timeout + 10)

    def rekey(self, *, ike: str | None = None, child: str | None = None,
              ike_id: str | None = None, child_id: str | None = None,
              reauth: bool = False) -> Result:  # fmt: skip
        args = ["--rekey", "--reauth"] if reauth else ["--rekey"]
        for flag, value in (("--ike", ike), ("--child", child), ("--ike-id", ike_id),
                            ("--child-id", child_id)):  # fmt: skip
            if value:
                args += [flag, value]
        return self.swanctl(*args, check=False)

    def list_sas(self) -> list[IkeSaInfo]:
        return sas_from_pretty(self.swanctl("--list-sas", "--pretty").output)

    def wait_for(
        self, predicate: Any, timeout: float = 15.0, interval: float = 0.1
    ) -> list[IkeSaInfo]:
        """Poll list_sas() until predicate(sas) is true; raise with the last listing if not."""
        deadline = time.monotonic() + timeout
        sas = self.list_sas()
        while not predicate(sas):
            if time.monotonic() > deadline:
                raise CharonError(f"condition not met after {timeout} s; SAs: {sas}")
            time.sleep(interval)
            sas = self.list_sas()
        return sas

    # --- the log ------------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 60) -> str:
        text = self.log()
        stdout = self.dir / "charon.stdout"
        extra = stdout.read_text(errors="replace") if stdout.exists() else ""
        return "\n".join((extra + text).splitlines()[-lines:])

    def sent(self, message: str, notify: str) -> bool:
        """charon generated `message` (e.g. "IKE_AUTH response") carrying N(`notify`)."""
        pattern = re.compile(rf"generating {re.escape(message)} \d+ \[.*\bN\({notify}\)")
        return any(pattern.search(line) for line in self.log().splitlines())

    def received(self, message: str, notify: str) -> bool:
        """charon parsed `message` carrying N(`notify`)."""
        pattern = re.compile(rf"parsed {re.escape(message)} \d+ \[.*\bN\({notify}\)")
        return any(pattern.search(line) for line in self.log().splitlines())

    def child_keys(self) -> list[ChildKeys]:
        return child_keys(self.log())

    def ike_keys(self) -> list[IkeKeys]:
        return ike_keys(self.log())


def _merge(base: Mapping[str, ConfValue], extra: Mapping[str, ConfValue]) -> dict[str, ConfValue]:
    out: dict[str, ConfValue] = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out
