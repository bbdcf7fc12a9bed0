"""The driver's one timer (DESIGN.md §1) is re-armed even when handling a deadline raises:
otherwise every IKE SA's retransmits, liveness checks and lifetimes (RFC 7296 §2.1, §2.4,
§2.8) would stop for good."""

from __future__ import annotations

import asyncio
from typing import Any

from ikev2.service.driver import Driver


class RaisingEngine:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.calls = 0

    def handle_timer(self, now: float) -> list[Any]:
        self.calls += 1
        if self.calls == 1:
            raise OverflowError("math range error")
        self.deadline = now + 1000.0
        return []

    def datagrams_to_send(self) -> list[Any]:
        return []

    def get_timer(self) -> float | None:
        return self.deadline


def test_timer_is_rearmed_after_an_exception() -> None:
    loop = asyncio.new_event_loop()
    try:
        engine = RaisingEngine(loop.time() + 0.01)
        driver = Driver(engine, kernel=None, transport=None, loop=loop)  # type: ignore[arg-type]
        driver.flush()
        assert driver._timer is not None
        loop.run_until_complete(asyncio.sleep(0.05))
        assert engine.calls == 1
        # the engine still reports the deadline that failed: retried, but not in a busy loop
        assert driver._timer is not None and driver._armed is not None
        assert driver._armed >= loop.time() + 0.5
        driver._on_timer(driver._armed)  # the retry succeeds and the timer moves on
        assert engine.calls == 2 and driver._armed == engine.deadline
        driver.stop()
    finally:
        loop.close()
