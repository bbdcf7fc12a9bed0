"""InMemoryKernel: the Kernel protocol in dicts, for unit tests, --dry-run and the demo.

It mirrors the XFRM semantics the daemon relies on, with the same errnos:
- SAs are keyed by (dst, spi, proto, mark); NEWSA of an existing key -> EEXIST, DELSA / GETSA
  of a missing one -> ESRCH, UPDSA of a missing one -> ESRCH.
- allocate_spi reserves a larval SA (as XFRM_MSG_ALLOCSPI does), so add_sa on that SPI is EEXIST
  and update_sa completes it.
- Policies are keyed by (selector, direction, mark, if_id); NEWPOLICY of an existing key ->
  EEXIST, DELPOLICY of a missing one -> ENOENT.
- `esp_supported=False` behaves like the host kernel without ESP/AH: installing a complete SA
  fails with ENOSYS (AEAD) or EPROTONOSUPPORT (others), as measured on the host.
Events are injected with `inject()`; fileno() is a real pipe that turns readable meanwhile.
`add_traffic()` counts a packet and sends the Expire events of byte and packet lifetimes.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import secrets
from dataclasses import dataclass
from typing import Final

from ..constants import IpProto, ProtocolId
from . import DEFAULT_REQID_BASE, DEFAULT_REQID_COUNT
from .types import (
    Direction,
    Expire,
    IPAddress,
    KernelError,
    KernelEvent,
    Mark,
    Mode,
    PolicySpec,
    SaCounters,
    SaInfo,
    SaSpec,
    Selector,
    ip_proto,
)

SaKey = tuple[IPAddress, int, IpProto, Mark | None]
PolicyKey = tuple[Selector, Direction, Mark | None, int | None]


_NO_TRAFFIC: Final = SaCounters(0, 0, 0, 0)


@dataclass(slots=True)
class _Sa:
    spec: SaSpec | None  # None: larval (allocated SPI, no keys yet)
    src: IPAddress
    reqid: int
    counters: SaCounters = _NO_TRAFFIC  # replaced (frozen) when traffic is counted
    soft_expired: bool = False  # the soft-expire event was sent (the kernel sends it once)


def _reached(counters: SaCounters, max_bytes: int | None, max_packets: int | None) -> bool:
    return (max_bytes is not None and counters.bytes >= max_bytes) or (
        max_packets is not None and counters.packets >= max_packets
    )


class InMemoryKernel:
    """Records SAs and policies; the latest `max_calls` calls stay in `calls` as (name, args...)."""

    def __init__(
        self,
        reqid_base: int = DEFAULT_REQID_BASE,
        reqid_count: int = DEFAULT_REQID_COUNT,
        esp_supported: bool = True,
        max_calls: int = 4096,
    ) -> None:
        self.reqid_base = reqid_base
        self.reqid_count = reqid_count
        self.esp_supported = esp_supported
        self.sas: dict[SaKey, _Sa] = {}
        self.policies: dict[PolicyKey, PolicySpec] = {}
        # the most recent calls only: a long-running daemon on a host without ESP uses this kernel
        self.calls: collections.deque[tuple[object, ...]] = collections.deque(maxlen=max_calls)
        self.bypassed: set[tuple[int, int]] = set()
        self.udp_encap: set[int] = set()
        self._events: list[KernelEvent] = []
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)

    # --- SAs -----------------------------------------------------------------------------------

    def allocate_spi(
        self, proto: IpProto | ProtocolId, src: IPAddress, dst: IPAddress, reqid: int
    ) -> int:
        p = ip_proto(proto)
        self.calls.append(("allocate_spi", p, src, dst, reqid))
        while True:
            spi = 0x100 + secrets.randbelow(0xFFFF_FFFF - 0x100)
            key = (dst, spi, p, None)
            if key not in self.sas:
                self.sas[key] = _Sa(None, src, reqid)
                return spi

    def _check_supported(self, op: str, spec: SaSpec) -> None:
        if self.esp_supported:
            return
        code = errno.ENOSYS if spec.aead is not None else errno.EPROTONOSUPPORT
        raise KernelError(
            op, code, f"{spec.proto.name} {spec.algorithm}: kernel lacks ESP/AH (simulated)"
        )

    @staticmethod
    def _key(spec: SaSpec) -> SaKey:
        return (spec.dst, spec.spi, spec.proto, spec.mark)

    def add_sa(self, spec: SaSpec) -> None:
        self.calls.append(("add_sa", spec))
        self._check_supported("add_sa", spec)
        if self._key(spec) in self.sas:
            raise KernelError("add_sa", errno.EEXIST, f"{spec.proto.name} spi {spec.spi:#010x}")
        self.sas[self._key(spec)] = _Sa(spec, spec.src, spec.reqid)

    def update_sa(self, spec: SaSpec) -> None:
        self.calls.append(("update_sa", spec))
        self._check_supported("update_sa", spec)
        if self._key(spec) not in self.sas:
            raise KernelError("update_sa", errno.ESRCH, f"{spec.proto.name} spi {spec.spi:#010x}")
        self.sas[self._key(spec)] = _Sa(spec, spec.src, spec.reqid)

    def _find(self, op: str, dst: IPAddress, spi: int, proto: IpProto, mark: Mark | None) -> SaKey:
        key = (dst, spi, proto, mark)
        if key not in self.sas:
            raise KernelError(op, errno.ESRCH, f"{proto.name} spi {spi:#010x} dst {dst}")
        return key

    def delete_sa(
        self, dst: IPAddress, spi: int, proto: IpProto | ProtocolId, mark: Mark | None = None
    ) -> None:
        p = ip_proto(proto)
        self.calls.append(("delete_sa", dst, spi, p))
        del self.sas[self._find("delete_sa", dst, spi, p, mark)]

    def move_sa(self, old_dst: IPAddress, spec: SaSpec) -> None:
        self.calls.append(("move_sa", old_dst, spec))
        self._check_supported("move_sa", spec)
        key = self._find("move_sa", old_dst, spec.spi, spec.proto, spec.mark)
        if self._key(spec) != key and self._key(spec) in self.sas:
            raise KernelError("move_sa", errno.EEXIST, f"{spec.proto.name} spi {spec.spi:#010x}")
        old = self.sas.pop(key)  # its counters go along, as the replay state does in XFRM
        self.sas[self._key(spec)] = _Sa(spec, spec.src, spec.reqid, old.counters, old.soft_expired)

    def get_sa_counters(
        self, dst: IPAddress, spi: int, proto: IpProto | ProtocolId, mark: Mark | None = None
    ) -> SaCounters:
        p = ip_proto(proto)
        return self.sas[self._find("get_sa", dst, spi, p, mark)].counters

    def add_traffic(self, dst: IPAddress, spi: int, proto: IpProto, nbytes: int) -> None:
        """Test helper: pretend one packet of nbytes went through the SA. As XFRM does
        (xfrm_state_check_expire), reaching the soft byte or packet limit sends one soft
        Expire, reaching the hard one sends a hard Expire and removes the SA."""
        key = self._find("add_traffic", dst, spi, ip_proto(proto), None)
        sa = self.sas[key]
        c = sa.counters
        sa.counters = c = SaCounters(c.bytes + nbytes, c.packets + 1, c.add_time, 1)
        life = sa.spec.lifetime if sa.spec is not None else None
        if life is None:
            return
        if _reached(c, life.hard_bytes, life.hard_packets):
            del self.sas[key]
            self.inject(Expire(sa.src, dst, spi, key[2], sa.reqid, hard=True))
        elif not sa.soft_expired and _reached(c, life.soft_bytes, life.soft_packets):
            sa.soft_expired = True
            self.inject(Expire(sa.src, dst, spi, key[2], sa.reqid, hard=False))

    def list_sas(self) -> list[SaInfo]:
        infos = []
        for (dst, spi, proto, mark), sa in self.sas.items():
            spec = sa.spec
            infos.append(
                SaInfo(
                    src=sa.src,
                    dst=dst,
                    spi=spi,
                    proto=proto,
                    mode=spec.mode if spec else Mode.TRANSPORT,
                    reqid=sa.reqid,
                    algorithm=spec.algorithm if spec else "",
                    encap=spec.encap if spec else None,
                    mark=mark,
                    if_id=spec.if_id if spec else None,
                    counters=sa.counters,
                )
            )
        return infos

    # --- policies ------------------------------------------------------------------------------

    @staticmethod
    def _pkey(spec: PolicySpec) -> PolicyKey:
        return (spec.selector, spec.direction, spec.mark, spec.if_id)

    def add_policy(self, spec: PolicySpec) -> None:
        self.calls.append(("add_policy", spec))
        if self._pkey(spec) in self.policies:
            raise KernelError("add_policy", errno.EEXIST, f"{spec.direction.name} {spec.selector}")
        self.policies[self._pkey(spec)] = spec

    def update_policy(self, spec: PolicySpec) -> None:
        self.calls.append(("update_policy", spec))
        self.policies[self._pkey(spec)] = spec

    def delete_policy(
        self,
        selector: Selector,
        direction: Direction,
        mark: Mark | None = None,
        if_id: int | None = None,
    ) -> None:
        self.calls.append(("delete_policy", selector, direction))
        key = (selector, Direction(direction), mark, if_id)
        if key not in self.policies:
            raise KernelError("delete_policy", errno.ENOENT, f"{direction.name} {selector}")
        del self.policies[key]

    def list_policies(self) -> list[PolicySpec]:
        return list(self.policies.values())

    # --- sockets -------------------------------------------------------------------------------

    def bypass_socket(self, sock_fd: int, family: int) -> None:
        self.calls.append(("bypass_socket", sock_fd, family))
        self.bypassed.add((sock_fd, family))

    def enable_udp_encap(self, sock_fd: int) -> None:
        self.calls.append(("enable_udp_encap", sock_fd))
        self.udp_encap.add(sock_fd)

    # --- events --------------------------------------------------------------------------------

    def inject(self, event: KernelEvent) -> None:
        """Test helper: queue an event as if the kernel had sent it."""
        self._events.append(event)
        os.write(self._write_fd, b"!")

    def fileno(self) -> int:
        return self._read_fd

    def read_events(self) -> list[KernelEvent]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_fd, 65536)
        events, self._events = self._events, []
        return events

    # --- ownership -----------------------------------------------------------------------------

    def owns_reqid(self, reqid: int) -> bool:
        return self.reqid_base <= reqid < self.reqid_base + self.reqid_count

    def flush_owned(self) -> tuple[int, int]:
        self.calls.append(("flush_owned",))
        pkeys = [
            k
            for k, p in self.policies.items()
            if any(self.owns_reqid(t.reqid) for t in p.templates)
        ]
        for pkey in pkeys:
            del self.policies[pkey]
        keys = [k for k, sa in self.sas.items() if self.owns_reqid(sa.reqid)]
        for key in keys:
            del self.sas[key]
        return len(keys), len(pkeys)

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
