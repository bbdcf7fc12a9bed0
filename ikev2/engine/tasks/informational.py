"""INFORMATIONAL exchanges (RFC 7296 §1.4): Delete of child SAs and of the IKE SA, liveness
checks (§2.4, an empty request), and error notifies (§2.21).

    HDR, SK {[N], [D], [CP]}  -->
                          <--  HDR, SK {[N], [D], [CP]}
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...constants import ExchangeType, HeaderFlag, NotifyType, ProtocolId
from ...wire import DeletePayload, Header, Message, NotifyPayload, Payload, encode_message
from ..events import ChildSaDeleted, IkeSaDeleted, IkeSaFailed
from ..ike_sa import ChildState
from ..state import IkeInput, IkeState
from . import as_notify_type, error_notifies, followup_ke

if TYPE_CHECKING:
    from ..ike_sa import ChildSa, IkeSa


def child_deleted(sa: IkeSa, child: ChildSa, reason: str) -> None:
    """Forget a child and tell the service, once (collisions can delete it twice, §2.25.1)."""
    if child not in sa.children:
        return
    sa.children.remove(child)
    sa.log.info("child SA deleted", child=child.config.name, spi_in=f"{child.spi_in:08x}")
    sa.emit(
        ChildSaDeleted(
            ike_sa_id=sa.id,
            connection=sa.conn.name,
            child=child.config.name,
            reqid=child.reqid,
            protocol=child.protocol,
            spi_in=child.spi_in,
            spi_out=child.spi_out,
            local=sa.local[0],
            remote=sa.remote[0],
            reason=reason,
        )
    )


def ike_deleted(sa: IkeSa, reason: str) -> None:
    """The IKE SA is gone: its children go with it (§1.4.1)."""
    for child in list(sa.children):
        child_deleted(sa, child, reason)
    if sa.state is not IkeState.CLOSED:
        if sa.rekeyed_at is not None:
            reason = "rekeyed"
        sa.log.info("IKE SA deleted", reason=reason)
        sa.emit(IkeSaDeleted(sa.id, sa.conn.name, reason))
        sa.transition(IkeInput.CLOSE)


class DeleteIkeExchange:
    """Our Delete of the IKE SA (§1.4.1). `follows_rekey`: still wanted when a rekey of the IKE
    SA completes first, then it deletes the new IKE SA (ike_rekey.move_children)."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, reason: str = "deleted by us", *, follows_rekey: bool = False) -> None:
        self.reason = reason
        self.follows_rekey = follows_rekey

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        if sa.state is not IkeState.ESTABLISHED:
            return None
        sa.transition(IkeInput.START_DELETE)
        return [DeletePayload(ProtocolId.IKE, ())]

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        ike_deleted(sa, self.reason)

    def give_up(self, sa: IkeSa, now: float) -> None:
        ike_deleted(sa, f"{self.reason} (peer did not answer)")


def terminate(sa: IkeSa, now: float) -> None:
    """`down`: delete the IKE SA with the peer (and a rekey's successor if one completes
    first); a half-open one is just forgotten."""
    if sa.state is IkeState.ESTABLISHED:
        sa.start_exchange(DeleteIkeExchange(follows_rekey=True), now)
    elif sa.state is IkeState.AUTH_SENT and sa.reauth_of is None:
        withdraw(sa, "terminated before it was established", now)
    elif sa.state is not IkeState.DELETING:
        ike_deleted(sa, "terminated before it was established")


def withdraw(sa: IkeSa, reason: str, now: float) -> None:
    """Delete an IKE SA whose IKE_AUTH is out: the peer may have set it up already and lost
    only its answer (§2.1), and would keep it until its liveness check (§2.4). The IKE_AUTH
    request is abandoned and a Delete (§1.4.1) goes under the next message ID (§2.2), protected
    with the keys of IKE_SA_INIT, retransmitted as any request and dropped after the last
    retransmit (DeleteIkeExchange.give_up); an IKE_AUTH answer arriving meanwhile no longer
    matches the outstanding request and is dropped."""
    sa.requests.done()
    sa.queue.clear()
    sa.transition(IkeInput.START_DELETE)
    message_id = sa.requests.allocate()
    payloads: list[Payload] = [DeletePayload(ProtocolId.IKE, ())]
    packets = sa.protect_all(ExchangeType.INFORMATIONAL, message_id, False, payloads)
    sa.requests.sent(message_id, packets, now, DeleteIkeExchange(reason))
    for packet in packets:
        sa.send(packet)
    sa.log.info("IKE SA delete sent", reason=reason, mid=message_id)


def delete_once(sa: IkeSa, after_unanswered: bool = False) -> None:
    """Tell the peer an IKE SA we forget is gone: one INFORMATIONAL Delete (§1.4.1), neither
    retransmitted nor awaited. After a request that went unanswered the peer expects either
    its message ID (it never got it) or the next (its answer was lost): one Delete under each
    (§2.2: the other copy is a retransmit to it, or reaches no IKE SA)."""
    if sa.sk_out is None:
        return
    message_ids = [sa.requests.next_id - 1] if after_unanswered else []
    message_ids.append(sa.requests.allocate())
    for message_id in message_ids:
        payloads = [DeletePayload(ProtocolId.IKE, ())]
        sa.send(sa.protect(ExchangeType.INFORMATIONAL, message_id, False, payloads))
    sa.log.info("IKE SA delete sent, not awaited")


class DeleteChildExchange:
    exchange_type = ExchangeType.INFORMATIONAL
    parallel = True  # §2.3: shares the request window with other child exchanges

    def __init__(self, child: ChildSa) -> None:
        self.child = child

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        if self.child not in sa.children:
            return None  # already gone (the peer deleted it first)
        self.child.state = ChildState.DELETING
        self.child.rekey_at = None
        return [DeletePayload(self.child.protocol, (struct.pack("!I", self.child.spi_in),))]

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        child_deleted(sa, self.child, "deleted by us")

    def give_up(self, sa: IkeSa, now: float) -> None:
        ike_deleted(sa, "peer did not answer a child delete")


class LivenessExchange:
    """RFC 7296 §2.4: an empty INFORMATIONAL; no answer after the retransmits means dead."""

    exchange_type = ExchangeType.INFORMATIONAL
    parallel = True  # §2.3: shares the request window

    def build_i(self, sa: IkeSa, now: float) -> list[Payload]:
        return []

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        sa.schedule_dpd(now)

    def give_up(self, sa: IkeSa, now: float) -> None:
        ike_deleted(sa, "peer dead (liveness check unanswered)")


def respond(sa: IkeSa, payloads: Sequence[Payload]) -> list[Payload]:
    """Answer an INFORMATIONAL request; deletes take effect after the answer is built."""
    if sa.state is IkeState.INIT_DONE:
        return half_open(sa, payloads)
    answer: list[Payload] = []
    delete_ike = False
    for payload in payloads:
        if isinstance(payload, DeletePayload):
            if payload.protocol == ProtocolId.IKE:
                delete_ike = True
                continue
            answer += _delete_children(sa, payload)
        elif isinstance(payload, NotifyPayload):
            _notified(sa, payload)
    if delete_ike:
        # §1.4.1: answer with an empty INFORMATIONAL, then the IKE SA and its children are gone
        sa.pending_close = "deleted by peer"
        collision, sa.ike_collision = sa.ike_collision, None
        if collision is not None and followup_ke.made(collision.created):
            # §2.25.2: the peer deletes the old IKE SA while we were rekeying it too, so its
            # rekey won: the children live on in the IKE SA that its rekey created here
            from .ike_rekey import move_children

            move_children(sa, collision.created)
            sa.rekeyed_at = 0.0
        return []
    return answer


def half_open(sa: IkeSa, payloads: Sequence[Payload]) -> list[Payload]:
    """An INFORMATIONAL before IKE_AUTH completed here (e.g. between EAP rounds). §2.21.2: an
    initiator that cannot authenticate us sends AUTHENTICATION_FAILED in an INFORMATIONAL
    and deletes the IKE SA; so does any error notify, or a Delete of the IKE SA: it ends now
    (after the empty answer, which every request gets), nothing was installed. Anything else
    is answered and changes nothing."""
    errors = error_notifies(payloads)
    deleted = any(isinstance(p, DeletePayload) and p.protocol == ProtocolId.IKE for p in payloads)
    if errors or deleted:
        notify = as_notify_type(errors[0].notify_type) if errors else None
        told = notify.name if notify else (f"error {errors[0].notify_type}" if errors else "Delete")
        reason = f"peer ended the half-open IKE SA ({told})"
        sa.log.warning("IKE SA failed", reason=reason, notify=notify.name if notify else None)
        sa.emit(IkeSaFailed(sa.id, sa.conn.name, reason, notify))
        sa.transition(IkeInput.CLOSE)
    return []


def unprotected(sa: IkeSa, header: Header, notifies: list[int]) -> None:
    """§2.21.4: unprotected notifies prove nothing. Two uses we make of INVALID_IKE_SPI
    answering our outstanding request. To our Delete of this IKE SA: the peer forgot it
    already, so we stop retransmitting (we were deleting it anyway). To the IKE_AUTH
    of a reauthentication (§2.8.3): the peer dropped the half-open IKE SA, so retransmitting
    is futile and the attempt ends (the old IKE SA stays and tries again: a forger could only
    do what dropping our packets does)."""
    invalid_spi = (
        header.is_response
        and sa.requests.matches(header.message_id)
        and NotifyType.INVALID_IKE_SPI in notifies
    )
    if invalid_spi and sa.state is IkeState.DELETING:
        ike_deleted(sa, "deleted (peer had already forgotten it)")
    elif invalid_spi and sa.state is IkeState.AUTH_SENT and sa.reauth_of is not None:
        reason = "peer answered IKE_AUTH with INVALID_IKE_SPI (it dropped the half-open IKE SA)"
        sa.log.warning("IKE SA failed", reason=reason)
        sa.emit(IkeSaFailed(sa.id, sa.conn.name, reason, NotifyType.INVALID_IKE_SPI))
        sa.transition(IkeInput.CLOSE)
    else:
        sa.log.info("unprotected message dropped", notifies=notifies)


def invalid_ike_spi_answer(request: Header) -> bytes:
    """§2.21.4: the unprotected INVALID_IKE_SPI answer to a message outside any IKE SA."""
    flags = HeaderFlag.RESPONSE | (0 if request.is_initiator else HeaderFlag.INITIATOR)
    reply = Header(
        request.spi_i, request.spi_r, 0, ExchangeType.INFORMATIONAL, flags, request.message_id, 0
    )
    return encode_message(Message(reply, (NotifyPayload(NotifyType.INVALID_IKE_SPI),)))


def _delete_children(sa: IkeSa, payload: DeletePayload) -> list[Payload]:
    """§1.4.1: each side deletes the inbound SAs named and answers with the paired ones."""
    ours: list[bytes] = []
    for spi in payload.spis:
        spi_value = struct.unpack("!I", spi)[0] if len(spi) == 4 else -1
        match = [
            c for c in sa.children if c.protocol == payload.protocol and c.spi_out == spi_value
        ]
        if not match:
            sa.log.info("delete for unknown child SPI ignored", spi=spi.hex())
            continue
        child = match[0]
        if child.state is not ChildState.DELETING:
            # §2.25.1: a child we are deleting ourselves is answered without a Delete payload
            ours.append(struct.pack("!I", child.spi_in))
        child_deleted(sa, child, "deleted by peer")
    return [DeletePayload(payload.protocol, tuple(ours))] if ours else []


def _notified(sa: IkeSa, notify: NotifyPayload) -> None:
    kind = as_notify_type(notify.notify_type)
    name = kind.name if kind else str(notify.notify_type)
    if kind is NotifyType.INVALID_SPI and len(notify.data) == 4:
        # §2.21.4 / §3.10.1: the peer got ESP/AH for an SPI it does not know; drop that child
        spi = struct.unpack("!I", notify.data)[0]
        for child in [c for c in sa.children if c.spi_out == spi]:
            child_deleted(sa, child, "peer reported INVALID_SPI")
        return
    if kind is NotifyType.AUTHENTICATION_FAILED:
        sa.pending_close = "peer reported AUTHENTICATION_FAILED"
        return
    sa.log.info("notify received", notify=name)
