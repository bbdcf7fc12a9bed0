"""What an IKE SA does when one of its deadlines comes (the manager keeps the heap):
retransmission and give-up (RFC 7296 §2.1), half-open expiry, lifetimes (§2.8: the soft one
rekeys, the hard one deletes), reauthentication (§2.8.3), the grace period of a replaced IKE SA,
and liveness checks (§2.4).

Every deadline IkeSa.deadline() reports must be consumed here, or the manager would spin.
"""

from __future__ import annotations

from . import reauth, tcp
from .ike_sa import ChildState, IkeSa
from .state import IkeState
from .tasks import create_child, ike_init, ike_rekey, informational, mobike
from .window import RetransmitAction


def on_timer(sa: IkeSa, now: float) -> None:
    half_open_until = sa.created_at + sa.conn.timers.half_open_timeout
    if sa.state in (IkeState.CREATED, IkeState.INIT_DONE) and now >= half_open_until:
        ike_init.fail(sa, "half-open IKE SA timed out", None)
        return
    if not _retransmit(sa, now):
        return
    if sa.rekeyed_at is not None and now >= sa.rekeyed_at:
        informational.ike_deleted(sa, "rekeyed")  # the peer never sent its Delete
        return
    if sa.state is IkeState.ESTABLISHED and sa.rekeyed_at is None:
        _lifetimes(sa, now)
    if sa.dpd_due is not None and now >= sa.dpd_due and sa.state is IkeState.ESTABLISHED:
        delay = sa.conn.timers.dpd_delay
        if now - sa.last_heard >= delay and not sa.requests.busy:
            sa.dpd_due = None
            sa.start_exchange(mobike.liveness(sa), now)  # RFC 4555 §3.8 NAT checks
        else:  # heard lately, or a request is out (its retransmits check liveness, §2.4)
            sa.dpd_due = max(sa.last_heard + delay, sa.requests.deadline() or now, now + 0.001)


def _retransmit(sa: IkeSa, now: float) -> bool:
    """§2.1: resend each outstanding request whose timer ran out (§2.3: one timer each), or give
    up on it (which ends the IKE SA, or at least that exchange). False when the SA is done."""
    actions = sa.requests.on_timer(now)
    for action, out in actions:
        if action is RetransmitAction.RESEND:
            sa.log.info("retransmit", mid=out.message_id, n=out.retransmits)
            for packet in out.packets:
                sa.send(packet)
    given_up = [out for action, out in actions if action is RetransmitAction.GIVE_UP]
    for out in given_up:
        state = sa.state
        if state is IkeState.CLOSED:
            break
        sa.requests.done(out.message_id)
        if out.exchange is None:
            ike_init.fail(sa, tcp.TCP_INIT_UNANSWERED if sa.tcp else tcp.UDP_INIT_UNANSWERED, None)
        else:
            out.exchange.give_up(sa, now)
        if sa.closed and sa.reauth_of is not None:
            reauth.given_up(sa, state)
    return not given_up


def _lifetimes(sa: IkeSa, now: float) -> None:
    """RFC 7296 §2.8: soft lifetimes start a rekey, hard ones a delete."""
    if sa.expire_at is not None and now >= sa.expire_at:
        sa.expire_at = sa.rekey_at = None
        sa.log.info("IKE SA lifetime expired")
        sa.start_exchange(informational.DeleteIkeExchange(), now)
        return
    if sa.rekey_at is not None and now >= sa.rekey_at:
        sa.rekey_at = None
        sa.start_exchange(ike_rekey.IkeRekeyExchange(), now)
    if sa.reauth_at is not None and now >= sa.reauth_at:
        sa.reauth_at = None  # §2.8.3: start a reauthentication, or check on the one under way
        reauth.due(sa, now)
    for child in list(sa.children):
        if child.expire_at is not None and now >= child.expire_at:
            child.expire_at = child.rekey_at = None
            sa.log.info("child SA lifetime expired", spi_in=f"{child.spi_in:08x}")
            sa.start_exchange(informational.DeleteChildExchange(child), now)
        elif child.rekey_at is not None and now >= child.rekey_at:
            child.rekey_at = None
            if child.state is ChildState.INSTALLED:
                exchange = create_child.CreateChildExchange(child.config, child.reqid, child)
                sa.start_exchange(exchange, now)
