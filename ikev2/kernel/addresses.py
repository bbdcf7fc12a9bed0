"""Interface addresses over NETLINK_ROUTE (rtnetlink(7): RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR):
where a remote-access client's virtual IPs go (RFC 7296 §2.19). The service calls this on the
engine's VirtualIpsAssigned / VirtualIpsReleased events; the engine never does.

    struct ifaddrmsg { __u8 ifa_family; __u8 ifa_prefixlen; __u8 ifa_flags; __u8 ifa_scope;
                       __u32 ifa_index; };     followed by rtattrs IFA_LOCAL, IFA_ADDRESS, ...

Only addresses this table added are removed again: an address that was already there (EEXIST)
is left alone on release. MemoryAddresses is the same surface for the in-memory kernel.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Protocol

from construct import Int8un, Int32un, Struct

from . import xfrm_schemas as s
from .netlink import NetlinkSocket, pack_attrs, parse_attrs
from .types import IPAddress, KernelError

NETLINK_ROUTE = 0
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFA_F_NODAD = 0x02  # IPv6: no duplicate address detection (the address is ours by lease)
RT_SCOPE_UNIVERSE = 0
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
ifaddrmsg = Struct(
    "family" / Int8un, "prefixlen" / Int8un, "flags" / Int8un, "scope" / Int8un, "index" / Int32un
)
IFADDRMSG_SIZE = ifaddrmsg.sizeof()  # 8


class AddressTable(Protocol):
    def add(self, interface: str, address: IPAddress, prefixlen: int | None = None) -> bool: ...

    def delete(self, interface: str, address: IPAddress, prefixlen: int | None = None) -> None: ...

    def list(self, interface: str) -> list[tuple[IPAddress, int]]: ...

    def close(self) -> None: ...


def _index(op: str, interface: str) -> int:
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise KernelError(op, errno.ENODEV, f"no interface {interface!r}") from None


def _message(index: int, address: IPAddress, prefixlen: int | None) -> bytes:
    bits = address.max_prefixlen if prefixlen is None else prefixlen
    header: bytes = ifaddrmsg.build(
        {
            "family": FAMILY[address.version],
            "prefixlen": bits,
            "flags": IFA_F_NODAD if address.version == 6 else 0,
            "scope": RT_SCOPE_UNIVERSE,
            "index": index,
        }
    )
    return header + pack_attrs([(IFA_LOCAL, address.packed), (IFA_ADDRESS, address.packed)])


class NetlinkAddresses:
    """Add, delete and list interface addresses in the current network namespace."""

    def __init__(self) -> None:
        try:
            self._sock = NetlinkSocket(NETLINK_ROUTE)
        except OSError as exc:
            raise KernelError("open", exc.errno or errno.EIO, "NETLINK_ROUTE socket") from exc

    def add(self, interface: str, address: IPAddress, prefixlen: int | None = None) -> bool:
        """Add `address`/prefixlen (default: a host prefix); False when it was already there."""
        op = "add address"
        body = _message(_index(op, interface), address, prefixlen)
        try:
            self._sock.request(op, RTM_NEWADDR, body, f"{address} on {interface}",
                               extra_flags=s.NLM_F_CREATE | s.NLM_F_EXCL)  # fmt: skip
        except KernelError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def delete(self, interface: str, address: IPAddress, prefixlen: int | None = None) -> None:
        """Remove it; one that is gone already (EADDRNOTAVAIL) is fine."""
        op = "delete address"
        body = _message(_index(op, interface), address, prefixlen)
        try:
            self._sock.request(op, RTM_DELADDR, body, f"{address} on {interface}")
        except KernelError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.ENODEV):
                raise

    def list(self, interface: str) -> list[tuple[IPAddress, int]]:
        op = "list addresses"
        index = _index(op, interface)
        request = ifaddrmsg.build(
            {"family": socket.AF_UNSPEC, "prefixlen": 0, "flags": 0, "scope": 0, "index": 0}
        )
        out: list[tuple[IPAddress, int]] = []
        for msg_type, payload in self._sock.dump(op, RTM_GETADDR, request):
            if msg_type != RTM_NEWADDR or len(payload) < IFADDRMSG_SIZE:
                continue
            head = ifaddrmsg.parse(payload[:IFADDRMSG_SIZE])
            if head.index != index:
                continue
            attrs = parse_attrs(payload[s.nl_align(IFADDRMSG_SIZE) :], op)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is not None and len(raw) in (4, 16):
                out.append((ipaddress.ip_address(raw), int(head.prefixlen)))
        return out

    def close(self) -> None:
        self._sock.close()


class MemoryAddresses:
    """The same surface, recorded in memory (the in-memory kernel, tests)."""

    def __init__(self) -> None:
        self.addresses: dict[str, set[tuple[IPAddress, int]]] = {}

    def add(self, interface: str, address: IPAddress, prefixlen: int | None = None) -> bool:
        entry = (address, address.max_prefixlen if prefixlen is None else prefixlen)
        present = self.addresses.setdefault(interface, set())
        if entry in present:
            return False
        present.add(entry)
        return True

    def delete(self, interface: str, address: IPAddress, prefixlen: int | None = None) -> None:
        entry = (address, address.max_prefixlen if prefixlen is None else prefixlen)
        self.addresses.get(interface, set()).discard(entry)

    def list(self, interface: str) -> list[tuple[IPAddress, int]]:
        return sorted(self.addresses.get(interface, set()), key=str)

    def close(self) -> None:
        pass
