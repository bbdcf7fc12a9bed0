"""IKE SAs over TCP (RFC 9329): what changes in the engine when the service carries an IKE SA
in a TCP stream instead of UDP datagrams. The framing and the sockets are not here (wire/
tcp_framing.py, service/tcp.py); this module decides, per IKE SA:

- Which transport (§5, §5.1): a connection's `transport` is udp, tcp or udp-then-tcp; the
  last one starts on UDP and, when IKE_SA_INIT is never answered (the §2.1 retransmissions of
  RFC 7296 ran out), initiates again over TCP (`fallback`).
- Who connects (§6.1): the TCP Originator, normally the IKE initiator, opens the connection
  before the first message (a TcpConnect event; IKE_SA_INIT is built once the service reports
  the local port, so the NAT detection hashes cover the TCP ports, §6.5). Only the Originator
  reconnects when the connection drops; the TCP Responder never opens one toward it.
- Retransmission (§6.2): TCP is reliable, so a request is not resent on a timer; it is given up
  after the whole UDP back-off span, and resent once when the connection is re-established.
  A retransmitted request arriving on the connection that carried the original is not answered
  again; one arriving on a new connection is answered there (the answer may have died with the
  old one).
- The latest connection wins (§6.1): an authenticated message on another connection moves the
  IKE SA to it, NAT or not.
- NAT (§6.5, §6.6): the hashes are still exchanged and the result shown, but it changes nothing:
  no port float to 4500, no UDP encapsulation of ESP (ESP rides in the same TCP stream, the
  child's encapsulation is the TCP connection's ports) and no NAT-keepalives.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import structlog

from .config import ConnectionConfig, IPAddress, Transport
from .events import ChildSaEstablished, Datagram, Endpoint, Event, IkeSaFailed, IkeSaMoved
from .state import IkeState
from .tasks import ike_init, informational

if TYPE_CHECKING:
    from .ike_sa import IkeSa
    from .manager import Engine

log = structlog.get_logger("ikev2.engine")

# the reason timers.py gives an IKE_SA_INIT nobody answered; over TCP it says so
UDP_INIT_UNANSWERED = "no IKE_SA_INIT response (retransmits exhausted)"
TCP_INIT_UNANSWERED = "no IKE_SA_INIT response over TCP (retransmits exhausted)"


@dataclass(slots=True)
class TcpLink:
    """The TCP side of one IKE SA: whether we opened the connection (only the Originator
    reconnects, §6.1) and whether the service holds one right now."""

    originator: bool
    connected: bool = False


@dataclass(frozen=True, slots=True)
class TcpConnect(Event):
    """Open a TCP connection from `local` (any port) to `remote` for IKE SA ike_sa_id, send the
    stream prefix, then report it with TcpChange(CONNECTED) (§4, §6.1)."""

    connection: str
    local: IPAddress
    remote: Endpoint
    reconnect: bool = False


class TcpChangeKind(enum.Enum):
    CONNECTED = "connected"  # our connection for ike_sa_id is up; `local` has its port
    FAILED = "failed"  # our connection for ike_sa_id could not be opened
    CLOSED = "closed"  # the connection local <-> remote is gone (either side's)


@dataclass(frozen=True, slots=True)
class TcpChange:
    kind: TcpChangeKind
    ike_sa_id: int | None = None
    local: Endpoint | None = None
    remote: Endpoint | None = None
    reason: str = ""


def wanted(conn: ConnectionConfig) -> bool:
    """Whether a new IKE SA of `conn` starts over TCP (a fallback one is asked for explicitly)."""
    return conn.transport is Transport.TCP


def endpoints(conn: ConnectionConfig, over_tcp: bool, tcp_port: int) -> tuple[Endpoint, Endpoint]:
    """(local, remote) of a new IKE SA we initiate. Over TCP the local port is the connection's
    (0 until the service reports it) and the peer's is the daemon-wide TCP port (§2)."""
    if over_tcp:
        return (conn.local_addrs[0], 0), (conn.remote_addrs[0], tcp_port)
    return (conn.local_addrs[0], conn.local_port), (conn.remote_addrs[0], conn.remote_port)


def attach(sa: IkeSa, link: TcpLink | None) -> None:
    """Put an IKE SA on TCP (or leave it on UDP with None); §6.2: no timed retransmits."""
    sa.tcp = link
    sa.requests.reliable = link is not None


def inherit(child: IkeSa, parent: IkeSa) -> None:
    """An IKE SA made by rekeying (§2.18) or reauthenticating one over TCP shares its connection
    (§6.1 allows two IKE SAs on one connection during a rekey)."""
    if parent.tcp is not None:
        attach(child, TcpLink(parent.tcp.originator, parent.tcp.connected))


def awaits_connection(sa: IkeSa) -> bool:
    """An initiator over TCP sends nothing before the connection is up (§6.1): ask for it."""
    link = sa.tcp
    if link is None or link.connected:
        return False
    sa.emit(TcpConnect(sa.id, sa.conn.name, sa.local[0], sa.remote))
    return True


def replay(sa: IkeSa, remote: Endpoint, local: Endpoint, message_id: int) -> None:
    """§6.2: a retransmitted request over TCP. On the connection that carried the original it
    needs no answer (TCP delivered ours); on a new one, answer there from the cache."""
    if (remote, local) == (sa.remote, sa.local):
        sa.log.debug("retransmitted request on the same TCP connection; not answered again")
        return
    for packet in sa.responses.cached(message_id):
        sa.outbox.datagrams.append(Datagram(packet, remote, local, tcp=True))


def follow(sa: IkeSa, remote: Endpoint, local: Endpoint, over_tcp: bool) -> None:
    """§6.1: an authenticated message on another TCP connection moves the IKE SA to it; an
    outstanding request of ours is resent there (the old connection may have lost it, §6.2).
    A message of this IKE SA that came over UDP moves nothing (it stays on TCP)."""
    assert sa.tcp is not None
    if not over_tcp:
        return
    sa.tcp.connected = True
    if (sa.remote, sa.local) == (remote, local):
        return
    sa.log.info("IKE SA moved to a new TCP connection",
                old=f"{sa.remote[0]}:{sa.remote[1]}", new=f"{remote[0]}:{remote[1]}")  # fmt: skip
    old_local, old_remote = sa.local, sa.remote
    sa.remote, sa.local = remote, local
    _moved(sa, old_local, old_remote)
    _resend_outstanding(sa)


def _moved(sa: IkeSa, old_local: Endpoint, old_remote: Endpoint) -> None:
    """ESP in TCP (§3.2): the children's kernel SAs name the connection's ports
    (TCP_ENCAP_ESPINTCP), so a new connection moves them, in place, with the IKE SA (one
    IkeSaMoved, the event MOBIKE moves kernel SAs with)."""
    if sa.established_at is None or (old_local, old_remote) == (sa.local, sa.remote):
        return
    pairs = []
    for child in sa.children:
        old = child.event
        if isinstance(old, ChildSaEstablished) and old.encap_tcp:
            new = replace(old, encap=(sa.local[1], sa.remote[1]))
            child.event = new
            pairs.append((old, new))
    sa.emit(
        IkeSaMoved(
            ike_sa_id=sa.id,
            connection=sa.conn.name,
            old_local=old_local,
            old_remote=old_remote,
            local=sa.local,
            remote=sa.remote,
            nat_local=sa.nat_local,
            nat_remote=sa.nat_remote,
            children=tuple(pairs),
        )
    )


def _resend_outstanding(sa: IkeSa) -> bool:
    for out in sa.requests.slots:
        sa.log.info("request resent on the new TCP connection", mid=out.message_id)
        for packet in out.packets:
            sa.send(packet)
    return sa.requests.busy


def changed(sas: Iterable[IkeSa], change: TcpChange, now: float) -> list[IkeSa]:
    """Apply what the service reports about a TCP connection; the IKE SAs that changed."""
    if change.kind is TcpChangeKind.CLOSED:
        return _closed(sas, change, now)
    sa = next((s for s in sas if s.id == change.ike_sa_id), None)
    if sa is None or sa.tcp is None or sa.closed:
        return []
    if change.kind is TcpChangeKind.FAILED:
        if sa.state is IkeState.CREATED:
            ike_init.fail(sa, f"TCP connection failed: {change.reason}", None)
        else:  # a reconnect that failed: ask again later (the SA's own timers end it)
            sa.log.info("TCP reconnect failed", reason=change.reason)
        return [sa]
    assert change.local is not None
    _connected(sa, change.local, now)
    return [sa]


def _connected(sa: IkeSa, local: Endpoint, now: float) -> None:
    assert sa.tcp is not None
    first = sa.state is IkeState.CREATED and not sa.init_request
    sa.tcp.connected = True
    old_local = sa.local
    sa.local = local
    _moved(sa, old_local, sa.remote)
    if first:
        ike_init.build_i(sa, now)  # NAT detection now hashes the TCP ports (§6.5)
        return
    # §6.1: a re-established connection. The request in flight goes again (§6.2); with none,
    # a liveness check tells the peer which connection is ours now.
    if not _resend_outstanding(sa) and sa.state is IkeState.ESTABLISHED:
        sa.start_exchange(informational.LivenessExchange(), now)


def _closed(sas: Iterable[IkeSa], change: TcpChange, now: float) -> list[IkeSa]:
    """§6.1: the IKE SAs on a closed connection stay; the Originator reconnects, the TCP
    Responder waits for it."""
    touched = []
    for sa in list(sas):
        link = sa.tcp
        if link is None or sa.closed or (sa.local, sa.remote) != (change.local, change.remote):
            continue
        link.connected = False
        touched.append(sa)
        if link.originator and sa.rekeyed_at is None and sa.state is not IkeState.DELETING:
            sa.log.info("TCP connection closed; reconnecting", reason=change.reason)
            sa.emit(TcpConnect(sa.id, sa.conn.name, sa.local[0], sa.remote, reconnect=True))
    return touched


def fallback(engine: Engine, events: list[Event], now: float) -> bool:
    """§5.1: an IKE SA of a udp-then-tcp connection whose IKE_SA_INIT over UDP was never
    answered is initiated again over TCP, with the same children and keyingtries attempt (the
    service logs which). True when one was started."""
    pending = engine.retries.pending
    started = False
    for index, event in enumerate(events):
        if not isinstance(event, IkeSaFailed) or event.reason != UDP_INIT_UNANSWERED:
            continue
        entry = pending.get(event.ike_sa_id)
        conn = engine.current_connection(event.connection)
        if entry is None or conn is None or conn.transport is not Transport.UDP_THEN_TCP:
            continue
        del pending[event.ike_sa_id]
        name, children, attempt = entry
        log.info("no answer over UDP; trying TCP", conn=name, attempt=attempt)
        sa_id = engine.initiate(name, now, children, over_tcp=True)
        pending[sa_id] = (name, children, attempt)
        events[index] = replace(event, retried_by=sa_id)  # an `up` waits for that one
        started = True
    return started
