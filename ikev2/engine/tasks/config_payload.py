"""The configuration payload in IKE_AUTH (RFC 7296 §2.19, §3.15), both roles.

    HDR, SK {IDi, AUTH, CP(CFG_REQUEST), SAi2, TSi, TSr}  -->
                     <--  HDR, SK {IDr, AUTH, CP(CFG_REPLY), SAr2, TSi, TSr}

A client (connection key `vips`) asks for an INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS per
virtual IP (empty: any, or the address it wants) and for DNS servers; the reply's addresses become
its side of the child's traffic selectors (the gateway narrows TSi to them, §2.9) and go to the
service in a VirtualIpsAssigned event, which installs them and hands the DNS servers to a hook.

A gateway (connection key `pools`) leases one address per requested family from its pools
(pools.py, keyed by the client's identity), answers CFG_REPLY with the addresses and the pools'
DNS servers, split-tunnel subnets (INTERNAL_IP4/6_SUBNET) and DNS domains, and narrows the
child's remote selectors to the leased addresses. §3.15.4: when no requested address can be
assigned it answers INTERNAL_ADDRESS_FAILURE instead of a child; the IKE SA stays up. A family
that fails while another succeeds is left out of the reply and of the child's selectors.
A connection with pools refuses a child to a client that sent no CP: FAILED_CP_REQUIRED.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...constants import CfgAttr, CfgType, IdType, NotifyType
from ...wire import CfgAttribute, CpPayload, NotifyPayload, Payload
from ..config import (
    ChildConfig,
    Identity,
    IPAddress,
    IPNetwork,
    PoolConfig,
    TrafficSelectorSpec,
)
from ..events import VirtualIpsAssigned, VirtualIpsReleased
from ..identity import parse_identity

if TYPE_CHECKING:
    from ..ike_sa import IkeSa
    from ..pools import Pools

ADDRESS_ATTR = {4: CfgAttr.INTERNAL_IP4_ADDRESS, 6: CfgAttr.INTERNAL_IP6_ADDRESS}
DNS_ATTR = {4: CfgAttr.INTERNAL_IP4_DNS, 6: CfgAttr.INTERNAL_IP6_DNS}
SUBNET_ATTR = {4: CfgAttr.INTERNAL_IP4_SUBNET, 6: CfgAttr.INTERNAL_IP6_SUBNET}
VERSION_OF_ADDRESS_ATTR = {int(v): k for k, v in ADDRESS_ATTR.items()}
# §3.15.1: INTERNAL_IP6_ADDRESS carries a prefix length after the address (strongSwan sends 64)
IP6_PREFIX = 64
MAX_DOMAIN = 253


@dataclass(frozen=True, slots=True)
class CpState:
    """What the CP exchange gave an IKE SA: our virtual IPs (client) or the peer's (gateway)."""

    local_vips: tuple[IPAddress, ...] = ()
    remote_vips: tuple[IPAddress, ...] = ()
    dns: tuple[IPAddress, ...] = ()
    subnets: tuple[IPNetwork, ...] = ()
    dns_domains: tuple[str, ...] = ()


# --- attribute values (§3.15.1); decoding never raises: a malformed value is None
def _address_value(address: IPAddress) -> bytes:
    if address.version == 4:
        return address.packed
    return address.packed + bytes([IP6_PREFIX])


def _subnet_value(net: IPNetwork) -> bytes:
    if net.version == 4:
        return net.network_address.packed + net.netmask.packed
    return net.network_address.packed + bytes([net.prefixlen])


def decode_address(attr_type: int, value: bytes) -> IPAddress | None:
    """INTERNAL_IP4_ADDRESS / _DNS (4 octets), INTERNAL_IP6_ADDRESS (16 + prefix length),
    INTERNAL_IP6_DNS (16)."""
    try:
        if attr_type in (CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP4_DNS):
            return ipaddress.IPv4Address(value) if len(value) == 4 else None
        if attr_type == CfgAttr.INTERNAL_IP6_ADDRESS and len(value) == 17:
            return ipaddress.IPv6Address(value[:16])
        if attr_type == CfgAttr.INTERNAL_IP6_DNS and len(value) == 16:
            return ipaddress.IPv6Address(value)
    except ValueError:
        return None
    return None


def decode_subnet(attr_type: int, value: bytes) -> IPNetwork | None:
    try:
        if attr_type == CfgAttr.INTERNAL_IP4_SUBNET and len(value) == 8:
            net = ipaddress.IPv4Network((value[:4], str(ipaddress.IPv4Address(value[4:]))), False)
            return net
        if attr_type == CfgAttr.INTERNAL_IP6_SUBNET and len(value) == 17 and value[16] <= 128:
            return ipaddress.IPv6Network((value[:16], value[16]), strict=False)
    except ValueError:
        return None
    return None


def decode_domain(value: bytes) -> str | None:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    ok = 0 < len(text) <= MAX_DOMAIN and all(c.isalnum() or c in "-._" for c in text)
    return text if ok else None


def _cp(payloads: Sequence[Payload], cfg_type: CfgType) -> CpPayload | None:
    return next((p for p in payloads if isinstance(p, CpPayload) and p.cfg_type == cfg_type), None)


# --- client
def request(sa: IkeSa) -> list[Payload]:
    """CP(CFG_REQUEST) for the connection's vips, with DNS asked for each family (§3.15.1)."""
    vips = sa.conn.vips
    if not vips:
        return []
    attrs = [
        CfgAttribute(ADDRESS_ATTR[v.version], b"" if v.is_unspecified else _address_value(v))
        for v in vips
    ]
    for version in sorted({v.version for v in vips}):
        attrs.append(CfgAttribute(DNS_ATTR[version]))
    attrs.append(CfgAttribute(CfgAttr.INTERNAL_DNS_DOMAIN))
    return [CpPayload(CfgType.CFG_REQUEST, tuple(attrs))]


def process_reply(sa: IkeSa, payloads: Sequence[Payload]) -> None:
    """Keep what CFG_REPLY gave us and tell the service (VirtualIpsAssigned)."""
    if not sa.conn.vips:
        return
    reply = _cp(payloads, CfgType.CFG_REPLY)
    if reply is None:
        sa.log.warning("peer assigned no virtual IP (no CP reply)")
        return
    vips: list[IPAddress] = []
    dns: list[IPAddress] = []
    subnets: list[IPNetwork] = []
    domains: list[str] = []
    for attr in reply.attributes:
        if attr.attr_type in VERSION_OF_ADDRESS_ATTR:
            address = decode_address(attr.attr_type, attr.value)
            if address is not None and not address.is_unspecified and address not in vips:
                vips.append(address)
        elif attr.attr_type in (CfgAttr.INTERNAL_IP4_DNS, CfgAttr.INTERNAL_IP6_DNS):
            server = decode_address(attr.attr_type, attr.value)
            if server is not None and server not in dns:
                dns.append(server)
        elif attr.attr_type in (CfgAttr.INTERNAL_IP4_SUBNET, CfgAttr.INTERNAL_IP6_SUBNET):
            subnet = decode_subnet(attr.attr_type, attr.value)
            if subnet is not None:
                subnets.append(subnet)
        elif attr.attr_type == CfgAttr.INTERNAL_DNS_DOMAIN:
            domain = decode_domain(attr.value)
            if domain is not None:
                domains.append(domain)
    state = CpState(tuple(vips), (), tuple(dns), tuple(subnets), tuple(domains))
    sa.cp = state
    if not vips:
        sa.log.warning("peer assigned no virtual IP")
        return
    sa.log.info("virtual IPs assigned", vips=[str(v) for v in vips], dns=[str(d) for d in dns])
    sa.emit(
        VirtualIpsAssigned(
            sa.id, sa.conn.name, state.local_vips, state.dns, state.subnets, state.dns_domains
        )
    )


# --- gateway
def respond(sa: IkeSa, payloads: Sequence[Payload], now: float) -> tuple[list[Payload], bool]:
    """The CP part of our IKE_AUTH response and whether the child may follow."""
    conn = sa.conn
    if not conn.pools:
        return [], True
    cp = _cp(payloads, CfgType.CFG_REQUEST)
    if cp is None:
        sa.log.info("child refused: connection has pools, peer sent no CP request")
        return [NotifyPayload(NotifyType.FAILED_CP_REQUIRED)], False
    assert sa.host is not None
    pools: Pools = sa.host.pools
    holder = lease_identity(sa)
    wanted: dict[int, IPAddress | None] = {}
    for attr in cp.attributes:
        version = VERSION_OF_ADDRESS_ATTR.get(attr.attr_type)
        if version is None or version in wanted:
            continue  # one address per family
        asked = decode_address(attr.attr_type, attr.value) if attr.value else None
        wanted[version] = None if asked is None or asked.is_unspecified else asked
    leased: list[tuple[PoolConfig, IPAddress]] = []
    for version, asked in wanted.items():
        got = pools.acquire(conn.pools, version, holder, sa.id, asked, now)
        if got is None:
            sa.log.warning("no virtual IP left", family=f"IPv{version}", pools=list(conn.pools))
        else:
            leased.append(got)
    if not leased:
        # §3.15.4: no address, no child; the IKE SA stays
        return [NotifyPayload(NotifyType.INTERNAL_ADDRESS_FAILURE)], False
    attrs = [CfgAttribute(ADDRESS_ATTR[a.version], _address_value(a)) for _, a in leased]
    dns: list[IPAddress] = []
    subnets: list[IPNetwork] = []
    domains: list[str] = []
    for pool, _ in leased:
        dns += [d for d in pool.dns if d not in dns]
        subnets += [s for s in pool.subnets if s not in subnets]
        domains += [d for d in pool.dns_domains if d not in domains]
    attrs += [CfgAttribute(DNS_ATTR[d.version], d.packed) for d in dns]
    attrs += [CfgAttribute(SUBNET_ATTR[s.version], _subnet_value(s)) for s in subnets]
    attrs += [CfgAttribute(CfgAttr.INTERNAL_DNS_DOMAIN, d.encode("ascii")) for d in domains]
    vips = tuple(a for _, a in leased)
    sa.cp = CpState((), vips, tuple(dns), tuple(subnets), tuple(domains))
    sa.log.info("virtual IPs leased", vips=[str(v) for v in vips])
    return [CpPayload(CfgType.CFG_REPLY, tuple(attrs))], True


def lease_identity(sa: IkeSa) -> Identity:
    """Who a lease belongs to: the EAP identity when the client authenticated with EAP (§2.16;
    one IKE ID may stand for many EAP users, as strongSwan keys its pools), else its IDi."""
    name = getattr(sa.eap, "identity", b"") if sa.eap is not None else b""
    if isinstance(name, bytes) and name:
        try:
            return parse_identity(name.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Identity(IdType.KEY_ID, name)
    assert sa.remote_identity is not None
    return sa.remote_identity


def remote_ts(sa: IkeSa, config: ChildConfig) -> tuple[TrafficSelectorSpec, ...]:
    """The child's remote selectors: on a gateway that leased the peer virtual IPs, narrowed
    to those addresses (§2.9: the client's TSi becomes its virtual IP)."""
    state = sa.cp
    if state is None or not state.remote_vips:
        return config.remote_ts
    return tuple(
        TrafficSelectorSpec(ipaddress.ip_network(vip), ts.ip_protocol, ts.start_port, ts.end_port)
        for ts in config.remote_ts
        for vip in state.remote_vips
        if vip in ts.network
    )


# --- the IKE SA's life
def adopt(old: IkeSa, new: IkeSa) -> None:
    """§2.18: the rekeyed IKE SA's virtual IPs and leases go to the new one."""
    new.cp, old.cp = old.cp, None
    if new.host is not None:
        new.host.pools.transfer(old.id, new.id)


def forget(sa: IkeSa, pools: Pools) -> None:
    """The IKE SA is gone: its leases go offline (grace from when the peer was last heard),
    and a client's virtual IPs are to be removed."""
    pools.release(sa.id, sa.last_heard)
    state, sa.cp = sa.cp, None
    if state is not None and state.local_vips:
        sa.emit(VirtualIpsReleased(sa.id, sa.conn.name, state.local_vips, state.dns))
