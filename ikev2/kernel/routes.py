"""Routes and routing rules over NETLINK_ROUTE (rtnetlink(7): RTM_NEWROUTE / RTM_DELROUTE /
RTM_GETROUTE, RTM_NEWRULE / RTM_DELRULE): the routes a remote-access client sends its tunnelled
traffic by, from its virtual IP (RFC 7296 §2.19), as strongSwan's kernel-netlink installs them:

    ip rule:   220: from all lookup 220                    (one per address family)
    ip route:  10.2.0.0/24 via GATEWAY dev IF proto static src 10.3.0.1 table 220

GATEWAY and IF are how the kernel reaches the IKE peer (RTM_GETROUTE for its address); a peer
on the link gets a route without `via`. The XFRM policy then takes the packets from the
virtual IP into the tunnel. The service calls this on child SA events; the engine never does.

    struct rtmsg { __u8 rtm_family, rtm_dst_len, rtm_src_len, rtm_tos, rtm_table,
                   rtm_protocol, rtm_scope, rtm_type; __u32 rtm_flags; }   then rtattrs
    struct fib_rule_hdr { __u8 family, dst_len, src_len, tos, table, res1, res2, action;
                          __u32 flags; }                                    then FRA_* attrs

MemoryRoutes is the same surface recorded in memory (the in-memory kernel, tests).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Protocol

from construct import Int8un, Int32un, Struct

from . import xfrm_schemas as s
from .addresses import NETLINK_ROUTE
from .netlink import NetlinkSocket, pack_attrs, parse_attrs
from .types import IPAddress, IPNetwork, KernelError

RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 7, 15
FRA_PRIORITY, FRA_TABLE = 6, 15
RTN_UNICAST, RTPROT_STATIC, FR_ACT_TO_TBL = 1, 4, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RT_TABLE_UNSPEC = 0
# strongSwan's defaults (charon.routing_table, charon.routing_table_prio)
ROUTING_TABLE = 220
RULE_PRIORITY = 220
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
VERSION = {socket.AF_INET: 4, socket.AF_INET6: 6}
rtmsg = Struct(
    "family" / Int8un,
    "dst_len" / Int8un,
    "src_len" / Int8un,
    "tos" / Int8un,
    "table" / Int8un,
    "protocol" / Int8un,
    "scope" / Int8un,
    "type" / Int8un,
    "flags" / Int32un,
)
RTMSG_SIZE = rtmsg.sizeof()  # 12, the same layout as fib_rule_hdr


@dataclass(frozen=True, slots=True)
class Route:
    dst: IPNetwork
    src: IPAddress  # the preferred source: the virtual IP
    gateway: IPAddress | None  # None: the peer is on the link
    interface: int  # ifindex the peer is reached by
    table: int = ROUTING_TABLE


class RouteTable(Protocol):
    def next_hop(self, dst: IPAddress) -> tuple[IPAddress | None, int]: ...

    def add(self, route: Route) -> bool: ...

    def delete(self, route: Route) -> None: ...

    def list(self, table: int = ROUTING_TABLE) -> list[Route]: ...

    def add_rule(self, version: int, table: int = ROUTING_TABLE) -> bool: ...

    def delete_rule(self, version: int, table: int = ROUTING_TABLE) -> None: ...

    def close(self) -> None: ...


def _header(version: int, dst_len: int, table: int, scope: int, kind: int, protocol: int) -> bytes:
    built: bytes = rtmsg.build(
        {
            "family": FAMILY[version],
            "dst_len": dst_len,
            "src_len": 0,
            "tos": 0,
            "table": table if table < 256 else RT_TABLE_UNSPEC,
            "protocol": protocol,
            "scope": scope,
            "type": kind,
            "flags": 0,
        }
    )
    return built


def route_message(route: Route) -> bytes:
    scope = RT_SCOPE_UNIVERSE if route.gateway is not None else RT_SCOPE_LINK
    version = route.dst.version
    head = _header(version, route.dst.prefixlen, route.table, scope, RTN_UNICAST, RTPROT_STATIC)
    attrs = [
        (RTA_DST, route.dst.network_address.packed),
        (RTA_PREFSRC, route.src.packed),
        (RTA_OIF, struct.pack("=I", route.interface)),
        (RTA_TABLE, struct.pack("=I", route.table)),
    ]
    if route.gateway is not None:
        attrs.append((RTA_GATEWAY, route.gateway.packed))
    return head + pack_attrs(attrs)


def rule_message(version: int, table: int) -> bytes:
    """`from all lookup TABLE` at RULE_PRIORITY."""
    head = _header(version, 0, table, 0, FR_ACT_TO_TBL, 0)
    attrs = [
        (FRA_PRIORITY, struct.pack("=I", RULE_PRIORITY)),
        (FRA_TABLE, struct.pack("=I", table)),
    ]
    return head + pack_attrs(attrs)


def parse_route(payload: bytes, op: str) -> tuple[dict[str, int], dict[int, bytes]] | None:
    """An RTM_NEWROUTE payload: its rtmsg fields and attributes (None when truncated)."""
    if len(payload) < RTMSG_SIZE:
        return None
    head = rtmsg.parse(payload[:RTMSG_SIZE])
    attrs = parse_attrs(payload[s.nl_align(RTMSG_SIZE) :], op)
    fields = {k: int(head[k]) for k in ("family", "dst_len", "table", "scope", "protocol")}
    return fields, attrs


def _address(raw: bytes | None) -> IPAddress | None:
    return ipaddress.ip_address(raw) if raw is not None and len(raw) in (4, 16) else None


def _u32(raw: bytes | None, default: int = 0) -> int:
    return int(struct.unpack("=I", raw)[0]) if raw is not None and len(raw) == 4 else default


class NetlinkRoutes:
    """Routes and rules in the current network namespace."""

    def __init__(self) -> None:
        try:
            self._sock = NetlinkSocket(NETLINK_ROUTE)
        except OSError as exc:
            raise KernelError("open", exc.errno or errno.EIO, "NETLINK_ROUTE socket") from exc

    def next_hop(self, dst: IPAddress) -> tuple[IPAddress | None, int]:
        """How the kernel reaches `dst` now: (gateway or None on the link, ifindex)."""
        op = "route lookup"
        head = _header(dst.version, dst.max_prefixlen, RT_TABLE_UNSPEC, 0, 0, 0)
        body = head + pack_attrs([(RTA_DST, dst.packed)])
        for payload in self._sock.request(op, RTM_GETROUTE, body, str(dst)):
            parsed = parse_route(payload, op)
            if parsed is not None:
                attrs = parsed[1]
                return _address(attrs.get(RTA_GATEWAY)), _u32(attrs.get(RTA_OIF))
        raise KernelError(op, errno.ENETUNREACH, f"no route to {dst}")

    def add(self, route: Route) -> bool:
        """Install it; False when an equal route was there already (EEXIST)."""
        op = "add route"
        try:
            self._sock.request(op, RTM_NEWROUTE, route_message(route), f"{route.dst}",
                               extra_flags=s.NLM_F_CREATE | s.NLM_F_EXCL)  # fmt: skip
        except KernelError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def delete(self, route: Route) -> None:
        """Remove it; one that is gone already (ESRCH) is fine."""
        op = "delete route"
        try:
            self._sock.request(op, RTM_DELROUTE, route_message(route), f"{route.dst}")
        except KernelError as exc:
            if exc.errno not in (errno.ESRCH, errno.ENODEV):
                raise

    def list(self, table: int = ROUTING_TABLE) -> list[Route]:
        op = "list routes"
        out: list[Route] = []
        for family in FAMILY.values():
            request = rtmsg.build(
                {"family": family, "dst_len": 0, "src_len": 0, "tos": 0, "table": 0,
                 "protocol": 0, "scope": 0, "type": 0, "flags": 0}
            )  # fmt: skip
            for msg_type, payload in self._sock.dump(op, RTM_GETROUTE, request):
                parsed = parse_route(payload, op) if msg_type == RTM_NEWROUTE else None
                if parsed is None:
                    continue
                fields, attrs = parsed
                if _u32(attrs.get(RTA_TABLE), fields["table"]) != table:
                    continue
                dst, src = _address(attrs.get(RTA_DST)), _address(attrs.get(RTA_PREFSRC))
                if dst is None or src is None:
                    continue
                network = ipaddress.ip_network(f"{dst}/{fields['dst_len']}")
                gateway, oif = _address(attrs.get(RTA_GATEWAY)), _u32(attrs.get(RTA_OIF))
                out.append(Route(network, src, gateway, oif, table))
        return out

    def add_rule(self, version: int, table: int = ROUTING_TABLE) -> bool:
        op = "add rule"
        try:
            self._sock.request(op, RTM_NEWRULE, rule_message(version, table), f"table {table}",
                               extra_flags=s.NLM_F_CREATE | s.NLM_F_EXCL)  # fmt: skip
        except KernelError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def delete_rule(self, version: int, table: int = ROUTING_TABLE) -> None:
        op = "delete rule"
        try:
            self._sock.request(op, RTM_DELRULE, rule_message(version, table), f"table {table}")
        except KernelError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESRCH):
                raise

    def close(self) -> None:
        self._sock.close()


class MemoryRoutes:
    """The same surface, recorded in memory; `hops` says how each peer is reached."""

    def __init__(self, hops: dict[IPAddress, tuple[IPAddress | None, int]] | None = None) -> None:
        self.hops = hops or {}
        self.routes: set[Route] = set()
        self.rules: set[tuple[int, int]] = set()  # (address family version, table)

    def next_hop(self, dst: IPAddress) -> tuple[IPAddress | None, int]:
        return self.hops.get(dst, (None, 1))

    def add(self, route: Route) -> bool:
        if route in self.routes:
            return False
        self.routes.add(route)
        return True

    def delete(self, route: Route) -> None:
        self.routes.discard(route)

    def list(self, table: int = ROUTING_TABLE) -> list[Route]:
        return sorted((r for r in self.routes if r.table == table), key=lambda r: str(r.dst))

    def add_rule(self, version: int, table: int = ROUTING_TABLE) -> bool:
        if (version, table) in self.rules:
            return False
        self.rules.add((version, table))
        return True

    def delete_rule(self, version: int, table: int = ROUTING_TABLE) -> None:
        self.rules.discard((version, table))

    def close(self) -> None:
        pass
