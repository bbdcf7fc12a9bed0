"""The boring loop (DESIGN.md §1): receive -> engine -> kernel -> send -> re-arm ONE timer.

The Driver owns the Engine and calls it from the event loop only. Every input (a batch of
datagrams, the timer, a kernel event, a command) ends in `_after()`, which sends what the engine
queued and re-arms the single loop.call_at timer from engine.get_timer() when the deadline moved.

Events are applied through a table of handlers: child SAs go to the kernel (a KernelError goes
back into the engine as kernel_failed, which deletes the child with the peer), keys go to the
optional key log, and waiters of `up`/`down` commands are resolved at the end of the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine
from ..engine.config import ChildConfig, IPAddress
from ..engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    EapBackendRequest,
    Endpoint,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaMoved,
    IkeSaRedirected,
    VirtualIpsAssigned,
    VirtualIpsReleased,
)
from ..engine.pools import PoolView
from ..engine.revocation import RevocationFetch
from ..engine.state import IkeState
from ..engine.tasks.eap_radius import BackendAnswer, BackendVerdict
from ..engine.tcp import TcpChange, TcpChangeKind, TcpConnect
from ..engine.views import IkeSaView, ike_sa_view
from ..kernel import Acquire, Expire, Kernel, KernelError, KernelEvent, Mapping
from ..log import get_logger
from .child_waits import ChildWaits
from .eap_radius import RadiusBridge
from .kernel_apply import KernelApplier
from .keylog import KeyLog, UnknownToWireshark
from .revocation import RevocationFetcher
from .tcp import TcpTransport
from .udp import UdpTransport
from .vips import VirtualIps

log = get_logger("ikev2.service")
KEEPALIVE_INTERVAL = 20.0  # RFC 3948 §2.3 recommends 20 s
ESPINTCP_MISSING = "ESP in TCP needs the kernel's espintcp (CONFIG_INET_ESPINTCP)"
SWEEP_ALWAYS = 256  # a waiter for this many IKE SAs or fewer checks the engine every batch


def _ep(endpoint: Endpoint) -> str:
    host = str(endpoint[0])
    return f"[{host}]:{endpoint[1]}" if ":" in host else f"{host}:{endpoint[1]}"


def view_to_json(view: IkeSaView) -> dict[str, Any]:
    """The `list-sas --json` object of one IKE SA (the CLI contract)."""
    return {
        "id": view.id,
        "connection": view.connection,
        "state": view.state,
        "initiator": view.initiator,
        "local": _ep(view.local),
        "remote": _ep(view.remote),
        "spi_i": view.spi_i,
        "spi_r": view.spi_r,
        "local_id": view.local_id,
        "remote_id": view.remote_id,
        "suite": view.suite,
        "nat_local": view.nat_local,
        "nat_remote": view.nat_remote,
        "local_vips": list(view.local_vips),
        "remote_vips": list(view.remote_vips),
        "ppk": view.ppk,
        "window": list(view.window),  # RFC 7296 §2.3: [requests out at once, taken at once]
        "peak_outstanding": view.peak_outstanding,
        "children": [
            {
                "name": c.name,
                "reqid": c.reqid,
                "protocol": c.protocol,
                "mode": c.mode,
                "spi_in": f"{c.spi_in:08x}",
                "spi_out": f"{c.spi_out:08x}",
                "local_ts": list(c.local_ts),
                "remote_ts": list(c.remote_ts),
                "suite": c.suite,
                "cpi_in": f"{c.cpi_in:04x}" if c.cpi_in else "",  # IPComp, RFC 3173
                "cpi_out": f"{c.cpi_out:04x}" if c.cpi_out else "",
            }
            for c in view.children
        ],
    }


def format_sas(sas: list[dict[str, Any]]) -> str:
    """list-sas in words: one block per IKE SA, one indented line per child."""
    if not sas:
        return "no IKE SAs"
    lines = []
    for sa in sas:
        role = "initiator" if sa["initiator"] else "responder"
        nat = " NAT" if sa["nat_local"] or sa["nat_remote"] else ""
        lines.append(
            f"{sa['connection']}[{sa['id']}]: {sa['state'].upper()}, {sa['local']}"
            f"[{sa['local_id']}]...{sa['remote']}[{sa['remote_id']}] ({role}{nat})"
        )
        lines.append(f"  {sa['spi_i']}_i {sa['spi_r']}_r  {sa['suite']}")
        for side in ("local", "remote"):
            if sa.get(f"{side}_vips"):
                lines.append(f"  {side} vips: {' '.join(sa[f'{side}_vips'])}")
        for c in sa["children"]:
            cpis = f" CPIs {c['cpi_in']}_i {c['cpi_out']}_o" if c.get("cpi_in") else ""
            lines.append(
                f"  {c['name']}{{{c['reqid']}}}: {c['mode'].upper()} {c['protocol']} "
                f"SPIs {c['spi_in']}_i {c['spi_out']}_o{cpis}  {c['suite']}"
            )
            lines.append(f"    {' '.join(c['local_ts'])} === {' '.join(c['remote_ts'])}")
    return "\n".join(lines)


def pool_to_json(pool: PoolView, now: float) -> dict[str, Any]:
    """The `list-pools --json` object of one pool (the CLI contract)."""
    return {
        "name": pool.name,
        "addresses": pool.addresses,
        "size": pool.size,
        "online": pool.online,
        "offline": pool.offline,
        "leases": [
            {
                "address": lease.address,
                "identity": lease.identity,
                "online": lease.online,
                "ike_sas": list(lease.holders),
                # offline within its grace period: seconds it stays reserved for its identity
                "reserved_for": (
                    None if lease.reserved_until is None else max(0.0, lease.reserved_until - now)
                ),
            }
            for lease in pool.leases
        ],
    }


def format_pools(pools: list[dict[str, Any]]) -> str:
    """list-pools in words: one line per pool, one indented line per lease."""
    if not pools:
        return "no pools"
    lines = []
    for pool in pools:
        lines.append(
            f"{pool['name']}: {pool['addresses']}  {pool['online']}/{pool['size']} online, "
            f"{pool['offline']} offline"
        )
        for lease in pool["leases"]:
            state = "online" if lease["online"] else "offline"
            if lease["reserved_for"] is not None:
                state += f" (reserved {lease['reserved_for']:.0f} s)"
            holders = ",".join(str(h) for h in lease["ike_sas"])
            held = f" IKE SA {holders}" if holders else ""
            lines.append(f"  {lease['address']}  {state}  {lease['identity']}{held}")
    return "\n".join(lines)


@dataclass
class Waiter:
    """A command waiting for IKE SAs to come up or go away."""

    sa_ids: set[int]
    future: asyncio.Future[dict[str, Any]]
    want_up: bool
    failures: dict[int, str] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    pending: set[int] = field(default_factory=set)  # sa_ids - done, kept as it shrinks
    swept: float = float("-inf")  # when the engine was last checked for vanished IKE SAs

    def __post_init__(self) -> None:
        self.pending = self.sa_ids - self.done

    def finish(self, sa_id: int) -> None:
        self.done.add(sa_id)
        self.pending.discard(sa_id)


class Driver:
    def __init__(
        self,
        engine: Engine,
        kernel: Kernel,
        transport: UdpTransport,
        loop: asyncio.AbstractEventLoop,
        key_log: KeyLog | None = None,
        applier: KernelApplier | None = None,
        vips: VirtualIps | None = None,
        revocation: RevocationFetcher | None = None,
    ) -> None:
        self.engine = engine
        # CRL / OCSP fetches the engine asks for (revocation.py); it holds IKE_AUTH meanwhile
        self.revocation = revocation or RevocationFetcher(loop)
        cache = getattr(engine, "revocation", None)  # stand-in engines of tests have none
        if cache is not None:
            cache.fetching = True
        self.kernel = kernel
        self.applier = applier or KernelApplier(kernel)
        self.transport = transport
        self.loop = loop
        self.key_log = key_log
        self.vips = vips  # a client's virtual IPs and DNS hook (vips.py)
        self.tcp: TcpTransport | None = None  # RFC 9329 (tcp.py), set by the daemon
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._waiters: list[Waiter] = []
        self.child_waits = ChildWaits()  # `up` waiting for children (child_waits.py)
        self._keepalive: asyncio.TimerHandle | None = None
        self.counts = {"established": 0, "failed": 0, "deleted": 0, "children": 0}
        self._handlers: dict[type, Callable[[Any], None]] = {
            IkeSaEstablished: self._ike_established,
            IkeSaDeleted: self._ike_gone,
            IkeSaFailed: self._ike_gone,
            IkeSaRedirected: self._ike_redirected,
            ChildSaEstablished: self._child_established,
            ChildSaDeleted: self._child_deleted,
            ChildSaFailed: self._child_failed,
            IkeSaMoved: self._ike_moved,
            VirtualIpsAssigned: self._vips_assigned,
            VirtualIpsReleased: self._vips_released,
            RevocationFetch: self._fetch_revocation,
            TcpConnect: self._tcp_connect,
            EapBackendRequest: self._eap_backend,
        }
        self.radius: RadiusBridge | None = None  # EAP-RADIUS (eap_radius.py), set by the daemon

    # --- inputs
    def on_datagram(self, data: bytes, remote: Endpoint, local: Endpoint) -> None:
        """One received IKE datagram (marker stripped); the transport calls flush() per batch."""
        events = self.engine.receive_datagram(data, remote, local, self.loop.time())
        if events:
            self.apply(events)

    def on_tcp_message(self, data: bytes, remote: Endpoint, local: Endpoint) -> None:
        """One IKE message from the TCP connection local <-> remote (RFC 9329 §3.1)."""
        events = self.engine.receive_datagram(data, remote, local, self.loop.time(), tcp=True)
        if events:
            self.apply(events)

    def on_tcp_change(self, change: TcpChange) -> None:
        """A TCP connection came up, failed or closed (§6.1): the engine decides what follows."""
        self.apply(self.engine.tcp_changed(change, self.loop.time()))
        self._after()

    def _tcp_connect(self, event: TcpConnect) -> None:
        if self.tcp is None:
            log.warning("IKE over TCP wanted but no TCP transport", conn=event.connection)
            change = TcpChange(TcpChangeKind.FAILED, event.ike_sa_id, reason="no TCP transport")
            self.loop.call_soon(self.on_tcp_change, change)
            return
        self.tcp.connect(event)

    def flush(self) -> None:
        self._after()

    def _on_timer(self, deadline: float) -> None:
        self._timer, self._armed = None, None
        # call_at may fire a little early (clock resolution): never hand the engine a time
        # before the deadline it asked for, or it would ask again for the same instant
        not_before = None
        try:
            events = self.engine.handle_timer(max(self.loop.time(), deadline))
            self.apply(events)
        except Exception as exc:
            # the one timer drives every IKE SA's retransmits, liveness checks (RFC 7296 §2.4)
            # and lifetimes (§2.8): a fault here must not stop it. Logged by type only (no
            # secrets); wait a second before the next try, lest a deadline that keeps failing
            # spin the loop.
            log.error("timer handling failed", reason=type(exc).__name__)
            not_before = self.loop.time() + 1.0
        finally:
            self._after(not_before)

    def on_kernel_readable(self) -> None:
        try:
            events = self.kernel.read_events()
        except KernelError as exc:
            log.warning("kernel events unreadable", error=str(exc))
            return
        for event in events:
            self._kernel_event(event)
        self._after()

    def _kernel_event(self, event: KernelEvent) -> None:
        now = self.loop.time()
        if isinstance(event, Acquire):
            trap = self.applier.trap_child(event.reqid)
            if trap is None:
                return
            # the engine decides: a child under an IKE SA of the connection, a new IKE SA, or
            # nothing when the child exists or is under way (repeated acquires)
            self.apply(self.engine.kernel_acquire(*trap, now))
        elif isinstance(event, Expire):
            # either direction: the destination tells the engine which one (kernel_events.py)
            expire = self.engine.kernel_expire
            self.apply(expire(event.proto, event.spi, event.hard, now, event.dst))
        elif isinstance(event, Mapping):
            log.info("NAT mapping changed", spi=f"{event.spi:08x}",
                     new=f"{event.new_src}:{event.new_sport}")  # fmt: skip

    # --- commands
    def initiate(self, name: str, children: tuple[ChildConfig, ...] | None = None) -> int:
        sa_id = self.engine.initiate(name, self.loop.time(), children)
        self.apply(self.engine.take_events())  # over TCP: the connection to open first
        self._after()
        return sa_id

    def initiate_child(self, name: str, child: str) -> int:
        """`up NAME --child CHILD`: under an IKE SA we hold, or a new one (RFC 6023)."""
        sa_id = self.engine.initiate_child(name, child, self.loop.time())
        self.apply(self.engine.take_events())  # a new IKE SA over TCP: its connection first
        self._after()
        return sa_id

    def terminate(self, sa_id: int) -> None:
        self.apply(self.engine.terminate(sa_id, self.loop.time()))
        self._after()

    def rekey(self, sa_id: int, child_spi_in: int | None, *, reauth: bool = False) -> bool:
        """Rekey an IKE SA (RFC 7296 §1.3.2), one of its children (§1.3.3), or reauthenticate
        it (§2.8.3). False when there is no such IKE SA."""
        if sa_id not in self.engine.sas:
            return False
        now = self.loop.time()
        if reauth:
            events = self.engine.reauthenticate(sa_id, now)
        elif child_spi_in is None:
            events = self.engine.rekey_ike(sa_id, now)
        else:
            events = self.engine.rekey_child(sa_id, child_spi_in, now)
        self.apply(events)
        self._after()
        return True

    def redirect(self, sa_id: int, gateway: str) -> bool:
        """Send the peer of an established IKE SA to `gateway` (RFC 5685 §3.6). False when
        there is no such established IKE SA; UsageError for a gateway that is no address or
        host name."""
        view = next((v for v in self.engine.list_sas() if v.id == sa_id), None)
        if view is None or view.state != "established":
            return False
        self.apply(self.engine.redirect(sa_id, gateway, self.loop.time()))
        self._after()
        return True

    def local_address_changed(self, old: IPAddress, new: IPAddress) -> None:
        """Our address `old` is gone, `new` reaches the peers: MOBIKE moves (roaming.py)."""
        self.apply(self.engine.local_address_changed(old, new, self.loop.time()))
        self._after()

    def wait_for(self, sa_ids: set[int], want_up: bool) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        waiter = Waiter(set(sa_ids), future, want_up)
        self._waiters.append(waiter)
        self._settle(waiter)
        return future

    def list_sas(self) -> list[dict[str, Any]]:
        return [view_to_json(v) for v in self.engine.list_sas()]

    def list_pools(self) -> list[dict[str, Any]]:
        now = self.loop.time()
        return [pool_to_json(p, now) for p in self.engine.list_pools(now)]

    # --- events
    def apply(self, events: list[Event]) -> None:
        queue = list(events)
        while queue:
            event = queue.pop(0)
            handler = self._handlers.get(type(event))
            if handler is None:
                continue
            if isinstance(event, ChildSaEstablished):
                queue += self._install(event)
            else:
                handler(event)
        for waiter in list(self._waiters):
            self._settle(waiter)

    def _install(self, event: ChildSaEstablished) -> list[Event]:
        try:
            if event.encap_tcp and self.tcp is not None and self.tcp.ulp_missing:
                # RFC 9329 ESP in TCP needs espintcp; such a kernel takes seconds to say EINVAL
                raise KernelError("add_sa", errno.EOPNOTSUPP, ESPINTCP_MISSING)
            self.applier.child_established(event)
        except KernelError as exc:
            log.warning("kernel refused child SA", ike_sa=event.ike_sa_id, conn=event.connection,
                        child=event.child, error=str(exc))  # fmt: skip
            self._note_failure(event.ike_sa_id, f"child {event.child}: kernel: {exc}")
            failed = ChildSaFailed(event.ike_sa_id, event.connection, event.child, f"kernel: {exc}")
            self.child_waits.failed(failed)
            return self.engine.kernel_failed(
                event.ike_sa_id, event.spi_in, str(exc), self.loop.time()
            )
        self._child_established(event)
        return []

    def _ike_established(self, event: IkeSaEstablished) -> None:
        self.counts["established"] += 1
        if self.key_log is not None:
            keys = self.engine.export_keys(event.ike_sa_id)
            if keys is not None:
                try:
                    self.key_log.ike_sa(keys)
                except UnknownToWireshark as exc:
                    log.warning("key log: no Wireshark name", error=str(exc))
        for waiter in self._waiters:
            if event.ike_sa_id in waiter.sa_ids and waiter.want_up:
                waiter.finish(event.ike_sa_id)

    def _ike_redirected(self, event: IkeSaRedirected) -> None:
        """RFC 5685: an `up` waiting for the redirected IKE SA waits for its successor."""
        log.info("redirected", ike_sa=event.ike_sa_id, to=event.gateway,
                 new_ike_sa=event.new_ike_sa_id)  # fmt: skip
        self.child_waits.moved(event.ike_sa_id, event.new_ike_sa_id)
        for waiter in self._waiters:
            if event.ike_sa_id in waiter.pending and waiter.want_up:
                waiter.sa_ids = (waiter.sa_ids - {event.ike_sa_id}) | {event.new_ike_sa_id}
                waiter.pending = (waiter.pending - {event.ike_sa_id}) | {event.new_ike_sa_id}

    def _ike_gone(self, event: IkeSaDeleted | IkeSaFailed) -> None:
        self.counts["failed" if isinstance(event, IkeSaFailed) else "deleted"] += 1
        again = event.retried_by if isinstance(event, IkeSaFailed) else None
        if again is not None:  # udp-then-tcp: the children come up under the TCP attempt
            self.child_waits.moved(event.ike_sa_id, again)
        else:
            self.child_waits.ike_gone(event.ike_sa_id, event.reason)
        if self.radius is not None:
            self.radius.ike_gone(event.ike_sa_id)
        for waiter in self._waiters:
            if event.ike_sa_id in waiter.sa_ids:
                if waiter.want_up and again is not None:  # udp-then-tcp: wait for the TCP try
                    waiter.sa_ids.add(again)
                    waiter.pending.add(again)
                elif waiter.want_up:
                    waiter.failures[event.ike_sa_id] = event.reason
                waiter.finish(event.ike_sa_id)

    def _child_established(self, event: ChildSaEstablished) -> None:
        self.counts["children"] += 1
        self.child_waits.established(event)
        if self.vips is not None:
            self.vips.child_established(event)  # a road warrior's routes (vip_routes.py)
        if self.key_log is not None:
            try:
                self.key_log.child_sa(event)
            except UnknownToWireshark as exc:
                log.warning("key log: no Wireshark name", error=str(exc))

    def _ike_moved(self, event: IkeSaMoved) -> None:
        """RFC 4555 §3.5 / RFC 7296 §2.23: the children's kernel SAs and policies follow."""
        log.info("IKE SA moved", ike_sa=event.ike_sa_id,
                 local=f"{event.local[0]}:{event.local[1]}",
                 remote=f"{event.remote[0]}:{event.remote[1]}")  # fmt: skip
        for old, new in event.children:
            try:
                self.applier.child_moved(old, new)
            except KernelError as exc:
                log.warning("kernel could not move child SA", ike_sa=event.ike_sa_id,
                            child=new.child, error=str(exc))  # fmt: skip
                self.apply(self.engine.kernel_failed(
                    event.ike_sa_id, new.spi_in, f"move: {exc}", self.loop.time()))  # fmt: skip

    def _eap_backend(self, event: EapBackendRequest) -> None:
        if self.radius is not None:
            self.radius.forward(event)
        else:  # no server configured (config_radius refuses that): fail the round at once
            self.eap_backend_answer(event.ike_sa_id, BackendAnswer(
                BackendVerdict.REJECT, b"", reason="no RADIUS server"))  # fmt: skip

    def eap_backend_answer(self, sa_id: int, answer: BackendAnswer) -> None:
        """The RADIUS server's answer (RFC 3579) into the engine, then the usual output."""
        self.apply(self.engine.eap_backend_answer(sa_id, answer, self.loop.time()))
        self._after()

    def _child_deleted(self, event: ChildSaDeleted) -> None:
        self.applier.child_deleted(event)
        if self.vips is not None:
            self.vips.child_deleted(event)

    def _vips_assigned(self, event: VirtualIpsAssigned) -> None:
        if self.vips is not None:
            self.vips.assigned(event)

    def _vips_released(self, event: VirtualIpsReleased) -> None:
        if self.vips is not None:
            self.vips.released(event)

    def _fetch_revocation(self, event: RevocationFetch) -> None:
        self.revocation.start(event, self._revocation_fetched)

    def _revocation_fetched(self, request: RevocationFetch, data: bytes | None) -> None:
        self.apply(self.engine.revocation_fetched(request, data, self.loop.time()))
        self._after()

    def _child_failed(self, event: ChildSaFailed) -> None:
        self._note_failure(event.ike_sa_id, f"child {event.child}: {event.reason}")
        self.child_waits.failed(event)

    def _note_failure(self, sa_id: int, reason: str) -> None:
        for waiter in self._waiters:
            if sa_id in waiter.sa_ids and waiter.want_up:
                waiter.failures.setdefault(-sa_id, reason)

    def _settle(self, waiter: Waiter) -> None:
        if waiter.future.done():
            self._waiters.remove(waiter)
            return
        sas = self.engine.sas
        now = self.loop.time()
        # gone from the engine counts as deleted. apply() settles after every batch: a big
        # waiter (shutdown's, one per IKE SA) is swept at most once a second, not per batch
        # (that was O(SAs) per datagram); its deletions arrive as events meanwhile.
        if not waiter.want_up and (len(waiter.pending) <= SWEEP_ALWAYS or now >= waiter.swept + 1):
            waiter.swept = now
            for sa_id in [i for i in waiter.pending if i not in sas]:
                waiter.finish(sa_id)
        if not waiter.pending:
            self._waiters.remove(waiter)
            errors = {k: v for k, v in waiter.failures.items() if k > 0}
            result: dict[str, Any] = {
                "ok": not errors,
                "sas": [view_to_json(ike_sa_view(sas[i])) for i in sorted(waiter.sa_ids)
                        if i in sas],
            }  # fmt: skip
            if errors:
                result["error"] = "; ".join(errors.values())
            child_errors = [v for k, v in waiter.failures.items() if k < 0]
            if child_errors:
                result["warnings"] = child_errors
            waiter.future.set_result(result)

    # --- output
    def _after(self, not_before: float | None = None) -> None:
        for datagram in self.engine.datagrams_to_send():
            if datagram.tcp:
                if self.tcp is not None:
                    self.tcp.send(datagram)
            else:
                self.transport.send(datagram)
        deadline = self.engine.get_timer()
        if deadline is not None and not_before is not None:
            deadline = max(deadline, not_before)
        if deadline == self._armed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer, deadline)

    # --- NAT-T keepalives (RFC 3948 §2.3)
    def start_keepalives(self, interval: float = KEEPALIVE_INTERVAL) -> None:
        """Every `interval` seconds (strongSwan's keep_alive; 0: none) to each NATed peer."""
        if interval <= 0:
            return

        def tick() -> None:
            # the IKE SAs themselves, not list_sas(): a view per SA every 20 s was ~60 µs
            # each (seconds of CPU per tick at 100,000 SAs)
            for sa in self.engine.sas.values():
                # none over TCP (RFC 9329 §6.6)
                if sa.nat_local and sa.tcp is None and sa.state is IkeState.ESTABLISHED:
                    self.transport.send_keepalive(sa.local, sa.remote)
            self._keepalive = self.loop.call_later(interval, tick)

        self._keepalive = self.loop.call_later(interval, tick)

    def stop(self) -> None:
        for handle in (self._timer, self._keepalive):
            if handle is not None:
                handle.cancel()
        for waiter in self._waiters:
            with contextlib.suppress(asyncio.InvalidStateError):
                waiter.future.set_result({"ok": False, "error": "daemon stopping"})
        self._waiters.clear()
