"""MOBIKE (RFC 4555), both roles, and the implicit endpoint updates of RFC 7296 §2.23.

    IKE_AUTH:  HDR, SK { ..., N(MOBIKE_SUPPORTED), [N(ADDITIONAL_*_ADDRESS)+] }  -->
                                <--  HDR, SK { ..., N(MOBIKE_SUPPORTED), [N(ADDITIONAL_*)+] }
    move:      HDR, SK { N(UPDATE_SA_ADDRESSES), N(NATD_S), N(NATD_D), N(COOKIE2),
                 [N(NO_NATS_ALLOWED)], [N(ADDITIONAL_*)+ | N(NO_ADDITIONAL_ADDRESSES)] }  -->
                                <--  HDR, SK { N(NATD_S), N(NATD_D), N(COOKIE2) }

Only the original initiator decides on addresses (§3.1): it moves when told its address
changed (Engine.local_address_changed) or when a liveness check's NAT detection shows its
NAT mapping changed (§3.8), sending UPDATE_SA_ADDRESSES from the new address. The responder
moves the IKE SA and its children to the addresses the update came from. Without MOBIKE, a
responder follows a peer behind a NAT to the address its authenticated messages come from
(RFC 7296 §2.23); with MOBIKE such implicit updates are not made (§3.5, as strongSwan).
Every move is one IkeSaMoved event: the service moves the kernel SAs and policies in place.
"""

from __future__ import annotations

import hmac
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ...constants import ExchangeType, NotifyType
from ...wire import Message, NotifyPayload, Payload
from ..config import IPAddress
from ..events import ChildSaEstablished, Endpoint, IkeSaMoved
from ..state import IkeState
from . import has_notify, informational
from .ike_init import natd_hash, natd_payloads

if TYPE_CHECKING:
    from ..ike_sa import IkeSa

COOKIE2_BYTES = 16  # §3.7: 8 to 64 octets; strongSwan sends 16
MAX_ADDITIONAL = 8  # notifies per list (strongSwan's cap: some peers dislike long lists)
NAT_T_PORT = 4500
ADDRESS_NOTIFIES = {
    NotifyType.ADDITIONAL_IP4_ADDRESS: 4,
    NotifyType.ADDITIONAL_IP6_ADDRESS: 16,
}


@dataclass(slots=True)
class MobikeState:
    """enabled: both sides announced MOBIKE_SUPPORTED (§3.3). natd_peer: the last
    NAT_DETECTION_DESTINATION_IP hash the peer sent us (its view of our endpoint), to notice a
    changed NAT mapping (§3.8). peer_addresses: the peer's additional addresses (§3.6)."""

    enabled: bool = False
    natd_peer: bytes = field(default=b"", repr=False)
    peer_addresses: tuple[IPAddress, ...] = ()
    # ours to announce (§3.6) as the service last told us; None: the configured local_addrs
    additional: tuple[IPAddress, ...] | None = None


# --- IKE_SA_INIT and IKE_AUTH (§3.3)
def natd_seen(sa: IkeSa, message: Message) -> None:
    """The initiator saw the responder's NAT detection in IKE_SA_INIT (it does NAT-T): keep
    its hash of our endpoint. The IKE SA then floats to port 4500 for IKE_AUTH even without a
    NAT (§3.3: the NAT situation may change later, and no exchange could switch ports then)."""
    dest = message.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    if sa.initiator and sa.conn.mobike and dest is not None:
        # a NAT maps the port-500 flow apart from the 4500 one we float to: that hash says
        # nothing about the later mapping, and the first liveness check records it instead
        kept = dest.data if sa.remote[1] != 500 else b""
        sa.mobike = MobikeState(natd_peer=kept)


def floats(sa: IkeSa) -> bool:
    return sa.nat_local or sa.nat_remote or sa.mobike is not None


def auth_request(sa: IkeSa) -> list[Payload]:
    """The initiator's first IKE_AUTH: N(MOBIKE_SUPPORTED) and our other addresses."""
    if not sa.conn.mobike or sa.tcp is not None:  # over TCP (RFC 9329) the stream moves
        return []
    return [NotifyPayload(NotifyType.MOBIKE_SUPPORTED), *_address_list(sa, listed=False)]


def auth_response(sa: IkeSa, payloads: Sequence[Payload]) -> None:
    """The initiator: the responder's last IKE_AUTH answer decides (§3.3)."""
    if sa.conn.mobike and has_notify(payloads, NotifyType.MOBIKE_SUPPORTED):
        state = sa.mobike or MobikeState()
        state.enabled = True
        sa.mobike = state
        _peer_addresses(sa, payloads)
        sa.log.info("peer supports MOBIKE")


def auth_answer(sa: IkeSa, payloads: Sequence[Payload]) -> list[Payload]:
    """The responder: MOBIKE when both want it; our answer announces it back."""
    if not (sa.conn.mobike and has_notify(payloads, NotifyType.MOBIKE_SUPPORTED)) or sa.tcp:
        return []
    sa.mobike = MobikeState(enabled=True)
    _peer_addresses(sa, payloads)
    sa.log.info("peer supports MOBIKE")
    return [NotifyPayload(NotifyType.MOBIKE_SUPPORTED), *_address_list(sa, listed=False)]


def adopt(old: IkeSa, new: IkeSa) -> None:
    """An IKE rekey (RFC 7296 §2.18) keeps what MOBIKE negotiated."""
    if old.mobike is not None:
        new.mobike = replace(old.mobike)


def enabled(sa: IkeSa) -> bool:
    return sa.mobike is not None and sa.mobike.enabled


# --- §3.6: address lists
def _address_list(sa: IkeSa, *, listed: bool) -> list[Payload]:
    """ADDITIONAL_IP4/6_ADDRESS for each of our addresses but the IKE SA's own; in an
    INFORMATIONAL (`listed`) an empty list is said with NO_ADDITIONAL_ADDRESSES."""
    state = sa.mobike
    configured = state.additional if state is not None else None
    if configured is None:
        configured = tuple(a for a in sa.conn.local_addrs if not a.is_unspecified)
    ours = [a for a in dict.fromkeys(configured) if a != sa.local[0]][:MAX_ADDITIONAL]
    notifies: list[Payload] = [
        NotifyPayload(
            NotifyType.ADDITIONAL_IP4_ADDRESS
            if a.version == 4
            else NotifyType.ADDITIONAL_IP6_ADDRESS,
            data=a.packed,
        )
        for a in ours
    ]
    if not notifies and listed:
        notifies.append(NotifyPayload(NotifyType.NO_ADDITIONAL_ADDRESSES))
    return notifies


def _peer_addresses(sa: IkeSa, payloads: Sequence[Payload]) -> None:
    """§3.6: a list replaces the one before; NO_ADDITIONAL_ADDRESSES empties it. Malformed
    addresses are skipped (peer input never raises)."""
    if sa.mobike is None:
        return
    found: list[IPAddress] = []
    listed = False
    for p in payloads:
        if not isinstance(p, NotifyPayload):
            continue
        size = ADDRESS_NOTIFIES.get(p.notify_type)  # type: ignore[call-overload]
        if size is not None:
            listed = True
            if len(p.data) == size:
                found.append(ipaddress.ip_address(p.data))
        elif p.notify_type == NotifyType.NO_ADDITIONAL_ADDRESSES:
            listed = True
    if listed:
        sa.mobike.peer_addresses = tuple(found)
        sa.log.info("peer addresses", additional=[str(a) for a in found])


# --- §3.9: NO_NATS_ALLOWED
def no_nats_data(src: Endpoint, dst: Endpoint) -> bytes:
    """The addresses and ports the packet is sent from and to."""
    return src[0].packed + dst[0].packed + struct.pack("!HH", src[1], dst[1])


# --- moving the IKE SA and its children
def _child_event(sa: IkeSa, event: ChildSaEstablished) -> ChildSaEstablished:
    """The child's kernel SAs as they must be now: tunnel endpoints and UDP encapsulation
    follow the IKE SA (§3.5: the IPsec SAs move with it)."""
    local, remote = sa.local[0], sa.remote[0]
    nat = sa.nat_local or sa.nat_remote
    return replace(
        event,
        inbound=replace(event.inbound, src=remote, dst=local),
        outbound=replace(event.outbound, src=local, dst=remote),
        encap=(sa.local[1], sa.remote[1]) if nat else None,
    )


def moved(sa: IkeSa, old_local: Endpoint, old_remote: Endpoint) -> None:
    """Tell the service the IKE SA is at (sa.local, sa.remote) now; children whose kernel SAs
    no longer match move along (one IkeSaMoved)."""
    pairs: list[tuple[ChildSaEstablished, ChildSaEstablished]] = []
    for child in sa.children:
        old = child.event
        if not isinstance(old, ChildSaEstablished):
            continue
        new = _child_event(sa, old)
        if new != old:
            child.event = new
            pairs.append((old, new))
    same = (old_local, old_remote) == (sa.local, sa.remote)
    if (same and not pairs) or sa.established_at is None:
        return
    sa.log.info(
        "IKE SA moved",
        old=f"{old_local[0]}:{old_local[1]} - {old_remote[0]}:{old_remote[1]}",
        new=f"{sa.local[0]}:{sa.local[1]} - {sa.remote[0]}:{sa.remote[1]}",
        children=len(pairs),
    )
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


def observe(sa: IkeSa, remote: Endpoint, local: Endpoint, message_id: int, request: bool) -> None:
    """An authenticated message came from `remote` to `local`. RFC 7296 §2.23: behind a NAT
    follow it (a responder also follows the initiator's float to port 4500 in its first
    request after IKE_SA_INIT, as strongSwan does for message ID 1). With MOBIKE only
    UPDATE_SA_ADDRESSES moves the SA (RFC 4555 §3.5); requests are answered where they came
    from all the same (§2.11)."""
    if request:
        sa.reply_path = (remote, local)
    if (sa.remote, sa.local) == (remote, local) or enabled(sa):
        return
    first = request and not sa.initiator and message_id == 1
    if not (sa.nat_local or sa.nat_remote or first):
        return
    old_local, old_remote = sa.local, sa.remote
    sa.remote, sa.local = remote, local
    moved(sa, old_local, old_remote)


# --- the initiator's moves (§3.5)
def local_address_changed(
    sas: Iterable[IkeSa],
    old: IPAddress,
    new: IPAddress,
    now: float,
    additional: Sequence[IPAddress] = (),
) -> list[IkeSa]:
    """Our address `old` is gone and `new` reaches the peers: every established MOBIKE IKE SA
    we initiated on `old` moves to `new` (same port) and updates the peer. The children's
    kernel SAs move at once (`old` cannot carry them any more); once the peer has answered,
    again if the NAT detection changed the encapsulation. Returns the SAs moved."""
    touched = []
    for sa in sas:
        if sa.local[0] != old or sa.state is not IkeState.ESTABLISHED or sa.rekeyed_at:
            continue
        if not sa.initiator or not enabled(sa):
            sa.log.info("local address gone; no MOBIKE to move with", address=str(old))
            continue
        assert sa.mobike is not None
        sa.mobike.additional = tuple(a for a in additional if a != new)
        start_update(sa, (new, sa.local[1]), now)
        touched.append(sa)
    return touched


def start_update(sa: IkeSa, local: Endpoint, now: float) -> None:
    """Move to `local` and queue an UPDATE_SA_ADDRESSES unless one not yet sent is queued
    (it will carry the newest addresses: they are read when it is built)."""
    old_local, old_remote = sa.local, sa.remote
    sa.local = local
    if floats(sa) and sa.remote[1] == 500:  # §3.3: MOBIKE runs on port 4500
        sa.local, sa.remote = (local[0], NAT_T_PORT), (sa.remote[0], NAT_T_PORT)
    moved(sa, old_local, old_remote)
    if not any(isinstance(x, UpdateSaAddresses) for x in sa.queue):
        sa.start_exchange(UpdateSaAddresses(), now)


class UpdateSaAddresses:
    """The original initiator's INFORMATIONAL with UPDATE_SA_ADDRESSES, NAT detection for the
    new path (§3.5), COOKIE2 for return routability (§3.7) and our address list (§3.6)."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self) -> None:
        self.cookie2 = b""

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        if sa.state is not IkeState.ESTABLISHED or not enabled(sa):
            return None
        self.cookie2 = sa.random_bytes(COOKIE2_BYTES)
        payloads: list[Payload] = [
            NotifyPayload(NotifyType.UPDATE_SA_ADDRESSES),
            *natd_payloads(sa.spi_i, sa.spi_r, sa.local, sa.remote),
            NotifyPayload(NotifyType.COOKIE2, data=self.cookie2),
        ]
        if sa.conn.mobike_no_nats:
            data = no_nats_data(sa.local, sa.remote)
            payloads.append(NotifyPayload(NotifyType.NO_NATS_ALLOWED, data=data))
        payloads += _address_list(sa, listed=True)
        sa.log.info("sending UPDATE_SA_ADDRESSES", local=f"{sa.local[0]}:{sa.local[1]}")
        return payloads

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        echoed = next(
            (p.data for p in _notifies(payloads) if p.notify_type == NotifyType.COOKIE2), b""
        )
        if not hmac.compare_digest(echoed, self.cookie2):
            # §3.7: the answer did not come over the path we tested; the IKE SA must go
            sa.log.warning("COOKIE2 mismatch in the UPDATE_SA_ADDRESSES answer")
            informational.delete_once(sa)
            informational.ike_deleted(sa, "COOKIE2 mismatch (RFC 4555 §3.7)")
            return
        if has_notify(payloads, NotifyType.UNEXPECTED_NAT_DETECTED):
            sa.log.warning("peer saw a NAT on the new path and kept the old one (§3.9)")
            return
        _peer_addresses(sa, payloads)
        if any(isinstance(x, UpdateSaAddresses) for x in sa.queue):
            return  # a newer move is queued: its answer decides (strongSwan's rule too)
        _natd_answer(sa, payloads)
        sa.schedule_dpd(now)

    def give_up(self, sa: IkeSa, now: float) -> None:
        informational.ike_deleted(sa, "peer did not answer UPDATE_SA_ADDRESSES")


def _notifies(payloads: Sequence[Payload]) -> list[NotifyPayload]:
    return [p for p in payloads if isinstance(p, NotifyPayload)]


def _natd_answer(sa: IkeSa, payloads: Sequence[Payload]) -> bool:
    """The initiator reads the responder's NAT detection (§3.5, §3.8): the NAT flags and the
    children's encapsulation follow. True when the peer's view of our endpoint changed."""
    notifies = _notifies(payloads)
    sources = [p.data for p in notifies if p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]
    dest = next(
        (p.data for p in notifies if p.notify_type == NotifyType.NAT_DETECTION_DESTINATION_IP),
        None,
    )
    if not sources or dest is None or sa.mobike is None:
        return False
    changed = bool(sa.mobike.natd_peer) and dest != sa.mobike.natd_peer  # first: recorded
    sa.mobike.natd_peer = dest
    sa.nat_remote = natd_hash(sa.spi_i, sa.spi_r, sa.remote) not in sources
    sa.nat_local = dest != natd_hash(sa.spi_i, sa.spi_r, sa.local)
    moved(sa, sa.local, sa.remote)  # the encapsulation may have changed
    return changed


# --- §3.8: liveness checks that watch the NAT mapping
class LivenessExchange(informational.LivenessExchange):
    """RFC 7296 §2.4's empty INFORMATIONAL; an initiator with MOBIKE behind a NAT adds NAT
    detection, and a changed mapping (or a NAT gone) starts an update (§3.8)."""

    parallel = False  # RFC 7296 §2.3: MOBIKE's exchanges go alone

    def build_i(self, sa: IkeSa, now: float) -> list[Payload]:
        if sa.initiator and enabled(sa) and sa.nat_local:
            return natd_payloads(sa.spi_i, sa.spi_r, sa.local, sa.remote)
        return []

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        super().process_i(sa, payloads, now)
        was_nat = sa.nat_local
        watched = was_nat and sa.initiator and enabled(sa)
        if watched and (_natd_answer(sa, payloads) or not sa.nat_local):
            sa.log.info("NAT mapping changed; updating the peer (RFC 4555 §3.8)")
            start_update(sa, sa.local, now)


def liveness(sa: IkeSa) -> informational.LivenessExchange:
    return LivenessExchange() if enabled(sa) else informational.LivenessExchange()


# --- the responder (§3.5)
def respond(sa: IkeSa, payloads: Sequence[Payload]) -> list[Payload]:
    """Answer the MOBIKE parts of an INFORMATIONAL request: echo COOKIE2 (§3.7), answer NAT
    detection with the path the request took (§3.8), record the peer's addresses (§3.6), and
    move for UPDATE_SA_ADDRESSES unless NO_NATS_ALLOWED forbids a NAT we see (§3.9)."""
    if sa.mobike is None:
        return []
    remote, local = sa.reply_path or (sa.remote, sa.local)
    notifies = _notifies(payloads)
    kinds = {p.notify_type for p in notifies}
    answer: list[Payload] = []
    update = NotifyType.UPDATE_SA_ADDRESSES in kinds and not sa.initiator and enabled(sa)
    no_nats = next((p for p in notifies if p.notify_type == NotifyType.NO_NATS_ALLOWED), None)
    if update and no_nats is not None and no_nats.data != no_nats_data(remote, local):
        sa.log.warning("UPDATE_SA_ADDRESSES through a NAT refused (NO_NATS_ALLOWED)")
        return [NotifyPayload(NotifyType.UNEXPECTED_NAT_DETECTED)]
    sources = [p.data for p in notifies if p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]
    dest = next(
        (p.data for p in notifies if p.notify_type == NotifyType.NAT_DETECTION_DESTINATION_IP),
        None,
    )
    if sources and dest is not None:
        answer += natd_payloads(sa.spi_i, sa.spi_r, local, remote)
    _peer_addresses(sa, payloads)
    if update:
        old_local, old_remote = sa.local, sa.remote
        sa.remote, sa.local = remote, local
        if sources and dest is not None:
            sa.nat_remote = natd_hash(sa.spi_i, sa.spi_r, remote) not in sources
            sa.nat_local = dest != natd_hash(sa.spi_i, sa.spi_r, local)
        moved(sa, old_local, old_remote)
    answer += [p for p in notifies if p.notify_type == NotifyType.COOKIE2][:1]
    return answer
