"""Rekeying the IKE SA with CREATE_CHILD_SA, both roles (RFC 7296 §1.3.2, §2.18), with the
collision rules of §2.8.2 and §2.25.2.

    HDR, SK {SA, Ni, KEi}  -->                  (the proposal SPI is the new SPIi)
                    <--  HDR, SK {SA, Nr, KEr}   (the proposal SPI is the new SPIr)

SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr). The rekey initiator becomes the new IKE SA's
initiator; the children move to the new IKE SA and the rekey initiator deletes the old one. When
both peers rekey at once, the new IKE SA created by the exchange with the lowest of the four
nonces is redundant and its creator deletes it; the children move to the other one.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...constants import ExchangeType, NotifyType, ProtocolId
from ...crypto.dh import KeyExchange, create_key_exchange, respond_key_exchange
from ...crypto.keymat import derive_rekeyed_ike_keys
from ...crypto.sk import SkCipher
from ...crypto.suites import encr_suite, integ_suite
from ...errors import (
    CryptoError,
    InvalidKePayload,
    NoProposalChosen,
    ProtocolError,
    TemporaryFailure,
)
from ...wire import KePayload, NoncePayload, NotifyPayload, Payload, Proposal, SaPayload
from ..ike_sa import ChildState, Collision
from ..proposals import NegotiatedSuite, check_selected, select_proposal, spec_to_proposals
from ..state import IkeInput, IkeState
from ..support import crypto_supports, describe_suite
from . import (
    as_notify_type,
    config_payload,
    error_notifies,
    find_payload,
    followup_ke,
    mobike,
    ppk,
)
from .informational import DeleteIkeExchange

if TYPE_CHECKING:
    from ..ike_sa import IkeSa

RETRY_AFTER_TEMPORARY_FAILURE = 10.0


def new_ike_spi(sa: IkeSa) -> bytes:
    """An SPI for a new IKE SA, unused by any of ours (§2.6): the old one keeps its own SPI
    until it is deleted, and others share the manager's index."""
    assert sa.host is not None
    return sa.host.new_ike_spi()


def _adopt(
    old: IkeSa,
    new: IkeSa,
    suite: NegotiatedSuite,
    shared: bytes,
    nonces: tuple[bytes, bytes],
    now: float,
    additional: tuple[bytes, ...] = (),
) -> None:
    """Key the new IKE SA (§2.18) and give it the old one's identity and addresses;
    `additional`: the shared secrets of RFC 9370 IKE_FOLLOWUP_KE exchanges (§2.2.4)."""
    assert old.keys is not None and suite.encr is not None and suite.prf is not None
    encr = encr_suite(suite.encr, suite.encr_key_bits)
    integ = integ_suite(suite.integ) if suite.integ else None
    new.nonce_i, new.nonce_r = nonces
    _seed, keys = derive_rekeyed_ike_keys(
        old.prf_id,
        old.keys.sk_d,
        suite.prf,
        encr,
        integ,
        shared,
        *nonces,
        new.spi_i,
        new.spi_r,
        additional,
    )
    new.prf_id = suite.prf
    new.suite = suite
    new.ke_group = suite.ke or 0
    sk_i = SkCipher(encr, keys.sk_ei, integ, keys.sk_ai if integ else b"")
    sk_r = SkCipher(encr, keys.sk_er, integ, keys.sk_ar if integ else b"")
    new.install_keys(keys, sk_i, sk_r)
    new.remote_identity = old.remote_identity
    config_payload.adopt(old, new)  # §2.18: leases and virtual IPs go along
    new.candidates = old.candidates
    ppk.inherit(new, old)  # RFC 8784: the new keys come from the PPK's SK_d
    new.nat_local, new.nat_remote = old.nat_local, old.nat_remote
    new.peer_fragmentation = old.peer_fragmentation
    # RFC 7296 §2.3: the windows both sides announced in IKE_AUTH stay, as the other
    # capabilities do (the rekeyed IKE SA has no IKE_AUTH to announce them again)
    new.requests.size, new.responses.size = old.requests.size, old.responses.size
    mobike.adopt(old, new)  # RFC 4555 stays negotiated
    new.peer_hash_algorithms = old.peer_hash_algorithms
    new.transition(IkeInput.ADOPT)
    new.established_at = now
    new.bind_log()
    new.arm_lifetimes(now)
    new.inherit_reauth(old)
    new.schedule_dpd(now)
    new.log.info("IKE SA rekeyed", old_ike_sa=old.id, suite=describe_suite(suite))
    remote_id = str(old.remote_identity) if old.remote_identity else ""
    new.emit(new.established_event(remote_id, describe_suite(suite), rekeyed_from=old.id))


def move_children(old: IkeSa, new: IkeSa) -> None:
    """§2.18: the children (and exchanges queued for them) now belong to the new IKE SA. A
    queued Delete of the IKE SA goes along when it means the connection's IKE SA wherever it
    lives (`down`, a reauthentication's end: the new IKE SA is that one now); one that meant
    only the old keys (the hard lifetime) is moot."""
    new.children.extend(old.children)
    old.children.clear()
    old.successor = new
    new.queue.extend(
        e
        for e in old.queue
        if not isinstance(e, IkeRekeyExchange)
        and not (isinstance(e, DeleteIkeExchange) and not e.follows_rekey)
    )
    old.queue.clear()
    new.touch()
    old.touch()


def retire(old: IkeSa, now: float) -> None:
    """The old IKE SA only waits for its Delete now: no liveness checks, no rekeying. It stays
    as long as the peer may still retransmit to it (so our cached answers reach it)."""
    old.rekeyed_at = now + old.conn.timers.retransmit_span + 1.0
    old.dpd_due = old.rekey_at = old.expire_at = old.reauth_at = None
    old.reauth_by = None
    old.touch()


class IkeRekeyExchange:
    exchange_type = ExchangeType.CREATE_CHILD_SA
    is_ike_rekey = True

    def __init__(self) -> None:
        self.spi = b""
        self.nonce = b""
        self.ke: KeyExchange | None = None
        self.ke_group = 0
        self.proposals: tuple[Proposal, ...] = ()

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        if sa.state is not IkeState.ESTABLISHED or sa.rekeyed_at is not None:
            return None
        self.spi = new_ike_spi(sa)
        self.nonce = sa.new_nonce()
        groups = [g for spec in sa.conn.ike_proposals for g in spec.ke]
        if not self.ke_group:
            self.ke_group = sa.ke_group if sa.ke_group in groups else groups[0]
        self.ke = create_key_exchange(self.ke_group, sa.random_bytes)
        # ADDKE (RFC 9370 §2.2.4) is offered: followup_ke.py runs them after this exchange
        self.proposals = spec_to_proposals(sa.conn.ike_proposals, self.spi)
        return [
            SaPayload(self.proposals),
            NoncePayload(self.nonce),
            KePayload(self.ke_group, self.ke.public_bytes),
        ]

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        collision, sa.ike_collision = sa.ike_collision, None
        errors = error_notifies(payloads)
        if errors:
            self._refused(sa, errors[0], collision, now)
            return
        try:
            chosen, suite, shared, nonce_r = self._accept(payloads)
        except (ProtocolError, CryptoError) as exc:
            sa.log.warning("IKE rekey response refused", reason=getattr(exc, "reason", str(exc)))
            self._defer(sa, now)
            return
        if suite.additional_ke:  # RFC 9370 §2.2.4: IKE_FOLLOWUP_KE exchanges first
            sa.ike_collision = collision  # decided when they are done

            def finish(sa: IkeSa, additional: tuple[bytes, ...], now: float) -> None:
                collision, sa.ike_collision = sa.ike_collision, None
                self._rekeyed(sa, chosen, suite, shared, nonce_r, collision, now, additional)

            pending = followup_ke.Pending(suite.additional_ke, finish, self._abort)
            followup_ke.follow(sa, pending, payloads, now)
            return
        self._rekeyed(sa, chosen, suite, shared, nonce_r, collision, now)

    def _abort(self, sa: IkeSa, reason: str, now: float) -> None:
        sa.log.warning("IKE rekey failed", reason=reason)
        collision, sa.ike_collision = sa.ike_collision, None
        if collision is not None:  # the peer's rekey went through on its side (§2.25.2)
            move_children(sa, collision.created)
            retire(sa, now)
            return
        self._defer(sa, now)

    def _rekeyed(
        self,
        sa: IkeSa,
        chosen: Proposal,
        suite: NegotiatedSuite,
        shared: bytes,
        nonce_r: bytes,
        collision: Collision | None,
        now: float,
        additional: tuple[bytes, ...] = (),
    ) -> None:
        new = sa.spawn(True, self.spi, chosen.spi, now)
        _adopt(sa, new, suite, shared, (self.nonce, nonce_r), now, additional)
        unmade = None
        if collision is not None and not followup_ke.made(collision.created):
            unmade = collision.created  # the peer's new IKE SA waits for its IKE_FOLLOWUP_KE
        if collision is not None and min(self.nonce, nonce_r) < min(
            collision.nonce_i, collision.nonce_r
        ):
            if unmade is not None:
                # §2.8.2: ours is redundant; the children stay here until the peer's new IKE
                # SA is made (its follow-ups done), which then takes them
                unmade.redundant = False
                sa.log.info("IKE rekey collision lost", redundant=new.id)
                new.start_exchange(DeleteIkeExchange(), now)
                return
            # §2.8.2: ours is redundant; the peer's new IKE SA gets the children and the
            # peer deletes the old one
            winner: IkeSa = collision.created
            sa.log.info("IKE rekey collision lost", redundant=new.id, kept=winner.id)
            move_children(sa, winner)
            retire(sa, now)
            new.start_exchange(DeleteIkeExchange(), now)
            return
        move_children(sa, new)
        retire(sa, now)
        sa.queue.append(DeleteIkeExchange())
        if unmade is not None:
            unmade.redundant = True  # deleted once made (below, _delete_redundant)
        elif collision is not None:
            # the peer's new IKE SA is the redundant one (§2.8.2). Its creator should delete it,
            # but if the peer's own exchange never completed there (we deleted the old IKE SA
            # first), nobody would: so we delete it too — a Delete × Delete is harmless (§2.25.2)
            _delete_redundant(collision.created, now)

    def _accept(
        self, payloads: tuple[Payload, ...]
    ) -> tuple[Proposal, NegotiatedSuite, bytes, bytes]:
        sa_payload = find_payload(payloads, SaPayload)
        nonce = find_payload(payloads, NoncePayload)
        ke = find_payload(payloads, KePayload)
        if sa_payload is None or nonce is None or ke is None or len(sa_payload.proposals) != 1:
            raise ProtocolError("IKE rekey response lacks SA, Nonce or KE")
        chosen = sa_payload.proposals[0]
        check_selected(chosen, self.proposals)
        if len(chosen.spi) != 8 or chosen.spi == bytes(8):
            raise NoProposalChosen("new responder SPI is not 8 non-zero bytes")
        suite = NegotiatedSuite.from_proposal(chosen)
        if suite.ke != self.ke_group or ke.group != self.ke_group or self.ke is None:
            raise NoProposalChosen("KE group of the response differs from ours")
        return chosen, suite, self.ke.compute(ke.data), nonce.data

    def _refused(
        self, sa: IkeSa, notify: NotifyPayload, collision: Collision | None, now: float
    ) -> None:
        kind = as_notify_type(notify.notify_type)
        if collision is not None:
            # the peer's rekey went through on its side; follow it (§2.25.2)
            move_children(sa, collision.created)
            retire(sa, now)
            return
        if kind is NotifyType.INVALID_KE_PAYLOAD and len(notify.data) >= 2:
            group = struct.unpack("!H", notify.data[:2])[0]
            if group != self.ke_group and group in {g for s in sa.conn.ike_proposals for g in s.ke}:
                retry = IkeRekeyExchange()
                retry.ke_group = group
                sa.queue.appendleft(retry)
                return
        sa.log.info("IKE rekey refused", notify=kind.name if kind else notify.notify_type)
        self._defer(sa, now)

    def _defer(self, sa: IkeSa, now: float) -> None:
        if sa.state is IkeState.ESTABLISHED and sa.rekeyed_at is None:
            sa.rekey_at = now + RETRY_AFTER_TEMPORARY_FAILURE + sa.jitter(30.0)

    def give_up(self, sa: IkeSa, now: float) -> None:
        from .informational import ike_deleted

        ike_deleted(sa, "peer did not answer the IKE rekey")


def _busy_with_children(sa: IkeSa) -> bool:
    for pending in sa.in_flight():  # §2.3: any of our requests in flight
        is_child = pending.exchange_type == ExchangeType.CREATE_CHILD_SA
        if (is_child or hasattr(pending, "child")) and not getattr(pending, "is_ike_rekey", False):
            return True
        if getattr(pending, "for_child", False):
            return True  # a child's IKE_FOLLOWUP_KE (RFC 9370)
    if sa.followup is not None:
        return True  # one the peer runs with us (RFC 9370)
    return any(c.state in (ChildState.REKEYING, ChildState.DELETING) for c in sa.children)


def respond(sa: IkeSa, payloads: Sequence[Payload], now: float) -> list[Payload]:
    try:
        return _respond(sa, payloads, now)
    except ProtocolError as exc:
        sa.log.info("IKE rekey refused", reason=exc.reason)
        return [NotifyPayload(exc.notify or NotifyType.NO_PROPOSAL_CHOSEN, data=exc.notify_data)]


def _respond(sa: IkeSa, payloads: Sequence[Payload], now: float) -> list[Payload]:
    if sa.state is IkeState.DELETING or sa.rekeyed_at is not None:
        raise TemporaryFailure("this IKE SA is being deleted or was replaced")
    if _busy_with_children(sa):
        raise TemporaryFailure("a child SA exchange is in progress")  # §2.25.1
    sa_payload = find_payload(payloads, SaPayload)
    nonce = find_payload(payloads, NoncePayload)
    ke = find_payload(payloads, KePayload)
    if sa_payload is None or nonce is None or ke is None:
        raise ProtocolError("IKE rekey request lacks SA, Nonce or KE")
    chosen = select_proposal(
        sa_payload.proposals, sa.conn.ike_proposals, ProtocolId.IKE, crypto_supports
    )
    if chosen is None or len(chosen.spi) != 8 or chosen.spi == bytes(8):
        raise NoProposalChosen("no acceptable IKE proposal for the rekey")
    suite = NegotiatedSuite.from_proposal(chosen)
    if suite.ke is None:
        raise NoProposalChosen("IKE rekey proposal without KE")
    if ke.group != suite.ke:
        raise InvalidKePayload(
            f"KE group {ke.group}, chose {suite.ke}", struct.pack("!H", suite.ke)
        )
    try:
        exchange, shared = respond_key_exchange(suite.ke, ke.data, sa.random_bytes)
    except CryptoError as exc:
        raise ProtocolError(f"bad KE data: {exc}") from None
    nonce_r = sa.new_nonce()
    our_spi = new_ike_spi(sa)
    nonces = (nonce.data, nonce_r)
    unmade = followup_ke.Unmade()  # a collision recorded at our answer (RFC 9370 follow-ups)

    def finish(sa: IkeSa, additional: tuple[bytes, ...], now: float) -> None:
        new = sa.spawn(False, chosen.spi, our_spi, now)
        _adopt(sa, new, suite, shared, nonces, now, additional)
        collision = sa.ike_collision
        if collision is not None and collision.created is unmade:
            collision.created = new  # our own rekey is still under way: it decides (§2.8.2)
        elif unmade.redundant:
            _delete_redundant(new, now)  # our rekey won meanwhile
        elif unmade.redundant is None and getattr(sa.pending, "is_ike_rekey", False):
            sa.ike_collision = Collision(*nonces, new)  # decided in process_i (§2.8.2)
        else:  # no collision, or ours lost meanwhile: this one takes the children
            move_children(sa, new)
            retire(sa, now)

    def abort(sa: IkeSa, reason: str, now: float) -> None:
        if sa.ike_collision is not None and sa.ike_collision.created is unmade:
            sa.ike_collision = None
        if unmade.redundant is False and sa.rekeyed_at is None:  # ours lost to this one
            sa.rekey_at = now + RETRY_AFTER_TEMPORARY_FAILURE + sa.jitter(30.0)
        _not_rekeyed(sa, reason, now)

    answer = Proposal(chosen.number, chosen.protocol, our_spi, chosen.transforms)
    reply: list[Payload] = [
        SaPayload((answer,)),
        NoncePayload(nonce_r),
        KePayload(suite.ke, exchange.public_bytes),
    ]
    if suite.additional_ke:  # RFC 9370 §2.2.4: made after the IKE_FOLLOWUP_KE exchanges
        pending = followup_ke.Pending(suite.additional_ke, finish, abort)
        reply.append(followup_ke.offer(sa, pending))
        if getattr(sa.pending, "is_ike_rekey", False):  # our own rekey is out: a collision
            sa.ike_collision = Collision(*nonces, unmade)  # (§2.8.2), its SA made later
    else:
        finish(sa, (), now)
    return reply


def _delete_redundant(redundant: IkeSa, now: float) -> None:
    """A peer's new IKE SA that lost a rekey collision (§2.8.2): no timers, and our Delete."""
    redundant.dpd_due = redundant.rekey_at = redundant.expire_at = None
    redundant.start_exchange(DeleteIkeExchange(), now)


def _not_rekeyed(sa: IkeSa, reason: str, now: float) -> None:
    sa.log.info("IKE SA not rekeyed", reason=reason)
