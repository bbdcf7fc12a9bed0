"""The EAP-RADIUS keys of the TOML file (RFC 3579; engine/tasks/eap_radius.py,
service/radius.py): a gateway connection with `remote.auth = "eap-radius"` relays its clients'
EAP to one RADIUS server, strongSwan's eap-radius plugin in swanctl names:

    [daemon]
    radius_server = "127.0.0.1:1812"   # host:port (port 1812 when left out)

    [secrets.radius]                   # the RADIUS shared secret (secret or secret_file,
    secret_file = "radius.secret"      # the PSK file checks apply)

    [connections.rw.remote]
    auth = "eap-radius"                # the RADIUS server picks the EAP method

Mistakes are ConfigErrors naming the file, key and fix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .engine.config import ConnectionConfig

if TYPE_CHECKING:
    from .config import _Loader, _Secret, _Table

DAEMON_KEYS = ("radius_server",)
AUTH = "eap-radius"
PORT = 1812


def radius_server(table: _Table) -> tuple[str, int] | None:
    text = str(table.get("radius_server", str, "", '"127.0.0.1:1812"'))
    if not text:
        return None
    if text.startswith("["):  # [v6] or [v6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:  # v4 or v6 without a port
        host, port = text, ""
    try:
        address = ipaddress.ip_address(host)
        number = int(port) if port else PORT
    except ValueError:
        table.fail("radius_server", f"{text!r} is not ADDRESS[:PORT]", 'write "127.0.0.1:1812"')
        raise AssertionError from None
    if not 0 < number < 65536:
        table.fail("radius_server", f"port {number} is out of range", 'write "127.0.0.1:1812"')
    return str(address), number


def radius_secret(secrets: Sequence[_Secret]) -> bytes:
    """The shared secret: the [secrets.radius*] entry."""
    return next((s.secret for s in secrets if s.name.startswith("radius")), b"")


def check(
    loader: _Loader,
    connections: Iterable[ConnectionConfig],
    server: tuple[str, int] | None,
    secret: bytes,
) -> None:
    users = [c.name for c in connections if c.remote_auth.eap_radius]
    if users and server is None:
        loader.fail("daemon.radius_server", f"connection {users[0]} relays EAP to RADIUS, but "
                    "no server is set", 'add radius_server = "127.0.0.1:1812"')  # fmt: skip
    if users and not secret:
        loader.fail("secrets", f"connection {users[0]} relays EAP to RADIUS, but no shared "
                    "secret is set", 'add [secrets.radius] with secret_file = "..."')  # fmt: skip
