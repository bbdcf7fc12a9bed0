"""What MOBIKE (RFC 4555) needs from the routing side of the kernel: notice our addresses come
and go (rtnetlink(7) RTM_NEWADDR / RTM_DELADDR multicast, RTMGRP_IPV4_IFADDR and
RTMGRP_IPV6_IFADDR), and ask which source address now reaches a peer (RTM_GETROUTE, the
RTA_PREFSRC of the answer: what `ip route get PEER` prints as `src`).

    struct rtmsg { __u8 rtm_family, rtm_dst_len, rtm_src_len, rtm_tos;
                   __u8 rtm_table, rtm_protocol, rtm_scope, rtm_type; __u32 rtm_flags; }

The service reads AddressEvents when the monitor's descriptor turns readable and, for each
address that went away, asks `source_for` each peer it had an IKE SA with on it; the engine
then moves those IKE SAs (Engine.local_address_changed). MemoryRoaming is the same surface
for the in-memory kernel and tests.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from dataclasses import dataclass

from construct import Int8un, Int32un, Struct

from . import xfrm_schemas as s
from .addresses import IFA_ADDRESS, IFA_LOCAL, IFADDRMSG_SIZE, NETLINK_ROUTE, ifaddrmsg
from .netlink import NetlinkSocket, pack_attrs, parse_attrs
from .types import IPAddress, KernelError

RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
RTA_DST, RTA_PREFSRC = 1, 7
IFA_F_TENTATIVE = 0x40  # IPv6 duplicate address detection still running: not usable yet
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
rtmsg = Struct(
    "family" / Int8un, "dst_len" / Int8un, "src_len" / Int8un, "tos" / Int8un,
    "table" / Int8un, "protocol" / Int8un, "scope" / Int8un, "type" / Int8un,
    "flags" / Int32un,
)  # fmt: skip
RTMSG_SIZE = rtmsg.sizeof()  # 12


@dataclass(frozen=True, slots=True)
class AddressEvent:
    """An address of ours appeared (`added`) or went away, on interface index `index`."""

    address: IPAddress
    added: bool
    index: int


def parse_address_event(msg_type: int, payload: bytes) -> AddressEvent | None:
    """One RTM_NEWADDR / RTM_DELADDR, or None for anything else (or a tentative address)."""
    if msg_type not in (RTM_NEWADDR, RTM_DELADDR) or len(payload) < IFADDRMSG_SIZE:
        return None
    head = ifaddrmsg.parse(payload[:IFADDRMSG_SIZE])
    attrs = parse_attrs(payload[s.nl_align(IFADDRMSG_SIZE) :], "address event")
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None or len(raw) not in (4, 16):
        return None
    added = msg_type == RTM_NEWADDR
    if added and head.flags & IFA_F_TENTATIVE:
        return None
    return AddressEvent(ipaddress.ip_address(raw), added, int(head.index))


class NetlinkRoaming:
    """The address monitor and the route lookup in the current network namespace."""

    def __init__(self) -> None:
        try:
            self._events = NetlinkSocket(NETLINK_ROUTE, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        except OSError as exc:
            raise KernelError("open", exc.errno or errno.EIO, "rtnetlink address monitor") from exc
        try:
            self._sock = NetlinkSocket(NETLINK_ROUTE)
        except OSError as exc:
            self._events.close()
            raise KernelError("open", exc.errno or errno.EIO, "NETLINK_ROUTE socket") from exc

    def fileno(self) -> int:
        return self._events.fileno()

    def read_events(self) -> list[AddressEvent]:
        events = []
        for msg in self._events.read_pending("address events"):
            event = parse_address_event(msg.type, msg.payload)
            if event is not None:
                events.append(event)
        return events

    def source_for(self, peer: IPAddress) -> IPAddress | None:
        """Our address the routing table picks towards `peer`; None when no route reaches it."""
        head = rtmsg.build(
            dict(family=FAMILY[peer.version], dst_len=peer.max_prefixlen, src_len=0, tos=0,
                 table=0, protocol=0, scope=0, type=0, flags=0)
        )  # fmt: skip
        body = head + pack_attrs([(RTA_DST, peer.packed)])
        try:
            replies = self._sock.request("route get", RTM_GETROUTE, body, str(peer))
        except KernelError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL):
                return None
            raise
        for payload in replies:
            if len(payload) < RTMSG_SIZE:
                continue
            attrs = parse_attrs(payload[s.nl_align(RTMSG_SIZE) :], "route get")
            raw = attrs.get(RTA_PREFSRC)
            if raw is not None and len(raw) in (4, 16):
                return ipaddress.ip_address(raw)
        return None

    def close(self) -> None:
        self._events.close()
        self._sock.close()


class MemoryRoaming:
    """The same surface in memory: tests set `routes` (peer -> our source) and call `emit`."""

    def __init__(self) -> None:
        self.routes: dict[IPAddress, IPAddress] = {}
        self._pending: list[AddressEvent] = []
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)

    def emit(self, event: AddressEvent) -> None:
        self._pending.append(event)
        os.write(self._write_fd, b"!")

    def fileno(self) -> int:
        return self._read_fd

    def read_events(self) -> list[AddressEvent]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_fd, 4096)
        events, self._pending = self._pending, []
        return events

    def source_for(self, peer: IPAddress) -> IPAddress | None:
        return self.routes.get(peer)

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)
