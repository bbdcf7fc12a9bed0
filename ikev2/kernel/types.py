"""The public types of the kernel adapter: what the service hands to, and gets from, the kernel.

Addresses are `ipaddress` objects, keys are bytes kept out of `repr` (DESIGN.md §4, secrets), and
algorithm names are the Linux crypto API names XFRM expects ("rfc4106(gcm(aes))", "cbc(aes)",
"hmac(sha256)", "rfc7539esp(chacha20,poly1305)"); mapping IKE transform IDs to these is the
caller's job.
"""

from __future__ import annotations

import errno as errno_mod
import os
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from ..constants import IpProto, ProtocolId

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class KernelError(Exception):
    """A kernel operation failed: names the operation, the errno and what was asked."""

    def __init__(self, op: str, errno: int, message: str = "") -> None:
        name = errno_mod.errorcode.get(errno, str(errno))
        text = f"{op}: {name} ({os.strerror(errno)})"
        super().__init__(f"{text}: {message}" if message else text)
        self.op = op
        self.errno = errno
        self.message = message


class Mode(IntEnum):
    """XFRM_MODE_* in linux/xfrm.h."""

    TRANSPORT = 0
    TUNNEL = 1


class Direction(IntEnum):
    """XFRM_POLICY_IN/OUT/FWD in linux/xfrm.h."""

    IN = 0
    OUT = 1
    FWD = 2


class PolicyAction(IntEnum):
    """XFRM_POLICY_ALLOW/BLOCK in linux/xfrm.h."""

    ALLOW = 0
    BLOCK = 1


SA_PROTOCOLS = (IpProto.ESP, IpProto.AH, IpProto.COMP)  # what our SAs and templates carry


def ip_proto(proto: ProtocolId | IpProto | int) -> IpProto:
    """The IP protocol number (50 ESP, 51 AH, 108 IPComp) of an IKE ProtocolId or an IP
    protocol number."""
    if isinstance(proto, ProtocolId):
        table = {ProtocolId.ESP: IpProto.ESP, ProtocolId.AH: IpProto.AH}
        if proto not in table:
            raise ValueError(f"no IPsec SA for {proto!r}")
        return table[proto]
    value = IpProto(int(proto))
    if value not in SA_PROTOCOLS:
        raise ValueError(f"IP protocol {int(value)} is neither ESP (50), AH (51) nor IPComp (108)")
    return value


@dataclass(frozen=True, slots=True)
class Selector:
    """Which packets an SA or policy applies to (struct xfrm_selector).

    Ports are single ports (0 = any); proto 0 = any. Both networks share one address family.
    """

    src: IPNetwork
    dst: IPNetwork
    proto: int = 0
    sport: int = 0
    dport: int = 0

    def __post_init__(self) -> None:
        if self.src.version != self.dst.version:
            raise ValueError(f"selector mixes address families: {self.src} -> {self.dst}")

    @classmethod
    def host_to_host(cls, src: IPAddress, dst: IPAddress, proto: int = 0) -> Selector:
        return cls(ip_network(src), ip_network(dst), proto)


@dataclass(frozen=True, slots=True)
class Lifetime:
    """Soft/hard limits of an SA (struct xfrm_lifetime_cfg); None = no limit (XFRM_INF)."""

    soft_seconds: int | None = None
    hard_seconds: int | None = None
    soft_bytes: int | None = None
    hard_bytes: int | None = None
    soft_packets: int | None = None
    hard_packets: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    """XFRMA_MARK (struct xfrm_mark): matches skb->mark & mask == value."""

    value: int
    mask: int = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class Aead:
    """An AEAD transform (XFRMA_ALG_AEAD); key includes the salt (e.g. 36 bytes for AES-256-GCM)."""

    name: str
    key: bytes = field(repr=False)
    icv_bits: int


@dataclass(frozen=True, slots=True)
class Cipher:
    """An encryption transform without integrity (XFRMA_ALG_CRYPT)."""

    name: str
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Integrity:
    """An integrity transform (XFRMA_ALG_AUTH_TRUNC); trunc_bits is the ICV length."""

    name: str
    key: bytes = field(repr=False)
    trunc_bits: int


@dataclass(frozen=True, slots=True)
class SaSpec:
    """One IPsec SA (XFRM_MSG_NEWSA / UPDSA). Either `aead`, or `enc` and/or `auth` (AH: auth);
    an IPComp SA (proto COMP, spi = the CPI, RFC 3173) has only `comp`, e.g. "deflate"."""

    src: IPAddress
    dst: IPAddress
    spi: int
    proto: IpProto
    mode: Mode
    reqid: int
    aead: Aead | None = None
    enc: Cipher | None = None
    auth: Integrity | None = None
    esn: bool = False
    replay_window: int = 32
    encap: tuple[int, int] | None = None  # (sport, dport) of UDP-encapsulated ESP, RFC 3948
    lifetime: Lifetime = Lifetime()
    mark: Mark | None = None
    if_id: int | None = None
    selector: Selector | None = None
    # the encap ports are those of a TCP connection carrying ESP (RFC 9329 §3.2, espintcp)
    encap_tcp: bool = False
    comp: str | None = None  # XFRMA_ALG_COMP: the compression algorithm of an IPComp SA

    def __post_init__(self) -> None:
        object.__setattr__(self, "proto", ip_proto(self.proto))
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.src.version != self.dst.version:
            raise ValueError(f"SA mixes address families: {self.src} -> {self.dst}")
        if not 0 < self.spi <= 0xFFFF_FFFF:
            raise ValueError(f"SPI {self.spi:#x} out of range")
        if self.aead is not None and (self.enc is not None or self.auth is not None):
            raise ValueError("an SA has either an AEAD or enc/auth transforms, not both")
        if self.proto == IpProto.AH and (self.auth is None or self.aead or self.enc):
            raise ValueError("an AH SA needs exactly an integrity transform")
        if self.proto == IpProto.ESP and self.aead is None and self.enc is None:
            raise ValueError("an ESP SA needs an AEAD or an encryption transform")
        if self.encap is not None and self.proto != IpProto.ESP:
            raise ValueError("UDP encapsulation applies to ESP only (RFC 3948)")
        if (self.proto == IpProto.COMP) != (self.comp is not None):
            raise ValueError("an IPComp SA has a compression algorithm, and only it has one")
        if self.proto == IpProto.COMP and (self.aead or self.enc or self.auth):
            raise ValueError("an IPComp SA has no keys")
        if self.proto == IpProto.COMP and self.spi > 0xFFFF:
            raise ValueError(f"CPI {self.spi:#x} is more than 16 bits (RFC 3173 §2)")

    @property
    def algorithm(self) -> str:
        """The transform names, for messages: "rfc4106(gcm(aes))" or "cbc(aes)+hmac(sha256)"."""
        parts = [a.name for a in (self.aead, self.enc, self.auth) if a is not None]
        return "+".join(parts + ([self.comp] if self.comp else []))


@dataclass(frozen=True, slots=True)
class Template:
    """What SA a policy requires (struct xfrm_user_tmpl). Addresses are needed in tunnel mode."""

    proto: IpProto
    mode: Mode
    reqid: int
    src: IPAddress | None = None
    dst: IPAddress | None = None
    spi: int = 0  # 0 = any SPI
    # the policy also matches packets that did not use this SA (xfrm_user_tmpl.optional): an
    # inbound IPComp template, as small packets are sent uncompressed (RFC 3173 §2.2)
    optional: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "proto", ip_proto(self.proto))
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.mode == Mode.TUNNEL and (self.src is None or self.dst is None):
            raise ValueError("a tunnel-mode template needs its outer src and dst addresses")


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """One SPD entry (XFRM_MSG_NEWPOLICY): selector, direction, action and its templates."""

    selector: Selector
    direction: Direction
    action: PolicyAction = PolicyAction.ALLOW
    priority: int = 0
    templates: tuple[Template, ...] = ()
    mark: Mark | None = None
    if_id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", Direction(self.direction))
        object.__setattr__(self, "action", PolicyAction(self.action))
        object.__setattr__(self, "templates", tuple(self.templates))


@dataclass(frozen=True, slots=True)
class SaCounters:
    """struct xfrm_lifetime_cur of an SA: traffic so far, add time and last use (0 = unused)."""

    bytes: int
    packets: int
    add_time: int
    use_time: int


@dataclass(frozen=True, slots=True)
class SaInfo:
    """An SA as listed by the kernel (keys left out)."""

    src: IPAddress
    dst: IPAddress
    spi: int
    proto: IpProto
    mode: Mode
    reqid: int
    algorithm: str
    encap: tuple[int, int] | None
    mark: Mark | None
    if_id: int | None
    counters: SaCounters


@dataclass(frozen=True, slots=True)
class Acquire:
    """XFRM_MSG_ACQUIRE: outbound traffic hit a policy whose template has no SA yet."""

    selector: Selector
    src: IPAddress
    dst: IPAddress
    proto: IpProto
    reqid: int
    policy_index: int
    seq: int


@dataclass(frozen=True, slots=True)
class Expire:
    """XFRM_MSG_EXPIRE: an SA reached its soft (rekey now) or hard (it is gone) lifetime."""

    src: IPAddress
    dst: IPAddress
    spi: int
    proto: IpProto
    reqid: int
    hard: bool


@dataclass(frozen=True, slots=True)
class Mapping:
    """XFRM_MSG_MAPPING: the peer's NAT mapping of a UDP-encapsulated SA changed (RFC 3948)."""

    dst: IPAddress
    spi: int
    proto: IpProto
    reqid: int
    old_src: IPAddress
    old_sport: int
    new_src: IPAddress
    new_sport: int


KernelEvent = Acquire | Expire | Mapping
