"""XFRM interfaces over NETLINK_ROUTE (rtnetlink(7) RTM_NEWLINK / RTM_DELLINK, kind "xfrm"):
the route-based VPN's end of a tunnel. Traffic routed into the interface meets only the
policies and SAs whose XFRMA_IF_ID equals the interface's IFLA_XFRM_IF_ID (Linux
net/xfrm/xfrm_interface.c); the service makes one per child that names `xfrm_interface`.

    struct ifinfomsg { __u8 ifi_family; __u8 pad; __u16 ifi_type; __s32 ifi_index;
                       __u32 ifi_flags; __u32 ifi_change; };       then rtattrs:
    IFLA_IFNAME "ipsec0\\0", IFLA_LINKINFO { IFLA_INFO_KIND "xfrm",
                                              IFLA_INFO_DATA { IFLA_XFRM_IF_ID u32 } }

An interface that exists already is used as it is (the operator's, or one a routing daemon
made); only the interfaces made here are deleted again. MemoryLinks records the same calls.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Protocol

from construct import Int8un, Int16un, Int32sn, Int32un, Struct

from . import xfrm_schemas as s
from .netlink import NetlinkSocket, pack_attrs
from .types import KernelError

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_IFNAME, IFLA_LINKINFO = 3, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_XFRM_LINK, IFLA_XFRM_IF_ID = 1, 2
IFF_UP = 0x1
NLA_F_NESTED = 0x8000
ifinfomsg = Struct(
    "family" / Int8un,
    "pad" / Int8un,
    "type" / Int16un,
    "index" / Int32sn,
    "flags" / Int32un,
    "change" / Int32un,
)


class Links(Protocol):
    def ensure_xfrm(self, name: str, if_id: int) -> bool: ...

    def remove_created(self) -> list[str]: ...

    def close(self) -> None: ...


def _u32(value: int) -> bytes:
    return value.to_bytes(4, sys.byteorder)


def newlink_xfrm(name: str, if_id: int) -> bytes:
    """The RTM_NEWLINK body of an xfrm interface `name` with this if_id, created up."""
    header: bytes = ifinfomsg.build(
        {
            "family": socket.AF_UNSPEC,
            "pad": 0,
            "type": 0,
            "index": 0,
            "flags": IFF_UP,
            "change": IFF_UP,
        }
    )
    data = pack_attrs([(IFLA_XFRM_IF_ID, _u32(if_id))])
    info = pack_attrs([(IFLA_INFO_KIND, b"xfrm"), (IFLA_INFO_DATA | NLA_F_NESTED, data)])
    attrs = [(IFLA_IFNAME, name.encode() + b"\0"), (IFLA_LINKINFO | NLA_F_NESTED, info)]
    return header + pack_attrs(attrs)


def dellink(index: int) -> bytes:
    body: bytes = ifinfomsg.build(
        {"family": socket.AF_UNSPEC, "pad": 0, "type": 0, "index": index, "flags": 0, "change": 0}
    )
    return body


class NetlinkLinks:
    """Creates (or finds) xfrm interfaces in the current network namespace."""

    def __init__(self) -> None:
        try:
            self._sock = NetlinkSocket(NETLINK_ROUTE)
        except OSError as exc:
            raise KernelError("open", exc.errno or errno.EIO, "NETLINK_ROUTE socket") from exc
        self.created: list[str] = []

    def ensure_xfrm(self, name: str, if_id: int) -> bool:
        """Make the interface unless one of that name exists; True when made here."""
        if name in self.created or _exists(name):
            return False
        op = "create xfrm interface"
        try:
            self._sock.request(op, RTM_NEWLINK, newlink_xfrm(name, if_id), f"{name} if_id {if_id}",
                               extra_flags=s.NLM_F_CREATE | s.NLM_F_EXCL)  # fmt: skip
        except KernelError as exc:
            if exc.errno == errno.EEXIST:  # made meanwhile (another worker)
                return False
            raise
        self.created.append(name)
        return True

    def remove_created(self) -> list[str]:
        removed = []
        for name in self.created:
            try:
                index = socket.if_nametoindex(name)
                self._sock.request("delete xfrm interface", RTM_DELLINK, dellink(index), name)
            except (OSError, KernelError):
                continue  # gone already
            removed.append(name)
        self.created.clear()
        return removed

    def close(self) -> None:
        self._sock.close()


def _exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def make_links(kernel_name: str) -> Links:
    """Real interfaces with the XFRM kernel, recorded ones with the in-memory kernel."""
    if kernel_name == "xfrm":
        try:
            return NetlinkLinks()
        except KernelError:
            pass
    return MemoryLinks()


class MemoryLinks:
    """The same surface, recorded (the in-memory kernel, tests): name -> if_id."""

    def __init__(self) -> None:
        self.interfaces: dict[str, int] = {}
        self.created: list[str] = []

    def ensure_xfrm(self, name: str, if_id: int) -> bool:
        if name in self.interfaces:
            return False
        self.interfaces[name] = if_id
        self.created.append(name)
        return True

    def remove_created(self) -> list[str]:
        removed, self.created = self.created, []
        for name in removed:
            self.interfaces.pop(name, None)
        return removed

    def close(self) -> None:
        pass
