"""IKE_FOLLOWUP_KE (RFC 9370 §2.2.4): the additional key exchanges of a CREATE_CHILD_SA, for a
child SA with PFS and for an IKE SA rekey, both roles.

    CREATE_CHILD_SA  HDR, SK {SA(KE, ADDKE..), Ni, KEi, [TSi, TSr]}  -->
                     <--  HDR, SK {SA, Nr, KEr, N(ADDITIONAL_KEY_EXCHANGE)(link1), [TSi, TSr]}
    IKE_FOLLOWUP_KE  HDR, SK {KEi(1), N(ADDITIONAL_KEY_EXCHANGE)(link1)}  -->
                     <--  HDR, SK {KEr(1), [N(ADDITIONAL_KEY_EXCHANGE)(link2)]}
    ... one IKE_FOLLOWUP_KE per ADDKE chosen; the last answer carries no link.

Only then is the new SA made, from every shared secret in order (RFC 9370 §2.2.4):
    child:  KEYMAT   = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
    IKE SA: SKEYSEED = prf(SK_d (old), SK(0) | Ni | Nr | SK(1) | ... | SK(n))

The responder keeps one exchange under way per IKE SA (the window is 1, so the peer sends
nothing else meanwhile); a link it does not know gets STATE_NOT_FOUND. What the first exchange
agreed is finished by a callable the child or IKE rekey task hands over (`Pending.finish`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...constants import ExchangeType, KeId, NotifyType, enum_name
from ...crypto.dh import KeyExchange, create_key_exchange, respond_key_exchange
from ...errors import CryptoError, InvalidSyntax, NoProposalChosen, ProtocolError
from ...wire import KePayload, NotifyPayload, Payload
from . import as_notify_type, error_notifies, find_payload

if TYPE_CHECKING:
    from ..ike_sa import IkeSa

LINK_BYTES = 8
Finish = Callable[["IkeSa", tuple[bytes, ...], float], None]
Abort = Callable[["IkeSa", str, float], None]


@dataclass(slots=True)
class Pending:
    """A CREATE_CHILD_SA whose additional key exchanges are under way."""

    methods: tuple[int, ...]  # ADDKE methods chosen, in ADDKE order
    finish: Finish = field(repr=False)  # makes the SA from the additional shared secrets
    abort: Abort = field(repr=False)  # undoes what the first exchange reserved
    for_child: bool = False  # a child SA's exchange (else the IKE SA's rekey)
    link: bytes = b""
    secrets: list[bytes] = field(default_factory=list, repr=False)

    @property
    def done(self) -> int:
        return len(self.secrets)


@dataclass(slots=True)
class Unmade:
    """The SA of a peer's rekey we answered while our own rekey of the same SA was under way,
    not made yet because its IKE_FOLLOWUP_KE exchanges are still out. The collision record
    (RFC 7296 §2.8.1, §2.8.2) holds it as `created` from our answer on; when our own rekey
    completes first, the lowest-nonce verdict is left here for when the SA is made."""

    redundant: bool | None = None  # True: ours won, delete it once made; False: ours lost


def made(created: object) -> bool:
    """Has the peer's rekey that a collision record holds made its SA here yet?"""
    return not isinstance(created, Unmade)


def link_notify(link: bytes) -> NotifyPayload:
    return NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, data=link)


def link_of(payloads: tuple[Payload, ...] | list[Payload]) -> bytes | None:
    notify = next(
        (
            p
            for p in payloads
            if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.ADDITIONAL_KEY_EXCHANGE
        ),
        None,
    )
    return None if notify is None else notify.data


# --- initiator
def follow(sa: IkeSa, pending: Pending, payloads: tuple[Payload, ...], now: float) -> bool:
    """After our CREATE_CHILD_SA was answered with additional key exchanges chosen: the first
    IKE_FOLLOWUP_KE goes next. False (and `abort`) when the responder sent no link."""
    link = link_of(payloads)
    if not link:
        pending.abort(sa, "CREATE_CHILD_SA chose additional key exchanges without a link", now)
        return False
    pending.link = link
    sa.queue.appendleft(FollowupKeExchange(pending))
    return True


class FollowupKeExchange:
    exchange_type = ExchangeType.IKE_FOLLOWUP_KE

    def __init__(self, pending: Pending) -> None:
        self.pending = pending
        self.ke: KeyExchange | None = None
        # the rest of the engine sees the CREATE_CHILD_SA still under way (§2.25 collisions)
        self.is_ike_rekey = not pending.for_child
        self.for_child = pending.for_child

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        method = self.pending.methods[self.pending.done]
        self.ke = create_key_exchange(method, sa.random_bytes)
        return [KePayload(method, self.ke.public_bytes), link_notify(self.pending.link)]

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        pending = self.pending
        errors = error_notifies(payloads)
        if errors:
            kind = as_notify_type(errors[0].notify_type)
            pending.abort(sa, f"peer refused IKE_FOLLOWUP_KE ({kind.name if kind else '?'})", now)
            return
        method = pending.methods[pending.done]
        ke = find_payload(payloads, KePayload)
        if ke is None or ke.group != method or self.ke is None:
            pending.abort(sa, f"IKE_FOLLOWUP_KE response lacks a KE of method {method}", now)
            return
        try:
            pending.secrets.append(self.ke.compute(ke.data))
        except CryptoError as exc:
            pending.abort(sa, f"additional key exchange failed: {exc}", now)
            return
        sa.log.info("follow-up key exchange done", n=pending.done, method=enum_name(KeId, method))
        if pending.done < len(pending.methods):
            link = link_of(payloads)
            if not link:
                pending.abort(sa, "IKE_FOLLOWUP_KE answer without the next link", now)
                return
            pending.link = link
            sa.queue.appendleft(FollowupKeExchange(pending))
            return
        pending.finish(sa, tuple(pending.secrets), now)

    def give_up(self, sa: IkeSa, now: float) -> None:
        from .informational import ike_deleted

        ike_deleted(sa, "peer did not answer IKE_FOLLOWUP_KE")


# --- responder
def offer(sa: IkeSa, pending: Pending) -> NotifyPayload:
    """The responder's CREATE_CHILD_SA chose additional key exchanges: keep what it agreed
    (replacing any exchange left unfinished) and hand the initiator the link."""
    if sa.followup is not None:
        sa.followup.abort(sa, "replaced by a new CREATE_CHILD_SA", 0.0)
    pending.link = sa.random_bytes(LINK_BYTES)
    sa.followup = pending
    return link_notify(pending.link)


def respond(sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> list[Payload]:
    pending = sa.followup
    link = link_of(payloads)
    if pending is None or link is None or link != pending.link:
        sa.log.info("IKE_FOLLOWUP_KE refused", reason="unknown link")
        return [NotifyPayload(NotifyType.STATE_NOT_FOUND)]
    try:
        answer = _answer(sa, pending, find_payload(payloads, KePayload))
    except ProtocolError as exc:
        sa.followup = None
        pending.abort(sa, exc.reason, now)
        return [NotifyPayload(exc.notify or NotifyType.INVALID_SYNTAX)]
    if pending.done < len(pending.methods):
        pending.link = sa.random_bytes(LINK_BYTES)
        return [*answer, link_notify(pending.link)]
    sa.followup = None
    pending.finish(sa, tuple(pending.secrets), now)
    return answer


def _answer(sa: IkeSa, pending: Pending, ke: KePayload | None) -> list[Payload]:
    method = pending.methods[pending.done]
    if ke is None:
        raise InvalidSyntax(f"IKE_FOLLOWUP_KE without the KE of method {method}")
    if ke.group != method:
        raise NoProposalChosen(f"KE of method {ke.group} in IKE_FOLLOWUP_KE, chose {method}")
    try:
        exchange, secret = respond_key_exchange(method, ke.data, sa.random_bytes)
    except CryptoError as exc:
        raise NoProposalChosen(f"bad KE data in IKE_FOLLOWUP_KE: {exc}") from None
    pending.secrets.append(secret)
    sa.log.info("follow-up key exchange done", n=pending.done, method=enum_name(KeId, method))
    return [KePayload(method, exchange.public_bytes)]
