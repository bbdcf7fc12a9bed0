"""The initiator's half of MOBIKE (RFC 4555 §3.5) that needs the host: notice that an address
one of our IKE SAs uses went away, ask the routing table which of our addresses now reaches the
peer, and tell the engine to move (Engine.local_address_changed). The engine sends
UPDATE_SA_ADDRESSES; its IkeSaMoved events move the kernel SAs (driver, kernel_apply).

An address that went away with no route to the peer yet stays on the `gone` list: each later
address event (a new address, DHCP done) tries again. strongSwan roams the same way, on
address and route events.
"""

from __future__ import annotations

from typing import Protocol

from ..kernel import IPAddress, KernelError
from ..kernel.roaming import AddressEvent
from ..log import get_logger
from .driver import Driver

log = get_logger("ikev2.service")


class Roaming(Protocol):
    def fileno(self) -> int: ...

    def read_events(self) -> list[AddressEvent]: ...

    def source_for(self, peer: IPAddress) -> IPAddress | None: ...

    def close(self) -> None: ...


class Roamer:
    def __init__(self, driver: Driver, roaming: Roaming) -> None:
        self.driver = driver
        self.roaming = roaming
        self.gone: set[IPAddress] = set()  # our addresses deleted and not back since
        self.moves = 0

    def on_readable(self) -> None:
        try:
            events = self.roaming.read_events()
        except KernelError as exc:
            log.warning("address events unreadable", error=str(exc))
            return
        for event in events:
            (self.gone.discard if event.added else self.gone.add)(event.address)
        if events:
            self.check()

    def check(self) -> None:
        """Move every established IKE SA we initiated whose local address is gone."""
        moves: dict[tuple[IPAddress, IPAddress], None] = {}
        for view in self.driver.engine.list_sas():
            old = view.local[0]
            if not view.initiator or view.state != "established" or old not in self.gone:
                continue
            try:
                new = self.roaming.source_for(view.remote[0])
            except KernelError as exc:
                log.warning("route lookup failed", peer=str(view.remote[0]), error=str(exc))
                continue
            if new is None or new == old or new in self.gone:
                log.info("local address gone, no other path yet", address=str(old),
                         peer=str(view.remote[0]))  # fmt: skip
                continue
            moves[(old, new)] = None
        for old, new in moves:
            log.info("local address gone; moving", old=str(old), new=str(new))
            self.moves += 1
            self.driver.local_address_changed(old, new)
