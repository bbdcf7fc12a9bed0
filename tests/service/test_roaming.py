"""service/roaming.py: an address of ours going away moves the IKE SAs we initiated on it to
the source the routing table now picks (RFC 4555 §3.5), once; an address gone with no other
path yet waits for the next address event. The engine is real (two engines back to back)."""

from __future__ import annotations

import ipaddress
from typing import Any

from ikev2.engine.events import IkeSaMoved
from ikev2.kernel.roaming import AddressEvent, MemoryRoaming
from ikev2.service.roaming import Roamer
from tests.engine.pairing import ADDR_I, ADDR_R, Pair, psk_connections

NEW = ipaddress.ip_address("198.51.100.7")


class FakeDriver:
    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.engine = pair.i.engine
        self.calls: list[tuple[Any, Any]] = []

    def local_address_changed(self, old: Any, new: Any) -> None:
        self.calls.append((old, new))
        self.pair.i.events += self.engine.local_address_changed(old, new, self.pair.now)


def established() -> tuple[Pair, FakeDriver, MemoryRoaming, Roamer]:
    pair = Pair(*psk_connections())
    pair.initiate()
    pair.run(until=30)
    driver = FakeDriver(pair)
    roaming = MemoryRoaming()
    return pair, driver, roaming, Roamer(driver, roaming)  # type: ignore[arg-type]


def test_our_address_going_away_moves_the_ike_sa() -> None:
    pair, driver, roaming, roamer = established()
    try:
        roaming.routes[ADDR_R] = NEW
        roaming.emit(AddressEvent(NEW, True, 2))
        roamer.on_readable()
        assert driver.calls == []  # a new address alone moves nothing
        roaming.emit(AddressEvent(ADDR_I, False, 1))
        roamer.on_readable()
        assert driver.calls == [(ADDR_I, NEW)]
        pair.run(until=pair.now + 10)
        (sa_r,) = pair.r.engine.sas.values()
        assert sa_r.remote == (NEW, 4500) and pair.r.of(IkeSaMoved)
        roamer.on_readable()  # nothing new: no second move
        assert driver.calls == [(ADDR_I, NEW)]
    finally:
        roaming.close()


def test_no_path_yet_waits_for_the_next_address() -> None:
    _pair, driver, roaming, roamer = established()
    try:
        roaming.emit(AddressEvent(ADDR_I, False, 1))
        roamer.on_readable()
        assert driver.calls == [] and ADDR_I in roamer.gone
        roaming.routes[ADDR_R] = NEW  # DHCP done on the other interface
        roaming.emit(AddressEvent(NEW, True, 2))
        roamer.on_readable()
        assert driver.calls == [(ADDR_I, NEW)] and roamer.moves == 1
    finally:
        roaming.close()
