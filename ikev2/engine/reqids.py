"""Engine reqids: the number tying a child SA to its kernel policies (RFC 4301 §4.4.1's SPD
entries, XFRM's reqid), kept across the child's rekeys and reauthentications.

The service maps engine reqid r into a bounded kernel range (kernel_apply: one range per worker,
trap policies above it), so reqids cannot grow without end: a responder that has served more
children since it started than the range holds would reach the trap reqids, then leave the range
its restart flushes. ReqidCounter hands them out in order and, at the end of the range, starts
again from 1, skipping every reqid still in use at that moment: those of live children, of child
exchanges queued or under way, and of reauthentication plans. A reqid freed after that snapshot
is merely skipped until the next round, which keeps a round's cost at one scan of the SAs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ike_sa import IkeSa

DEFAULT_MAX_REQID = 0xEFFFF  # kernel_apply.TRAP_BASE - 1: below the trap reqids (~980,000 children)


class ReqidsExhausted(Exception):
    """Every reqid of the range is in use (more live children than the range holds)."""


class ReqidCounter(Iterator[int]):
    """next(counter) is a reqid in 1..maximum not in use; `sas()` gives the live IKE SAs."""

    def __init__(self, sas: Callable[[], Iterable[IkeSa]], maximum: int = DEFAULT_MAX_REQID):
        self._sas = sas
        self.maximum = maximum
        self._next = 1
        self._in_use: frozenset[int] = frozenset()  # the snapshot of this round (empty: first)

    def __next__(self) -> int:
        for _ in range(2):
            while self._next <= self.maximum:
                reqid = self._next
                self._next += 1
                if reqid not in self._in_use:
                    return reqid
            self._next, self._in_use = 1, frozenset(in_use(self._sas()))
        raise ReqidsExhausted(f"all {self.maximum} reqids are in use")


def in_use(sas: Iterable[IkeSa]) -> Iterator[int]:
    """Every reqid an IKE SA holds or is about to use."""
    for sa in sas:
        for child in sa.children:
            yield child.reqid
        for exchange in (*sa.in_flight(), *sa.queue):
            reqid = getattr(exchange, "reqid", None)
            if isinstance(reqid, int):
                yield reqid
            for _config, planned in getattr(exchange, "plan", ()):
                yield planned
