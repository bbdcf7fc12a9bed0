"""Engine child-SA events -> kernel SAs and policies (RFC 4301 §4.4: SAD and SPD entries).

- ChildSaEstablished: an inbound and an outbound SA (AEAD, or encryption + integrity, by the
  event's Linux algorithm names; UDP encapsulation when a NAT was detected, RFC 3948; soft/hard
  lifetimes from rekey_time/life_time), then out/in policies (+fwd in tunnel mode) for every
  (local_ts, remote_ts) pair of one address family, each with a template naming the reqid.
- IPComp (RFC 3173; event.cpi_in/cpi_out set): as strongSwan's kernel_netlink does, each
  direction also gets an IPComp SA (proto 108, spi = CPI, "deflate") in the child's mode,
  and its ESP/AH SA goes in transport mode between the same addresses (compress, then
  encrypt); the policies carry two templates, IPComp first (optional on in/fwd: packets too
  small to compress come uncompressed, RFC 3173 §2.2) then ESP/AH in transport mode.
- ChildSaDeleted: both SAs go (with their IPComp SAs); the policies go with the last SA of
  their reqid.
- IkeSaMoved (child_moved per child): both SAs move to the new endpoints keeping their replay
  state, and policies with the new tunnel endpoints replace the old ones (RFC 4555 §3.5).

SAs are keyed by (dst, spi, proto), policies are reference-counted per reqid: a rekeyed child
arrives with the SAME reqid before the old one is deleted, and its traffic must never fall
between two policies. Different reqids can want the same selectors (a connection brought up
twice, a trap under its child): the kernel holds one policy per (selector, direction), so each
such slot keeps a stack of owners, the newest in the kernel; when it goes, the next one returns.
Kernel reqids are the engine's reqid offset by the kernel's reqid_base, so
`flush_owned()` after a crash removes exactly what this daemon installed.

Route-based VPNs (swanctl mark_in/mark_out, if_id_in/if_id_out; config_xfrm.py): the inbound
SA and the in/fwd policies carry the _in mark and interface ID, the outbound SA and out policy
the _out ones; %unique is the child's kernel reqid (the same across its rekeys, as strongSwan
keeps a child's values), %unique-dir sets bit 31 on the outbound value. The kernel keys policies
by (selector, direction, mark, if_id), and so do our slots. A child naming xfrm_interface gets
that interface (kernel/links.py) before its SAs.

Trap policies (start_action = trap) are out policies with a template and no SA: the first packet
makes the kernel send an Acquire for that reqid. They sit in a reqid block of their own (TRAP_BASE),
are replaced by the real policies when the child comes up, and return when it goes. A trapped
child's SAs and policies take the trap's reqid (as strongSwan's trap and CHILD_SA share one):
the kernel replaces the larval SA it made for the Acquire only by an SA of the same reqid
(xfrm_state_add finds it by reqid and addresses), which would otherwise linger until
xfrm_acq_expires.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Iterator
from dataclasses import dataclass

from ..constants import IpProto, ProtocolId
from ..engine.config import (
    UNIQUE,
    UNIQUE_DIR,
    ChildConfig,
    ConnectionConfig,
    Mode,
    TrafficSelectorSpec,
    XfrmIds,
)
from ..engine.events import ChildSaDeleted, ChildSaEstablished, SaDirection
from ..kernel import (
    Aead,
    Cipher,
    Direction,
    Integrity,
    IPAddress,
    Kernel,
    KernelError,
    Lifetime,
    Mark,
    PolicySpec,
    SaSpec,
    Selector,
    Template,
    ip_proto,
)
from ..kernel import Mode as XfrmMode
from ..kernel.links import Links, MemoryLinks
from ..log import get_logger

log = get_logger("ikev2.service.kernel")
XFRM_MODE = {Mode.TUNNEL: XfrmMode.TUNNEL, Mode.TRANSPORT: XfrmMode.TRANSPORT}
POLICY_PRIORITY = 2000  # below strongSwan's default range start; lower value wins in XFRM
TRAP_PRIORITY = 2100
TRAP_BASE = 0xF0000  # trap reqids: kernel reqid_base + TRAP_BASE + index (65,536 of them)
SaKey = tuple[IPAddress, int, IpProto]
SlotKey = tuple[Selector, Direction, Mark | None, int | None]
UNIQUE_DIR_OUT = 1 << 31  # %unique-dir: the outbound value is the inbound one with bit 31 set
IPCOMP_ALGORITHM = "deflate"  # IPCOMP_DEFLATE (RFC 2394), the only transform we negotiate


@dataclass(frozen=True, slots=True)
class KernelIds:
    """A child's resolved marks and interface IDs (None: not set)."""

    mark_in: Mark | None = None
    mark_out: Mark | None = None
    if_id_in: int | None = None
    if_id_out: int | None = None


NO_IDS = KernelIds()


def _value(value: int, reqid: int, outbound: bool) -> int:
    if value == UNIQUE:
        return reqid
    if value == UNIQUE_DIR:
        return reqid | (UNIQUE_DIR_OUT if outbound else 0)
    return value


def resolve_ids(ids: XfrmIds, reqid: int) -> KernelIds:
    """XfrmIds with %unique / %unique-dir replaced by values of this kernel reqid."""

    def mark(spec: tuple[int, int] | None, outbound: bool) -> Mark | None:
        if spec is None:
            return None
        value, mask = spec
        return Mark(_value(value, reqid, outbound) & mask, mask)

    def if_id(value: int | None, outbound: bool) -> int | None:
        return None if value is None else _value(value, reqid, outbound)

    return KernelIds(mark(ids.mark_in, False), mark(ids.mark_out, True),
                     if_id(ids.if_id_in, False), if_id(ids.if_id_out, True))  # fmt: skip


def _slot(policy: PolicySpec) -> SlotKey:
    return (policy.selector, policy.direction, policy.mark, policy.if_id)


def _port(ts: TrafficSelectorSpec) -> int:
    """XFRM selectors carry one port (0 = any): a range other than one port becomes any."""
    return ts.start_port if ts.start_port == ts.end_port else 0


def selector_pairs(
    local_ts: tuple[TrafficSelectorSpec, ...], remote_ts: tuple[TrafficSelectorSpec, ...]
) -> Iterator[tuple[Selector, Selector]]:
    """(outbound, inbound) selectors for every same-family pair of traffic selectors."""
    for lts in local_ts:
        for rts in remote_ts:
            if lts.network.version != rts.network.version:
                continue
            proto = lts.ip_protocol or rts.ip_protocol
            out = Selector(lts.network, rts.network, proto, _port(lts), _port(rts))
            inbound = Selector(rts.network, lts.network, proto, _port(rts), _port(lts))
            yield out, inbound


@functools.lru_cache(maxsize=64)  # one shared object for every SA with the same limits
def _lifetime(rekey: float, life: float, life_bytes: int, life_packets: int) -> Lifetime:
    return Lifetime(
        soft_seconds=int(rekey) or None,
        hard_seconds=int(life) or None,
        soft_bytes=int(life_bytes * 0.9) or None,
        hard_bytes=life_bytes or None,
        soft_packets=int(life_packets * 0.9) or None,
        hard_packets=life_packets or None,
    )


def sa_spec(
    event: ChildSaEstablished,
    sa: SaDirection,
    reqid: int,
    inbound: bool,
    ids: KernelIds = NO_IDS,
) -> SaSpec:
    """One direction of a child SA as the kernel wants it."""
    aead = enc = auth = None
    if sa.icv_bits and sa.enc_alg:
        aead = Aead(sa.enc_alg, sa.enc_key, sa.icv_bits)
    else:
        if sa.enc_alg:
            enc = Cipher(sa.enc_alg, sa.enc_key)
        if sa.auth_alg:
            auth = Integrity(sa.auth_alg, sa.auth_key, sa.auth_trunc_bits)
    encap = None
    if event.encap is not None:  # (local port, remote port); the kernel wants (sport, dport)
        local_port, remote_port = event.encap
        encap = (remote_port, local_port) if inbound else (local_port, remote_port)
    return SaSpec(
        src=sa.src,
        dst=sa.dst,
        spi=sa.spi,
        proto=ip_proto(event.protocol),
        # with IPComp the IPComp SA is the one in tunnel mode; ESP/AH protects its packets
        mode=XfrmMode.TRANSPORT if event.ipcomp else XFRM_MODE[event.mode],
        reqid=reqid,
        aead=aead,
        enc=enc,
        auth=auth,
        esn=event.esn,
        replay_window=event.replay_window,
        encap=encap,
        encap_tcp=event.encap_tcp,  # RFC 9329: ESP in the IKE SA's TCP connection
        lifetime=_lifetime(event.rekey_time, event.life_time, event.life_bytes, event.life_packets),
        mark=ids.mark_in if inbound else ids.mark_out,
        if_id=ids.if_id_in if inbound else ids.if_id_out,
    )


def comp_spec(
    event: ChildSaEstablished, sa: SaDirection, reqid: int, inbound: bool, ids: KernelIds = NO_IDS
) -> SaSpec:
    """The IPComp SA beside one direction of an IPComp child (RFC 3173): no keys, no
    lifetimes of its own (it goes with its ESP/AH SA), the child's mode."""
    return SaSpec(
        src=sa.src,
        dst=sa.dst,
        spi=event.cpi_in if inbound else event.cpi_out,
        proto=IpProto.COMP,
        mode=XFRM_MODE[event.mode],
        reqid=reqid,
        replay_window=0,
        comp=IPCOMP_ALGORITHM,
        mark=ids.mark_in if inbound else ids.mark_out,
        if_id=ids.if_id_in if inbound else ids.if_id_out,
    )


def _key(spec: SaSpec) -> SaKey:
    return (spec.dst, spec.spi, spec.proto)


@dataclass(slots=True)
class _ReqidState:
    """The SAs of one kernel reqid, grouped by the policies they need (their shape), oldest
    shape first. The policies of the newest shape that still has SAs are the ones claimed."""

    shapes: dict[tuple[object, ...], tuple[list[PolicySpec], set[SaKey]]]
    active: tuple[object, ...] | None = None
    # shapes[active]: a rekey's or another SA's child of the same shape is the common case,
    # and comparing with `active` is cheaper than hashing the shape
    active_entry: tuple[list[PolicySpec], set[SaKey]] | None = None


def _policy_shape(event: ChildSaEstablished) -> tuple[object, ...]:
    """What a child's policies depend on: a rekeyed or reauthenticated child keeps its reqid,
    but its peer may have moved (NAT, RFC 7296 §2.23) or its selectors been narrowed anew."""
    return (event.mode, event.protocol, event.outbound.src, event.outbound.dst,
            event.local_ts, event.remote_ts, event.xfrm_ids, event.ipcomp)  # fmt: skip


class KernelApplier:
    """Applies child SA events to a Kernel, keeping what it installed for teardown."""

    def __init__(
        self,
        kernel: Kernel,
        reqid_stride: int = 1,
        reqid_offset: int = 0,
        links: Links | None = None,
    ) -> None:
        """With N workers (workers.py) worker i maps engine reqid r to base + (r-1)*N + i + 1,
        so the workers' reqids never meet in the (global) XFRM tables. `links`: where xfrm
        interfaces are made (recorded in memory by default)."""
        self.kernel = kernel
        self.links: Links = links if links is not None else MemoryLinks()
        self.marks: dict[SaKey, Mark | None] = {}  # an SA with a mark is deleted by it
        self.reqid_stride = reqid_stride
        self.reqid_offset = reqid_offset
        self.reqids: dict[int, _ReqidState] = {}
        self.sas: dict[SaKey, int] = {}  # (dst, spi, proto) -> kernel reqid
        self.comps: dict[SaKey, SaKey] = {}  # ESP/AH SA -> its IPComp SA (RFC 3173)
        self.traps: dict[int, tuple[ConnectionConfig, ChildConfig, list[PolicySpec]]] = {}
        self.trapped: dict[tuple[str, str], int] = {}  # (connection, child) -> trap reqid
        # (selector, direction) -> owners, oldest first; the last one is in the kernel
        self.slots: dict[SlotKey, list[PolicySpec]] = {}

    def kernel_reqid(self, engine_reqid: int) -> int:
        return (
            self.kernel.reqid_base + (engine_reqid - 1) * self.reqid_stride + self.reqid_offset + 1
        )

    # --- child SAs
    def child_established(self, event: ChildSaEstablished) -> None:
        """Install both SAs, then the policies: those of the newest child's shape, kept while
        any SA of that shape lives (a reqid's rekeys and reauthentications share them).
        KernelError on failure, after undoing what this call installed."""
        reqid = self.trapped.get((event.connection, event.child)) or self.kernel_reqid(event.reqid)
        ids = resolve_ids(event.xfrm_ids, reqid)
        name = event.xfrm_ids.interface
        if name and ids.if_id_out is not None and self.links.ensure_xfrm(name, ids.if_id_out):
            log.info("xfrm interface created", interface=name, if_id=ids.if_id_out)
        installed: list[SaKey] = []
        try:
            for direction, inbound in ((event.inbound, True), (event.outbound, False)):
                spec = sa_spec(event, direction, reqid, inbound, ids)
                comp = comp_spec(event, direction, reqid, inbound, ids) if event.ipcomp else None
                if comp is not None:
                    self.kernel.add_sa(comp)
                    self.marks[_key(comp)] = comp.mark
                try:
                    self.kernel.add_sa(spec)
                except KernelError:
                    if comp is not None:
                        self._delete_kernel_sa(_key(comp))
                    raise
                key = _key(spec)
                installed.append(key)
                self.sas[key] = reqid
                self.marks[key] = spec.mark
                if comp is not None:
                    self.comps[key] = _key(comp)
            state = self.reqids.setdefault(reqid, _ReqidState({}))
            shape = _policy_shape(event)
            if state.active_entry is not None and shape == state.active:
                state.active_entry[1].update(installed)
                return
            entry = state.shapes.pop(shape, None)
            if entry is None:
                entry = (self._policies(event, reqid, ids), set())
            state.shapes[shape] = entry  # now the newest shape
            sas = entry[1]
            try:
                self._activate(state)
            except KernelError:
                if not sas:
                    del state.shapes[shape]
                if not state.shapes:
                    del self.reqids[reqid]
                raise
            sas.update(installed)
        except KernelError:
            for key in installed:
                self._delete_sa(key)
            raise

    def _activate(self, state: _ReqidState) -> None:
        """Claim the newest shape's policies (on top of the slots), then release the ones
        claimed before: no moment without a policy for a selector both shapes cover."""
        newest = next(reversed(state.shapes), None) if state.shapes else None
        if newest == state.active:
            return
        if newest is not None:
            self._claim_all(state.shapes[newest][0])
        previous, state.active = state.active, newest
        state.active_entry = state.shapes[newest] if newest is not None else None
        if previous is not None and previous in state.shapes:
            self._release_all(state.shapes[previous][0])

    def _policies(
        self, event: ChildSaEstablished, reqid: int, ids: KernelIds = NO_IDS
    ) -> list[PolicySpec]:
        mode = XFRM_MODE[event.mode]
        proto = ip_proto(event.protocol)
        local, remote = event.outbound.src, event.outbound.dst
        tunnel = mode is XfrmMode.TUNNEL
        here, there = (local, remote) if tunnel else (None, None)
        out_t: tuple[Template, ...] = (Template(proto, mode, reqid, here, there),)
        in_t: tuple[Template, ...] = (Template(proto, mode, reqid, there, here),)
        if event.ipcomp:  # IPComp outermost in the child's mode, then ESP/AH in transport mode
            esp = Template(proto, XfrmMode.TRANSPORT, reqid)
            out_t = (Template(IpProto.COMP, mode, reqid, here, there), esp)
            in_t = (Template(IpProto.COMP, mode, reqid, there, here, optional=True), esp)
        policies = []
        out, inward = (ids.mark_out, ids.if_id_out), (ids.mark_in, ids.if_id_in)
        for out_sel, in_sel in selector_pairs(event.local_ts, event.remote_ts):
            rows = [(out_sel, Direction.OUT, out_t, out), (in_sel, Direction.IN, in_t, inward)]
            if tunnel:  # RFC 4301 §5.1: forwarded traffic out of the tunnel needs a fwd policy
                rows.append((in_sel, Direction.FWD, in_t, inward))
            for selector, direction, templates, (mark, if_id) in rows:
                policies.append(PolicySpec(selector, direction, priority=POLICY_PRIORITY,
                                           templates=templates, mark=mark,
                                           if_id=if_id))  # fmt: skip
        return policies

    def _claim_all(self, policies: list[PolicySpec]) -> None:
        done: list[PolicySpec] = []
        try:
            for policy in policies:
                self._claim(policy)
                done.append(policy)
        except KernelError:
            self._release_all(done)
            raise

    def _claim(self, policy: PolicySpec, *, bottom: bool = False) -> None:
        """Own a policy slot: on top (into the kernel, replacing the previous owner's policy),
        or at the bottom (a trap: in the kernel only while nobody else owns the slot)."""
        owners = self.slots.get(_slot(policy))
        if not owners or not bottom:
            self.kernel.update_policy(policy)
        if owners is None:
            self.slots[_slot(policy)] = [policy]
        elif bottom:
            owners.insert(0, policy)
        else:
            owners.append(policy)

    def _release(self, policy: PolicySpec) -> None:
        key = _slot(policy)
        owners = self.slots.get(key, [])
        index = next((i for i, p in enumerate(owners) if p is policy), None)
        if index is None:
            return
        del owners[index]
        try:
            if not owners:
                del self.slots[key]
                self.kernel.delete_policy(
                    policy.selector, policy.direction, policy.mark, policy.if_id
                )
            elif index == len(owners):  # it was in the kernel: the next owner's policy returns
                self.kernel.update_policy(owners[-1])
        except KernelError as exc:
            if exc.errno != errno.ENOENT:
                log.warning("kernel policy update failed", error=str(exc))

    def _release_all(self, policies: list[PolicySpec]) -> None:
        for policy in policies:
            self._release(policy)

    def child_moved(self, old: ChildSaEstablished, new: ChildSaEstablished) -> None:
        """MOBIKE (RFC 4555 §3.5) or a NAT rebinding (RFC 7296 §2.23): move both SAs to the
        new endpoints in place (same SPIs, keys and sequence numbers: Kernel.move_sa), then
        let the policies of the new shape (their templates name the new tunnel endpoints)
        take over the selectors from the old ones (XFRM_MSG_UPDPOLICY, no moment without a
        policy). An SA that is not ours (never installed, already gone) is left alone."""
        reqid = self.kernel_reqid(new.reqid)
        moved: list[tuple[SaKey, SaKey]] = []
        pairs = ((old.inbound, new.inbound, True), (old.outbound, new.outbound, False))
        for before, after, inbound in pairs:
            old_spec = sa_spec(old, before, reqid, inbound)
            spec = sa_spec(new, after, reqid, inbound)
            old_key = (old_spec.dst, old_spec.spi, old_spec.proto)
            if self.sas.get(old_key) != reqid:
                continue
            self.kernel.move_sa(old_spec.dst, spec)
            del self.sas[old_key]
            new_key = (spec.dst, spec.spi, spec.proto)
            self.sas[new_key] = reqid
            moved.append((old_key, new_key))
            old_comp = self.comps.pop(old_key, None)
            if old_comp is not None and new.ipcomp:  # its IPComp SA moves along
                comp = comp_spec(new, after, reqid, inbound)
                self.kernel.move_sa(old_comp[0], comp)
                self.comps[new_key] = _key(comp)
        state = self.reqids.get(reqid)
        if state is None or not moved:
            return
        emptied = []
        for shape, (_policies, sas) in state.shapes.items():
            sas.difference_update(o for o, _ in moved)
            if not sas:
                emptied.append(shape)
        shape = _policy_shape(new)
        entry = state.shapes.pop(shape, None) or (self._policies(new, reqid), set())
        entry[1].update(n for _, n in moved)
        state.shapes[shape] = entry  # the newest shape now
        released: list[PolicySpec] = []
        for gone in emptied:
            if gone == shape:
                continue
            released += state.shapes.pop(gone)[0]
            if gone == state.active:
                state.active, state.active_entry = None, None
        self._activate(state)
        self._release_all(released)

    def child_deleted(self, event: ChildSaDeleted) -> None:
        proto = ip_proto(event.protocol)
        for key in ((event.local, event.spi_in, proto), (event.remote, event.spi_out, proto)):
            self._delete_sa(key)

    def _delete_kernel_sa(self, key: SaKey) -> None:
        dst, spi, proto = key
        try:
            self.kernel.delete_sa(dst, spi, proto, self.marks.pop(key, None))
        except KernelError as exc:
            if exc.errno not in (errno.ESRCH, errno.ENOENT):
                log.warning("kernel SA delete failed", error=str(exc))

    def _delete_sa(self, key: SaKey) -> None:
        reqid = self.sas.pop(key, None)
        if reqid is None:
            return
        comp = self.comps.pop(key, None)
        if comp is not None:  # strongSwan too deletes the IPComp SA first
            self._delete_kernel_sa(comp)
        self._delete_kernel_sa(key)
        state = self.reqids.get(reqid)
        if state is None:
            return
        for shape, (policies, sas) in list(state.shapes.items()):
            if key not in sas:
                continue
            sas.discard(key)
            if sas:
                return
            del state.shapes[shape]
            if shape == state.active:  # the next newest shape's policies take over
                state.active = None
                try:
                    self._activate(state)
                finally:
                    self._release_all(policies)
            if not state.shapes:
                del self.reqids[reqid]
            return

    # --- trap policies (start_action = trap)
    def install_trap(self, index: int, conn: ConnectionConfig, child: ChildConfig) -> int:
        """Out policies for the child's selectors that acquire an SA; returns their reqid."""
        reqid = self.kernel.reqid_base + TRAP_BASE + index
        local, remote = conn.local_addrs[0], conn.remote_addrs[0]
        mode = XFRM_MODE[child.mode]
        proto = ip_proto(child.proposals[0].protocol if child.proposals else ProtocolId.ESP)
        tunnel = mode is XfrmMode.TUNNEL
        template = Template(proto, mode, reqid, local if tunnel else None,
                            remote if tunnel else None)  # fmt: skip
        ids = resolve_ids(child.xfrm_ids, reqid)
        if child.xfrm_ids.interface and ids.if_id_out is not None:
            self.links.ensure_xfrm(child.xfrm_ids.interface, ids.if_id_out)
        policies = [
            PolicySpec(
                out_sel,
                Direction.OUT,
                priority=TRAP_PRIORITY,
                templates=(template,),
                mark=ids.mark_out,
                if_id=ids.if_id_out,
            )
            for out_sel, _ in selector_pairs(child.local_ts, child.remote_ts)
        ]
        for policy in policies:
            self._claim(policy, bottom=True)
        self.traps[reqid] = (conn, child, policies)
        self.trapped[(conn.name, child.name)] = reqid
        return reqid

    def trap_owner(self, reqid: int) -> str | None:
        """The connection whose trap policy carries this reqid (for an Acquire)."""
        trap = self.traps.get(reqid)
        return trap[0].name if trap else None

    def trap_child(self, reqid: int) -> tuple[str, str] | None:
        """(connection, child) whose trap policy carries this reqid (for an Acquire)."""
        trap = self.traps.get(reqid)
        return (trap[0].name, trap[1].name) if trap else None

    def remove_traps(self) -> None:
        for _conn, _child, policies in self.traps.values():
            self._release_all(policies)
        self.traps.clear()
        self.trapped.clear()

    # --- shutdown
    def remove_all(self) -> tuple[int, int]:
        """Delete every SA and policy we installed (traps too); returns (SAs, policies)."""
        self.remove_traps()
        sas, policies = len(self.sas), len(self.slots)
        for key in list(self.sas):
            self._delete_sa(key)
        for name in self.links.remove_created():
            log.info("xfrm interface removed", interface=name)
        return sas, policies
