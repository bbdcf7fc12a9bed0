"""The redirect keys of the TOML file (RFC 5685, engine/tasks/redirect.py).

Client side, in [daemon] as strongSwan has them in strongswan.conf (charon.follow_redirects; its
loop protection is compiled in, ours is configurable):

    [daemon]
    follow_redirects = true      # announce REDIRECT_SUPPORTED and follow a gateway's REDIRECT
    redirect_limit = 5           # follow at most this many redirects ...
    redirect_period = "5m"       # ... within this time, then the IKE SA fails (a loop)

Gateway side, per connection (strongSwan needs a redirect provider plugin for these; its
`swanctl --redirect` is our `ikev2 redirect ID --to ADDR`):

    [connections.rw]
    redirect_to = ["192.0.2.2", "gw2.example.org"]   # where to send clients (spread by SPI)
    redirect_on = "init"         # in IKE_SA_INIT (§3.3), or "auth": in IKE_AUTH (§3.5)

Mistakes are ConfigErrors naming the file, key and fix.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .engine.config import ConnectionConfig, RedirectConfig
from .engine.tasks.redirect import parse_gateway
from .errors import UsageError

if TYPE_CHECKING:
    from .config import _Table

DAEMON_KEYS = ("follow_redirects", "redirect_limit", "redirect_period")
CONNECTION_KEYS = ("redirect_to", "redirect_on")
REDIRECT_ON = ("init", "auth")


def daemon_redirects(table: _Table) -> RedirectConfig:
    """The client's half, for every connection."""
    base = RedirectConfig()
    return RedirectConfig(
        follow=bool(table.get("follow_redirects", bool, base.follow, "true")),
        limit=int(table.number("redirect_limit", int, base.limit, "5")),
        period=table.duration("redirect_period", base.period),
    )


def connection_redirects(
    table: _Table, conn: ConnectionConfig, base: RedirectConfig
) -> ConnectionConfig:
    """The connection with the daemon's client settings and its own targets."""
    targets = table.strings("redirect_to")
    for target in targets:
        try:
            parse_gateway(target)
        except UsageError:
            table.fail("redirect_to", f"{target!r} is neither an IP address nor a host name",
                       'write e.g. redirect_to = ["192.0.2.2"]')  # fmt: skip
    on = table.choice("redirect_on", REDIRECT_ON, "init")
    return replace(conn, redirect=replace(base, to=targets, on=on))
