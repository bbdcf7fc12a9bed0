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
  exchange on it has ended, so each new child is installed before its predecessor goes. If the
  new IKE SA fails, the old one stays: the failure is logged and a new attempt follows after
  RETRY_AFTER_FAILURE (the old SA's hard lifetime still ends it). A child the peer refuses to
  recreate is logged and the old IKE SA deleted all the same (strongSwan's ike_reauth_complete).
- break-before-make: the old IKE SA is deleted first, then the new one is initiated. If that
  fails, the connection is down (no retry, like strongSwan with keyingtries = 1).

The responder needs no mode of its own: a new IKE SA for the same connection and peer identity is
accepted beside the old one (strongSwan's unique = no) and both are kept until the peer deletes
the old one; the children it creates take the reqids of those they replace (PeerIndex).

Both peers reauthenticating at once would leave two IKE SAs (each deletes the old one and keeps
its own new one): as with strongSwan, set reauth_time on one side.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..constants import ExchangeType
from .config import ChildConfig, Identity, IPAddress
from .ike_sa import ChildState
from .state import IkeState
from .tasks import ike_init
from .tasks.child_create import TsSpecs
from .tasks.create_child import CreateChildExchange
from .tasks.ike_auth import IkeAuthExchange
from .tasks.ike_rekey import new_ike_spi
from .tasks.informational import DeleteIkeExchange

if TYPE_CHECKING:
    from ..wire import Payload
    from .ike_sa import IkeSa

CHECK_INTERVAL = 10.0  # how often an old IKE SA looks at its replacement under way
RETRY_AFTER_FAILURE = 30.0  # then a new attempt (plus up to 10 % of 30 s jitter)
Plan = list[tuple[ChildConfig, int]]  # the children to recreate: config and reqid
PeerKey = tuple[str, Identity, IPAddress]


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


def _make_before_break(old: IkeSa, now: float) -> None:
    plan = plan_of(old)
    new = _initiate(old, plan, now)
    new.queue.append(Complete(old, plan))
    old.reauth_by = new
    old.reauth_at = now + CHECK_INTERVAL


def _break_before_make(old: IkeSa, now: float) -> None:
    old.start_exchange(BreakThenMake(), now)


STRATEGIES: dict[bool, Callable[[IkeSa, float], None]] = {
    True: _make_before_break,
    False: _break_before_make,
}


def _initiate(old: IkeSa, plan: Plan, now: float) -> IkeSa:
    """The new IKE SA, to the endpoints the old one uses now (NAT-T ports included), queued with
    IKE_AUTH (first child, no INITIAL_CONTACT) and a CREATE_CHILD_SA per other child."""
    new = old.spawn(True, new_ike_spi(old), bytes(8), now)
    new.reauth_of = old
    first_config, first_reqid = plan[0] if plan else (None, 0)
    new.queue.append(IkeAuthExchange(first_config, first_reqid, initial_contact=False))
    for config, reqid in plan[1:]:
        new.queue.append(CreateChildExchange(config, reqid))
    ike_init.build_i(new, now)
    new.log.info("IKE SA reauthenticating", old_ike_sa=old.id)
    return new


def due(old: IkeSa, now: float) -> None:
    """old.reauth_at came: start a reauthentication, or check on the one under way. An IKE SA
    still completing the reauthentication of its predecessor waits for that first."""
    new = old.reauth_by
    if new is not None:
        progress = "failed" if new.closed else "running"
    else:
        progress = "completing" if completing(old) else "idle"
    ON_DUE[progress](old, now)


def completing(sa: IkeSa) -> bool:
    """Is `sa` a new IKE SA whose predecessor is not deleted yet (its Complete is queued)?"""
    return any(isinstance(exchange, Complete) for exchange in sa.queue)


def _retry_later(old: IkeSa, now: float) -> None:
    """The new IKE SA failed (its failure event says why); the old one stays (§2.8.3)."""
    failed = old.reauth_by
    old.reauth_by = None
    old.reauth_at = now + RETRY_AFTER_FAILURE + old.jitter(30.0)
    old.log.warning(
        "reauthentication failed; old IKE SA kept",
        new_ike_sa=failed.id if failed is not None else None,
        retry_in=round(old.reauth_at - now, 1),
    )


def _wait(old: IkeSa, now: float) -> None:
    old.reauth_at = now + CHECK_INTERVAL


def _start(old: IkeSa, now: float) -> None:
    start(old, now)


ON_DUE: dict[str, Callable[[IkeSa, float], None]] = {
    "idle": _start,
    "failed": _retry_later,
    "running": _wait,
    "completing": _wait,
}


class Complete:
    """Queued on the new IKE SA after its child exchanges. When its turn comes the new IKE SA is
    up and every child exchange has ended, so the old IKE SA goes (make-before-break). It sends
    nothing itself (build_i returns None)."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, old: IkeSa, plan: Plan) -> None:
        self.old = old
        self.plan = plan

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        home = sa.home()
        made = {(c.config.name, c.reqid) for c in home.children}
        missing = [config.name for config, reqid in self.plan if (config.name, reqid) not in made]
        if missing:
            sa.log.warning("reauthentication did not recreate every child", missing=missing)
        old = self.old.home()  # the old IKE SA may have been rekeyed meanwhile (§2.18)
        old.reauth_at = None  # done: no more checks, no new attempt
        sa.log.info("IKE SA reauthenticated", old_ike_sa=old.id)
        if old.state is IkeState.ESTABLISHED:
            old.start_exchange(DeleteIkeExchange("reauthenticated"), now)
        old.touch()
        return None

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        raise AssertionError("Complete sends no request")  # pragma: no cover

    def give_up(self, sa: IkeSa, now: float) -> None:
        raise AssertionError("Complete sends no request")  # pragma: no cover


class BreakThenMake(DeleteIkeExchange):
    """Break-before-make: delete the old IKE SA (and with it its children), then initiate the
    new one with the children the old one had when the Delete went out."""

    def __init__(self) -> None:
        super().__init__("reauthenticated (break-before-make)")
        self.plan: Plan = []

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        payloads = super().build_i(sa, now)
        if payloads is not None:
            self.plan = plan_of(sa)
        return payloads

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        super().process_i(sa, payloads, now)
        _initiate(sa, self.plan, now)

    def give_up(self, sa: IkeSa, now: float) -> None:
        super().give_up(sa, now)
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

    def forget(self, sa: IkeSa) -> None:
        key = self._keys.pop(sa.id, None)
        bucket = self._sas.get(key) if key is not None else None
        if key is not None and bucket is not None:
            bucket.pop(sa.id, None)
            if not bucket:
                del self._sas[key]

    def reqid_for(
        self,
        sa: IkeSa,
        counter: itertools.count[int],
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
