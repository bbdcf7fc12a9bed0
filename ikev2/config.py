"""The TOML configuration file -> the engine's frozen config plus the daemon's own settings.

Names follow swanctl.conf (connections, children, proposals, esp_proposals, local_ts, start_action,
secrets) so a strongSwan user can read it. Every mistake raises ikev2.errors.ConfigError naming the
file, the dotted key and the fix, on one line. Unknown keys are mistakes (with a "did you mean").
Secret and private key files readable by group or others are refused.

Durations are numbers of seconds or strings such as "30s", "15m", "4h", "1d".
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from . import (
    config_pools,
    config_ppk,
    config_radius,
    config_redirect,
    config_tunables,
    config_xfrm,
)
from .constants import IpProto, ProtocolId
from .engine.config import (
    AuthMethodName,
    ChildConfig,
    Childless,
    ConnectionConfig,
    Credentials,
    EngineConfig,
    Identity,
    IPAddress,
    IPNetwork,
    Mode,
    PoolConfig,
    Recovery,
    RedirectConfig,
    RevocationPolicy,
    SendCert,
    Timers,
    TrafficSelectorSpec,
    Transport,
    Unique,
)
from .engine.credentials import load_certificate, load_certificates, load_private_key
from .engine.eap import METHODS as EAP_METHODS
from .engine.eap import PASSWORD_METHODS as EAP_PASSWORD_METHODS
from .engine.identity import parse_identity, parse_identity_pattern
from .engine.proposal_strings import ProposalSyntaxError, parse_proposals
from .engine.revocation import load_crl
from .errors import ConfigError

DEFAULT_CONTROL_SOCKET = "/run/ikev2/control.sock"
START_ACTIONS = ("none", "start", "trap")
KERNELS = ("auto", "xfrm", "memory")
LOG_FORMATS = ("console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# "10.0.0.0/8[tcp/80]" or "[udp/1000-2000]" as in swanctl.conf traffic selectors
_TS = re.compile(r"^\s*(?P<net>[^\[\s]+)\s*(?:\[(?P<proto>[^/\]]*)(?:/(?P<ports>[^\]]*))?\])?\s*$")
_TS_PROTOCOLS = {"any": IpProto.ANY, "icmp": IpProto.ICMP, "tcp": IpProto.TCP,
                 "udp": IpProto.UDP, "ipv6-icmp": IpProto.ICMPV6}  # fmt: skip


MIN_PSK = 8  # bytes; see _secrets


@dataclass(frozen=True, slots=True)
class Limit:
    """The range a numeric key must lie in (one row of LIMITS); NaN and infinities never do."""

    low: float
    high: float
    what: str
    fix: str
    low_open: bool = False  # low itself is not allowed


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


_TEN_YEARS = 10 * 365 * 86400
_SECONDS = "number of seconds"
_WHOLE = "whole number"
# Every numeric key, wherever it appears (daemon, connection or child table), and its range: one
# place, so no value the engine cannot run on (a negative timer, a back-off that overflows, a
# counter the kernel cannot hold) gets past the loader.
LIMITS: dict[str, Limit] = {
    "rekey_time": Limit(0, _TEN_YEARS, _SECONDS, 'write 0 to disable, or e.g. "4h"'),
    "reauth_time": Limit(0, _TEN_YEARS, _SECONDS, 'write 0 to disable, or e.g. "24h"'),
    "over_time": Limit(0, _TEN_YEARS, _SECONDS, 'write e.g. "10m" (or 0)'),
    "life_time": Limit(0, _TEN_YEARS, _SECONDS, "write 0 for none, or ~10% over rekey_time"),
    "dpd_delay": Limit(0, _TEN_YEARS, _SECONDS, 'write 0 to disable, or e.g. "30s"'),
    "retransmit_limit": Limit(0, _TEN_YEARS, _SECONDS, 'write 0 for no cap, or e.g. "1m"'),
    "retransmit_timeout": Limit(0.1, 3600, _SECONDS, 'write e.g. "4s" (the first wait)'),
    # timeout × base^tries must stay a sane, finite wait: base above 1 (else no back-off) and
    # at most 10, at most 20 retransmits
    "retransmit_base": Limit(1, 10, "number", "write e.g. 1.8 (strongSwan's default)", True),
    "retransmit_tries": Limit(0, 20, _WHOLE, "write e.g. 5 (strongSwan's default)"),
    "life_bytes": Limit(0, 2**64 - 1, _WHOLE, "write 0 for no limit, or a byte count"),
    "life_packets": Limit(0, 2**64 - 1, _WHOLE, "write 0 for no limit, or a packet count"),
    "replay_window": Limit(0, 32768, _WHOLE, "write e.g. 32 (0 disables replay protection)"),
    "keyingtries": Limit(0, 1000000, _WHOLE, "write e.g. 3 (0 = keep trying forever)"),
    "cookie_threshold": Limit(0, 2**31 - 1, _WHOLE, "write e.g. 30 half-open SAs (0: always)"),
    "max_half_open": Limit(0, 2**31 - 1, _WHOLE, "write e.g. 10000 half-open IKE SAs"),
    "block_threshold": Limit(0, 2**31 - 1, _WHOLE, "write e.g. 5 half-open SAs per IP (0: off)"),
    "grace": Limit(0, _TEN_YEARS, _SECONDS, 'write 0 (release at once) or e.g. "10m"'),
    "drop_log_lines": Limit(0, 2**31 - 1, _WHOLE, "write e.g. 10 lines per reason (0: no limit)"),
    "drop_log_interval": Limit(0.001, 86400, _SECONDS, 'write e.g. "10s"'),
    "redirect_limit": Limit(1, 1000, _WHOLE, "write e.g. 5 redirects (per redirect_period)"),
    "redirect_period": Limit(1, 86400, _SECONDS, 'write e.g. "5m"'),
    # strongSwan's charon.max_packet (10000): an IKE_SA_INIT needs ~300 octets, a certificate
    # IKE_AUTH a few thousand; a UDP datagram carries at most 65535
    "max_packet": Limit(1280, 65535, _WHOLE, "write e.g. 10000 octets"),
    "half_open_timeout": Limit(1, 3600, _SECONDS, 'write e.g. "30s"'),
}
LIMITS.update(config_tunables.limits(Limit, _SECONDS, _WHOLE))  # keep_alive, fragment_size...


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """The [daemon] table: sockets, control socket, kernel, logs, the DoS gate."""

    addresses: tuple[IPAddress, ...] = (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))
    port: int = 500
    nat_port: int = 4500
    tcp_port: int = 4500  # RFC 9329: IKE and ESP over TCP, listened on and connected to
    control_socket: str = DEFAULT_CONTROL_SOCKET
    kernel: str = "auto"
    log_format: str = "console"
    log_level: str = "info"
    cookie_threshold: int = 30
    max_half_open: int = 10000
    block_threshold: int = (
        5  # half-open IKE SAs per source IP (strongSwan's charon.block_threshold)
    )
    # drops before authentication: at most drop_log_lines log lines per reason per
    # drop_log_interval, then one summary line (engine/dos.py DropLog)
    drop_log_lines: int = 10
    drop_log_interval: float = 10.0
    # strongSwan's charon.max_packet and charon.half_open_timeout (engine/config.py)
    max_packet: int = 10000
    half_open_timeout: float = 30.0
    workers: int = 1
    # remote-access client (RFC 7296 §2.19): where virtual IPs go, and the script that gets
    # the DNS servers (README "Remote access"); "" = no hook
    vip_interface: str = "lo"
    dns_hook: str = ""
    install_routes: bool = True  # routes from the virtual IP in table 220 (service/vip_routes.py)
    # Prometheus endpoint (service/metrics.py): (host, port), or None (off, the default)
    metrics: tuple[str, int] | None = None
    # child_bytes/child_packets, one series per child SA direction (off: only aggregate series,
    # for gateways with many SAs; service/metrics.py snapshot)
    metrics_per_child: bool = True
    # RFC 5685, the client's half (config_redirect.py)
    redirect: RedirectConfig = field(default_factory=RedirectConfig)
    radius_server: tuple[str, int] | None = None  # EAP-RADIUS (config_radius.py)
    # keep_alive, half_open_timeout, fragment_size, retransmit_*, cookie_secret_lifetime
    tunables: config_tunables.Tunables = field(default_factory=config_tunables.Tunables)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """A loaded file: daemon settings, the engine config, and per-child start actions."""

    path: Path
    daemon: DaemonSettings
    engine: EngineConfig
    # (connection, child) -> "none" | "start" | "trap" (swanctl's start_action)
    start_actions: Mapping[tuple[str, str], str] = field(default_factory=dict)
    radius_secret: bytes = field(default=b"", repr=False)  # EAP-RADIUS (config_radius.py)

    def connections_to_start(self) -> list[str]:
        names = {conn for (conn, _), action in self.start_actions.items() if action == "start"}
        return [c.name for c in self.engine.connections if c.name in names]

    def trapped_children(self) -> list[tuple[ConnectionConfig, ChildConfig]]:
        out = []
        for conn in self.engine.connections:
            for child in conn.children:
                if self.start_actions.get((conn.name, child.name)) == "trap":
                    out.append((conn, child))
        return out


_TOML_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "float",
    bool: "boolean",
    list: "array",
    dict: "table",
}
# Keys whose values are secrets (a PSK, a password): error texts name them, never show them.
# A *_file key holds a path, which is shown.
_SECRET_WORDS = ("secret", "psk", "password", "passphrase", "private")


def is_secret_key(name: str) -> bool:
    """Does the config key `name` (its last dotted part) hold a secret value?"""
    last = name.rpartition(".")[2].lower()
    return not last.endswith("_file") and any(word in last for word in _SECRET_WORDS)


class _Table:
    """One TOML table being read: knows its dotted key, refuses unknown keys, raises ConfigError."""

    def __init__(self, loader: _Loader, key: str, data: object, allowed: tuple[str, ...]) -> None:
        self.loader, self.key = loader, key
        if not isinstance(data, dict):
            loader.fail(key, f"is a {type(data).__name__}, not a table", f"write [{key}]")
            raise AssertionError
        self.data: dict[str, Any] = data
        for name in data:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                fix = f"did you mean {close[0]}?" if close else f"use one of {', '.join(allowed)}"
                loader.fail(self.sub(name), "unknown key", fix)

    def sub(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def fail(self, name: str, problem: str, fix: str) -> None:
        self.loader.fail(self.sub(name), problem, fix)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any, example: str) -> Any:
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            expected = " or ".join(_TOML_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            found = _TOML_TYPE_NAMES.get(type(value), type(value).__name__)
            # A secret's value never goes into the error text: it ends up on stderr, in the log
            # and in control replies. Name the key and the types only.
            shown = "the value" if is_secret_key(name) else repr(value)
            self.fail(
                name,
                f"{shown} has the wrong type ({found}, expected {expected})",
                f"write e.g. {name} = {example}",
            )
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = str(self.get(name, str, default, f'"{choices[0]}"')).lower()
        if value not in choices:
            self.fail(name, f"{value!r} is not allowed", f"use one of {', '.join(choices)}")
        return value

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A list of strings, or one comma-separated string."""
        value = self.get(name, (list, str), None, '["a", "b"]')
        if value is None:
            return default
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if not all(isinstance(v, str) for v in value):
            self.fail(name, "has a non-string entry", f'write e.g. {name} = ["a", "b"]')
        return tuple(value)

    def duration(self, name: str, default: float) -> float:
        value = self.get(name, (int, float, str), None, '"30s"')
        if value is None:
            return default
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = _DURATION.match(value)
            if match is None:
                self.fail(name, f"{value!r} is not a duration", 'write seconds or e.g. "30s", "1h"')
                raise AssertionError  # unreachable: fail raises
            seconds = float(match[1]) * _DURATION_UNITS[match[2]]
        self.check_range(name, seconds, value)
        return seconds

    def number(self, name: str, kind: type | tuple[type, ...], default: Any, example: str) -> Any:
        """A number checked against its row of LIMITS (the default is not checked)."""
        if name not in self.data:
            return default
        value = self.get(name, kind, default, example)
        self.check_range(name, float(value), value)
        return value

    def check_range(self, name: str, number: float, shown: object) -> None:
        limit = LIMITS[name]
        low_ok = number > limit.low if limit.low_open else number >= limit.low
        if not (math.isfinite(number) and low_ok and number <= limit.high):
            bound = ">" if limit.low_open else ">="
            self.fail(
                name,
                f"must be a finite {limit.what} {bound} {_plain(limit.low)} and <= "
                f"{_plain(limit.high)}, got {shown!r}",
                limit.fix,
            )

    def port(self, name: str, default: int) -> int:
        value = int(self.get(name, int, default, "500"))
        if not 0 < value < 65536:
            self.fail(name, f"port {value} is out of range", "use 1..65535")
        return value

    def table(self, name: str, allowed: tuple[str, ...]) -> _Table:
        return _Table(self.loader, self.sub(name), self.data.get(name, {}), allowed)


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str, fix: str) -> None:
        raise ConfigError(str(self.path), key, problem, fix)

    def file(self, key: str, name: str, *, secret: bool = False) -> bytes:
        """A file named relative to the config file; a secret must not be group/world readable."""
        path = (self.path.parent / name).resolve()
        try:
            info = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            self.fail(key, f"file {str(path)!r} does not exist", "create it or correct the path")
            raise AssertionError from None
        except OSError as exc:
            self.fail(key, f"cannot read {str(path)!r}: {exc.strerror}", "check the permissions")
            raise AssertionError from None
        if secret and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            mode = stat.S_IMODE(info.st_mode)
            how = "readable" if mode & 0o044 else "writable" if mode & 0o022 else "usable"
            self.fail(
                key,
                f"secret file {str(path)!r} is {how} by others (mode {mode:04o})",
                f"chmod 600 {path}",
            )
        return data


# --------------------------------------------------------------------------- the [daemon] table

DAEMON_KEYS = ("addresses", "port", "nat_port", "tcp_port", "control_socket", "kernel",
               "log_format", "log_level", "cookie_threshold", "max_half_open", "block_threshold",
               "drop_log_lines", "drop_log_interval", "workers", "vip_interface", "dns_hook",
               "install_routes", "metrics", "metrics_per_child", *config_redirect.DAEMON_KEYS,
               *config_radius.DAEMON_KEYS, "max_packet", "half_open_timeout",
               *config_tunables.DAEMON_KEYS)  # fmt: skip


def _addresses(table: _Table, name: str, values: tuple[str, ...]) -> tuple[IPAddress, ...]:
    out = []
    for value in values:
        if value.lower() in ("%any", "%any4", "%any6"):
            continue
        try:
            out.append(ipaddress.ip_address(value))
        except ValueError:
            table.fail(name, f"{value!r} is not an IP address", 'write e.g. "192.0.2.1" or "%any"')
    return tuple(out)


def _daemon(table: _Table) -> DaemonSettings:
    base = DaemonSettings()
    addresses = table.strings("addresses")
    return DaemonSettings(
        addresses=_addresses(table, "addresses", addresses) if addresses else base.addresses,
        port=table.port("port", base.port),
        nat_port=table.port("nat_port", base.nat_port),
        tcp_port=table.port("tcp_port", base.tcp_port),
        control_socket=str(table.get("control_socket", str, base.control_socket, '"/run/x.sock"')),
        kernel=table.choice("kernel", KERNELS, base.kernel),
        log_format=table.choice("log_format", LOG_FORMATS, base.log_format),
        log_level=table.choice("log_level", LOG_LEVELS, base.log_level),
        cookie_threshold=int(table.number("cookie_threshold", int, base.cookie_threshold, "30")),
        max_half_open=int(table.number("max_half_open", int, base.max_half_open, "10000")),
        block_threshold=int(table.number("block_threshold", int, base.block_threshold, "5")),
        drop_log_lines=int(table.number("drop_log_lines", int, base.drop_log_lines, "10")),
        drop_log_interval=table.duration("drop_log_interval", base.drop_log_interval),
        max_packet=int(table.number("max_packet", int, base.max_packet, "10000")),
        half_open_timeout=table.duration("half_open_timeout", base.half_open_timeout),
        workers=_workers(table, base.workers),
        vip_interface=config_pools.vip_interface(table, base.vip_interface),
        dns_hook=config_pools.dns_hook(table),
        install_routes=bool(table.get("install_routes", bool, base.install_routes, "true")),
        metrics=_metrics(table),
        metrics_per_child=bool(
            table.get("metrics_per_child", bool, base.metrics_per_child, "false")
        ),
        redirect=config_redirect.daemon_redirects(table),
        radius_server=config_radius.radius_server(table),
        tunables=config_tunables.daemon_tunables(table),
    )


def _metrics(table: _Table) -> tuple[str, int] | None:
    """`metrics = "127.0.0.1:9507"` (or "[::1]:9507"): where to serve Prometheus; "" = off."""
    text = str(table.get("metrics", str, "", '"127.0.0.1:9507"')).strip()
    if not text:
        return None
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        fix = 'write e.g. "127.0.0.1:9507" or "[::1]:9507" (an IP address, not a name)'
        table.fail("metrics", f"{text!r} is not ADDRESS:PORT", fix)
    if not port.isdigit() or not 0 < int(port) < 65536:
        table.fail("metrics", f"{text!r} has no port 1..65535", 'write e.g. "127.0.0.1:9507"')
    return host, int(port)


MAX_WORKERS = 256  # an SPI's first octet names its worker (service/handoff.py)


def _workers(table: _Table, default: int) -> int:
    """`workers = N` responder processes sharing the ports with SO_REUSEPORT, or "auto"
    (one per CPU); 1 is the single process."""
    value = table.get("workers", (int, str), default, '2 or "auto"')
    if isinstance(value, str):
        if value.lower() != "auto":
            table.fail("workers", f"{value!r} is not a number of processes",
                       'write a whole number from 1 up, or "auto" for one per CPU')  # fmt: skip
        return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    if not 1 <= value <= MAX_WORKERS:
        table.fail("workers", f"{value} is out of range",
                   f'use 1 (one process) up to {MAX_WORKERS}, or "auto"')  # fmt: skip
    return int(value)


# --------------------------------------------------------------------------- proposals, selectors


def _proposals(table: _Table, name: str, protocol: ProtocolId, default: str) -> Any:
    text = ",".join(table.strings(name, (default,)))
    try:
        return parse_proposals(text, protocol)
    except ProposalSyntaxError as exc:
        problem, _, hint = str(exc).partition("; ")
        fix = hint or "use strongSwan keywords, e.g. aes256gcm16-prfsha256-x25519"
        table.fail(name, problem, fix)
        raise AssertionError from None


def _port_range(table: _Table, name: str, text: str | None) -> tuple[int, int]:
    if not text or text.lower() in ("any", "%any"):
        return 0, 65535
    low, _, high = text.partition("-")
    try:
        start, end = int(low), int(high or low)
    except ValueError:
        table.fail(name, f"port {text!r} is not a number or range", 'write e.g. "[tcp/80]"')
        raise AssertionError from None
    if not 0 <= start <= end <= 65535:
        table.fail(name, f"port range {text!r} is out of order or range", "use 0..65535")
    return start, end


def _selectors(
    table: _Table, name: str, dynamic: tuple[IPNetwork, ...]
) -> tuple[TrafficSelectorSpec, ...]:
    out = []
    for text in table.strings(name, ("dynamic",)):
        match = _TS.match(text)
        if match is None:
            table.fail(name, f"{text!r} is not a traffic selector", 'write e.g. "10.1.0.0/24"')
            raise AssertionError
        net = match["net"]
        proto_text = (match["proto"] or "any").lower()
        proto: int | None = _TS_PROTOCOLS.get(proto_text)
        if proto is None and proto_text.isdigit():
            proto = int(proto_text)
        if proto is None:
            table.fail(name, f"unknown protocol {proto_text!r}", "use tcp, udp, icmp or a number")
            raise AssertionError
        if not 0 <= proto <= 255:
            table.fail(name, f"protocol {proto} is out of range", "use 0..255, tcp, udp or icmp")
        start, end = _port_range(table, name, match["ports"])
        if net.lower() == "dynamic":
            if not dynamic:
                table.fail(name, "'dynamic' needs a known address", "set the addrs or a subnet")
            networks = list(dynamic)
        else:
            try:
                networks = [ipaddress.ip_network(net, strict=False)]
            except ValueError:
                table.fail(name, f"{net!r} is not a subnet", 'write e.g. "10.1.0.0/24" or dynamic')
                raise AssertionError from None
        out += [TrafficSelectorSpec(n, proto, start, end) for n in networks]
    return tuple(out)


# --------------------------------------------------------------------------- connections

CONNECTION_KEYS = ("local_addrs", "remote_addrs", "local_port", "remote_port", "proposals",
                   "dpd_delay", "rekey_time", "reauth_time", "over_time", "make_before_break",
                   "fragmentation", "send_certreq", "send_cert", "unique", "keyingtries",
                   "transport", "mobike", "mobike_no_nats", "retransmit_timeout",
                   "retransmit_base", "retransmit_tries",
                   "retransmit_limit", "local", "remote", "children", "pools",
                   "vips", "childless", *config_ppk.PPK_CONNECTION_KEYS,
                   *config_redirect.CONNECTION_KEYS)  # fmt: skip
LOCAL_KEYS = ("auth", "id", "certs", "key", "eap_id")
REMOTE_KEYS = ("auth", "id", "cacerts", "cadir", "eap_id", "revocation", "crls")
CHILD_KEYS = ("local_ts", "remote_ts", "esp_proposals", "ah_proposals", "mode", "start_action",
              "rekey_time", "life_time", "life_bytes", "life_packets", "replay_window",
              "dpd_action", "close_action", *config_xfrm.CHILD_KEYS)  # fmt: skip
SECRET_KEYS = ("ids", "secret", "secret_file")
# swanctl's auth values: psk, pubkey, eap-METHOD (RFC 7296 §2.16); "eap" alone lets a client
# run whichever of our methods the gateway asks for, and makes a gateway offer MSCHAPv2 first
# and MD5 to a client that Naks it (strongSwan's eap-dynamic)
EAP_AUTHS: dict[str, tuple[int, ...]] = {f"eap-{n}": (int(t),) for n, t in EAP_METHODS.items()}
EAP_AUTHS["eap"] = tuple(sorted((int(t) for t in EAP_PASSWORD_METHODS), reverse=True))
AUTH_METHODS = ("psk", "pubkey", *EAP_AUTHS, config_radius.AUTH)
UNIQUE_POLICIES = tuple(u.value for u in Unique)
CHILDLESS_POLICIES = tuple(c.value for c in Childless)  # swanctl.conf's (RFC 6023)
SEND_CERT_POLICIES = tuple(s.value for s in SendCert)  # swanctl.conf's send_cert
TRANSPORTS = tuple(t.value for t in Transport)
# swanctl.conf's child dpd_action and close_action (engine/recovery.py); "start" is close_action's
# name for restart, "none" its default; strongSwan's trap (and hold) is not implemented yet
RECOVERY = {"none": Recovery.CLEAR, "clear": Recovery.CLEAR, "restart": Recovery.RESTART,
            "start": Recovery.RESTART}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Secret:
    name: str
    ids: tuple[Identity, ...]
    secret: bytes = field(repr=False)
    # swanctl's secrets.eap<suffix>: an EAP user's password; its ids are EAP identities (user
    # names, as the client sends them), kept as text, not parsed as IKE identities
    eap_ids: tuple[bytes, ...] = ()


def _identity(table: _Table, name: str, text: str) -> Identity:
    try:
        return parse_identity(text)
    except ValueError as exc:
        table.fail(name, str(exc), 'write e.g. "moon.example", "192.0.2.1" or "C=CH, CN=moon"')
        raise AssertionError from None


def _secrets(loader: _Loader, root: _Table) -> list[_Secret]:
    out = []
    sections = root.data.get("secrets", {})
    if not isinstance(sections, dict):  # its value may be the secret itself: not shown
        loader.fail("secrets", "is not a table", 'write [secrets.NAME] with secret = "..."')
    for name, data in sections.items():
        if config_ppk.is_ppk_section(name):  # RFC 8784 PPKs: config_ppk.load_ppks
            continue
        table = _Table(loader, f"secrets.{name}", data, SECRET_KEYS)
        eap = name.startswith("eap")
        if eap and not table.strings("ids"):
            table.fail("ids", "an EAP secret names its users", 'add ids = ["carol"]')
        ids = () if eap else tuple(_identity(table, "ids", i) for i in table.strings("ids"))
        eap_ids = tuple(i.encode() for i in table.strings("ids")) if eap else ()
        if "secret" in table.data and "secret_file" in table.data:
            table.fail("secret", "both secret and secret_file are set", "keep one of them")
        if "secret_file" in table.data:
            path = str(table.get("secret_file", str, "", '"psk.txt"'))
            value = loader.file(table.sub("secret_file"), path, secret=True).strip()
        elif "secret" in table.data:
            value = str(table.get("secret", str, "", '"a long random string"')).encode()
        else:
            table.fail("secret", "no secret given", "add secret = ... or secret_file = ...")
            raise AssertionError
        key = "secret_file" if "secret_file" in table.data else "secret"
        if not value:
            table.fail(key, "the secret is empty", "write a long random secret")
        if len(value) < MIN_PSK:
            # a short PSK falls to an offline guess from one captured IKE_AUTH (RFC 7296 §2.15);
            # 8 is only the floor refused outright, strongSwan warns below 20
            table.fail(
                key,
                f"the secret is shorter than {MIN_PSK} bytes, a guessable PSK",
                "use 20 or more random characters, e.g. from openssl rand -base64 24",
            )
        out.append(_Secret(name, ids, value, eap_ids))
    return out


def _psk(table: _Table, secrets: list[_Secret], local: Identity, remote: Identity | None) -> bytes:
    """Like swanctl: the secret whose ids name both ends (a secret without ids matches any)."""
    wanted = [local] + ([remote] if remote is not None else [])
    for secret in secrets:
        if secret.eap_ids:
            continue
        if not secret.ids or all(w in secret.ids for w in wanted):
            return secret.secret
    table.fail("auth", "psk, but no [secrets.*] entry lists these ids", "add a [secrets.NAME] "
               f"with ids = [{', '.join(repr(str(w)) for w in wanted)}] and a secret")  # fmt: skip
    raise AssertionError


def _certificates(loader: _Loader, key: str, path: str) -> tuple[bytes, ...]:
    """Every certificate of a PEM bundle, or one DER certificate, as DER."""
    data = loader.file(key, path)
    try:
        return load_certificates(data) if b"-----BEGIN" in data else (load_certificate(data),)
    except ValueError as exc:
        loader.fail(key, f"{path}: not a certificate ({exc})", "give PEM or DER X.509 files")
        raise AssertionError from None


def _eap_id(table: _Table) -> bytes | None:
    text = table.get("eap_id", str, None, '"carol"')
    if text is not None and not text:
        table.fail("eap_id", "is empty", 'write e.g. eap_id = "carol" (or "%any" on remote)')
    return text.encode() if text is not None else None


def _eap_client(
    loader: _Loader, table: _Table, secrets: list[_Secret], auth: str, local: Identity
) -> Credentials:
    """A road warrior's EAP (RFC 7296 §2.16): our EAP identity (eap_id, else the IKE ID's
    data) and the password of the secrets.eap* entry that lists it."""
    eap_id = _eap_id(table)
    if eap_id == b"%any":
        table.fail("eap_id", "%any is for remote.eap_id", 'write our user name, e.g. "carol"')
    user = eap_id if eap_id is not None else local.data
    if auth == "eap-tls":  # RFC 5216: our certificate inside EAP, no password
        certs, key = _own_chain(loader, table, auth)
        return Credentials(AuthMethodName.EAP, eap_types=EAP_AUTHS[auth], eap_id=eap_id,
                           certs=certs, private_key=key)  # fmt: skip
    for secret in secrets:
        if user in secret.eap_ids:
            return Credentials(AuthMethodName.EAP, eap_types=EAP_AUTHS[auth], eap_id=eap_id,
                               eap_secret=secret.secret)  # fmt: skip
    shown = user.decode("utf-8", "replace")
    table.fail("auth", f"{auth}, but no [secrets.eap*] entry lists {shown!r}",
               f'add [secrets.eap-{shown}] with ids = ["{shown}"] and secret = ...')  # fmt: skip
    raise AssertionError


def _eap_gateway(loader: _Loader, table: _Table, secrets: list[_Secret], auth: str) -> Credentials:
    """A gateway's EAP: the method it asks for, its users from every secrets.eap* entry, and
    eap_id (absent: the IKE ID is the EAP identity; "%any": ask with EAP-Identity first)."""
    if auth == "eap-tls":  # RFC 5216: the clients' certificates must reach cacerts
        return Credentials(AuthMethodName.EAP, eap_types=EAP_AUTHS[auth], eap_id=_eap_id(table),
                           trust_anchors=_anchors(loader, table, auth))  # fmt: skip
    users = tuple((user, s.secret) for s in secrets for user in s.eap_ids)
    if not users:
        table.fail("auth", f"{auth}, but no [secrets.eap*] entry lists a user",
                   'add [secrets.eap-carol] with ids = ["carol"] and secret = ...')  # fmt: skip
    return Credentials(AuthMethodName.EAP, eap_types=EAP_AUTHS[auth], eap_id=_eap_id(table),
                       eap_users=users)  # fmt: skip


def _local_credentials(
    loader: _Loader, table: _Table, secrets: list[_Secret], local: Identity, remote: Identity | None
) -> Credentials:
    auth = table.choice("auth", AUTH_METHODS, "psk")
    if auth == config_radius.AUTH:
        table.fail("auth", "eap-radius is the gateway's side", "write it as remote.auth")
    if auth in EAP_AUTHS:
        return _eap_client(loader, table, secrets, auth, local)
    if "eap_id" in table.data:
        table.fail("eap_id", f"auth = {auth} runs no EAP", 'remove it or use auth = "eap-..."')
    method = AuthMethodName(auth)
    if method is AuthMethodName.PSK:
        return Credentials(method, psk=_psk(table, secrets, local, remote))
    certs, key = _own_chain(loader, table, auth)
    return Credentials(method, certs=certs, private_key=key)


def _own_chain(loader: _Loader, table: _Table, auth: str) -> tuple[tuple[bytes, ...], Any]:
    """Our certificates (certs) and private key (key) for pubkey or EAP-TLS."""
    certs: list[bytes] = []
    for path in table.strings("certs"):
        certs += _certificates(loader, table.sub("certs"), path)
    if not certs:
        table.fail("certs", f"{auth} needs our certificate", 'add certs = ["moon.crt"]')
    key_path = str(table.get("key", str, "", '"moon.key"'))
    if not key_path:
        table.fail("key", f"{auth} needs our private key", 'add key = "moon.key"')
    try:
        key = load_private_key(loader.file(table.sub("key"), key_path, secret=True))
    except (ValueError, TypeError) as exc:
        table.fail("key", f"{key_path}: not a usable private key ({exc})", "give a PEM/DER key")
        raise AssertionError from None
    return tuple(certs), key


def _remote_credentials(
    loader: _Loader, table: _Table, local: Credentials, secrets: list[_Secret]
) -> Credentials:
    auth = table.choice("auth", AUTH_METHODS, "psk")
    if auth == config_radius.AUTH:  # RFC 3579: the RADIUS server runs the method
        return Credentials(AuthMethodName.EAP, eap_id=_eap_id(table), eap_radius=True)
    if auth in EAP_AUTHS:
        return _eap_gateway(loader, table, secrets, auth)
    if "eap_id" in table.data:
        table.fail("eap_id", f"auth = {auth} runs no EAP", 'remove it or use auth = "eap-..."')
    method = AuthMethodName(auth)
    if method is AuthMethodName.PSK:
        if local.psk is None:
            table.fail("auth", "remote psk needs a local psk", "use auth = psk on both ends")
        return Credentials(method, psk=local.psk)
    policy = RevocationPolicy(table.choice("revocation", tuple(RevocationPolicy), "relaxed"))
    return Credentials(method, trust_anchors=_anchors(loader, table, auth), revocation=policy,
                       crls=_crls(loader, table))  # fmt: skip


def _crls(loader: _Loader, table: _Table) -> tuple[bytes, ...]:
    """remote.crls: CRL files (PEM or DER), or directories of *.crl / *.pem / *.der files
    (strongSwan's swanctl/x509crl), relative to the config file; each must parse."""
    found: list[tuple[str, Path]] = []
    for name in table.strings("crls"):
        path = loader.path.parent / name
        if path.is_dir():
            found += [(name, p) for p in sorted(path.iterdir())
                      if p.suffix in (".crl", ".pem", ".der")]  # fmt: skip
        else:
            found.append((name, path))
    out = []
    for name, path in found:
        data = loader.file(table.sub("crls"), str(path))
        try:
            crl = load_crl(data)
        except ValueError as exc:
            table.fail("crls", f"{name}: {path.name} is not a CRL ({exc})", "give PEM/DER CRLs")
        out.append(crl.public_bytes(serialization.Encoding.DER))
    return tuple(out)


def _anchors(loader: _Loader, table: _Table, auth: str) -> tuple[bytes, ...]:
    """The CA certificates a peer's chain must reach (cacerts, cadir)."""
    anchors: list[bytes] = []
    files = [(table.sub("cacerts"), p) for p in table.strings("cacerts")]
    cadir = table.get("cadir", str, None, '"cacerts"')
    if cadir is not None:
        directory = loader.path.parent / cadir
        if not directory.is_dir():
            table.fail("cadir", f"{str(directory)!r} is not a directory", "create it or fix it")
        files += [(table.sub("cadir"), str(p)) for p in sorted(directory.glob("*"))
                  if p.suffix in (".crt", ".pem", ".der")]  # fmt: skip
    for key, path in files:
        anchors += _certificates(loader, key, path)
    if not anchors:
        table.fail("cacerts", f"{auth} needs a CA to trust", 'add cacerts = ["ca.crt"]')
    return tuple(anchors)


def _child(
    table: _Table, name: str, local: tuple[IPNetwork, ...], remote: tuple[IPNetwork, ...]
) -> tuple[ChildConfig, str]:
    if "esp_proposals" in table.data and "ah_proposals" in table.data:
        table.fail("ah_proposals", "both esp_proposals and ah_proposals", "keep one of them")
    if "ah_proposals" in table.data:
        proposals = _proposals(table, "ah_proposals", ProtocolId.AH, "default")
    else:
        proposals = _proposals(table, "esp_proposals", ProtocolId.ESP, "default")
    base = ChildConfig(name, (), (), ())
    rekey = table.duration("rekey_time", base.rekey_time)
    life = table.duration(
        "life_time", rekey * 1.1 if "rekey_time" in table.data else base.life_time
    )
    if rekey and life and life <= rekey:
        table.fail("life_time", f"{life:g}s is not longer than rekey_time", "make it ~10% longer")
    child = ChildConfig(
        name=name,
        local_ts=_selectors(table, "local_ts", local),
        remote_ts=_selectors(table, "remote_ts", remote),
        proposals=proposals,
        mode=Mode(table.choice("mode", tuple(m.value for m in Mode), "tunnel")),
        rekey_time=rekey,
        life_time=life,
        life_bytes=int(table.number("life_bytes", int, 0, "0")),
        life_packets=int(table.number("life_packets", int, 0, "0")),
        replay_window=int(table.number("replay_window", int, base.replay_window, "32")),
        dpd_action=_recovery(table, "dpd_action"),
        close_action=_recovery(table, "close_action"),
        xfrm_ids=config_xfrm.child_xfrm_ids(table),  # route-based VPNs (config_xfrm.py)
        ipcomp=config_xfrm.child_ipcomp(table),  # RFC 3173 (config_xfrm.py)
    )
    return child, table.choice("start_action", START_ACTIONS, "none")


def _recovery(table: _Table, name: str) -> Recovery:
    value = str(table.get(name, str, "clear", '"restart"')).lower()
    if value in ("trap", "hold"):
        table.fail(name, f"{value!r} is not supported yet", "use clear or restart")
    if value not in RECOVERY:
        table.fail(name, f"{value!r} is not allowed", "use one of clear, restart")
    return RECOVERY[value]


def _connection(
    loader: _Loader,
    table: _Table,
    name: str,
    secrets: list[_Secret],
    pools: tuple[PoolConfig, ...] = (),
    ppks: tuple[tuple[bytes, bytes], ...] = (),
) -> tuple[ConnectionConfig, dict[tuple[str, str], str]]:
    local_t = table.table("local", LOCAL_KEYS)
    remote_t = table.table("remote", REMOTE_KEYS)
    local_addrs = _addresses(table, "local_addrs", table.strings("local_addrs"))
    remote_addrs = _addresses(table, "remote_addrs", table.strings("remote_addrs"))
    id_text = local_t.get("id", str, None, '"moon.example"')
    if id_text is None and not local_addrs:
        local_t.fail("id", "no local id and no local address to default to", 'add id = "..."')
    local_id = _identity(local_t, "id", id_text) if id_text else parse_identity(str(local_addrs[0]))
    remote_text = remote_t.get("id", str, None, '"sun.example"')
    try:
        remote_id = parse_identity_pattern(remote_text) if remote_text else None
    except ValueError as exc:
        remote_t.fail("id", str(exc), 'write e.g. "sun.example" or "%any"')
        raise AssertionError from None
    auths = (str(local_t.data.get("auth", "")), str(remote_t.data.get("auth", "")))
    eap_only_tls = auths == ("eap-tls", "eap-tls")
    if all(a.startswith("eap") for a in auths) and not eap_only_tls:
        # a gateway proving itself by EAP alone (RFC 5998) needs a mutual method (§4)
        problem = "EAP-only authentication needs a mutual method (eap-tls on both sides)"
        local_t.fail("auth", problem, 'use auth = "pubkey" with our certificate')
    if eap_only_tls:  # a gateway proving itself inside EAP-TLS alone (RFC 5998)
        certs, key = _own_chain(loader, local_t, "eap-tls")
        local_auth = Credentials(AuthMethodName.EAP, eap_types=EAP_AUTHS["eap-tls"],
                                 certs=certs, private_key=key)  # fmt: skip
    else:
        local_auth = _local_credentials(loader, local_t, secrets, local_id, remote_id)
    remote_auth = _remote_credentials(loader, remote_t, local_auth, secrets)
    base = Timers()
    ike_rekey = table.duration("rekey_time", base.ike_rekey_time)
    reauth = table.duration("reauth_time", base.reauth_time)  # RFC 7296 §2.8.3; 0 = off
    # strongSwan: over_time (default 10 % of the longer of the two) follows the one that comes
    # first — the rekey, or the reauthentication when it is as early (it replaces the rekey)
    first = min((t for t in (ike_rekey, reauth) if t > 0), default=0.0)
    timers = Timers(
        # RFC 7296 §2.1 back-off, strongSwan's names: timeout × base^n, `tries` retransmits
        retransmit_timeout=table.duration("retransmit_timeout", base.retransmit_timeout),
        retransmit_base=float(
            table.number("retransmit_base", (int, float), base.retransmit_base, "1.8")
        ),
        retransmit_tries=int(table.number("retransmit_tries", int, base.retransmit_tries, "5")),
        retransmit_limit=table.duration("retransmit_limit", base.retransmit_limit),
        dpd_delay=table.duration("dpd_delay", base.dpd_delay),
        ike_rekey_time=ike_rekey,
        ike_life_time=first + table.duration("over_time", max(ike_rekey, reauth) * 0.1),
        reauth_time=reauth,
    )
    children_t = table.data.get("children", {})
    if not isinstance(children_t, dict):
        table.fail("children", "is not a table", f"write [connections.{name}.children.NAME]")
    children, actions = [], {}
    pool_names = config_pools.connection_pools(table, pools)
    vips = config_pools.connection_vips(table)
    # `dynamic` selectors: our address, or anything of a virtual IP's family (the gateway
    # narrows it); the peer's address, or the pools' addresses (narrowed to its lease)
    local_dyn = config_pools.vip_networks(vips) or _host_networks(local_addrs)
    remote_dyn = config_pools.pool_networks(pool_names, pools) or _host_networks(remote_addrs)
    for child_name, data in children_t.items():
        child_t = _Table(loader, table.sub(f"children.{child_name}"), data, CHILD_KEYS)
        child, action = _child(child_t, child_name, local_dyn, remote_dyn)
        children.append(child)
        actions[(name, child_name)] = action
    if any(a != "none" for a in actions.values()) and not (local_addrs and remote_addrs):
        table.fail("remote_addrs", "start_action start/trap needs both ends' addresses",
                   "set local_addrs and remote_addrs")  # fmt: skip
    conn = ConnectionConfig(
        name=name,
        local_addrs=local_addrs,
        remote_addrs=remote_addrs,
        local_id=local_id,
        local_auth=local_auth,
        remote_auth=remote_auth,
        ike_proposals=_proposals(table, "proposals", ProtocolId.IKE, "default"),
        children=tuple(children),
        remote_id=remote_id,
        local_port=table.port("local_port", 500),
        remote_port=table.port("remote_port", 500),
        timers=timers,
        fragmentation=bool(table.get("fragmentation", bool, True, "true")),
        send_certreq=bool(table.get("send_certreq", bool, True, "true")),
        send_cert=SendCert(table.choice("send_cert", SEND_CERT_POLICIES, SendCert.IFASKED.value)),
        mobike=bool(table.get("mobike", bool, True, "true")),
        mobike_no_nats=bool(table.get("mobike_no_nats", bool, False, "false")),
        make_before_break=bool(table.get("make_before_break", bool, True, "true")),
        pools=pool_names,
        vips=vips,
        # swanctl.conf's uniqueness policy per peer identity (engine/unique.py), default no
        unique=Unique(table.choice("unique", UNIQUE_POLICIES, Unique.NO.value)),
        keyingtries=int(table.number("keyingtries", int, 1, "3")),  # engine/recovery.py
        # RFC 9329 (engine/tcp.py): udp, tcp, or udp-then-tcp (TCP when UDP goes unanswered)
        transport=Transport(table.choice("transport", TRANSPORTS, Transport.UDP.value)),
        **config_ppk.connection_ppk(table, ppks, local_auth, remote_auth),  # RFC 8784
        # RFC 6023: the first child in IKE_AUTH or in its own CREATE_CHILD_SA (tasks/childless.py)
        childless=Childless(table.choice("childless", CHILDLESS_POLICIES, Childless.ALLOW.value)),
    )
    return conn, actions


def _host_networks(addresses: tuple[IPAddress, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(a) for a in addresses[:1])


def parse_config(text: str, path: Path) -> ServiceConfig:
    """Parse TOML text as if read from `path` (relative file names resolve against its folder)."""
    loader = _Loader(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        loader.fail("(syntax)", str(exc), "correct the TOML at that line")
        raise AssertionError from None
    root = _Table(loader, "", data, ("daemon", "connections", "secrets", "pools"))
    daemon = _daemon(root.table("daemon", DAEMON_KEYS))
    secrets = _secrets(loader, root)
    pools = config_pools.load_pools(loader, root)
    ppks = config_ppk.load_ppks(loader, root)
    connections, actions = [], {}
    conns = root.data.get("connections", {})
    if not isinstance(conns, dict):
        loader.fail("connections", "is not a table", "write [connections.NAME]")
    for name, conn_data in conns.items():
        conn_t = _Table(loader, f"connections.{name}", conn_data, CONNECTION_KEYS)
        conn, conn_actions = _connection(loader, conn_t, name, secrets, pools, ppks)
        conn = config_tunables.apply(conn, conn_t, daemon.tunables)  # [daemon] defaults
        conn = config_redirect.connection_redirects(conn_t, conn, daemon.redirect)
        connections.append(conn)
        actions.update(conn_actions)
    if daemon.workers > 1 and any(c.transport is not Transport.UDP for c in connections):
        problem = "IKE over TCP needs one process (a stream cannot move between workers)"
        loader.fail("daemon.workers", problem, 'set workers = 1, or transport = "udp"')
    if daemon.workers > 1 and any(c.pools for c in connections):
        problem = "address pools need one process (each worker would lease the same addresses)"
        loader.fail("daemon.workers", problem, "set workers = 1 on a gateway with pools")
    # strongSwan's charon.half_open_timeout is global: every connection's responder side
    timeout = daemon.half_open_timeout
    connections = [
        replace(c, timers=replace(c.timers, half_open_timeout=timeout)) for c in connections
    ]
    engine = EngineConfig(
        tuple(connections),
        pools=pools,
        cookie_threshold=daemon.cookie_threshold,
        max_half_open=daemon.max_half_open,
        block_threshold=daemon.block_threshold,
        drop_log_lines=daemon.drop_log_lines,
        drop_log_interval=daemon.drop_log_interval,
        tcp_port=daemon.tcp_port,
        max_packet=daemon.max_packet,
        cookie_secret_lifetime=daemon.tunables.cookie_secret_lifetime,
        window_size=daemon.tunables.window_size,
    )
    radius_secret = config_radius.radius_secret(secrets)
    config_radius.check(loader, connections, daemon.radius_server, radius_secret)
    return ServiceConfig(path, daemon, engine, actions, radius_secret)


def load_config(path: str | os.PathLike[str]) -> ServiceConfig:
    """Read and check a config file; ConfigError (one line: file, key, fix) on any mistake."""
    file = Path(path)
    try:
        with open(file, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            raw = handle.read()
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            # whoever can write it can name the dns_hook program (run as root), add a PSK or
            # swap a trust anchor: refused like a readable secret file
            raise ConfigError(
                str(file), "(file)", f"is writable by group or others (mode {mode:04o})",
                f"chmod go-w {file}",
            )  # fmt: skip
        text = raw.decode()
    except FileNotFoundError:
        raise ConfigError(
            str(file), "(file)", "does not exist", "give the path of a TOML config"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), "(file)", f"cannot read: {exc}", "check the file") from None
    return parse_config(text, file)
