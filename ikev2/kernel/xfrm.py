"""XfrmKernel: the Kernel protocol over NETLINK_XFRM (linux/xfrm.h) and two socket options.

- SAs: XFRM_MSG_NEWSA / UPDSA / DELSA / GETSA (+ NLM_F_DUMP), SPIs: XFRM_MSG_ALLOCSPI.
- Policies: XFRM_MSG_NEWPOLICY / UPDPOLICY / DELPOLICY / GETPOLICY dump.
- Events: a second, non-blocking socket bound to XFRMNLGRP_ACQUIRE | EXPIRE | MAPPING.
- Per-socket: IP_XFRM_POLICY / IPV6_XFRM_POLICY bypass (struct sadb_x_policy, linux/ipsec.h) and
  UDP_ENCAP = UDP_ENCAP_ESPINUDP (linux/udp.h, RFC 3948).

Every request carries NLM_F_ACK and every nlmsgerr is checked; failures raise KernelError naming
the operation, the errno and the SA or policy concerned.

SPI allocation: XFRM_MSG_ALLOCSPI creates a larval SA holding the SPI, so the SA must later be
installed with `update_sa` (NEWSA on that SPI answers EEXIST). When the kernel refuses ALLOCSPI
because it lacks the protocol (ENOSYS / EPROTONOSUPPORT / ENOENT; seen on kernels without ESP),
we fall back to a random SPI from `secrets` and count it in `spi_fallbacks`; that SA then needs
`add_sa`, which on such a kernel fails anyway with a KernelError explaining the missing ESP.
"""

from __future__ import annotations

import errno
import secrets
import socket
from collections.abc import Callable

from ..constants import IpProto, ProtocolId
from . import DEFAULT_REQID_BASE, DEFAULT_REQID_COUNT
from . import xfrm_codec as codec
from . import xfrm_schemas as s
from .netlink import NetlinkSocket, group_mask
from .types import (
    Direction,
    IPAddress,
    KernelError,
    KernelEvent,
    Mark,
    PolicySpec,
    SaCounters,
    SaInfo,
    SaSpec,
    Selector,
    ip_proto,
)

SPI_MIN = 0x0000_0100  # SPIs 1..255 are reserved by IANA (RFC 4303 §2.1)
SPI_MAX = 0xFFFF_FFFF
ALLOCSPI_FALLBACK_ERRNOS = frozenset({errno.ENOSYS, errno.EPROTONOSUPPORT, errno.ENOENT})

# errno -> what it usually means when installing an SA; appended to the KernelError message.
SA_ERROR_HINTS = {
    errno.ENOSYS: "kernel lacks ESP/AH or this algorithm (esp4/esp6/ah4/ah6, crypto modules)",
    errno.EPROTONOSUPPORT: "the kernel lacks this IPsec protocol (ESP/AH not built or loaded)",
    errno.ENOENT: "the kernel lacks ESP/AH or this algorithm",
    errno.EEXIST: "an SA with this (dst, SPI, proto) exists; allocate_spi's SPI needs update_sa",
    errno.ESRCH: "no such SA",
    errno.EINVAL: "the kernel rejected the SA's parameters (key length, ICV size, flags?)",
}
POLICY_ERROR_HINTS = {
    errno.EEXIST: "a policy with this selector, direction and mark exists",
    errno.ENOENT: "no such policy",
}

# Which per-socket option and level bypass IPsec for an address family (linux/in.h, in6.h).
BYPASS_OPTION: dict[int, tuple[int, int]] = {
    socket.AF_INET: (socket.IPPROTO_IP, s.IP_XFRM_POLICY),
    socket.AF_INET6: (socket.IPPROTO_IPV6, s.IPV6_XFRM_POLICY),
}


def _sa_detail(dst: IPAddress, spi: int, proto: IpProto, extra: str = "") -> str:
    text = f"{proto.name} spi {spi:#010x} dst {dst}"
    return f"{text} {extra}".rstrip()


def _hint(table: dict[int, str], code: int) -> str:
    return f" ({table[code]})" if code in table else ""


class XfrmKernel:
    """The running kernel's IPsec, through NETLINK_XFRM. Needs CAP_NET_ADMIN."""

    def __init__(
        self,
        reqid_base: int = DEFAULT_REQID_BASE,
        reqid_count: int = DEFAULT_REQID_COUNT,
        events: bool = True,
    ) -> None:
        self.reqid_base = reqid_base
        self.reqid_count = reqid_count
        self.spi_fallbacks = 0
        self._nl = NetlinkSocket()
        self._events: NetlinkSocket | None = None
        if events:
            groups = group_mask(s.XfrmGroup.ACQUIRE, s.XfrmGroup.EXPIRE, s.XfrmGroup.MAPPING)
            try:
                self._events = NetlinkSocket(groups=groups)
            except OSError:
                self._nl.close()
                raise

    # --- SAs -----------------------------------------------------------------------------------

    def allocate_spi(
        self, proto: IpProto | ProtocolId, src: IPAddress, dst: IPAddress, reqid: int
    ) -> int:
        p = ip_proto(proto)
        body = codec.encode_allocspi(src, dst, p, reqid, SPI_MIN, SPI_MAX)
        try:
            replies = self._nl.request(
                "allocate_spi", s.XfrmMsg.ALLOCSPI, body, f"{p.name} {src} -> {dst}"
            )
        except KernelError as exc:
            if exc.errno not in ALLOCSPI_FALLBACK_ERRNOS:
                raise
            self.spi_fallbacks += 1
            return SPI_MIN + secrets.randbelow(SPI_MAX - SPI_MIN + 1)
        if not replies:
            raise KernelError("allocate_spi", errno.EPROTO, "no NEWSA reply to ALLOCSPI")
        return codec.parse_sa(replies[0], "allocate_spi").spi

    def _install_sa(
        self, op: str, msg_type: int, spec: SaSpec, carried: list[tuple[int, bytes]] | None = None
    ) -> None:
        body = codec.encode_sa(spec, carried or ())
        try:
            self._nl.request(op, msg_type, body)
        except KernelError as exc:
            extra = f"{spec.algorithm} {spec.mode.name.lower()} {spec.src} -> {spec.dst}"
            detail = _sa_detail(spec.dst, spec.spi, spec.proto, extra)
            raise KernelError(op, exc.errno, detail + _hint(SA_ERROR_HINTS, exc.errno)) from None

    def add_sa(self, spec: SaSpec) -> None:
        self._install_sa("add_sa", s.XfrmMsg.NEWSA, spec)

    def update_sa(self, spec: SaSpec) -> None:
        self._install_sa("update_sa", s.XfrmMsg.UPDSA, spec)

    def move_sa(self, old_dst: IPAddress, spec: SaSpec) -> None:
        p = ip_proto(spec.proto)
        replies = self._sa_request("move_sa", s.XfrmMsg.GETSA, old_dst, spec.spi, p, spec.mark)
        if not replies:
            raise KernelError("move_sa", errno.EPROTO, "no NEWSA reply to GETSA")
        carried = codec.sa_state_attrs(replies[0], "move_sa")
        if old_dst == spec.dst:  # the same key: the old one must go first
            self.delete_sa(old_dst, spec.spi, p, spec.mark)
            self._install_sa("move_sa", s.XfrmMsg.NEWSA, spec, carried)
            return
        self._install_sa("move_sa", s.XfrmMsg.NEWSA, spec, carried)
        self.delete_sa(old_dst, spec.spi, p, spec.mark)

    def _sa_request(
        self, op: str, msg_type: int, dst: IPAddress, spi: int, proto: IpProto, mark: Mark | None
    ) -> list[bytes]:
        body = codec.encode_sa_id(dst, spi, proto, mark)
        try:
            return self._nl.request(op, msg_type, body)
        except KernelError as exc:
            detail = _sa_detail(dst, spi, proto) + _hint(SA_ERROR_HINTS, exc.errno)
            raise KernelError(op, exc.errno, detail) from None

    def delete_sa(
        self, dst: IPAddress, spi: int, proto: IpProto | ProtocolId, mark: Mark | None = None
    ) -> None:
        self._sa_request("delete_sa", s.XfrmMsg.DELSA, dst, spi, ip_proto(proto), mark)

    def get_sa(
        self, dst: IPAddress, spi: int, proto: IpProto | ProtocolId, mark: Mark | None = None
    ) -> SaInfo:
        p = ip_proto(proto)
        replies = self._sa_request("get_sa", s.XfrmMsg.GETSA, dst, spi, p, mark)
        if not replies:
            raise KernelError("get_sa", errno.EPROTO, "no NEWSA reply to GETSA")
        return codec.parse_sa(replies[0], "get_sa")

    def get_sa_counters(
        self, dst: IPAddress, spi: int, proto: IpProto | ProtocolId, mark: Mark | None = None
    ) -> SaCounters:
        return self.get_sa(dst, spi, proto, mark).counters

    def list_sas(self) -> list[SaInfo]:
        entries = self._nl.dump("list_sas", s.XfrmMsg.GETSA)
        return [codec.parse_sa(p, "list_sas") for t, p in entries if t == s.XfrmMsg.NEWSA]

    # --- policies ------------------------------------------------------------------------------

    def _policy_request(self, op: str, msg_type: int, spec: PolicySpec) -> None:
        try:
            self._nl.request(op, msg_type, codec.encode_policy(spec))
        except KernelError as exc:
            detail = f"{spec.direction.name.lower()} {spec.selector}"
            raise KernelError(
                op, exc.errno, detail + _hint(POLICY_ERROR_HINTS, exc.errno)
            ) from None

    def add_policy(self, spec: PolicySpec) -> None:
        self._policy_request("add_policy", s.XfrmMsg.NEWPOLICY, spec)

    def update_policy(self, spec: PolicySpec) -> None:
        self._policy_request("update_policy", s.XfrmMsg.UPDPOLICY, spec)

    def delete_policy(
        self,
        selector: Selector,
        direction: Direction,
        mark: Mark | None = None,
        if_id: int | None = None,
    ) -> None:
        body = codec.encode_policy_id(selector, Direction(direction), mark, if_id)
        try:
            self._nl.request("delete_policy", s.XfrmMsg.DELPOLICY, body)
        except KernelError as exc:
            detail = f"{Direction(direction).name.lower()} {selector}"
            hint = _hint(POLICY_ERROR_HINTS, exc.errno)
            raise KernelError("delete_policy", exc.errno, detail + hint) from None

    def list_policies(self) -> list[PolicySpec]:
        entries = self._nl.dump("list_policies", s.XfrmMsg.GETPOLICY)
        parsed = (codec.parse_policy(p, "list_policies") for t, p in entries)
        return [p for p in parsed if p is not None]

    # --- sockets -------------------------------------------------------------------------------

    def bypass_socket(self, sock_fd: int, family: int) -> None:
        """Two per-socket policies (in, out): struct xfrm_userpolicy_info, action ALLOW, no
        templates, which the kernel's xfrm_user compile_policy accepts for IP_XFRM_POLICY /
        IPV6_XFRM_POLICY (net/xfrm/xfrm_user.c) without needing PF_KEY."""
        if family not in BYPASS_OPTION:
            raise KernelError("bypass_socket", errno.EAFNOSUPPORT, f"address family {family}")
        level, option = BYPASS_OPTION[family]
        sock = socket.socket(fileno=sock_fd)
        try:
            for direction in (Direction.IN, Direction.OUT):
                policy = codec.encode_socket_bypass(family, direction)
                try:
                    sock.setsockopt(level, option, policy)
                except OSError as exc:
                    raise KernelError(
                        "bypass_socket",
                        exc.errno or errno.EIO,
                        f"fd {sock_fd} {direction.name.lower()}",
                    ) from None
        finally:
            sock.detach()

    def enable_udp_encap(self, sock_fd: int) -> None:
        sock = socket.socket(fileno=sock_fd)
        try:
            sock.setsockopt(socket.IPPROTO_UDP, s.UDP_ENCAP, s.UDP_ENCAP_ESPINUDP)
        except OSError as exc:
            raise KernelError("enable_udp_encap", exc.errno or errno.EIO, f"fd {sock_fd}") from None
        finally:
            sock.detach()

    # --- events --------------------------------------------------------------------------------

    def fileno(self) -> int:
        if self._events is None:
            raise KernelError("fileno", errno.EBADF, "created with events=False")
        return self._events.fileno()

    def read_events(self) -> list[KernelEvent]:
        if self._events is None:
            return []
        events: list[KernelEvent] = []
        for msg in self._events.read_pending("read_events"):
            parse: Callable[[bytes, str], KernelEvent] | None = codec.EVENT_PARSERS.get(msg.type)
            if parse is not None:
                events.append(parse(msg.payload, "read_events"))
        return events

    # --- ownership -----------------------------------------------------------------------------

    def owns_reqid(self, reqid: int) -> bool:
        return self.reqid_base <= reqid < self.reqid_base + self.reqid_count

    def flush_owned(self) -> tuple[int, int]:
        """Delete our policies first (no new acquires), then our SAs. Already-gone is fine."""
        policies = 0
        for policy in self.list_policies():
            if any(self.owns_reqid(t.reqid) for t in policy.templates):
                try:
                    self.delete_policy(policy.selector, policy.direction, policy.mark, policy.if_id)
                    policies += 1
                except KernelError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
        sas = 0
        for sa in self.list_sas():
            if self.owns_reqid(sa.reqid):
                try:
                    self.delete_sa(sa.dst, sa.spi, sa.proto, sa.mark)
                    sas += 1
                except KernelError as exc:
                    if exc.errno not in (errno.ESRCH, errno.ENOENT):
                        raise
        return sas, policies

    def close(self) -> None:
        self._nl.close()
        if self._events is not None:
            self._events.close()
