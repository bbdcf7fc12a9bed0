"""The engine's surface: commands, timers and the indexes of IKE SAs; the datagram path (SPI
demux, SK-protected requests and responses) is engine/dispatch.py, the IKE_SA_INIT gate gate.py.

Shaped like aioquic's QuicConnection: inputs are datagrams, timer ticks and commands, each with
`now`; outputs are datagrams_to_send(), the events each input returns, and get_timer(). Nothing
here touches a socket, a clock, randomness or the kernel: those come through `Env` and the caller.

Peer input never raises out of receive_datagram: a bad datagram is dropped with one logged reason,
a bad request is answered with the RFC 7296 §2.21 notify, a bad response ends only its exchange.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable

import structlog

from ..constants import ExchangeType
from ..errors import (
    UsageError,
)
from ..wire import (
    Payload,
)
from . import dispatch, kernel_events, reauth, recovery, tcp, timers, unique
from .config import ChildConfig, ConnectionConfig, EngineConfig, IPAddress
from .cookies import CookieGate
from .dos import DropLog, HalfOpenTable
from .env import Env
from .events import Datagram, Endpoint, Event
from .ike_sa import IkeSa, Outbox
from .pools import Pools, PoolView
from .reqids import DEFAULT_MAX_REQID, ReqidCounter
from .revocation import RevocationCache, RevocationFetch
from .spis import CpiRegistry, SpiRegistry
from .state import IkeState
from .tasks import (
    config_payload,
    create_child,
    eap_radius,
    ike_auth,
    ike_init,
    ike_rekey,
    informational,
    intermediate,
    mobike,
    redirect,
    revocation_wait,
)
from .views import IkeSaView, KeyExport, ike_sa_view, key_export, sa_counts
from .window import RequestClass

NEW = RequestClass.NEW

log = structlog.get_logger("ikev2.engine")


def _fmt(endpoint: Endpoint) -> str:
    return f"{endpoint[0]}:{endpoint[1]}"


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        env: Env | None = None,
        *,
        strict: bool = False,
        max_reqid: int = DEFAULT_MAX_REQID,  # the service's reqid range (reqids.py)
    ):
        self.config = config
        self.env = env or Env()
        self.strict = strict  # tests: re-raise our own bugs instead of logging them
        self.outbox = Outbox()
        self.sas: dict[int, IkeSa] = {}
        self.by_spi: dict[bytes, IkeSa] = {}
        # responder IKE SAs before IKE_AUTH, counted per source IP (dos.py, RFC 7296 §2.6)
        self.half_open: HalfOpenTable[IkeSa] = HalfOpenTable()
        self.cookies = CookieGate(self.env.random_bytes, config.cookie_secret_lifetime)
        # every drop before an IKE SA's keys vouch for the sender: rate-limited (dos.py)
        self._drops = DropLog(log, config.drop_log_lines, config.drop_log_interval)
        self._ids = itertools.count(1)
        self._reqids = ReqidCounter(self.sas.values, max_reqid)
        self.spis = SpiRegistry(self.sas.values)  # inbound child SPIs (spis.py)
        self.cpis = CpiRegistry(self.sas.values)  # inbound IPComp CPIs (spis.py)
        self.peers = reauth.PeerIndex()  # responders: reqids of reauthenticated children
        self.retries = recovery.Retries()
        self._timers: list[tuple[float, int, int]] = []
        self._scheduled: dict[int, float] = {}
        self._seq = itertools.count()
        self._invalid_spi_sent: dict[Endpoint, float] = {}
        self._dirty: list[IkeSa] = []  # SAs made during an input, scheduled before it returns
        self._tcp_in = False  # the datagram being handled came over TCP (tcp.py)
        self.pools = Pools(config.pools)  # virtual IP leases (pools.py, RFC 7296 §2.19)
        self.revocation = RevocationCache()  # fetched CRLs / OCSP answers (revocation.py)

    # --- commands
    def initiate(
        self,
        name: str,
        now: float,
        children: tuple[ChildConfig, ...] | None = None,
        *,
        over_tcp: bool | None = None,
    ) -> int:
        """Start an IKE SA for connection `name`: its first child (of `children`, all of the
        connection's by default) rides in IKE_AUTH, the others follow with CREATE_CHILD_SA
        (RFC 7296 §1.3.1). Over TCP (the connection's transport, or `over_tcp`) IKE_SA_INIT
        waits for the service's connection (tcp.py, RFC 9329 §6.1)."""
        conn = self.config.connection(name)
        if children is None:
            children = conn.children
        over_tcp = tcp.wanted(conn) if over_tcp is None else over_tcp
        contact = unique.send_initial_contact(self.sas.values(), conn)
        local, remote = tcp.endpoints(conn, over_tcp, self.config.tcp_port)
        sa = self._new_sa(
            conn,
            initiator=True,
            local=local,
            remote=remote,
            spi_i=self.new_ike_spi(),
            spi_r=bytes(8),
            now=now,
        )
        tcp.attach(sa, tcp.TcpLink(originator=True) if over_tcp else None)
        first_child = children[0] if children else None
        reqid = next(self._reqids) if first_child else 0
        sa.queue.append(ike_auth.IkeAuthExchange(first_child, reqid, initial_contact=contact))
        for child in children[1:]:
            sa.queue.append(create_child.CreateChildExchange(child, next(self._reqids)))
        if not tcp.awaits_connection(sa):
            ike_init.build_i(sa, now)
        self.retries.track(sa.id, name, children)  # keyingtries (recovery.py)
        self._after(sa)
        return sa.id

    def initiate_child(self, name: str, child: str, now: float) -> int:
        """`up NAME --child CHILD`: the child under an IKE SA of `name` we hold (RFC 6023: e.g. a
        childless one) or set up, else a new IKE SA carrying it (kernel_events.add_child)."""
        conn = self.config.connection(name)
        config = conn.child(child)
        sa = kernel_events.add_child(self.sas.values(), conn, config, self._reqids.__next__, now)
        if sa is None:
            return self.initiate(name, now, children=(config,))
        self._after(sa)
        return sa.id

    def eap_backend_answer(
        self, sa_id: int, answer: eap_radius.BackendAnswer, now: float
    ) -> list[Event]:
        """The RADIUS server's answer to an EapBackendRequest: the parked IKE_AUTH request is
        answered now (tasks/eap_radius.py)."""
        sa = self.sas.get(sa_id)
        parked = eap_radius.answered(sa, answer) if sa is not None else None
        if sa is not None and parked is not None:
            self._answer(sa, ExchangeType.IKE_AUTH, parked[0], parked[1], now)
            self._after(sa)
        return self._drain()

    def terminate(self, sa_id: int, now: float) -> list[Event]:
        """Delete an IKE SA with the peer (§1.4.1), and the one reauthenticating it if any
        (§2.8.3); a half-open one is just forgotten."""
        sa = self.sas.get(sa_id)
        if sa is not None:
            reauth.terminate(sa, now)
            self._after(sa)
        return self._drain()

    def terminate_child(self, sa_id: int, spi_in: int, now: float) -> list[Event]:
        sa = self.sas.get(sa_id)
        if sa is not None and sa.state is IkeState.ESTABLISHED:
            for child in sa.children:
                if child.spi_in == spi_in:
                    sa.start_exchange(informational.DeleteChildExchange(child), now)
            self._after(sa)
        return self._drain()

    def rekey_child(self, sa_id: int, spi_in: int, now: float) -> list[Event]:
        """Rekey one child SA now (RFC 7296 §1.3.3), make-before-break."""
        sa = self.sas.get(sa_id)
        child = sa.child_by_spi_in(spi_in) if sa is not None else None
        if sa is not None and child is not None and sa.state is IkeState.ESTABLISHED:
            sa.start_exchange(
                create_child.CreateChildExchange(child.config, child.reqid, child), now
            )
            self._after(sa)
        return self._drain()

    def rekey_ike(self, sa_id: int, now: float) -> list[Event]:
        """Rekey the IKE SA now (RFC 7296 §1.3.2); its children move to the new one."""
        sa = self.sas.get(sa_id)
        if sa is not None and sa.state is IkeState.ESTABLISHED:
            sa.start_exchange(ike_rekey.IkeRekeyExchange(), now)
            self._after(sa)
        return self._drain()

    def reauthenticate(self, sa_id: int, now: float) -> list[Event]:
        """Reauthenticate the IKE SA now (RFC 7296 §2.8.3): a new IKE SA, fully authenticated,
        takes over its children; make-before-break unless the connection says otherwise."""
        sa = self.sas.get(sa_id)
        if sa is not None:
            reauth.start(sa, now)
            self._after(sa)
        return self._drain()

    def redirect(self, sa_id: int, gateway: str, now: float) -> list[Event]:
        """Send the peer of an established IKE SA to `gateway`, an IP address or FQDN (RFC 5685
        §3.6); the IKE SA goes when the peer deletes it, or after the half-open timeout."""
        sa = self.sas.get(sa_id)
        if redirect.start(sa, gateway, now):
            assert sa is not None
            self._after(sa)
        return self._drain()

    def kernel_expire(
        self,
        protocol: int,
        spi: int,
        hard: bool,
        now: float,
        dst: IPAddress | None = None,
    ) -> list[Event]:
        """A kernel lifetime (bytes, packets or time) of the SA (`dst`, `spi`) ran out, inbound
        or outbound: soft rekeys its child, hard deletes it (kernel_events.py)."""
        for sa in kernel_events.expire(self.sas.values(), protocol, spi, hard, now, dst):
            self._after(sa)
        return self._drain()

    def kernel_acquire(self, name: str, child: str | None, now: float) -> list[Event]:
        """A trap policy of connection `name` (for its child `child`) caught a packet: create
        the child under an IKE SA that can carry it, or initiate one (kernel_events.py)."""
        conn = self.current_connection(name)
        if conn is None or not conn.children:
            log.info("acquire dropped", reason="no such connection or child", conn=name)
            return []
        config = next((c for c in conn.children if c.name == child), conn.children[0])
        sa = kernel_events.acquire(self.sas.values(), conn, config, self._reqids.__next__, now)
        if sa is None:
            log.info("acquire: initiating", conn=name, child=config.name)
            self.initiate(name, now, children=(config,))
        else:
            self._after(sa)
        return self._drain()

    def local_address_changed(
        self,
        old: IPAddress,
        new: IPAddress,
        now: float,
        additional: tuple[IPAddress, ...] = (),
    ) -> list[Event]:
        """Our address `old` is gone and `new` reaches the peers: each MOBIKE IKE SA we
        initiated on `old` moves there with UPDATE_SA_ADDRESSES (RFC 4555 §3.5), announcing
        `additional` as our other addresses (§3.6); IkeSaMoved events follow (tasks/mobike.py)."""
        for sa in mobike.local_address_changed(list(self.sas.values()), old, new, now, additional):
            self._after(sa)
        return self._drain()

    def kernel_failed(self, sa_id: int, spi_in: int, reason: str, now: float) -> list[Event]:
        """The kernel could not install a child SA: delete it with the peer (DESIGN §1)."""
        sa = self.sas.get(sa_id)
        if sa is not None:
            sa.log.warning("kernel refused child SA", spi_in=f"{spi_in:08x}", reason=reason)
        return self.terminate_child(sa_id, spi_in, now)

    def revocation_fetched(
        self, request: RevocationFetch, data: bytes | None, now: float
    ) -> list[Event]:
        """The answer to a RevocationFetch event: the CRL or OCSP response bytes, None when the
        fetch failed. IKE_AUTH exchanges held for it go on (tasks/revocation_wait.py)."""
        self.revocation.answer(request, data, now)
        for sa_id in list(self.revocation.held):
            sa = self.sas.get(sa_id)
            held = self.revocation.requests.pop(sa_id, None)
            if sa is None or (held is not None and sa.responses.classify(held[0]) is not NEW):
                self.revocation.held.discard(sa_id)
                continue
            try:
                if held is None:
                    revocation_wait.resume(sa, now)  # our IKE_AUTH: resent, the peer replays
                elif not revocation_wait.hold(sa, ike_auth.select_connection(sa, held[1]),
                                              held[1], now, held[0]):  # fmt: skip
                    self._answer(sa, ExchangeType.IKE_AUTH, held[0], held[1], now)
            except Exception:
                if self.strict:
                    raise
                log.exception("internal error while resuming IKE_AUTH; dropped")
            self._after(sa)
        return self._recover(self._drain(), now)

    def update_config(self, config: EngineConfig) -> None:
        """New connections apply to new IKE SAs; existing SAs keep the config they started with."""
        self.config = config
        self.pools.update(config.pools)

    # --- views
    def list_pools(self, now: float) -> list[PoolView]:
        return self.pools.views(now)

    def list_sas(self) -> list[IkeSaView]:
        return [ike_sa_view(sa) for sa in self.sas.values()]

    def count_sas(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """IKE SAs by (connection, state), children of established ones by (connection, child)."""
        return sa_counts(self.sas.values())

    def export_keys(self, sa_id: int) -> KeyExport | None:
        sa = self.sas.get(sa_id)
        return key_export(sa) if sa is not None else None

    # --- outputs
    def take_events(self) -> list[Event]:
        """Events a command left (initiate over TCP asks for a connection, tcp.py)."""
        return self._drain()

    def datagrams_to_send(self) -> list[Datagram]:
        out, self.outbox.datagrams = self.outbox.datagrams, []
        return out

    def get_timer(self) -> float | None:
        summary = self._drops.deadline()  # a suppressed-drops summary falls due
        while self._timers:
            deadline, _seq, sa_id = self._timers[0]
            if self._scheduled.get(sa_id) == deadline:
                return deadline if summary is None else min(deadline, summary)
            heapq.heappop(self._timers)
        return summary

    def _recover(self, events: list[Event], now: float) -> list[Event]:
        """dpd_action / close_action = restart of the IKE SAs these events ended (recovery.py)."""
        if recovery.restart(self, events, now, self._reqids.__next__):
            events += self._drain()
        return events

    def _drain(self) -> list[Event]:
        while self._dirty:
            self._after(self._dirty.pop())
        out, self.outbox.events = self.outbox.events, []
        return out

    # --- inputs
    def receive_datagram(
        self, data: bytes, remote: Endpoint, local: Endpoint, now: float, *, tcp: bool = False
    ) -> list[Event]:
        """One IKE message: a UDP datagram, or (`tcp`) one from the TCP connection local <->
        remote, its framing removed (RFC 9329 §3.1)."""
        self._tcp_in = tcp
        try:
            dispatch.receive(self, data, remote, local, now)
        except Exception:
            if self.strict:
                raise
            log.exception("internal error while handling a datagram; dropped")
        finally:
            self._tcp_in = False
        return self._recover(self._drain(), now)

    def tcp_changed(self, change: tcp.TcpChange, now: float) -> list[Event]:
        """The service's TCP connection of IKE SAs came up, failed or closed (RFC 9329 §6.1)."""
        for sa in tcp.changed(list(self.sas.values()), change, now):
            self._after(sa)
        return self._recover(self._drain(), now)

    def handle_timer(self, now: float) -> list[Event]:
        self._drops.flush(now)
        while self._timers and self._timers[0][0] <= now:
            deadline, _seq, sa_id = heapq.heappop(self._timers)
            sa = self.sas.get(sa_id)
            if sa is None or self._scheduled.get(sa_id) != deadline:
                continue
            del self._scheduled[sa_id]
            try:
                timers.on_timer(sa, now)
                self._after(sa)
            except Exception as exc:
                if self.strict:
                    raise
                self._timer_failed(sa, exc)
                continue
            again = self._scheduled.get(sa_id)
            if again is not None and again <= now:
                # our bug: the handler left a deadline it does not consume; never spin on it
                if self.strict:
                    raise UsageError(f"IKE SA {sa_id}: timer at {again} not consumed at {now}")
                sa.log.error("timer did not advance; retrying in a second", deadline=again)
                self._scheduled[sa_id] = now + 1.0
                heapq.heappush(self._timers, (now + 1.0, next(self._seq), sa_id))
        return self._recover(self._drain(), now)

    def _timer_failed(self, sa: IkeSa, exc: Exception) -> None:
        """Our bug in one IKE SA's deadline: drop that SA alone, so the other SAs' deadlines
        (retransmits §2.1, liveness §2.4, lifetimes §2.8) keep running. Logged by exception
        type only: its text could carry key material. An established SA tells the peer with
        one unawaited Delete (§1.4.1), as far as that still works."""
        reason = f"internal error in a timer ({type(exc).__name__})"
        sa.log.error("IKE SA dropped", reason=reason)
        try:
            if sa.state in (IkeState.ESTABLISHED, IkeState.DELETING):
                informational.delete_once(sa, after_unanswered=sa.requests.busy)
        except Exception as again:
            sa.log.error("delete not sent", reason=type(again).__name__)
        try:
            informational.ike_deleted(sa, reason)
        except Exception as again:
            sa.log.error("IKE SA not cleanly deleted", reason=type(again).__name__)
        sa.state = IkeState.CLOSED
        self._forget(sa)

    @property
    def max_packet(self) -> int:
        return self.config.max_packet

    @property
    def window_size(self) -> int:
        return self.config.window_size

    # --- IKE_SA_INIT, responder side (RFC 7296 §1.2, §2.6)
    def _gate_info(
        self, now: float, reason: str, event: str, logger: object = None, **fields: object
    ) -> None:
        """One log line for a datagram dropped before its sender is authenticated (the gate,
        unknown SPIs, ICV failures, stray message IDs), rate-limited per reason (a fixed
        string, never peer data): a flood of datagrams must not become a flood of log lines."""
        self._drops.reconfigure(self.config.drop_log_lines, self.config.drop_log_interval)
        self._drops.info(now, reason, event, logger, **fields)

    def _answer(
        self, sa: IkeSa, exchange: int, message_id: int, inner: tuple[Payload, ...], now: float
    ) -> None:
        """Process a new request and send our answer (RFC 7296 §2.1: exactly one)."""
        sa.responses.current = message_id  # §2.3: requests of a window come in any order
        try:
            answer = dispatch.respond(self, sa, exchange, inner, now)
        except eap_radius.AnswerLater:  # RFC 3579: eap_backend_answer answers it
            eap_radius.park(sa, message_id, inner)
            return
        sa.respond(exchange, message_id, answer)
        if exchange == ExchangeType.IKE_INTERMEDIATE:
            intermediate.responded(sa)  # new keys once the answer is out (RFC 9370 §2.2.2)
        if sa.pending_close:
            informational.ike_deleted(sa, sa.pending_close)
        else:
            sa.pump(now)

    # --- ike_sa.SaHost: what our IKE SAs ask of us
    def touch_sa(self, sa: IkeSa) -> None:
        self._dirty.append(sa)

    def spawn_sa(
        self,
        parent: IkeSa,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        now: float,
        conn: ConnectionConfig | None = None,
    ) -> IkeSa:
        """A new IKE SA to `parent`'s endpoints: made by rekeying it (§2.18), or initiated to
        reauthenticate it (§2.8.3, with `conn`: the connection as configured now)."""
        sa = self._new_sa(
            conn or parent.conn,
            initiator=initiator,
            local=parent.local,
            remote=parent.remote,
            spi_i=spi_i,
            spi_r=spi_r,
            now=now,
        )
        tcp.inherit(sa, parent)
        self._dirty.append(sa)
        return sa

    def current_connection(self, name: str) -> ConnectionConfig | None:
        return next((conn for conn in self.config.connections if conn.name == name), None)

    def new_ike_spi(self) -> bytes:
        """An IKE SPI none of our IKE SAs uses (§2.6: it identifies the SA to us)."""
        while True:
            spi = (self.env.spi_bytes or self.env.random_bytes)(8)
            if spi != bytes(8) and spi not in self.by_spi:
                return spi

    # --- bookkeeping
    def _new_sa(
        self,
        conn: ConnectionConfig,
        *,
        initiator: bool,
        local: Endpoint,
        remote: Endpoint,
        spi_i: bytes,
        spi_r: bytes,
        now: float,
    ) -> IkeSa:
        sa = IkeSa(
            next(self._ids),
            conn,
            initiator=initiator,
            local=local,
            remote=remote,
            spi_i=spi_i,
            spi_r=spi_r,
            outbox=self.outbox,
            env=self.env,
            now=now,
        )
        self.sas[sa.id] = sa
        self.by_spi[sa.local_spi] = sa
        sa.host = self  # no per-SA callables: an SA's fields must not point back at it
        if self._tcp_in and not initiator:  # a responder's IKE SA over TCP (RFC 9329 §6.1)
            tcp.attach(sa, tcp.TcpLink(originator=False, connected=True))
        return sa

    def _connections_for(self, local: Endpoint, remote: Endpoint) -> Iterable[ConnectionConfig]:
        for conn in self.config.connections:
            if conn.local_addrs and local[0] not in conn.local_addrs:
                continue
            if conn.remote_addrs and remote[0] not in conn.remote_addrs:
                continue
            yield conn

    def _send_plain(self, packet: bytes, remote: Endpoint, local: Endpoint) -> None:
        self.outbox.datagrams.append(Datagram(packet, remote, local, self._tcp_in))

    def _forget(self, sa: IkeSa) -> None:
        self.sas.pop(sa.id, None)
        config_payload.forget(sa, self.pools)
        self.peers.forget(sa)
        if self.by_spi.get(sa.local_spi) is sa:
            del self.by_spi[sa.local_spi]
        if sa.half_open_key is not None and self.half_open.get(sa.half_open_key) is sa:
            del self.half_open[sa.half_open_key]
        self._scheduled.pop(sa.id, None)

    def _after(self, sa: IkeSa) -> None:
        """Drop a closed SA from every index, or re-arm its timer."""
        if sa.state is IkeState.CLOSED:
            self._forget(sa)
            return
        self.peers.track(sa)
        deadline = sa.deadline()
        if deadline is None:
            self._scheduled.pop(sa.id, None)
        elif self._scheduled.get(sa.id) != deadline:
            self._scheduled[sa.id] = deadline
            heapq.heappush(self._timers, (deadline, next(self._seq), sa.id))
