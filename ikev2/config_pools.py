"""The remote-access keys of the TOML file: [pools.NAME] tables and the connection keys `pools`
(gateway) and `vips` (client), named as in swanctl.conf (RFC 7296 §2.19 virtual IPs).

    [pools.rw-v4]
    addrs = "10.3.0.0/24"          # or a range "10.3.0.1-10.3.0.100"; one address family
    dns = ["10.2.0.53"]            # INTERNAL_IP4/6_DNS sent with a lease
    subnet = ["10.2.0.0/24"]       # INTERNAL_IP4/6_SUBNET: the networks behind the gateway
    dns_domain = ["corp.example"]  # INTERNAL_DNS_DOMAIN
    grace = "10m"                  # a lease stays reserved this long after the client left

    [connections.rw]  pools = ["rw-v4", "rw-v6"]     (gateway)
    [connections.home] vips = ["0.0.0.0", "::"]      (client: any IPv4 and IPv6 address)

A CIDR pool leaves out the network address (and, for IPv4 shorter than /31, the broadcast
address), as strongSwan does. Mistakes are ConfigErrors naming the file, key and fix.
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

from .engine.config import IPAddress, IPNetwork, PoolConfig

if TYPE_CHECKING:
    from .config import _Loader, _Table

POOL_KEYS = ("addrs", "dns", "subnet", "dns_domain", "grace")
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
ANY_NETWORK = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


def _range(table: _Table, text: str) -> tuple[IPAddress, IPAddress]:
    """'first-last' inclusive, or a CIDR without its network (and IPv4 broadcast) address."""
    fix = 'write e.g. addrs = "10.3.0.0/24" or "10.3.0.1-10.3.0.100"'
    if "-" in text and "/" not in text:
        low, _, high = text.partition("-")
        try:
            first, last = ipaddress.ip_address(low.strip()), ipaddress.ip_address(high.strip())
        except ValueError:
            table.fail("addrs", f"{text!r} is not an address range", fix)
            raise AssertionError from None
        if first.version != last.version:
            table.fail("addrs", f"{text!r} mixes IPv4 and IPv6", "use one family per pool")
        if int(last) < int(first):
            table.fail("addrs", f"{text!r} ends before it starts", "write first-last, low first")
        return first, last
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        table.fail("addrs", f"{text!r} is not a subnet or range", fix)
        raise AssertionError from None
    first, last = network.network_address, network.broadcast_address
    if network.num_addresses > 2:
        first = first + 1
        if network.version == 4:
            last = last - 1
    return first, last


def _addresses(table: _Table, name: str) -> tuple[IPAddress, ...]:
    out = []
    for text in table.strings(name):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            table.fail(name, f"{text!r} is not an IP address", 'write e.g. dns = ["10.2.0.53"]')
            raise AssertionError from None
        out.append(address)
    return tuple(out)


def _subnets(table: _Table) -> tuple[IPNetwork, ...]:
    out = []
    for text in table.strings("subnet"):
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            table.fail("subnet", f"{text!r} is not a subnet", 'write e.g. subnet = ["10.2.0.0/24"]')
    return tuple(out)


def _domains(table: _Table) -> tuple[str, ...]:
    out = []
    for text in table.strings("dns_domain"):
        if not 0 < len(text) <= 253 or not set(text) <= _DOMAIN_CHARS:
            table.fail("dns_domain", f"{text!r} is not a DNS name", 'write e.g. "corp.example"')
        out.append(text)
    return tuple(out)


def load_pools(loader: _Loader, root: _Table) -> tuple[PoolConfig, ...]:
    from .config import _Table

    sections = root.data.get("pools", {})
    if not isinstance(sections, dict):
        loader.fail("pools", "is not a table", 'write [pools.NAME] with addrs = "10.3.0.0/24"')
    pools = []
    for name, data in sections.items():
        table = _Table(loader, f"pools.{name}", data, POOL_KEYS)
        text = table.get("addrs", str, None, '"10.3.0.0/24"')
        if not text:
            table.fail("addrs", "a pool needs its addresses", 'add addrs = "10.3.0.0/24"')
        first, last = _range(table, str(text))
        pools.append(
            PoolConfig(
                name=name,
                first=first,
                last=last,
                dns=_addresses(table, "dns"),
                subnets=_subnets(table),
                dns_domains=_domains(table),
                grace=table.duration("grace", 0.0),
            )
        )
    return tuple(pools)


def connection_pools(table: _Table, pools: tuple[PoolConfig, ...]) -> tuple[str, ...]:
    """`pools = [...]`: names of [pools.NAME] tables."""
    known = [p.name for p in pools]
    names = table.strings("pools")
    for name in names:
        if name not in known:
            fix = f"use one of {', '.join(known)}" if known else f"define [pools.{name}]"
            table.fail("pools", f"unknown pool {name!r}", fix)
    return names


def connection_vips(table: _Table) -> tuple[IPAddress, ...]:
    """`vips = ["0.0.0.0", "::"]`: virtual IPs to ask for (unspecified: any of that family)."""
    out = []
    for text in table.strings("vips"):
        try:
            out.append(ipaddress.ip_address(text))
        except ValueError:
            fix = 'write vips = ["0.0.0.0"] (any IPv4), ["::"] or the address wanted'
            table.fail("vips", f"{text!r} is not an IP address", fix)
    if len({v.version for v in out}) != len(out):
        table.fail("vips", "asks for two addresses of one family", "ask for one per family")
    return tuple(out)


def vip_interface(table: _Table, default: str) -> str:
    name = str(table.get("vip_interface", str, default, '"lo"'))
    if not 0 < len(name) < 16 or "/" in name or any(c.isspace() for c in name):
        table.fail("vip_interface", f"{name!r} is not an interface name", 'write e.g. "lo"')
    return name


def dns_hook(table: _Table) -> str:
    """An executable run with IKEV2_* variables when a gateway gives us DNS servers."""
    path = str(table.get("dns_hook", str, "", '"/etc/ikev2/dns-hook"'))
    if path and not os.path.isabs(path):
        table.fail("dns_hook", f"{path!r} is not an absolute path", "give the script's full path")
    return path


def pool_networks(names: tuple[str, ...], pools: tuple[PoolConfig, ...]) -> tuple[IPNetwork, ...]:
    """What `dynamic` means in a gateway's remote_ts: the smallest subnet around each pool
    (narrowed to the leased address per client, tasks/config_payload.py)."""
    out: list[IPNetwork] = []
    for pool in pools:
        if pool.name in names:
            bits = pool.first.max_prefixlen
            common = bits - (int(pool.first) ^ int(pool.last)).bit_length()
            out.append(ipaddress.ip_network(f"{pool.first}/{common}", strict=False))
    return tuple(out)


def vip_networks(vips: tuple[IPAddress, ...]) -> tuple[IPNetwork, ...]:
    """What `dynamic` means in a client's local_ts: anything of each requested family (the
    gateway narrows it to the address it assigns, RFC 7296 §2.9)."""
    return tuple(ANY_NETWORK[v.version] for v in vips)
