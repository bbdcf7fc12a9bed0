"""Back-to-back engines, each with an in-memory kernel wired as the service wires the real one.

A KernelSide applies a side's child events to its InMemoryKernel through the service's
KernelApplier, and hands the kernel's events (Expire, Acquire) back to the engine the way
service/driver.py does: the tests then see what the daemon would do, without sockets.
"""

from __future__ import annotations

from ikev2.engine.config import ChildConfig, ConnectionConfig
from ikev2.engine.events import ChildSaDeleted, ChildSaEstablished
from ikev2.kernel import Acquire, Expire, IpProto
from ikev2.kernel.memory import InMemoryKernel
from ikev2.service.kernel_apply import KernelApplier

from .pairing import Pair, Side


class KernelSide:
    def __init__(self, side: Side) -> None:
        self.side = side
        self.kernel = InMemoryKernel()
        self.applier = KernelApplier(self.kernel)
        self.seen = 0
        self.acquires = 0
        self.expires = 0

    def sync(self, now: float) -> bool:
        """Apply the events not yet applied, feed back what the kernel said; True if any."""
        moved = False
        while True:
            new = self.side.events[self.seen :]
            self.seen = len(self.side.events)
            for event in new:
                if isinstance(event, ChildSaEstablished):
                    self.applier.child_established(event)
                elif isinstance(event, ChildSaDeleted):
                    self.applier.child_deleted(event)
            engine = self.side.engine
            kernel_events = self.kernel.read_events()
            for ke in kernel_events:
                if isinstance(ke, Expire):
                    self.expires += 1
                    self.side.events += engine.kernel_expire(ke.proto, ke.spi, ke.hard, now, ke.dst)
                elif isinstance(ke, Acquire):
                    trap = self.applier.trap_child(ke.reqid)
                    if trap is not None:
                        self.acquires += 1
                        self.side.events += engine.kernel_acquire(*trap, now)
            if not new and not kernel_events:
                return moved
            moved = True

    def trap(self, conn: ConnectionConfig, child: ChildConfig, index: int = 0) -> int:
        return self.applier.install_trap(index, conn, child)

    def acquire(self, reqid: int) -> None:
        """As if a packet hit the trap policy with this reqid (or had hit it before the child
        came up: the kernel's ACQUIREs can arrive late)."""
        policy = self.applier.traps[reqid][2][0]
        self.kernel.inject(
            Acquire(
                policy.selector,
                self.side_addr(True),
                self.side_addr(False),
                IpProto.ESP,
                reqid,
                0,
                0,
            )
        )

    def side_addr(self, local: bool):  # type: ignore[no-untyped-def]
        conn = self.side.engine.config.connections[0]
        return conn.local_addrs[0] if local else conn.remote_addrs[0]

    def esp_sas(self) -> set[tuple[object, int]]:
        return {(sa.dst, sa.spi) for sa in self.kernel.list_sas() if sa.proto is IpProto.ESP}


class KernelPair:
    """A Pair whose two sides each run an in-memory kernel."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.i = KernelSide(pair.i)
        self.r = KernelSide(pair.r)

    def run(self, until: float, max_steps: int = 10_000) -> None:
        pair = self.pair
        for _ in range(max_steps):
            self.i.sync(pair.now)
            self.r.sync(pair.now)
            pair._collect()
            if not pair.in_flight:
                timers = [
                    t
                    for t in (pair.i.engine.get_timer(), pair.r.engine.get_timer())
                    if t is not None
                ]
                if not timers or min(timers) > until:
                    return
            if not pair.step():
                return
        raise AssertionError("pair did not settle")
