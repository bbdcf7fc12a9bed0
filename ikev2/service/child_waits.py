"""`ikev2 up` and the children that come after IKE_AUTH: `up CONN --child NAME` under an IKE SA
we hold, `up CONN --no-child` (a childless IKE SA, RFC 6023), and the children a childless
IKE SA creates in CREATE_CHILD_SA (RFC 7296 §1.3.1) once it is up (`childless = force`).

A ChildWait settles when each child it names has been established or has failed under its IKE
SA, or when that IKE SA goes; the driver feeds it the engine's events. The control handler
answers as `up` always has: the IKE SAs, and the children's failures as warnings.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine.events import ChildSaEstablished, ChildSaFailed


@dataclass
class ChildWait:
    sa_id: int
    pending: Counter[str]  # child names still to come (one per exchange)
    future: asyncio.Future[list[str]]  # settles with the failures ("child NAME: reason")
    failures: list[str] = field(default_factory=list)

    def settle_if_done(self) -> None:
        if not +self.pending and not self.future.done():
            self.future.set_result(self.failures)


class ChildWaits:
    def __init__(self) -> None:
        self._waits: list[ChildWait] = []

    def wait(self, loop: asyncio.AbstractEventLoop, sa_id: int, names: list[str]) -> ChildWait:
        wait = ChildWait(sa_id, Counter(names), loop.create_future())
        self._waits.append(wait)
        wait.settle_if_done()
        self._sweep()
        return wait

    def cancel(self, wait: ChildWait) -> None:
        if wait in self._waits:
            self._waits.remove(wait)
        if not wait.future.done():
            wait.future.cancel()

    def _take(self, sa_id: int, name: str) -> ChildWait | None:
        for wait in self._waits:
            if wait.sa_id == sa_id and wait.pending[name] > 0:
                wait.pending[name] -= 1
                return wait
        return None

    def established(self, event: ChildSaEstablished) -> None:
        wait = self._take(event.ike_sa_id, event.child)
        if wait is not None:
            wait.settle_if_done()
            self._sweep()

    def failed(self, event: ChildSaFailed) -> None:
        wait = self._take(event.ike_sa_id, event.child)
        if wait is not None:
            wait.failures.append(f"child {event.child}: {event.reason}")
            wait.settle_if_done()
            self._sweep()

    def moved(self, sa_id: int, new_sa_id: int) -> None:
        """RFC 5685: the children of a redirected IKE SA come up under its successor."""
        for wait in self._waits:
            if wait.sa_id == sa_id:
                wait.sa_id = new_sa_id

    def ike_gone(self, sa_id: int, reason: str) -> None:
        for wait in self._waits:
            if wait.sa_id == sa_id:
                wait.failures += [f"child {n}: {reason}" for n in +wait.pending]
                wait.pending.clear()
                wait.settle_if_done()
        self._sweep()

    def _sweep(self) -> None:
        self._waits = [w for w in self._waits if not w.future.done()]


async def up_child(
    start: Callable[[], int],
    waits: ChildWaits,
    loop: asyncio.AbstractEventLoop,
    child: str,
    views: Callable[[set[int]], list[dict[str, Any]]],
    timeout: float,
) -> dict[str, Any]:
    """`up CONN --child NAME`: start it (the engine picks or makes the IKE SA) and wait for
    the child itself, not just the IKE SA; its failure is the answer's error."""
    sa_id = start()
    wait = waits.wait(loop, sa_id, [child])
    try:
        failures = await asyncio.wait_for(wait.future, timeout)
    except TimeoutError:
        waits.cancel(wait)
        return {"ok": False, "error": f"child {child} of IKE SA {sa_id} not established in time"}
    answer: dict[str, Any] = {"ok": not failures, "sas": views({sa_id})}
    if failures:
        answer["error"] = "; ".join(failures)
    return answer


async def then_children(
    answer: Awaitable[dict[str, Any]],
    wait: ChildWait | None,
    waits: ChildWaits,
    views: Callable[[set[int]], list[dict[str, Any]]],
    timeout: float,
) -> dict[str, Any]:
    """A plain `up`: the IKE SA's answer, then (when it is up) its children that follow in
    CREATE_CHILD_SA; their failures join the answer's warnings, the SAs are listed again."""
    result = await answer
    if wait is None:
        return result
    if not result.get("ok"):
        waits.cancel(wait)
        return result
    try:
        failures = await asyncio.wait_for(wait.future, timeout)
    except TimeoutError:
        waits.cancel(wait)
        failures = [f"child {n}: not established in time" for n in +wait.pending]
    warnings = list(dict.fromkeys([*result.get("warnings", []), *failures]))
    result = {**result, "sas": views({wait.sa_id})}
    if warnings:
        result["warnings"] = warnings
    return result
