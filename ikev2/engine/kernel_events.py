"""What the engine does with the kernel's events: SA expiry and ACQUIREs (pure, no IO).

- Expiry (XFRM_MSG_EXPIRE): a child SA is two kernel SAs, inbound (our SPI, destination our
  address) and outbound (the peer's SPI, destination its address), and either can reach its
  byte, packet or time limit first: the outbound one of a child that mostly sends. A soft
  expiry of either direction rekeys the child (RFC 7296 §2.8), a hard one deletes it with the
  peer (the kernel has removed that SA already). SPIs are chosen by their destination, so an
  inbound SPI of one child can equal the outbound SPI of another: the destination decides.
- ACQUIRE (a trap policy's first packet, strongSwan's start_action = trap): the child the trap
  stands for is created under an IKE SA of its connection that can carry it (CREATE_CHILD_SA,
  §1.3.1), or queued on one being set up; only when there is none does a new IKE SA start. An
  ACQUIRE for a child that exists or is under way (the kernel repeats them while packets keep
  coming) does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..constants import ProtocolId
from .config import ChildConfig, ConnectionConfig, IPAddress
from .ike_sa import ChildSa, ChildState, IkeSa
from .state import IkeState
from .tasks.create_child import CreateChildExchange
from .tasks.ike_auth import IkeAuthExchange
from .tasks.informational import DeleteChildExchange

# the kernel's IP protocol numbers (RFC 4303 ESP, RFC 4302 AH) as IKE protocol IDs
IP_PROTOCOLS = {50: ProtocolId.ESP, 51: ProtocolId.AH}
# states in which an IKE SA we initiate will still carry children it is given
SETTING_UP = frozenset({IkeState.CREATED, IkeState.INIT_SENT, IkeState.AUTH_SENT})


def _directions(sa: IkeSa, child: ChildSa) -> tuple[IPAddress, IPAddress]:
    """(inbound destination, outbound destination) of the child's kernel SAs."""
    event = child.event
    if event is not None:
        return event.inbound.dst, event.outbound.dst
    return sa.local[0], sa.remote[0]


def expired_children(
    sas: Iterable[IkeSa], protocol: int, spi: int, dst: IPAddress | None
) -> Iterator[tuple[IkeSa, ChildSa, bool]]:
    """The children one kernel SA belongs to, with whether it is their inbound SA. Without
    `dst` (an older caller) an SPI matches either direction. `protocol` is the IKE protocol
    ID (RFC 7296 §3.3.1) or the IP protocol number the kernel reports (50 ESP, 51 AH)."""
    protocol = IP_PROTOCOLS.get(protocol, protocol)
    for sa in sas:
        for child in sa.children:
            if child.protocol != protocol:
                continue
            dst_in, dst_out = _directions(sa, child)
            if child.spi_in == spi and dst in (None, dst_in):
                yield sa, child, True
            elif child.spi_out == spi and dst in (None, dst_out):
                yield sa, child, False


def _rekey_queued(sa: IkeSa, child: ChildSa) -> bool:
    exchanges = [*sa.in_flight(), *sa.queue]
    return any(isinstance(x, CreateChildExchange) and x.old is child for x in exchanges)


def _delete_queued(sa: IkeSa, child: ChildSa) -> bool:
    exchanges = [*sa.in_flight(), *sa.queue]
    return any(isinstance(x, DeleteChildExchange) and x.child is child for x in exchanges)


def expire(
    sas: Iterable[IkeSa], protocol: int, spi: int, hard: bool, now: float, dst: IPAddress | None
) -> list[IkeSa]:
    """Rekey (soft) or delete (hard) the child whose SA expired; returns the IKE SAs touched."""
    touched = []
    for sa, child, inbound in list(expired_children(sas, protocol, spi, dst)):
        direction = "inbound" if inbound else "outbound"
        if hard:
            if child.state is ChildState.DELETING or _delete_queued(sa, child):
                continue
            sa.log.info("child SA hard-expired in the kernel", direction=direction,
                        spi_in=f"{child.spi_in:08x}")  # fmt: skip
            child.rekey_at = None
            sa.start_exchange(DeleteChildExchange(child), now)
        elif child.state is ChildState.INSTALLED and not _rekey_queued(sa, child):
            sa.log.info("child SA soft-expired in the kernel; rekeying", direction=direction,
                        spi_in=f"{child.spi_in:08x}")  # fmt: skip
            sa.start_exchange(CreateChildExchange(child.config, child.reqid, child), now)
        else:
            continue
        touched.append(sa)
    return touched


# --- ACQUIRE


def _carries(sa: IkeSa, name: str) -> bool:
    """Does `sa` hold child `name`, or an exchange that will create it?"""
    if any(
        c.config.name == name and c.state in (ChildState.INSTALLED, ChildState.REKEYING)
        for c in sa.children
    ):
        return True
    for exchange in (*sa.in_flight(), *sa.queue):
        if isinstance(exchange, IkeAuthExchange) and exchange.child_config is not None:
            if exchange.child_config.name == name:
                return True
        elif isinstance(exchange, CreateChildExchange) and exchange.config.name == name:
            return True
    return False


def _usable(sa: IkeSa) -> bool:
    """An established IKE SA that stays: not replaced by a rekey, not being deleted or
    reauthenticated away (its children would not follow)."""
    return (
        sa.state is IkeState.ESTABLISHED
        and sa.rekeyed_at is None
        and sa.successor is None
        and sa.reauth_by is None
        and sa.pending_close is None
    )


def acquire(
    sas: Iterable[IkeSa],
    conn: ConnectionConfig,
    child: ChildConfig,
    reqids: Callable[[], int],
    now: float,
) -> IkeSa | None:
    """Handle an ACQUIRE for `child` of `conn` among our IKE SAs: returns the IKE SA that has
    or will have the child, or None when none can carry it and a new one must be initiated.
    A reqid is drawn from `reqids` only for a child actually started here."""
    mine = [sa for sa in sas if sa.conn.name == conn.name and not sa.closed]
    carrier = next((sa for sa in mine if _carries(sa, child.name)), None)
    if carrier is not None:
        carrier.log.debug("acquire ignored: child exists or is under way", child=child.name)
        return carrier
    usable = [sa for sa in mine if _usable(sa)]
    if usable:
        sa = max(usable, key=lambda s: s.established_at or 0.0)  # the newest
        sa.log.info("acquire: creating child under the existing IKE SA", child=child.name)
        sa.start_exchange(CreateChildExchange(child, reqids()), now)
        return sa
    starting = [sa for sa in mine if sa.initiator and sa.state in SETTING_UP]
    if starting:
        sa = starting[-1]
        sa.log.info("acquire: child queued on the IKE SA being set up", child=child.name)
        sa.queue.append(CreateChildExchange(child, reqids()))
        return sa
    return None


def add_child(
    sas: Iterable[IkeSa],
    conn: ConnectionConfig,
    child: ChildConfig,
    reqids: Callable[[], int],
    now: float,
) -> IkeSa | None:
    """`ikev2 up CONN --child NAME`: one more `child` by CREATE_CHILD_SA (RFC 7296 §1.3.1)
    under the newest established IKE SA of `conn` (a childless one, RFC 6023, is the usual
    case), or queued on the IKE SA we are setting up; None when there is neither. Unlike an
    ACQUIRE, a child that exists already is created again (as swanctl --initiate --child)."""
    mine = [sa for sa in sas if sa.conn.name == conn.name and not sa.closed]
    usable = [sa for sa in mine if _usable(sa)]
    if usable:
        sa = max(usable, key=lambda s: s.established_at or 0.0)
        sa.log.info("creating child under the existing IKE SA", child=child.name)
        sa.start_exchange(CreateChildExchange(child, reqids()), now)
        return sa
    starting = [sa for sa in mine if sa.initiator and sa.state in SETTING_UP]
    if starting:
        starting[-1].queue.append(CreateChildExchange(child, reqids()))
        return starting[-1]
    return None
