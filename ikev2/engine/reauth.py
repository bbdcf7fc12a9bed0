"""Reauthentication of an IKE SA (RFC 7296 §2.8.3; strongSwan's reauth_time, make_before_break).

Rekeying an IKE SA (§2.18) makes fresh keys but does not authenticate the peer again. To do that,
a completely new IKE SA is negotiated for the same connection and peer — IKE_SA_INIT and IKE_AUTH
with full authentication — and every child SA of the old one is recreated on it: the first in
IKE_AUTH, the others with CREATE_CHILD_SA, with the same child configs, selectors and reqids, so
the kernel policies stay in place. The side that reauthenticates initiates the new IKE SA,
whichever role it had in the old one. It sends no INITIAL_CONTACT: the peer would drop the old
IKE SA and its children at once (§2.4).

- make-before-break (the default): the old IKE SA is deleted — one INFORMATIONAL Delete, which
  removes its children on both sides (§1.4.1) — only when the new IKE SA is up and every child
  exchange on it has ended, so each new child is installed before its predecessor goes. Children
  the old IKE SA is still creating go along: queued ones move to the new IKE SA, and those it
  made or was making meanwhile are recreated before it goes (Complete). If the new IKE SA fails,
  or is not established by attempt_deadline(), the old one stays: the failure is logged, the
  peer is sent a Delete of the new IKE SA if it may hold it, the old IKE SA's rekeying resumes
  and a new attempt follows after RETRY_AFTER_FAILURE (sooner near the hard lifetime, which still
  ends it). A child the peer refuses to recreate is logged and the old IKE SA deleted all the
  same (strongSwan's ike_reauth_complete). An IKE rekey of the old IKE SA that completes first
  hands all this on to its successor, which is the one deleted then (§2.18).
- break-before-make: the old IKE SA is deleted first, then the new one is initiated. If that
  fails, the connection is down (no retry, like strongSwan with keyingtries = 1).

A reauthentication authenticates anew, with the connection as configured now (a reload may have
rotated credentials; as it was if the reload removed it); an IKE rekey keeps the IKE SA's own.
`down` of the old IKE SA ends a reauthentication under way: its new IKE SA goes too.

The responder needs no mode of its own: a new IKE SA for the same connection and peer identity is
accepted beside the old one (strongSwan's unique = no) and both are kept until the peer deletes
the old one; the children it creates take the reqids of those they replace (PeerIndex).

Both peers reauthenticating at once would leave two IKE SAs (each deletes the old one and keeps
its own new one): as with strongSwan, set reauth_time on one side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from ..constants import ExchangeType
from .config import ChildConfig, Identity, IPAddress
from .events import IkeSaFailed
from .ike_sa import ChildState
from .state import HALF_OPEN_STATES, IkeState
from .tasks import ike_init, informational
from .tasks.child_create import TsSpecs
from .tasks.create_child import CreateChildExchange
from .tasks.ike_auth import IkeAuthExchange
from .tasks.ike_rekey import new_ike_spi
from .tasks.informational import DeleteIkeExchange, delete_once

if TYPE_CHECKING:
    from ..wire import Payload
    from .config import ConnectionConfig
    from .ike_sa import IkeSa

CHECK_INTERVAL = 10.0  # how often an old IKE SA looks at its replacement under way
RETRY_AFTER_FAILURE = 30.0  # then a new attempt (plus up to 10 % of 30 s jitter)
Plan = list[tuple[ChildConfig, int]]  # the children to recreate: config and reqid
PeerKey = tuple[str, Identity, IPAddress]
IdsKey = tuple[Identity, Identity]  # (our ID, the peer's)
K = TypeVar("K")


def start(old: IkeSa, now: float) -> bool:
    """Reauthenticate `old` now (the Engine command and the reauth_time timer). False when it
    cannot be: not established, replaced by a rekey, or a reauthentication is under way."""
    if old.state is not IkeState.ESTABLISHED or old.rekeyed_at is not None:
        old.log.info("reauthentication skipped", reason=f"IKE SA is {old.state.value}")
        return False
    if old.reauth_by is not None or completing(old):
        old.log.info("reauthentication skipped", reason="one is under way")
        return False
    old.rekey_at = None  # §2.8.3: the new IKE SA replaces this one; no point rekeying it
    old.reauth_at = None
    mbb = old.conn.make_before_break
    old.log.info("reauthenticating", make_before_break=mbb, children=len(plan_of(old)))
    STRATEGIES[mbb](old, now)
    old.touch()
    return True


def plan_of(old: IkeSa) -> Plan:
    """One child per reqid, among those neither being deleted nor replaced (a REKEYED child's
    successor has its reqid; a DELETING one is on its way out)."""
    wanted: dict[int, ChildConfig] = {}
    for child in old.children:
        if child.state in (ChildState.INSTALLED, ChildState.REKEYING):
            wanted.setdefault(child.reqid, child.config)
    return [(config, reqid) for reqid, config in wanted.items()]


def take_new_children(sa: IkeSa) -> Plan:
    """The CREATE_CHILD_SAs for new children (not rekeys) queued on `sa`, taken off its queue:
    the new IKE SA makes these children instead (on `sa` they would go with it)."""
    taken = [e for e in sa.queue if isinstance(e, CreateChildExchange) and e.old is None]
    sa.queue[:] = [e for e in sa.queue if e not in taken]
    return [(e.config, e.reqid) for e in taken if isinstance(e, CreateChildExchange)]


def merge(plan: Plan, more: Plan) -> Plan:
    """`plan` and those of `more` whose reqid it lacks (one child per reqid)."""
    merged = list(plan)
    reqids = {reqid for _config, reqid in plan}
    for config, reqid in more:
        if reqid not in reqids:
            reqids.add(reqid)
            merged.append((config, reqid))
    return merged


def attempt_span(conn: ConnectionConfig) -> float:
    """How long a reauthentication attempt may take to establish its new IKE SA.

    The peer keeps a half-open IKE SA only so long (strongSwan's half_open_timeout, 30 s as
    ours; RFC 7296 §2.6 calls it half-open state), counted from when our IKE_SA_INIT reached
    it, after we made the new IKE SA. Past that it answers IKE_AUTH with INVALID_IKE_SPI at
    best (§2.21.4), and retransmitting IKE_AUTH for the rest of the retransmit span (§2.1:
    hours with many tries) would only hold the reauthentication up while the old IKE SA's hard
    lifetime nears. So an attempt gets our half-open timeout plus one first retransmit
    interval (a round trip for the answer to a last retransmit), then is abandoned and retried.
    An established new IKE SA has no such limit: the peer keeps it, and every exchange on it
    ends within its own retransmit span (§2.1)."""
    return conn.timers.half_open_timeout + conn.timers.retransmit_timeout


def attempt_deadline(new: IkeSa) -> float:
    return new.created_at + attempt_span(new.conn)


def _make_before_break(old: IkeSa, now: float) -> None:
    plan = merge(plan_of(old), take_new_children(old))
    new = _initiate(old, plan, now)
    new.queue.append(Complete(old, plan))
    old.reauth_by = new
    old.reauth_at = min(now + CHECK_INTERVAL, attempt_deadline(new))


def _break_before_make(old: IkeSa, now: float) -> None:
    old.start_exchange(BreakThenMake(), now)


STRATEGIES: dict[bool, Callable[[IkeSa, float], None]] = {
    True: _make_before_break,
    False: _break_before_make,
}


def _initiate(old: IkeSa, plan: Plan, now: float) -> IkeSa:
    """The new IKE SA, to the endpoints the old one uses now (NAT-T ports included), queued with
    IKE_AUTH (first child, no INITIAL_CONTACT) and a CREATE_CHILD_SA per other child. §2.8.3:
    it authenticates anew, so with the connection as configured now (a reload may have rotated
    the credentials), or as the old IKE SA had it if a reload removed it."""
    assert old.host is not None
    conn = old.host.current_connection(old.conn.name) or old.conn
    new = old.spawn(True, new_ike_spi(old), bytes(8), now, conn)
    new.reauth_of = old.id
    plan = [(_current(conn, config), reqid) for config, reqid in plan]
    first_config, first_reqid = plan[0] if plan else (None, 0)
    new.queue.append(IkeAuthExchange(first_config, first_reqid, initial_contact=False))
    for config, reqid in plan[1:]:
        new.queue.append(CreateChildExchange(config, reqid))
    ike_init.build_i(new, now)
    new.log.info("IKE SA reauthenticating", old_ike_sa=old.id)
    return new


def _current(conn: ConnectionConfig, config: ChildConfig) -> ChildConfig:
    return next((c for c in conn.children if c.name == config.name), config)


def due(old: IkeSa, now: float) -> None:
    """old.reauth_at came: start a reauthentication, or check on the one under way (and give
    it up past its deadline). An IKE SA still completing the reauthentication of its
    predecessor waits for that first."""
    new = old.reauth_by
    if new is not None and new.closed:
        progress = "failed"
    elif new is not None:
        overdue = new.state in HALF_OPEN_STATES and now >= attempt_deadline(new)
        progress = "overdue" if overdue else "running"
    else:
        progress = "completing" if completing(old) else "idle"
    ON_DUE[progress](old, now)


def completing(sa: IkeSa) -> bool:
    """Is `sa` a new IKE SA whose predecessor is not deleted yet (its Complete is queued)?"""
    return any(isinstance(exchange, Complete) for exchange in sa.queue)


def _retry_later(old: IkeSa, now: float) -> None:
    """The new IKE SA failed (its failure event says why); the old one stays (§2.8.3), is
    rekeyed again at its soft lifetime meanwhile, and tries again: after RETRY_AFTER_FAILURE,
    or sooner when the hard lifetime leaves room for no more than two attempts (§2.8)."""
    failed = old.reauth_by
    old.reauth_by = None
    retry_at = now + RETRY_AFTER_FAILURE + old.jitter(30.0)
    if old.expire_at is not None:
        latest = old.expire_at - 2 * attempt_span(old.conn)
        retry_at = max(min(retry_at, latest), now + CHECK_INTERVAL)
    old.reauth_at = retry_at
    rekey_time = old.conn.timers.ike_rekey_time
    if rekey_time > 0 and old.rekey_at is None:
        # start() stopped the IKE rekey, as the new IKE SA was to replace this one; it stays,
        # so its keys are renewed at their soft lifetime (§2.8), counted from when it was keyed
        keyed = old.established_at if old.established_at is not None else now
        old.rekey_at = max(keyed + rekey_time - old.jitter(rekey_time), now + 1.0)
    old.log.warning(
        "reauthentication failed; old IKE SA kept",
        new_ike_sa=failed.id if failed is not None else None,
        retry_in=round(old.reauth_at - now, 1),
    )


def _abandon(old: IkeSa, now: float) -> None:
    """The new IKE SA is not established by its deadline: the attempt has failed, and the old
    IKE SA tries again later. Without keys the new IKE SA is just forgotten. With its IKE_AUTH
    out, the peer may have established it and lost only its answers (likely on a lossy link:
    a single Delete would often be lost too and leave it an orphan IKE SA with children under
    the old ones' reqids), so it is deleted as an established IKE SA (§1.4.1: retransmitted,
    under the next message ID, which a peer that answered IKE_AUTH expects). A peer that
    forgot the half-open IKE SA answers INVALID_IKE_SPI, which ends it at once (§2.21.4,
    informational.unprotected); one still holding it half-open drops the Delete."""
    new = old.reauth_by
    assert new is not None
    reason = "reauthentication attempt not established in time"
    if new.state is IkeState.AUTH_SENT:
        new.log.warning("IKE SA failed", reason=reason)
        new.emit(IkeSaFailed(new.id, new.conn.name, reason, None))
        informational.withdraw(new, reason, now)
    else:
        ike_init.fail(new, reason, None)
    new.touch()
    _retry_later(old, now)


def given_up(new: IkeSa, state: IkeState) -> None:
    """An exchange of a reauthentication's new IKE SA went unanswered and ended it here, in
    `state`: the peer may hold it (it answered IKE_AUTH, or got the request and lost only the
    answers), and the old IKE SA works on, so tell the peer lest it keep an orphan IKE SA and
    children under the old ones' reqids (§1.4.1)."""
    if state is IkeState.ESTABLISHED:
        delete_once(new, after_unanswered=True)
    elif state is IkeState.AUTH_SENT:
        delete_once(new)  # the message ID of IKE_AUTH carries no INFORMATIONAL


def terminate(sa: IkeSa, now: float) -> None:
    """`down` of an IKE SA also ends a reauthentication under way for it: the new IKE SA would
    replace the one being deleted (§2.8.3), so it goes too, and break-before-make makes none."""
    new, sa.reauth_by, sa.reauth_at = sa.reauth_by, None, None
    if isinstance(sa.pending, BreakThenMake):
        sa.pending.cancelled = True
    sa.queue[:] = [e for e in sa.queue if not isinstance(e, BreakThenMake)]
    informational.terminate(sa, now)
    if new is not None and not new.closed:
        new.queue.clear()  # its Complete and the children it has yet to recreate
        if new.state is IkeState.AUTH_SENT:
            informational.withdraw(new, "terminated before it was established", now)
        else:
            informational.terminate(new, now)
        new.touch()


def _wait(old: IkeSa, now: float) -> None:
    old.reauth_at = now + CHECK_INTERVAL
    new = old.reauth_by
    if new is not None and new.state in HALF_OPEN_STATES:
        old.reauth_at = min(old.reauth_at, attempt_deadline(new))


def _start(old: IkeSa, now: float) -> None:
    start(old, now)


ON_DUE: dict[str, Callable[[IkeSa, float], None]] = {
    "idle": _start,
    "failed": _retry_later,
    "overdue": _abandon,
    "running": _wait,
    "completing": _wait,
}


class Complete:
    """Queued on the new IKE SA after its child exchanges. When its turn comes the new IKE SA is
    up and every child exchange has ended, so the old IKE SA goes (make-before-break). It sends
    nothing itself (build_i returns None)."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, old: IkeSa, plan: Plan) -> None:
        self.old: IkeSa | None = old  # dropped once run: no link from the new IKE SA to it
        self.plan = plan

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        if self.old is None:
            return None  # pragma: no cover (run once)
        old, self.old = self.old.home(), None  # it may have been rekeyed meanwhile (§2.18)
        late = self._late(old, sa.conn)
        if late:
            # children the old IKE SA made or was making after the plan was drawn: recreated
            # here too before it goes (make-before-break)
            sa.log.info("reauthentication recreates more children", children=len(late))
            sa.queue.extend(CreateChildExchange(config, reqid) for config, reqid in late)
            sa.queue.append(Complete(old, self.plan + late))
            return None
        home = sa.home()
        made = {(c.config.name, c.reqid) for c in home.children}
        missing = [config.name for config, reqid in self.plan if (config.name, reqid) not in made]
        if missing:
            sa.log.warning("reauthentication did not recreate every child", missing=missing)
        old.reauth_at = None  # done: no more checks, no new attempt
        old.reauth_by = None
        sa.reauth_of = None
        sa.log.info("IKE SA reauthenticated", old_ike_sa=old.id)
        if old.state is IkeState.ESTABLISHED:
            # follows_rekey: an IKE rekey of the old SA still out would make its successor the
            # IKE SA to delete (ike_rekey.move_children)
            old.start_exchange(DeleteIkeExchange("reauthenticated", follows_rekey=True), now)
        old.touch()
        return None

    def _late(self, old: IkeSa, conn: ConnectionConfig) -> Plan:
        """The children `old` has, is creating or has queued that the plan lacks."""
        if old.state is not IkeState.ESTABLISHED:
            return []
        more = plan_of(old)
        for pending in old.in_flight():  # §2.3: one or more children under way
            if isinstance(pending, CreateChildExchange) and pending.old is None:
                more.append((pending.config, pending.reqid))
        more += take_new_children(old)
        late = merge(self.plan, more)[len(self.plan) :]
        return [(_current(conn, config), reqid) for config, reqid in late]

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        raise AssertionError("Complete sends no request")  # pragma: no cover

    def give_up(self, sa: IkeSa, now: float) -> None:
        raise AssertionError("Complete sends no request")  # pragma: no cover


class BreakThenMake(DeleteIkeExchange):
    """Break-before-make: delete the old IKE SA (and with it its children), then initiate the
    new one with the children the old one had when the Delete went out."""

    def __init__(self) -> None:
        # follows_rekey: an IKE rekey completing first hands the reauthentication on (§2.18)
        super().__init__("reauthenticated (break-before-make)", follows_rekey=True)
        self.plan: Plan = []
        self.cancelled = False  # `down` while the Delete is out: make nothing after

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        payloads = super().build_i(sa, now)
        if payloads is not None:
            self.plan = merge(plan_of(sa), take_new_children(sa))
        return payloads

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        super().process_i(sa, payloads, now)
        if not self.cancelled:
            _initiate(sa, self.plan, now)

    def give_up(self, sa: IkeSa, now: float) -> None:
        super().give_up(sa, now)
        if not self.cancelled:
            _initiate(sa, self.plan, now)


class PeerIndex:
    """Established IKE SAs by connection, peer identity and peer address, for the responder
    side: a child the peer creates on a new IKE SA takes the reqid of the child with the same
    config and selectors on another IKE SA of that peer — the one a reauthentication replaces —
    so the service adds the new kernel SAs under the policies already in place and removes only
    the old SAs when the old IKE SA goes (strongSwan shares reqids between identical policies)."""

    def __init__(self) -> None:
        self._sas: dict[PeerKey, dict[int, IkeSa]] = {}
        self._keys: dict[int, PeerKey] = {}  # where each SA is filed
        # (our ID, peer ID) -> SAs, whatever the connection and address: engine/unique.py's
        # duplicates, found without a scan of every SA (issue 17: that scan made each IKE_AUTH
        # O(number of SAs))
        self._by_ids: dict[IdsKey, dict[int, IkeSa]] = {}
        self._ids_keys: dict[int, IdsKey] = {}

    def track(self, sa: IkeSa) -> None:
        if sa.remote_identity is None:
            return
        key = (sa.conn.name, sa.remote_identity, sa.remote[0])
        filed = self._keys.get(sa.id)
        if filed == key:
            return
        if filed is not None:
            self.forget(sa)
        self._keys[sa.id] = key
        self._sas.setdefault(key, {})[sa.id] = sa
        ids = (sa.conn.local_id, sa.remote_identity)
        self._ids_keys[sa.id] = ids
        self._by_ids.setdefault(ids, {})[sa.id] = sa

    def forget(self, sa: IkeSa) -> None:
        _unfile(self._keys, self._sas, sa.id)
        _unfile(self._ids_keys, self._by_ids, sa.id)

    def with_identities(self, local: Identity, remote: Identity) -> list[IkeSa]:
        """The tracked IKE SAs between these two identities (any connection, any address)."""
        return list(self._by_ids.get((local, remote), {}).values())

    def reqid_for(
        self,
        sa: IkeSa,
        counter: Iterator[int],
        config: ChildConfig,
        local: TsSpecs,
        remote: TsSpecs,
    ) -> int:
        if sa.remote_identity is not None:
            key = (sa.conn.name, sa.remote_identity, sa.remote[0])
            for other in self._sas.get(key, {}).values():
                if other is sa or other.closed:
                    continue
                for child in other.children:
                    event = child.event
                    if (
                        child.config.name == config.name
                        and event is not None
                        and event.local_ts == local
                        and event.remote_ts == remote
                    ):
                        return child.reqid
        return next(counter)


def _unfile(keys: dict[int, K], index: dict[K, dict[int, IkeSa]], sa_id: int) -> None:
    """Take SA `sa_id` out of the bucket `keys` says it is filed in; drop an empty bucket."""
    key = keys.pop(sa_id, None)
    if key is None:
        return
    bucket = index.get(key)
    if bucket is not None:
        bucket.pop(sa_id, None)
        if not bucket:
            del index[key]
