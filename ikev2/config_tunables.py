"""Daemon-wide tunables of the TOML file, with strongSwan's strongswan.conf names (charon.*):

    [daemon]
    keep_alive = "20s"            # NAT-T keepalive interval (RFC 3948 §2.3); 0 = none
    fragment_size = 1280          # largest IKE datagram when fragmenting (RFC 7383); 0: default
    retransmit_timeout = "4s"     # RFC 7296 §2.1 back-off for every connection: timeout ×
    retransmit_base = 1.8         # base^n, `tries` retransmits, each wait at most `limit`;
    retransmit_tries = 5          # a connection's own retransmit_* keys win
    retransmit_limit = "0s"
    cookie_secret_lifetime = "2m" # how long one COOKIE secret is used (RFC 7296 §2.6); ours
    control_max_clients = 32      # control-socket connections at once; ours (a new one over
                                  # it is answered "too many control clients" and closed)
    window_size = 1               # requests in flight at once per IKE SA (RFC 7296 §2.3), 1..64;
                                  # over 1 it is announced with SET_WINDOW_SIZE

Each value has a range (config.LIMITS); a mistake is a ConfigError naming the file, the key
and the fix. (half_open_timeout and max_packet, also charon.*, are config.py's own.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .engine.config import ConnectionConfig, Timers
from .engine.window import MAX_WINDOW

if TYPE_CHECKING:
    from .config import Limit, _Table

DAEMON_KEYS = ("keep_alive", "fragment_size", "retransmit_timeout",
               "retransmit_base", "retransmit_tries", "retransmit_limit",
               "cookie_secret_lifetime", "control_max_clients", "window_size")  # fmt: skip
RETRANSMIT_KEYS = ("retransmit_timeout", "retransmit_base", "retransmit_tries", "retransmit_limit")


def limits(limit: type[Limit], seconds: str, whole: str) -> dict[str, Limit]:
    """The ranges config.LIMITS adds for these keys."""
    return {
        "keep_alive": limit(0, 3600, seconds, 'write e.g. "20s" (0: no keepalives)'),
        "fragment_size": limit(0, 65535, whole, "write e.g. 1280 bytes (0: the RFC 7383 default)"),
        "cookie_secret_lifetime": limit(1, 86400, seconds, 'write e.g. "2m"'),
        "control_max_clients": limit(1, 4096, whole, "write e.g. 32 connections"),
        "window_size": limit(1, MAX_WINDOW, whole, "write e.g. 4 requests (1: one at a time)"),
    }


@dataclass(frozen=True, slots=True)
class Tunables:
    keep_alive: float = 20.0
    fragment_size: int = 0
    cookie_secret_lifetime: float = 120.0
    control_max_clients: int = 32
    window_size: int = 1  # strongSwan's charon.window_size (engine/window.py)
    timers: Timers = field(default_factory=Timers)  # every connection's retransmit_* defaults


FRAGMENT_FLOOR = 576  # RFC 791: the datagram every IPv4 host takes; smaller cannot carry IKE


def daemon_tunables(table: _Table) -> Tunables:
    base = Tunables()
    size = int(table.number("fragment_size", int, base.fragment_size, "1280"))
    if 0 < size < FRAGMENT_FLOOR:
        table.fail("fragment_size", f"{size} bytes cannot carry an IKE fragment",
                   f"write 0 (the default) or {FRAGMENT_FLOOR} or more")  # fmt: skip
    timers = base.timers
    timers = replace(
        timers,
        retransmit_timeout=table.duration("retransmit_timeout", timers.retransmit_timeout),
        retransmit_base=float(
            table.number("retransmit_base", (int, float), timers.retransmit_base, "1.8")
        ),
        retransmit_tries=int(table.number("retransmit_tries", int, timers.retransmit_tries, "5")),
        retransmit_limit=table.duration("retransmit_limit", timers.retransmit_limit),
    )
    return Tunables(
        keep_alive=table.duration("keep_alive", base.keep_alive),
        fragment_size=size,
        cookie_secret_lifetime=table.duration(
            "cookie_secret_lifetime", base.cookie_secret_lifetime
        ),
        control_max_clients=int(
            table.number("control_max_clients", int, base.control_max_clients, "32")
        ),
        window_size=int(table.number("window_size", int, base.window_size, "4")),
        timers=timers,
    )


def apply(conn: ConnectionConfig, table: _Table, tunables: Tunables) -> ConnectionConfig:
    """The daemon's defaults where the connection's table does not set its own."""
    own = {key for key in RETRANSMIT_KEYS if key in table.data}
    changes = {key: getattr(tunables.timers, key) for key in RETRANSMIT_KEYS if key not in own}
    timers = replace(conn.timers, **changes)
    return replace(conn, timers=timers, fragment_size=conn.fragment_size or tunables.fragment_size)
