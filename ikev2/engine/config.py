"""Configuration the engine runs on: frozen dataclasses, no file IO (the TOML loader is service/).

Shapes follow what a strongSwan user knows from swanctl.conf: a connection has local and remote
addresses, IDs and authentication rounds, IKE proposals, timers, and children with traffic
selectors, mode and ESP/AH proposals.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any

from ..constants import IdType, IpProto, ProtocolId

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ProposalSpec:
    """One proposal as we offer or accept it (RFC 7296 §3.3): alternatives per transform type.

    encr holds (ENCR id, key bits or None) pairs. An AEAD proposal has no integ. ke is empty for a
    child without PFS. addke[n-1] holds the alternatives for ADDKEn (RFC 9370 §2.2.1; KeId.NONE
    among them makes that exchange optional, an empty or missing entry means NONE only). Order is
    preference order.
    """

    protocol: ProtocolId
    encr: tuple[tuple[int, int | None], ...] = ()
    prf: tuple[int, ...] = ()
    integ: tuple[int, ...] = ()
    ke: tuple[int, ...] = ()
    esn: tuple[int, ...] = ()
    addke: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity (RFC 7296 §3.5): the ID type and the ID payload's data."""

    id_type: IdType
    data: bytes

    def __str__(self) -> str:
        return _identity_text(self)


@functools.lru_cache(maxsize=4096)
def _identity_text(identity: Identity) -> str:
    from .identity import identity_to_str

    return identity_to_str(identity)


class AuthMethodName(enum.StrEnum):
    PSK = "psk"
    PUBKEY = "pubkey"
    EAP = "eap"  # RFC 7296 §2.16; the method(s) are Credentials.eap_types


class RevocationPolicy(enum.StrEnum):
    """strongSwan's remote.revocation (engine/revocation.py says what each one fails)."""

    STRICT = "strict"
    IFURI = "ifuri"
    RELAXED = "relaxed"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one side proves itself with, or what it expects from the peer.

    psk: the shared secret. certs: our certificate chain (end entity first), DER. private_key: a
    `cryptography` private key object. trust_anchors: CA certificates (DER) a peer chain must
    reach. None of these appear in repr.

    EAP (method EAP, RFC 7296 §2.16): eap_types are the EAP method types (engine/eap) we run,
    in preference order. Our side (a client): eap_id is our EAP identity (None: the IKE ID's
    data) and eap_secret our password. The peer's side (a gateway): eap_users holds
    (identity, secret) pairs; eap_id None takes the IKE ID as the EAP identity, b"%any" asks
    for it with EAP-Identity first (swanctl's remote.eap_id = %any).
    """

    method: AuthMethodName
    psk: bytes | None = field(default=None, repr=False)
    certs: tuple[bytes, ...] = field(default=(), repr=False)
    private_key: Any = field(default=None, repr=False)
    trust_anchors: tuple[bytes, ...] = field(default=(), repr=False)
    eap_types: tuple[int, ...] = ()
    eap_id: bytes | None = None
    eap_secret: bytes | None = field(default=None, repr=False)
    eap_users: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)
    eap_radius: bool = False  # gateway: a RADIUS server runs the EAP method (RFC 3579)
    # the peer's side with certificates: how revocation is checked, and CRLs from files (DER)
    revocation: RevocationPolicy = RevocationPolicy.RELAXED
    crls: tuple[bytes, ...] = field(default=(), repr=False)

    def eap_user_secret(self, identity: bytes) -> bytes | None:
        """The secret of EAP user `identity` (gateway side), None if unknown."""
        for name, secret in self.eap_users:
            if name == identity:
                return secret
        return None


class Unique(enum.StrEnum):
    """strongSwan's connection uniqueness policy (swanctl.conf `unique`, engine/unique.py)."""

    NO = "no"  # keep duplicates; INITIAL_CONTACT still replaces them
    NEVER = "never"  # keep duplicates, ignore INITIAL_CONTACT, never send it
    REPLACE = "replace"  # a new IKE SA of the same identities deletes the old ones
    KEEP = "keep"  # a new IKE SA of the same identities is refused


class SendCert(enum.StrEnum):
    """When our certificate chain goes in IKE_AUTH (swanctl.conf `send_cert`, RFC 7296 §3.6)."""

    IFASKED = "ifasked"  # only when the peer sent a CERTREQ (any, even naming no CA)
    ALWAYS = "always"
    NEVER = "never"  # the peer has our certificate installed


class Childless(enum.StrEnum):
    """swanctl.conf's `childless` (RFC 6023, engine/tasks/childless.py): whether the first child
    SA rides in IKE_AUTH or follows in its own CREATE_CHILD_SA."""

    ALLOW = "allow"  # accept childless IKE SAs; initiate one only when there is no child
    PREFER = "prefer"  # as allow, but initiate childless whenever the responder supports it
    FORCE = "force"  # only childless, in both roles
    NEVER = "never"  # refuse childless IKE SAs as responder


class Recovery(enum.StrEnum):
    """swanctl.conf's dpd_action / close_action of a child (engine/recovery.py)."""

    CLEAR = "clear"  # nothing more (close_action's "none" is read as this)
    RESTART = "restart"  # bring the child up again at once


class Transport(enum.StrEnum):
    """How a connection carries IKE (and ESP): UDP, TCP (RFC 9329), or UDP first and TCP when
    IKE_SA_INIT over UDP is never answered (§5.1; engine/tcp.py)."""

    UDP = "udp"
    TCP = "tcp"
    UDP_THEN_TCP = "udp-then-tcp"


DEFAULT_TCP_PORT = 4500  # RFC 9329 §2: the NAT-T port number, on TCP


class Mode(enum.StrEnum):
    TUNNEL = "tunnel"
    TRANSPORT = "transport"


@dataclass(frozen=True, slots=True)
class TrafficSelectorSpec:
    """A traffic selector in configuration terms: a network, an IP protocol and a port range."""

    network: IPNetwork
    ip_protocol: int = IpProto.ANY
    start_port: int = 0
    end_port: int = 65535


UNIQUE = -1  # swanctl's %unique: one value per child SA (kept across its rekeys)
UNIQUE_DIR = -2  # %unique-dir: one value per child SA and direction


@dataclass(frozen=True, slots=True)
class XfrmIds:
    """Route-based VPNs (swanctl.conf mark_in / mark_out, if_id_in / if_id_out): XFRM marks
    (value, mask) and interface IDs on a child's SAs and policies; inbound SA + in/fwd policies
    carry the _in ones, the outbound SA + out policy the _out ones. A value may be UNIQUE or
    UNIQUE_DIR (the service resolves them from the child's reqid). `interface`: an xfrm
    interface (IFLA_XFRM_IF_ID = if_id_out) the service creates, or uses when it exists. None
    and "" mean not set. Purely local: the peer never learns them."""

    mark_in: tuple[int, int] | None = None
    mark_out: tuple[int, int] | None = None
    if_id_in: int | None = None
    if_id_out: int | None = None
    interface: str = ""


NO_XFRM_IDS = XfrmIds()


@dataclass(frozen=True, slots=True)
class ChildConfig:
    name: str
    local_ts: tuple[TrafficSelectorSpec, ...]
    remote_ts: tuple[TrafficSelectorSpec, ...]
    proposals: tuple[ProposalSpec, ...]
    mode: Mode = Mode.TUNNEL
    # RFC 7296 §2.8 lifetimes are local policy; seconds; 0 disables (rekeying lands with issue 5)
    rekey_time: float = 3600.0
    life_time: float = 3960.0
    life_bytes: int = 0
    life_packets: int = 0
    replay_window: int = 32
    # what to do when the peer is found dead (§2.4) or deletes the IKE SA (recovery.py)
    dpd_action: Recovery = Recovery.CLEAR
    close_action: Recovery = Recovery.CLEAR
    xfrm_ids: XfrmIds = NO_XFRM_IDS  # marks and interface IDs (route-based VPNs)
    ipcomp: bool = False  # offer / accept IPComp (RFC 3173, IPCOMP_SUPPORTED: tasks/ipcomp.py)


# the longest single wait between two sends of a request, whatever the configuration (a day)
MAX_RETRANSMIT_DELAY = 86400.0


@dataclass(frozen=True, slots=True)
class Timers:
    """Retransmission (RFC 7296 §2.1, strongSwan's defaults) and liveness (§2.4)."""

    retransmit_timeout: float = 4.0
    retransmit_base: float = 1.8
    retransmit_tries: int = 5
    # the longest single wait between two sends of a request; 0: no cap (strongSwan's
    # retransmit_limit): without one a long back-off waits 4 × 1.8^12 s ≈ 77 min for try 12
    retransmit_limit: float = 0.0
    dpd_delay: float = 30.0  # 0 disables liveness checks
    half_open_timeout: float = 30.0
    ike_rekey_time: float = 14400.0
    ike_life_time: float = 15840.0
    # RFC 7296 §2.8.3: reauthenticate (a new IKE SA with full authentication) this long after
    # authenticating; 0 disables (strongSwan's reauth_time). An IKE rekey does not reset it; when
    # it comes before ike_rekey_time, the IKE SA is reauthenticated instead of rekeyed.
    reauth_time: float = 0.0

    @property
    def retransmit_span(self) -> float:
        """How long an initiator keeps retransmitting one request before it gives up."""
        return sum(self.retransmit_delay(n) for n in range(self.retransmit_tries + 1))

    def retransmit_delay(self, attempt: int) -> float:
        """The wait after send number `attempt` (0: the first send) of a request (§2.1)."""
        # the cap comes before the power: a large base or try count (1.8^1208) would otherwise
        # overflow a float. §2.4 leaves the give-up to the implementation; no single wait is
        # longer than MAX_RETRANSMIT_DELAY, far beyond any sane schedule
        ceiling = self.retransmit_limit if self.retransmit_limit > 0 else MAX_RETRANSMIT_DELAY
        ceiling = min(ceiling, MAX_RETRANSMIT_DELAY)
        timeout, base = self.retransmit_timeout, abs(self.retransmit_base)
        if not math.isfinite(timeout):
            return ceiling
        if timeout <= 0:
            return max(timeout, 0.0)
        if base > 1 and attempt * math.log(base) >= math.log(ceiling / timeout) + 1.0:
            return ceiling  # timeout × base^attempt > e × ceiling: the power would add nothing
        return min(float(timeout * self.retransmit_base**attempt), ceiling)


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """An address pool for virtual IPs (swanctl.conf's pools.NAME; RFC 7296 §2.19, §3.15):
    the addresses first..last (one family), handed out one per client identity, and the
    attributes sent with a lease from it (DNS servers, split-tunnel subnets, DNS domains).
    grace: how long a lease stays reserved for its client after its last IKE SA is gone."""

    name: str
    first: IPAddress
    last: IPAddress
    dns: tuple[IPAddress, ...] = ()
    subnets: tuple[IPNetwork, ...] = ()
    dns_domains: tuple[str, ...] = ()
    grace: float = 0.0

    @property
    def version(self) -> int:
        return self.first.version

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def describe(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class RedirectConfig:
    """RFC 5685 redirects of one connection (engine/tasks/redirect.py).

    As a client: follow a gateway's REDIRECT (strongSwan's charon.follow_redirects, default
    yes), at most `limit` times within `period` seconds (strongSwan's MAX_REDIRECTS and
    REDIRECT_LOOP_DETECT_PERIOD: 5 in 300 s); then the IKE SA fails. As a gateway: redirect
    clients that announce REDIRECT_SUPPORTED to one of `to` (IPv4, IPv6 addresses or FQDNs,
    spread by the client's SPI), `on` "init" in IKE_SA_INIT (§3.3) or "auth" in IKE_AUTH once
    the client is authenticated (§3.5); `to` empty: no redirect but the `redirect` command."""

    follow: bool = True
    limit: int = 5
    period: float = 300.0
    to: tuple[str, ...] = ()
    on: str = "init"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    name: str
    local_addrs: tuple[IPAddress, ...]
    remote_addrs: tuple[IPAddress, ...]
    local_id: Identity
    local_auth: Credentials
    remote_auth: Credentials
    ike_proposals: tuple[ProposalSpec, ...]
    children: tuple[ChildConfig, ...] = ()
    remote_id: Identity | None = None  # None: any ID the credentials authenticate
    local_port: int = 500
    remote_port: int = 500
    timers: Timers = Timers()
    fragmentation: bool = True
    # RFC 4555: offer/accept MOBIKE in IKE_AUTH (swanctl.conf's mobike, default yes); with
    # mobike_no_nats our UPDATE_SA_ADDRESSES carries NO_NATS_ALLOWED (§3.9)
    mobike: bool = True
    mobike_no_nats: bool = False
    fragment_size: int = 0  # largest IKE datagram when fragmenting; 0: RFC 7383 default
    send_certreq: bool = True
    send_cert: SendCert = SendCert.IFASKED  # strongSwan's default
    send_initial_contact: bool = True
    # §2.8.3 reauthentication: build the new IKE SA and its children before deleting the old
    # one (strongSwan's make_before_break); False deletes the old one first
    make_before_break: bool = True
    # remote access (RFC 7296 §2.19): as gateway, the pools (by name) leasing the peer its
    # virtual IPs; as client, the virtual IPs to ask for (0.0.0.0 / :: for any of that family)
    pools: tuple[str, ...] = ()
    vips: tuple[IPAddress, ...] = ()
    unique: Unique = Unique.NO  # swanctl.conf's default (engine/unique.py)
    # attempts to set up an IKE SA we initiate whose peer does not answer; 0: forever
    keyingtries: int = 1
    # RFC 8784 post-quantum preshared keys (tasks/ppk.py, swanctl.conf's names): the PPK_ID we
    # send as initiator; whether the IKE SA must have a PPK (else it falls back without one);
    # the (PPK_ID, PPK) pairs this connection may use (as responder: any the initiator names)
    ppk_id: bytes | None = None
    ppk_required: bool = False
    ppks: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)
    redirect: RedirectConfig = RedirectConfig()  # RFC 5685 (engine/tasks/redirect.py)
    transport: Transport = Transport.UDP  # RFC 9329 (engine/tcp.py)
    childless: Childless = Childless.ALLOW  # RFC 6023 (engine/tasks/childless.py)

    def child(self, name: str) -> ChildConfig:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    connections: tuple[ConnectionConfig, ...]
    # RFC 7296 §2.6: demand a COOKIE once this many IKE SAs are half-open (0: always)
    cookie_threshold: int = 30
    cookie_secret_lifetime: float = 120.0
    max_half_open: int = 10000  # strongSwan's charon.init_limit_half_open (global)
    # §2.6 COOKIEs do not stop one source that answers them: refuse (silently drop) a new
    # IKE_SA_INIT from a source IP that already holds this many half-open IKE SAs, while other
    # sources still get in. strongSwan's charon.block_threshold, default 5; 0: no per-source cap
    block_threshold: int = 5
    # the IKE_SA_INIT gate logs at most drop_log_lines lines per reason (COOKIE demanded, each
    # kind of drop) per drop_log_interval seconds, then one "suppressed K drops: reason" line;
    # 0 in either: log every line
    drop_log_lines: int = 10
    drop_log_interval: float = 10.0
    # strongSwan's charon.max_packet: a longer datagram is dropped unread, and the fragments of
    # one message (RFC 7383) are collected up to this many octets; so the fragments held for
    # half-open IKE SAs stay below max_half_open × max_packet
    max_packet: int = 10000
    # RFC 7296 §2.3: requests we accept (and, up to the peer's window, send) at once; above 1 it
    # is announced with SET_WINDOW_SIZE in IKE_AUTH. strongSwan's charon.window_size
    window_size: int = 1
    pools: tuple[PoolConfig, ...] = ()  # address pools connections name in `pools`
    tcp_port: int = DEFAULT_TCP_PORT  # RFC 9329: the TCP port we connect to (and listen on)

    def connection(self, name: str) -> ConnectionConfig:
        for conn in self.connections:
            if conn.name == name:
                return conn
        raise KeyError(name)
