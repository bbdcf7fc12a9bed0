"""Address pools for remote-access clients: virtual IPs handed out in CP(CFG_REPLY) (RFC 7296
§2.19, §3.15.1 INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS). Pure: no clock, no IO.

A lease belongs to a client identity (the authenticated IDi), not to an IKE SA: every IKE SA of
that identity holds it, so it survives a rekey (the new IKE SA takes over, `transfer`), a
reauthentication and a reconnect (the same identity gets the same address back). When the last
holder goes (`release`), the lease goes offline: it stays reserved for its identity for the pool's
grace period and is free after that. A free address remembers who had it last, so a client that
comes back later still gets its old address unless someone else took it meanwhile.

Order of choice for a client without a lease: the address it asks for, if in the pool and free
(§3.15.1: "the responder may ... assign the requested address"); else its previous address if
still free; else one never used; else the longest-free one; else an offline lease of another
client whose grace has run out. None when the pool is exhausted (the caller answers
INTERNAL_ADDRESS_FAILURE, §3.15.4).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .config import Identity, IPAddress, PoolConfig

Holder = int  # an IKE SA id


@dataclass(slots=True)
class Lease:
    offset: int
    identity: Identity
    holders: set[Holder] = field(default_factory=set)
    offline_since: float | None = None  # None while some IKE SA holds it

    @property
    def online(self) -> bool:
        return bool(self.holders)


@dataclass(frozen=True, slots=True)
class LeaseView:
    address: str
    identity: str
    online: bool
    holders: tuple[int, ...]
    reserved_until: float | None  # offline, within its grace period


@dataclass(frozen=True, slots=True)
class PoolView:
    name: str
    addresses: str  # "first-last"
    size: int
    online: int
    offline: int
    leases: tuple[LeaseView, ...]


class AddressPool:
    """One pool of one address family."""

    def __init__(self, config: PoolConfig) -> None:
        if config.first.version != config.last.version or int(config.last) < int(config.first):
            raise ValueError(f"pool {config.name}: {config.first}-{config.last} is not a range")
        self.config = config
        self.size = config.size
        self._base = int(config.first)
        self._fresh = 0  # offsets below this were used at least once
        self._taken_above: set[int] = set()  # offsets >= _fresh leased out of order
        self._free: OrderedDict[int, Identity | None] = OrderedDict()  # offset -> last identity
        self._last_offset: dict[Identity, int] = {}  # identity -> its last (now free) offset
        self.by_identity: dict[Identity, Lease] = {}
        self.by_offset: dict[int, Lease] = {}
        self._offline: deque[tuple[float, Lease]] = deque()  # (offline since, lease), in order

    @property
    def version(self) -> int:
        return self.config.version

    def address(self, offset: int) -> IPAddress:
        value = self._base + offset
        return ipaddress.IPv4Address(value) if self.version == 4 else ipaddress.IPv6Address(value)

    def offset_of(self, address: IPAddress) -> int | None:
        if address.version != self.version:
            return None
        offset = int(address) - self._base
        return offset if 0 <= offset < self.size else None

    def lease_of(self, identity: Identity) -> IPAddress | None:
        lease = self.by_identity.get(identity)
        return self.address(lease.offset) if lease is not None else None

    # --- the two operations
    def acquire(
        self, identity: Identity, holder: Holder, requested: IPAddress | None, now: float
    ) -> IPAddress | None:
        """The identity's address for `holder` (an IKE SA), leased now if it had none."""
        self._expire(now)
        lease = self.by_identity.get(identity)
        wanted = self.offset_of(requested) if requested is not None else None
        # an offline lease moves to a free address the client asks for
        if lease is not None and not lease.holders and self._moves(lease, wanted):
            self._drop(lease)
            lease = None
        if lease is None:
            offset = self._choose(identity, wanted, now)
            if offset is None:
                return None
            lease = Lease(offset, identity)
            self.by_identity[identity] = lease
            self.by_offset[offset] = lease
        lease.holders.add(holder)
        lease.offline_since = None
        return self.address(lease.offset)

    def release(self, identity: Identity, holder: Holder, since: float) -> None:
        """`holder` no longer uses the identity's lease: offline from `since` if the last."""
        lease = self.by_identity.get(identity)
        if lease is None or holder not in lease.holders:
            return
        lease.holders.discard(holder)
        if lease.holders:
            return
        lease.offline_since = since
        if self.config.grace <= 0:
            self._drop(lease)
        else:
            self._offline.append((since, lease))

    def transfer(self, identity: Identity, old: Holder, new: Holder) -> None:
        lease = self.by_identity.get(identity)
        if lease is not None and old in lease.holders:
            lease.holders.discard(old)
            lease.holders.add(new)

    # --- choosing an address
    def _moves(self, lease: Lease, wanted: int | None) -> bool:
        return wanted is not None and wanted != lease.offset and self._is_free(wanted)

    def _is_free(self, offset: int) -> bool:
        return offset in self._free or (offset >= self._fresh and offset not in self._taken_above)

    def _take(self, offset: int) -> int:
        if offset in self._free:
            previous = self._free.pop(offset)
            if previous is not None and self._last_offset.get(previous) == offset:
                del self._last_offset[previous]
        if offset >= self._fresh:  # the fresh mark moves past every address taken so far
            self._taken_above.add(offset)
            while self._fresh in self._taken_above:
                self._taken_above.discard(self._fresh)
                self._fresh += 1
        return offset

    def _choose(self, identity: Identity, wanted: int | None, now: float) -> int | None:
        if wanted is not None and self._is_free(wanted):
            return self._take(wanted)
        previous = self._last_offset.get(identity)
        if previous is not None and previous in self._free:
            return self._take(previous)
        if self._fresh < self.size:
            return self._take(self._fresh)
        if self._free:
            return self._take(next(iter(self._free)))
        return None  # every address is leased (online, or offline within its grace)

    def _drop(self, lease: Lease) -> None:
        """The lease ends: its address is free and remembers the identity."""
        del self.by_identity[lease.identity]
        del self.by_offset[lease.offset]
        self._free[lease.offset] = lease.identity
        self._last_offset[lease.identity] = lease.offset
        self._taken_above.discard(lease.offset)

    def _expire(self, now: float) -> None:
        grace = self.config.grace
        while self._offline and self._offline[0][0] + grace <= now:
            since, lease = self._offline.popleft()
            # stale entries: the lease came back online (or went offline again later)
            if lease.holders or lease.offline_since != since:
                continue
            if self.by_identity.get(lease.identity) is lease:
                self._drop(lease)

    # --- views
    def view(self, now: float) -> PoolView:
        self._expire(now)
        leases = tuple(
            LeaseView(
                address=str(self.address(lease.offset)),
                identity=str(lease.identity),
                online=lease.online,
                holders=tuple(sorted(lease.holders)),
                reserved_until=(
                    None if lease.offline_since is None else lease.offline_since + self.config.grace
                ),
            )
            for lease in sorted(self.by_offset.values(), key=lambda x: x.offset)
        )
        online = sum(1 for lease in leases if lease.online)
        return PoolView(
            self.config.name,
            self.config.describe(),
            self.size,
            online,
            len(leases) - online,
            leases,
        )


class Pools:
    """Every configured pool, and which IKE SA holds which leases (for release and rekey)."""

    def __init__(self, configs: Sequence[PoolConfig] = ()) -> None:
        self.pools: dict[str, AddressPool] = {}
        self._held: dict[Holder, list[tuple[str, Identity]]] = {}
        self.update(configs)

    def update(self, configs: Iterable[PoolConfig]) -> None:
        """A reload: unchanged pools keep their leases; a changed or new pool starts empty,
        except that online leases whose address is still in it stay with their clients."""
        old, self.pools = self.pools, {}
        for config in configs:
            previous = old.get(config.name)
            if previous is not None and previous.config == config:
                self.pools[config.name] = previous
                continue
            pool = AddressPool(config)
            if previous is not None:
                for lease in sorted(previous.by_offset.values(), key=lambda x: x.offset):
                    address = previous.address(lease.offset)
                    if lease.online and pool.offset_of(address) is not None:
                        for holder in sorted(lease.holders):
                            pool.acquire(lease.identity, holder, address, 0.0)
            self.pools[config.name] = pool
        for holder, held in list(self._held.items()):
            kept = [(name, ident) for name, ident in held if self._holds(name, ident, holder)]
            if kept:
                self._held[holder] = kept
            else:
                del self._held[holder]

    def _holds(self, name: str, identity: Identity, holder: Holder) -> bool:
        pool = self.pools.get(name)
        lease = pool.by_identity.get(identity) if pool is not None else None
        return lease is not None and holder in lease.holders

    def acquire(
        self,
        names: Sequence[str],
        version: int,
        identity: Identity,
        holder: Holder,
        requested: IPAddress | None,
        now: float,
    ) -> tuple[PoolConfig, IPAddress] | None:
        """An address of family `version` from the first of `names` that has one for the
        identity: its existing lease in any of them first, then a new lease (§2.19)."""
        candidates = [
            self.pools[n] for n in names if n in self.pools and self.pools[n].version == version
        ]
        ordered = [p for p in candidates if identity in p.by_identity] + [
            p for p in candidates if identity not in p.by_identity
        ]
        for pool in ordered:
            address = pool.acquire(identity, holder, requested, now)
            if address is not None:
                entry = (pool.config.name, identity)
                held = self._held.setdefault(holder, [])
                if entry not in held:
                    held.append(entry)
                return pool.config, address
        return None

    def release(self, holder: Holder, since: float) -> None:
        """The IKE SA `holder` is gone: its leases go offline unless another SA holds them."""
        for name, identity in self._held.pop(holder, ()):
            pool = self.pools.get(name)
            if pool is not None:
                pool.release(identity, holder, since)

    def transfer(self, old: Holder, new: Holder) -> None:
        """§2.18: a rekeyed IKE SA's leases belong to the IKE SA that replaced it."""
        held = self._held.pop(old, [])
        for name, identity in held:
            pool = self.pools.get(name)
            if pool is not None:
                pool.transfer(identity, old, new)
        if held:
            self._held.setdefault(new, []).extend(e for e in held if e not in self._held[new])

    def holdings(self, holder: Holder) -> list[IPAddress]:
        out = []
        for name, identity in self._held.get(holder, ()):
            pool = self.pools.get(name)
            address = pool.lease_of(identity) if pool is not None else None
            if address is not None:
                out.append(address)
        return out

    def views(self, now: float) -> list[PoolView]:
        return [pool.view(now) for pool in self.pools.values()]
