"""What the engine hands to the service: datagrams to send and events to act on.

Events are frozen dataclasses. ChildSaEstablished carries everything the kernel needs to install
both directions of a child SA; its keys are repr=False so logging an event never leaks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..constants import NotifyType, ProtocolId
from .config import (
    NO_XFRM_IDS,
    IPAddress,
    IPNetwork,
    Mode,
    TrafficSelectorSpec,
    XfrmIds,
)

Endpoint = tuple[IPAddress, int]


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP payload to send (without the RFC 3948 non-ESP marker; the service adds it on
    port 4500) from `local` to `remote`; with `tcp`, one IKE message for the TCP connection
    local <-> remote instead (RFC 9329; the service frames it)."""

    data: bytes
    remote: Endpoint
    local: Endpoint
    tcp: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    ike_sa_id: int


@dataclass(frozen=True, slots=True)
class IkeSaEstablished(Event):
    connection: str
    initiator: bool
    local: Endpoint
    remote: Endpoint
    spi_i: bytes
    spi_r: bytes
    local_id: str
    remote_id: str
    suite: str  # e.g. "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE25519"
    nat_local: bool
    nat_remote: bool
    rekeyed_from: int | None = None  # the IKE SA this one replaced (RFC 7296 §2.18)
    # the IKE SA this one reauthenticates (§2.8.3; initiator side: the responder is not told);
    # it is deleted once this one and its children are up (make-before-break)
    reauth_of: int | None = None


@dataclass(frozen=True, slots=True)
class IkeSaDeleted(Event):
    connection: str
    reason: str


@dataclass(frozen=True, slots=True)
class IkeSaRedirected(Event):
    """RFC 5685: the gateway of IKE SA `ike_sa_id` sent us to `gateway`, and IKE SA
    `new_ike_sa_id` (the same one when redirected in IKE_SA_INIT) is being set up there."""

    connection: str
    gateway: str
    new_ike_sa_id: int


@dataclass(frozen=True, slots=True)
class IkeSaFailed(Event):
    connection: str
    reason: str
    notify: NotifyType | None = None
    # the IKE SA that tries again in its place (udp-then-tcp over TCP, RFC 9329 §5.1)
    retried_by: int | None = None


@dataclass(frozen=True, slots=True)
class SaDirection:
    """One direction of a child SA as the kernel installs it (RFC 4303 SA, Linux XFRM names)."""

    src: IPAddress
    dst: IPAddress
    spi: int
    enc_alg: str | None  # None for AH
    enc_key: bytes = field(repr=False)
    icv_bits: int  # AEAD ICV length; 0 for non-AEAD
    auth_alg: str | None
    auth_key: bytes = field(repr=False)
    auth_trunc_bits: int


@dataclass(frozen=True, slots=True)
class ChildSaEstablished(Event):
    connection: str
    child: str
    reqid: int
    protocol: ProtocolId
    mode: Mode
    inbound: SaDirection
    outbound: SaDirection
    local_ts: tuple[TrafficSelectorSpec, ...]
    remote_ts: tuple[TrafficSelectorSpec, ...]
    # UDP encapsulation (RFC 3948) when a NAT was detected: (local port, remote port); with
    # encap_tcp, ESP in the IKE SA's TCP connection of these ports instead (RFC 9329 §3.2)
    encap: tuple[int, int] | None
    esn: bool
    replay_window: int
    rekey_time: float
    life_time: float
    life_bytes: int
    life_packets: int
    suite: str
    encap_tcp: bool = False
    xfrm_ids: XfrmIds = NO_XFRM_IDS  # the child's marks and interface IDs (route-based VPNs)
    # IPComp (RFC 3173): the CPIs of the inbound and outbound IPComp SAs; 0 when not negotiated
    cpi_in: int = 0
    cpi_out: int = 0

    @property
    def ipcomp(self) -> bool:
        return bool(self.cpi_in and self.cpi_out)

    @property
    def spi_in(self) -> int:
        return self.inbound.spi

    @property
    def spi_out(self) -> int:
        return self.outbound.spi


@dataclass(frozen=True, slots=True)
class ChildSaDeleted(Event):
    connection: str
    child: str
    reqid: int
    protocol: ProtocolId
    spi_in: int
    spi_out: int
    local: IPAddress
    remote: IPAddress
    reason: str


@dataclass(frozen=True, slots=True)
class ChildSaFailed(Event):
    connection: str
    child: str
    reason: str
    notify: NotifyType | None = None


@dataclass(frozen=True, slots=True)
class VirtualIpsAssigned(Event):
    """A gateway's CFG_REPLY gave us (the client) virtual IPs (RFC 7296 §2.19, §3.15.1): the
    service installs them on an interface and hands the DNS servers to the dns hook."""

    connection: str
    vips: tuple[IPAddress, ...]
    dns: tuple[IPAddress, ...] = ()
    subnets: tuple[IPNetwork, ...] = ()  # INTERNAL_IP4/6_SUBNET: what the gateway protects
    dns_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VirtualIpsReleased(Event):
    """The IKE SA that held these virtual IPs is gone (not rekeyed): remove them again."""

    connection: str
    vips: tuple[IPAddress, ...]
    dns: tuple[IPAddress, ...] = ()


@dataclass(frozen=True, slots=True)
class IkeSaMoved(Event):
    """The IKE SA's endpoints changed: a MOBIKE UPDATE_SA_ADDRESSES (RFC 4555 §3.5), or the
    peer's NAT mapping moved (RFC 7296 §2.23). `children` pairs each child SA's installed event
    with its replacement: the same SPIs and keys, the new tunnel endpoints and UDP
    encapsulation. The service moves the kernel SAs and policies in place."""

    connection: str
    old_local: Endpoint
    old_remote: Endpoint
    local: Endpoint
    remote: Endpoint
    nat_local: bool
    nat_remote: bool
    children: tuple[tuple[ChildSaEstablished, ChildSaEstablished], ...] = ()


@dataclass(frozen=True, slots=True)
class EapBackendRequest(Event):
    """EAP-RADIUS (RFC 3579, tasks/eap_radius.py): forward this EAP Response of the client to
    the RADIUS server, then call Engine.eap_backend_answer with what it says."""

    connection: str
    identity: bytes  # the client's EAP identity (User-Name)
    eap: bytes = field(repr=False)
    peer: str = ""  # the client's address[port] (Calling-Station-Id)
