"""CREATE_CHILD_SA for child SAs, both roles: new children (RFC 7296 §1.3.1) and rekeying
(§1.3.3, §2.8), with the collision rules of §2.8.1 and §2.25.1.

    HDR, SK {[N(REKEY_SA)], [N(USE_TRANSPORT_MODE)], [N(IPCOMP_SUPPORTED)], SA, Ni, [KEi],
             TSi, TSr}  -->
        <--  HDR, SK {[N(USE_TRANSPORT_MODE)], [N(IPCOMP_SUPPORTED)], SA, Nr, [KEr], TSi, TSr}

IPComp (tasks/ipcomp.py) is negotiated in every CREATE_CHILD_SA of a child that wants it, so a
rekeyed child keeps it, with new CPIs.

Rekeying is make-before-break: the new child is installed, then the old one deleted. When both
peers rekey the same child at once, both answer as usual; the SA created by the exchange with the
lowest of the four nonces is redundant and its creator deletes it (§2.8.1).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...constants import ExchangeType, NotifyType, ProtocolId
from ...crypto.dh import KeyExchange, create_key_exchange, respond_key_exchange
from ...errors import (
    ChildSaNotFound,
    CryptoError,
    InvalidKePayload,
    NoProposalChosen,
    ProtocolError,
    TemporaryFailure,
    TsUnacceptable,
)
from ...wire import (
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TrafficSelector,
    TsiPayload,
    TsrPayload,
)
from ..config import ChildConfig, Mode
from ..ike_sa import ChildSa, ChildState, Collision
from ..proposals import NegotiatedSuite, check_selected, select_proposal, spec_to_proposals
from ..support import crypto_supports
from ..ts import check_narrowed, narrow, spec_to_selector
from . import (
    as_notify_type,
    config_payload,
    error_notifies,
    find_payload,
    followup_ke,
    has_notify,
    ipcomp,
)
from .child_create import KeyInput, ReqidSource, establish, new_spi, ts_specs, with_spi
from .informational import DeleteChildExchange, child_deleted

if TYPE_CHECKING:
    from ..ike_sa import IkeSa

RETRY_AFTER_TEMPORARY_FAILURE = 10.0  # §2.25: wait before retrying; jitter is added


def lowest_nonce_is_in(ours: tuple[bytes, bytes], theirs: tuple[bytes, bytes]) -> bool:
    """§2.8.1/§2.8.2: does the exchange with nonces `ours` hold the lowest of the four?"""
    return min(ours) < min(theirs)


class CreateChildExchange:
    """Our CREATE_CHILD_SA for a new child, or to rekey `old` when given."""

    exchange_type = ExchangeType.CREATE_CHILD_SA

    def __init__(self, config: ChildConfig, reqid: int, old: ChildSa | None = None) -> None:
        self.config = config
        self.reqid = old.reqid if old is not None else reqid
        self.old = old
        self.child: ChildSa | None = None
        self.proposals: tuple[Proposal, ...] = ()
        self.nonce = b""
        self.ke: KeyExchange | None = None
        self.ke_group = next((g for spec in config.proposals for g in spec.ke), 0)
        self.tsi = tuple(spec_to_selector(ts) for ts in config.local_ts)
        self.tsr = tuple(spec_to_selector(ts) for ts in config.remote_ts)

    @property
    def parallel(self) -> bool:
        """§2.3: new children and child rekeys share the request window, except one whose
        IKE_FOLLOWUP_KE exchanges (RFC 9370) would follow: those go alone."""
        return not any(spec.addke for spec in self.config.proposals)

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        old = self.old
        if old is not None:
            if old not in sa.children or old.state is not ChildState.INSTALLED:
                return None  # deleted or replaced meanwhile: nothing to rekey
            old.state = ChildState.REKEYING
        protocol = ProtocolId(self.config.proposals[0].protocol)
        self.child = ChildSa(self.config, self.reqid, protocol, new_spi(sa), mode=self.config.mode)
        # ADDKE (RFC 9370 §2.2.4) is offered: followup_ke.py runs them after this exchange
        self.proposals = spec_to_proposals(
            self.config.proposals, struct.pack("!I", self.child.spi_in)
        )
        self.nonce = sa.new_nonce()
        payloads: list[Payload] = []
        if old is not None:
            payloads.append(
                NotifyPayload(NotifyType.REKEY_SA, old.protocol, struct.pack("!I", old.spi_in))
            )
        if self.config.mode is Mode.TRANSPORT:
            payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        payloads += ipcomp.offer(sa, self.child)
        payloads += [SaPayload(self.proposals), NoncePayload(self.nonce)]
        if self.ke_group:  # PFS (§1.3.1)
            self.ke = create_key_exchange(self.ke_group, sa.random_bytes)
            payloads.append(KePayload(self.ke_group, self.ke.public_bytes))
        payloads += [TsiPayload(self.tsi), TsrPayload(self.tsr)]
        return payloads

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        errors = error_notifies(payloads)
        if errors:
            self._refused(sa, errors[0], now)
            return
        try:
            child, suite, tsi, tsr, shared = self._accept(sa, payloads)
        except (ProtocolError, CryptoError) as exc:
            reason = getattr(exc, "reason", str(exc))
            sa.log.warning("CREATE_CHILD_SA response refused", reason=reason)
            self._restore_old()
            return
        nonce_r = find_payload(payloads, NoncePayload)
        assert nonce_r is not None
        nonces = (self.nonce, nonce_r.data)

        def finish(sa: IkeSa, additional: tuple[bytes, ...], now: float) -> None:
            keys = KeyInput(nonces[0], nonces[1], shared, additional)
            establish(sa, child, suite, tsi, tsr, keys, now)
            if self.old is not None:
                self._rekeyed(sa, child, nonces, now)

        if suite.additional_ke:  # RFC 9370 §2.2.4: IKE_FOLLOWUP_KE exchanges first
            pending = followup_ke.Pending(suite.additional_ke, finish, self._abort, for_child=True)
            followup_ke.follow(sa, pending, payloads, now)
            return
        finish(sa, (), now)

    def _abort(self, sa: IkeSa, reason: str, now: float) -> None:
        """The follow-up key exchanges failed: no child; a rekeyed one stays as it was."""
        from .child_create import _failed

        self._restore_old()
        _failed(sa, self.config, reason, None)

    def _accept(
        self, sa: IkeSa, payloads: tuple[Payload, ...]
    ) -> tuple[ChildSa, NegotiatedSuite, tuple, tuple, bytes | None]:  # type: ignore[type-arg]
        sa_payload = find_payload(payloads, SaPayload)
        nonce = find_payload(payloads, NoncePayload)
        tsi = find_payload(payloads, TsiPayload)
        tsr = find_payload(payloads, TsrPayload)
        if sa_payload is None or nonce is None or tsi is None or tsr is None:
            raise ProtocolError("response lacks SA, Nonce, TSi or TSr")
        if len(sa_payload.proposals) != 1:
            raise ProtocolError("response must carry exactly one proposal")
        chosen = sa_payload.proposals[0]
        check_selected(chosen, self.proposals)
        if len(chosen.spi) != 4:
            raise NoProposalChosen("child SPI is not 4 bytes")
        suite = NegotiatedSuite.from_proposal(chosen)
        shared = None
        if suite.ke is not None:
            ke = find_payload(payloads, KePayload)
            if self.ke is None or ke is None or ke.group != suite.ke:
                raise NoProposalChosen("PFS group of the response does not match our KE")
            shared = self.ke.compute(ke.data)
        narrowed_i = check_narrowed(tsi.selectors, self.tsi)
        narrowed_r = check_narrowed(tsr.selectors, self.tsr)
        assert self.child is not None
        child = self.child
        refusal = ipcomp.accept(sa, child, payloads)
        if refusal is not None:
            raise ProtocolError(refusal)
        child.spi_out = struct.unpack("!I", chosen.spi)[0]
        transport = has_notify(payloads, NotifyType.USE_TRANSPORT_MODE)
        child.mode = (
            Mode.TRANSPORT if transport and self.config.mode is Mode.TRANSPORT else Mode.TUNNEL
        )
        return child, suite, narrowed_i, narrowed_r, shared

    def _refused(self, sa: IkeSa, notify: NotifyPayload, now: float) -> None:
        kind = as_notify_type(notify.notify_type)
        old = self.old
        self._restore_old()
        if kind is NotifyType.INVALID_KE_PAYLOAD and len(notify.data) >= 2:
            group = struct.unpack("!H", notify.data[:2])[0]
            if (
                group in {g for spec in self.config.proposals for g in spec.ke}
                and group != self.ke_group
            ):
                sa.log.info("CREATE_CHILD_SA retried in the requested group", group=group)
                retry = CreateChildExchange(self.config, self.reqid, old)
                retry.ke_group = group
                sa.queue.appendleft(retry)
                return
        collision = sa.child_collisions.pop(old.spi_in, None) if old is not None else None
        if kind is NotifyType.TEMPORARY_FAILURE and old is not None:
            # §2.25: wait, then retry — unless the peer's own rekey of this child succeeded
            if collision is None and old in sa.children:
                old.rekey_at = now + RETRY_AFTER_TEMPORARY_FAILURE + sa.jitter(30.0)
            sa.log.info("child rekey deferred", reason="TEMPORARY_FAILURE")
            return
        if (
            kind is NotifyType.CHILD_SA_NOT_FOUND
            and old is not None
            and old in sa.children
            and (old.created_by_request >= 0 or (old.made_by_peer and old.not_found_answers < 2))
        ):
            # we answered the peer's CREATE_CHILD_SA for this child, but the peer may not have
            # had our answer when it answered us (its retransmits were still under way, or its
            # answer is a cached one that our retransmit fetched): try again later, twice
            if old.created_by_request < 0:
                old.not_found_answers += 1
            old.rekey_at = now + RETRY_AFTER_TEMPORARY_FAILURE + sa.jitter(30.0)
            sa.log.info("child rekey deferred", reason="peer has not completed its creation")
            return
        if kind is NotifyType.CHILD_SA_NOT_FOUND and old is not None:
            # §2.25: forget the child silently and create it afresh — unless the peer's own
            # rekey of it already gave us its successor
            child_deleted(sa, old, "peer does not know it (CHILD_SA_NOT_FOUND)")
            if collision is None:
                sa.queue.append(CreateChildExchange(self.config, self.reqid))
            return
        from .child_create import _failed

        _failed(sa, self.config, "peer refused CREATE_CHILD_SA", notify.notify_type)

    def _restore_old(self) -> None:
        if self.old is not None and self.old.state is ChildState.REKEYING:
            self.old.state = ChildState.INSTALLED

    def _rekeyed(self, sa: IkeSa, new: ChildSa, nonces: tuple[bytes, bytes], now: float) -> None:
        """The new child is in; retire the old one (§2.8), or settle a collision (§2.8.1)."""
        old = self.old
        assert old is not None
        collision = sa.child_collisions.pop(old.spi_in, None)
        home = sa.home()  # our children may have moved to a rekeyed IKE SA meanwhile (§2.18)
        lost = collision is not None and lowest_nonce_is_in(
            nonces, (collision.nonce_i, collision.nonce_r)
        )
        unmade = (
            None if collision is None or followup_ke.made(collision.created) else collision.created
        )
        if collision is not None and lost:
            # our exchange holds the lowest nonce: our new child is the redundant one and we
            # delete it; the peer, whose rekey won, deletes the old child
            sa.log.info("rekey collision lost; deleting our child", spi_in=f"{new.spi_in:08x}")
            _redundant(new)
            home.start_exchange(DeleteChildExchange(new), now)
            if old in home.children:
                _redundant(old)
            if unmade is not None:  # the peer's child, made after its IKE_FOLLOWUP_KE, stays
                unmade.redundant = False
            return
        if unmade is not None:  # the peer's child is made later; it deletes it (RFC 9370)
            unmade.redundant = True
        elif collision is not None:
            _redundant(collision.created)  # the peer deletes its redundant child; never rekey it
        if old in home.children:  # (the peer may have deleted it meanwhile, §2.25.1)
            _redundant(old)
            home.start_exchange(DeleteChildExchange(old), now)

    def give_up(self, sa: IkeSa, now: float) -> None:
        from .informational import ike_deleted

        ike_deleted(sa, "peer did not answer CREATE_CHILD_SA")


@dataclass(slots=True)
class _Made:
    """What our answer to a CREATE_CHILD_SA agreed, made into the child at once or after the
    IKE_FOLLOWUP_KE exchanges (RFC 9370 §2.2.4)."""

    old: ChildSa | None
    child: ChildSa
    suite: NegotiatedSuite
    tsi: Sequence[TrafficSelector]
    tsr: Sequence[TrafficSelector]
    nonces: tuple[bytes, bytes] = field(repr=False)
    shared: bytes | None = field(repr=False)
    # a collision recorded when we answered (RFC 9370: the child comes after IKE_FOLLOWUP_KE)
    unmade: followup_ke.Unmade = field(default_factory=followup_ke.Unmade)

    def collides(self, sa: IkeSa) -> None:
        """We answered while rekeying `old` ourselves (§2.8.1): a collision from now on, though
        the peer's child is only made after its IKE_FOLLOWUP_KE exchanges."""
        old = self.old
        if old is not None and old.state is ChildState.REKEYING:
            sa.child_collisions[old.spi_in] = Collision(*self.nonces, self.unmade)

    def finish(self, sa: IkeSa, additional: tuple[bytes, ...], now: float) -> None:
        child, old = self.child, self.old
        child.created_by_request = sa.responses.current
        keys = KeyInput(self.nonces[0], self.nonces[1], self.shared, additional)
        establish(sa, child, self.suite, self.tsi, self.tsr, keys, now, creator_is_us=False)
        collision = sa.child_collisions.get(old.spi_in) if old is not None else None
        if collision is not None and collision.created is self.unmade:
            collision.created = child  # our own rekey of `old` is still under way: it decides
        elif self.unmade.redundant:
            _redundant(child)  # our rekey won meanwhile (§2.8.1): the peer deletes this one
        elif old is not None and old.state is ChildState.REKEYING:
            # §2.8.1: a collision; decided when our own rekey of `old` completes
            sa.child_collisions[old.spi_in] = Collision(*self.nonces, child)
        elif old is not None and old in sa.children:
            old.state = ChildState.REKEYED  # the peer deletes it next (§1.3.3)
            old.rekey_at = None

    def abort(self, sa: IkeSa, reason: str, now: float) -> None:
        """The peer's IKE_FOLLOWUP_KE exchanges failed: no child; forget the collision, and if
        our rekey lost to this one, `old` is ours to rekey again."""
        old = self.old
        if old is not None:
            collision = sa.child_collisions.get(old.spi_in)
            if collision is not None and collision.created is self.unmade:
                del sa.child_collisions[old.spi_in]
            if self.unmade.redundant is False and old in sa.children:
                old.state = ChildState.INSTALLED
                old.rekey_at = now + RETRY_AFTER_TEMPORARY_FAILURE + sa.jitter(30.0)
        _dropped(sa, reason, now)


def _dropped(sa: IkeSa, reason: str, now: float) -> None:
    sa.log.info("child SA not created", reason=reason)


def _redundant(child: ChildSa) -> None:
    """A child a rekey collision made redundant (§2.8.1): it only waits for its Delete."""
    child.state = ChildState.REKEYED
    child.rekey_at = None


# --- responder
def respond(
    sa: IkeSa, payloads: Sequence[Payload], reqid_source: ReqidSource, now: float
) -> list[Payload]:
    try:
        return _respond(sa, payloads, reqid_source, now)
    except ProtocolError as exc:
        sa.log.info("CREATE_CHILD_SA refused", reason=exc.reason)
        notify = exc.notify or NotifyType.NO_PROPOSAL_CHOSEN
        if isinstance(exc, ChildSaNotFound):
            rekey = _rekey_notify(payloads)
            assert rekey is not None
            return [NotifyPayload(notify, rekey.protocol, rekey.spi)]
        return [NotifyPayload(notify, data=exc.notify_data)]


def _rekey_notify(payloads: Sequence[Payload]) -> NotifyPayload | None:
    return next(
        (
            p
            for p in payloads
            if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.REKEY_SA
        ),
        None,
    )


def _respond(
    sa: IkeSa, payloads: Sequence[Payload], reqid_source: ReqidSource, now: float
) -> list[Payload]:
    if any(getattr(x, "is_ike_rekey", False) for x in sa.in_flight()):
        # §2.25.2: no child creation or rekey while we rekey the IKE SA
        raise TemporaryFailure("we are rekeying the IKE SA")
    sa_payload = find_payload(payloads, SaPayload)
    nonce = find_payload(payloads, NoncePayload)
    tsi = find_payload(payloads, TsiPayload)
    tsr = find_payload(payloads, TsrPayload)
    if sa_payload is None or nonce is None or tsi is None or tsr is None:
        raise ProtocolError("request lacks SA, Nonce, TSi or TSr")
    rekey = _rekey_notify(payloads)
    old: ChildSa | None = None
    if rekey is not None:
        spi = struct.unpack("!I", rekey.spi)[0] if len(rekey.spi) == 4 else -1
        old = sa.child_by_spi_out(rekey.protocol, spi)
        if old is None:
            raise ChildSaNotFound(f"no child SA with SPI {rekey.spi.hex()} to rekey")
        if old.state in (ChildState.DELETING, ChildState.REKEYED):
            raise TemporaryFailure("that child SA is being deleted")  # §2.25.1
        configs: Sequence[ChildConfig] = (old.config,)
    else:
        configs = sa.conn.children
    refusal: ProtocolError = NoProposalChosen("no child config accepts the proposals")
    for config in configs:
        protocol = config.proposals[0].protocol
        chosen = select_proposal(sa_payload.proposals, config.proposals, protocol, crypto_supports)
        if chosen is None or len(chosen.spi) != 4:
            continue
        try:
            remote = config_payload.remote_ts(sa, config)  # a virtual IP narrows TSi
            narrowed_i = narrow(tsi.selectors, [spec_to_selector(t) for t in remote])
            narrowed_r = narrow(tsr.selectors, [spec_to_selector(t) for t in config.local_ts])
        except TsUnacceptable as exc:
            refusal = exc
            continue
        suite = NegotiatedSuite.from_proposal(chosen)
        shared = None
        ke_reply: list[Payload] = []
        if suite.ke is not None:  # PFS: the KEi must be in the chosen group (§1.3.1)
            ke = find_payload(payloads, KePayload)
            if ke is None or ke.group != suite.ke:
                raise InvalidKePayload(
                    f"KE group {getattr(ke, 'group', None)}, chose {suite.ke}",
                    struct.pack("!H", suite.ke),
                )
            try:
                exchange, shared = respond_key_exchange(suite.ke, ke.data, sa.random_bytes)
            except CryptoError as exc:
                raise ProtocolError(f"bad KE data: {exc}") from None
            ke_reply = [KePayload(suite.ke, exchange.public_bytes)]
        wants_transport = has_notify(payloads, NotifyType.USE_TRANSPORT_MODE)
        mode = Mode.TRANSPORT if wants_transport and config.mode is Mode.TRANSPORT else Mode.TUNNEL
        reqid = (
            old.reqid
            if old is not None
            else reqid_source(config, ts_specs(narrowed_r), ts_specs(narrowed_i))
        )
        child = ChildSa(config, reqid, ProtocolId(protocol), new_spi(sa), mode=mode)
        child.spi_out = struct.unpack("!I", chosen.spi)[0]
        child.made_by_peer = True
        compression = ipcomp.answer(sa, child, payloads)
        nonce_r = sa.new_nonce()
        made = _Made(old, child, suite, narrowed_i, narrowed_r, (nonce.data, nonce_r), shared)
        finish = made.finish
        answer: list[Payload] = []
        if suite.additional_ke:  # RFC 9370 §2.2.4: made after the IKE_FOLLOWUP_KE exchanges
            pending = followup_ke.Pending(suite.additional_ke, finish, made.abort, for_child=True)
            answer.append(followup_ke.offer(sa, pending))
            made.collides(sa)
        else:
            finish(sa, (), now)
        if mode is Mode.TRANSPORT:
            answer.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        answer += compression
        ours = with_spi(chosen, child.spi_in)
        return [
            *answer,
            SaPayload((ours,)),
            NoncePayload(nonce_r),
            *ke_reply,
            TsiPayload(narrowed_i),
            TsrPayload(narrowed_r),
        ]
    raise refusal
