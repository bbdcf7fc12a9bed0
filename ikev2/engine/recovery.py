"""What a child's `dpd_action` / `close_action` (swanctl.conf) does once its IKE SA is gone.

- dpd_action: the peer is dead — a liveness check (RFC 7296 §2.4) or another request of ours
  went unanswered through all retransmits, and the IKE SA was deleted.
- close_action: the peer deleted the IKE SA (§1.4.1).
keyingtries (Retries, _retry): a setup the peer never answered is tried again.
`clear` does nothing more; `restart` brings the child up again at once: under another IKE SA of
its connection that can carry it, or a new IKE SA for the restarted children (the same rule as
an ACQUIRE, kernel_events.acquire). A rekeyed, replaced (unique), reauthenticated or locally
deleted IKE SA restarts nothing. `trap` (strongSwan's third value, a trap policy in the
service) is not implemented yet: the loader refuses it.

The manager hands over the events of each input; this module reads only them (the closed SA is
gone from the manager by then): an IkeSaDeleted with a reason below, and the ChildSaDeleted
events of the same IKE SA naming the children it had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from . import kernel_events, tcp
from .config import ChildConfig, Recovery
from .events import ChildSaDeleted, Event, IkeSaDeleted, IkeSaEstablished, IkeSaFailed

if TYPE_CHECKING:
    from .manager import Engine

log = structlog.get_logger("ikev2.engine")

# the reasons informational.ike_deleted gives (tasks/informational.py, create_child.py,
# ike_rekey.py): the peer stopped answering, or it sent a Delete of the IKE SA
DEAD_PEER_PREFIXES = ("peer dead", "peer did not answer")
CLOSED_BY_PEER = "deleted by peer"
NO_ANSWER = "(retransmits exhausted)"  # an IKE SA setup the peer never answered


def _action(reason: str) -> str | None:
    if reason.startswith(DEAD_PEER_PREFIXES):
        return "dpd_action"
    if reason == CLOSED_BY_PEER:
        return "close_action"
    return None


class Retries:
    """keyingtries: the IKE SAs we initiated and not yet established, by id, with their
    connection, children and attempt number (1 for the first)."""

    def __init__(self) -> None:
        self.pending: dict[int, tuple[str, tuple[ChildConfig, ...], int]] = {}

    def track(self, sa_id: int, name: str, children: tuple[ChildConfig, ...]) -> None:
        self.pending[sa_id] = (name, children, 1)


def _retry(engine: Engine, events: list[Event], now: float) -> bool:
    """keyingtries (strongSwan's; default 1, 0 = forever): an IKE SA we initiate whose peer did
    not answer (IKE_SA_INIT, IKE_INTERMEDIATE or IKE_AUTH retransmits exhausted: the §2.1
    back-off has run its course) is initiated again, with the same children, until the tries
    are used up. Refusals (AUTHENTICATION_FAILED, NO_PROPOSAL_CHOSEN ...) are not retried."""
    pending = engine.retries.pending
    started = False
    for event in events:
        if isinstance(event, IkeSaEstablished):
            pending.pop(event.ike_sa_id, None)
        elif isinstance(event, IkeSaFailed | IkeSaDeleted) and event.ike_sa_id in pending:
            name, children, attempt = pending.pop(event.ike_sa_id)
            conn = engine.current_connection(name)
            if conn is None or not event.reason.endswith(NO_ANSWER):
                continue
            tries = conn.keyingtries
            if tries and attempt >= tries:
                log.info("giving up", conn=name, tries=attempt)
                continue
            known = {c.name for c in conn.children}
            log.info("peer not responding, trying again", conn=name, attempt=attempt + 1,
                     of=tries or "forever")  # fmt: skip
            sa_id = engine.initiate(name, now, tuple(c for c in children if c.name in known))
            pending[sa_id] = (name, pending[sa_id][1], attempt + 1)
            started = True
    return started


def restart(engine: Engine, events: list[Event], now: float, reqids: Callable[[], int]) -> bool:
    """Restart the children whose action says so, retry unanswered IKE SA setups
    (keyingtries); True when anything was started."""
    started = tcp.fallback(engine, events, now)  # udp-then-tcp first (RFC 9329 §5.1)
    started = _retry(engine, events, now) or started
    for event in events:
        if not isinstance(event, IkeSaDeleted):
            continue
        which = _action(event.reason)
        conn = engine.current_connection(event.connection) if which else None
        if which is None or conn is None or not conn.local_addrs or not conn.remote_addrs:
            continue  # a responder-only connection cannot initiate (no peer address)
        gone = event.ike_sa_id
        names = [e.child for e in events if isinstance(e, ChildSaDeleted) and e.ike_sa_id == gone]
        wanted: list[ChildConfig] = [
            c for c in conn.children if c.name in names and getattr(c, which) is Recovery.RESTART
        ]
        fresh = []
        for child in wanted:
            sa = kernel_events.acquire(engine.sas.values(), conn, child, reqids, now)
            if sa is None:
                fresh.append(child)
            else:
                engine.touch_sa(sa)
        if fresh:
            engine.initiate(conn.name, now, children=tuple(fresh))
        if wanted:
            log.info(f"{which} restart", conn=conn.name, children=[c.name for c in wanted],
                     ike_sa=event.ike_sa_id, reason=event.reason)  # fmt: skip
            started = True
    return started
