"""The Linux IPsec kernel behind one protocol: SAs, policies, SPIs, socket options and events.

Two implementations: `ikev2.kernel.xfrm.XfrmKernel` speaks NETLINK_XFRM to the running kernel, and
`ikev2.kernel.memory.InMemoryKernel` records the same calls in dicts (tests, --dry-run, demo). The
engine never imports this package; the service applies the engine's events through it.

Ownership: every SA and policy we install carries a reqid in `[reqid_base, reqid_base +
reqid_count)`; `flush_owned()` removes exactly those (an SA by its reqid, a policy when one of its
templates has such a reqid), so a restarted daemon can clean up after a crash without touching
SAs of other daemons.

All methods are synchronous: a netlink request/ack round trip takes microseconds.
Every failure raises `KernelError(op, errno, message)`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..constants import IpProto, ProtocolId
from .types import (
    Acquire,
    Aead,
    Cipher,
    Direction,
    Expire,
    Integrity,
    IPAddress,
    IPNetwork,
    KernelError,
    KernelEvent,
    Lifetime,
    Mapping,
    Mark,
    Mode,
    PolicyAction,
    PolicySpec,
    SaCounters,
    SaInfo,
    SaSpec,
    Selector,
    Template,
    ip_proto,
)

DEFAULT_REQID_BASE = 0x1E0000  # reqids this daemon hands out start here ...
DEFAULT_REQID_COUNT = 0x100000  # ... and this many are ours (a gateway of 100,000s of children)


@runtime_checkable
class Kernel(Protocol):
    """What the service needs from the IPsec kernel."""

    reqid_base: int
    reqid_count: int

    def allocate_spi(
        self, proto: IpProto | ProtocolId, src: IPAddress, dst: IPAddress, reqid: int
    ) -> int:
        """A fresh inbound SPI (XFRM_MSG_ALLOCSPI, which reserves a larval SA for dst)."""
        ...

    def add_sa(self, spec: SaSpec) -> None:
        """Install a new SA (XFRM_MSG_NEWSA); EEXIST if (dst, spi, proto) exists."""
        ...

    def update_sa(self, spec: SaSpec) -> None:
        """Replace an SA, e.g. the larval one allocate_spi left behind (XFRM_MSG_UPDSA)."""
        ...

    def delete_sa(
        self, dst: IPAddress, spi: int, proto: IpProto | ProtocolId, mark: Mark | None = None
    ) -> None:
        """Remove an SA (XFRM_MSG_DELSA); ESRCH if there is none. An SA with a mark needs it."""
        ...

    def move_sa(self, old_dst: IPAddress, spec: SaSpec) -> None:
        """Move the SA (old_dst, spec.spi, spec.proto) to spec's addresses and encapsulation,
        keeping its sequence numbers, replay window and lifetime use (MOBIKE, RFC 4555 §3.5;
        a NAT rebinding, RFC 7296 §2.23). XFRM_MSG_UPDSA changes neither address of a live SA,
        so: GETSA, then NEWSA with the replay state and DELSA of the old one (DELSA first when
        the destination, part of the SA's key, stays). ESRCH if there is no such SA."""
        ...

    def get_sa_counters(
        self, dst: IPAddress, spi: int, proto: IpProto | ProtocolId, mark: Mark | None = None
    ) -> SaCounters:
        """Bytes, packets and times of an SA (XFRM_MSG_GETSA)."""
        ...

    def list_sas(self) -> list[SaInfo]:
        """Every SA in the kernel (dump), ours or not."""
        ...

    def add_policy(self, spec: PolicySpec) -> None:
        """Install a policy (XFRM_MSG_NEWPOLICY); EEXIST for the same selector+direction+mark."""
        ...

    def update_policy(self, spec: PolicySpec) -> None:
        """Install or replace a policy (XFRM_MSG_UPDPOLICY)."""
        ...

    def delete_policy(
        self,
        selector: Selector,
        direction: Direction,
        mark: Mark | None = None,
        if_id: int | None = None,
    ) -> None:
        """Remove the policy with this selector and direction (XFRM_MSG_DELPOLICY); ENOENT."""
        ...

    def list_policies(self) -> list[PolicySpec]:
        """Every (main type) policy in the kernel (dump), ours or not; socket policies excluded."""
        ...

    def bypass_socket(self, sock_fd: int, family: int) -> None:
        """Let this socket's traffic bypass every IPsec policy in both directions
        (IP_XFRM_POLICY / IPV6_XFRM_POLICY), so our own policies never capture IKE."""
        ...

    def enable_udp_encap(self, sock_fd: int) -> None:
        """setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP) on the port-4500 socket (RFC 3948)."""
        ...

    def fileno(self) -> int:
        """A descriptor that turns readable when kernel events are waiting (asyncio add_reader)."""
        ...

    def read_events(self) -> list[KernelEvent]:
        """Drain pending Acquire / Expire / Mapping events without blocking."""
        ...

    def flush_owned(self) -> tuple[int, int]:
        """Delete every SA and policy in our reqid range; returns (SAs, policies) removed."""
        ...

    def close(self) -> None:
        """Release sockets; installed SAs and policies stay."""
        ...


__all__ = [
    "DEFAULT_REQID_BASE",
    "DEFAULT_REQID_COUNT",
    "Acquire",
    "Aead",
    "Cipher",
    "Direction",
    "Expire",
    "IPAddress",
    "IPNetwork",
    "Integrity",
    "Kernel",
    "KernelError",
    "KernelEvent",
    "Lifetime",
    "Mapping",
    "Mark",
    "Mode",
    "PolicyAction",
    "PolicySpec",
    "SaCounters",
    "SaInfo",
    "SaSpec",
    "Selector",
    "Template",
    "ip_proto",
]
