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
from ..events import ChildSaDeleted, IkeSaDeleted
from ..ike_sa import ChildState
from ..state import IkeInput, IkeState
from . import as_notify_type

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
    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, reason: str = "deleted by us") -> None:
        self.reason = reason

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        if sa.state is not IkeState.ESTABLISHED:
            return None
        sa.transition(IkeInput.START_DELETE)
        return [DeletePayload(ProtocolId.IKE, ())]

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        ike_deleted(sa, self.reason)

    def give_up(self, sa: IkeSa, now: float) -> None:
        ike_deleted(sa, f"{self.reason} (peer did not answer)")


class DeleteChildExchange:
    exchange_type = ExchangeType.INFORMATIONAL

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

    def build_i(self, sa: IkeSa, now: float) -> list[Payload]:
        return []

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        sa.schedule_dpd(now)

    def give_up(self, sa: IkeSa, now: float) -> None:
        ike_deleted(sa, "peer dead (liveness check unanswered)")


def respond(sa: IkeSa, payloads: Sequence[Payload]) -> list[Payload]:
    """Answer an INFORMATIONAL request; deletes take effect after the answer is built."""
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
        if collision is not None:
            # §2.25.2: the peer deletes the old IKE SA while we were rekeying it too, so its
            # rekey won: the children live on in the IKE SA that its rekey created here
            from .ike_rekey import move_children

            move_children(sa, collision.created)
            sa.rekeyed_at = 0.0
        return []
    return answer


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
