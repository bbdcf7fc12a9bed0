"""Inbound ESP/AH SPIs that no other child of ours holds (RFC 4303 §2.1, RFC 7296 §3.3.1).

The kernel finds an inbound SA by (destination, SPI, protocol), so two of our children with the
same inbound SPI on one address cannot both be installed: the second is refused (EEXIST) and its
child fails. Drawn at random from 2^32, the odds of a repeat among n live SPIs are n^2 / 2^33:
about one at 100,000 children (bench/bench_scale.py met it: issue 17). `SpiRegistry` remembers
what it handed out and draws again on a repeat; instead of tracking every child's removal it
rebuilds the set from the live IKE SAs once it has grown to twice their children's SPIs, so a
draw stays O(1) amortized (as engine/reqids.py does for reqids).

IPComp CPIs (RFC 3173 §3.3) are drawn the same way from their 16 bits: 0..63 are IANA's
well-known CPIs and 64..255 reserved, so negotiated ones start at 256; a CPI names the inbound
IPComp SA (dst, CPI, protocol 108) as an SPI does an ESP SA. With 65,280 values a full range
is possible: after MAX_CPI_TRIES repeats the draw gives up (None) and the child goes without
IPComp, as strongSwan's does when the kernel has no CPI left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ike_sa import IkeSa

MIN_SPI = 256  # 1..255 are reserved by IANA (RFC 4303 §2.1), 0 means none
MIN_CPI = 256  # 0..255: well-known and reserved CPIs (RFC 3173 §3.3)
MAX_CPI_TRIES = 64
REBUILD_FLOOR = 4096  # below this many issued SPIs no rebuild is worth a scan


class SpiRegistry:
    """`draw(random_bytes)`: an inbound SPI no live child of ours holds or is about to."""

    def __init__(self, sas: Callable[[], Iterable[IkeSa]]) -> None:
        self._sas = sas
        self._issued: set[int] = set()
        self._limit = REBUILD_FLOOR

    def draw(self, random_bytes: Callable[[int], bytes]) -> int:
        if len(self._issued) >= self._limit:
            self._issued = set(in_use(self._sas()))
            self._limit = max(REBUILD_FLOOR, 2 * len(self._issued))
        while True:
            spi = int.from_bytes(random_bytes(4), "big")
            if spi >= MIN_SPI and spi not in self._issued:
                self._issued.add(spi)
                return spi


def in_use(sas: Iterable[IkeSa]) -> Iterator[int]:
    """Every inbound SPI an IKE SA's children hold, or its exchanges have drawn for new ones."""
    for sa in sas:
        for child in sa.children:
            yield child.spi_in
        for exchange in (*sa.in_flight(), *sa.queue):
            spi = getattr(getattr(exchange, "child", None), "spi_in", None)
            if isinstance(spi, int):
                yield spi


class CpiRegistry:
    """`draw(random_bytes)`: an inbound IPComp CPI no live child of ours holds, or None."""

    def __init__(self, sas: Callable[[], Iterable[IkeSa]]) -> None:
        self._sas = sas
        self._issued: set[int] = set()
        self._limit = REBUILD_FLOOR

    def draw(self, random_bytes: Callable[[int], bytes]) -> int | None:
        if len(self._issued) >= self._limit:
            self._issued = set(cpis_in_use(self._sas()))
            self._limit = max(REBUILD_FLOOR, 2 * len(self._issued))
        for _ in range(MAX_CPI_TRIES):
            cpi = int.from_bytes(random_bytes(2), "big")
            if cpi >= MIN_CPI and cpi not in self._issued:
                self._issued.add(cpi)
                return cpi
        self._issued = set(cpis_in_use(self._sas()))  # perhaps many have gone meanwhile
        return None


def cpis_in_use(sas: Iterable[IkeSa]) -> Iterator[int]:
    """Every inbound CPI an IKE SA's children hold, or its exchanges have drawn for new ones."""
    for sa in sas:
        for child in sa.children:
            if child.cpi_in:
                yield child.cpi_in
        for exchange in (sa.pending, *sa.queue):
            cpi = getattr(getattr(exchange, "child", None), "cpi_in", None)
            if isinstance(cpi, int) and cpi:
                yield cpi
