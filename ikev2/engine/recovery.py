"""What a child's `dpd_action` / `close_action` (swanctl.conf) does once its IKE SA is gone.

- dpd_action: the peer is dead — a liveness check (RFC 7296 §2.4) or another request of ours
  went unanswered through all retransmits, and the IKE SA was deleted.
- close_action: the peer deleted the IKE SA (§1.4.1).
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

from typing import TYPE_CHECKING

import structlog

from . import kernel_events
from .config import ChildConfig, Recovery
from .events import ChildSaDeleted, Event, IkeSaDeleted

if TYPE_CHECKING:
    from .manager import Engine

log = structlog.get_logger("ikev2.engine")

# the reasons informational.ike_deleted gives (tasks/informational.py, create_child.py,
# ike_rekey.py): the peer stopped answering, or it sent a Delete of the IKE SA
DEAD_PEER_PREFIXES = ("peer dead", "peer did not answer")
CLOSED_BY_PEER = "deleted by peer"


def _action(reason: str) -> str | None:
    if reason.startswith(DEAD_PEER_PREFIXES):
        return "dpd_action"
    if reason == CLOSED_BY_PEER:
        return "close_action"
    return None


def restart(engine: Engine, events: list[Event], now: float) -> bool:
    """Restart the children whose action says so; True when anything was started."""
    started = False
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
            sa = kernel_events.acquire(engine.sas.values(), conn, child, engine.next_reqid, now)
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
