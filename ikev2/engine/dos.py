"""Denial-of-service accounting for the IKE_SA_INIT gate (RFC 7296 §2.6).

§2.6 COOKIEs prove only that an initiator can receive at its source address; one such source can
still answer every COOKIE and fill the global half-open table (strongSwan's
`charon.init_limit_half_open`, our `max_half_open`) until nobody else gets in. `HalfOpenTable`
therefore counts half-open IKE SAs per source IP so the gate can refuse a source that holds too
many (strongSwan's `charon.block_threshold`, our `block_threshold`), and `LogLimiter` keeps the
gate's per-datagram log lines bounded under a flood; `DropLog` is the engine's rate-limited log of
every datagram it drops before an IKE SA's keys vouch for it.

Nothing here reads a clock: time comes in as `now`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .config import IPAddress
from .events import Endpoint

V = TypeVar("V")
HalfOpenKey = tuple[bytes, Endpoint]  # (SPIi, the initiator's endpoint)


class HalfOpenTable(Generic[V]):
    """The responder's half-open IKE SAs by (SPIi, remote endpoint), with a count per source IP.

    Every insertion and removal goes through this class, so the per-source counts always match
    the table; a source whose count drops to 0 is removed, so the per-source table holds at
    most one entry per half-open SA and never grows past the table itself.
    """

    __slots__ = ("_entries", "_per_source")

    def __init__(self) -> None:
        self._entries: dict[HalfOpenKey, V] = {}
        self._per_source: dict[IPAddress, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[HalfOpenKey]:
        return iter(self._entries)

    def __getitem__(self, key: HalfOpenKey) -> V:
        return self._entries[key]

    def get(self, key: HalfOpenKey) -> V | None:
        return self._entries.get(key)

    def values(self) -> list[V]:
        return list(self._entries.values())

    def __setitem__(self, key: HalfOpenKey, value: V) -> None:
        if key not in self._entries:
            source = key[1][0]
            self._per_source[source] = self._per_source.get(source, 0) + 1
        self._entries[key] = value

    def __delitem__(self, key: HalfOpenKey) -> None:
        del self._entries[key]
        source = key[1][0]
        left = self._per_source[source] - 1
        if left:
            self._per_source[source] = left
        else:
            del self._per_source[source]

    def pop(self, key: HalfOpenKey, default: V | None = None) -> V | None:
        if key not in self._entries:
            return default
        value = self._entries[key]
        del self[key]
        return value

    def count(self, source: IPAddress) -> int:
        """How many half-open IKE SAs `source` holds."""
        return self._per_source.get(source, 0)

    @property
    def sources(self) -> int:
        """How many source IPs hold a half-open IKE SA (the per-source table's size)."""
        return len(self._per_source)


@dataclass(slots=True)
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


class LogLimiter:
    """At most `lines` log lines per `interval` seconds for each reason; the rest are counted.

    admit() says whether to log this line. When a reason's interval ends with lines suppressed,
    the next admit() for it (or flush()) returns the count once so the caller logs one summary
    ("suppressed K drops: reason"). Reasons are fixed strings from the code, never peer data, so
    the table stays small.
    """

    __slots__ = ("_interval", "_lines", "_windows")
    MAX_REASONS = 64  # a guard: the oldest window goes if a caller ever passes varying reasons

    def __init__(self, lines: int, interval: float) -> None:
        self._lines = lines
        self._interval = interval
        self._windows: dict[str, _Window] = {}

    def reconfigure(self, lines: int, interval: float) -> None:
        """New limits (Engine.update_config); windows under way keep their counts."""
        self._lines, self._interval = lines, interval

    def admit(self, reason: str, now: float) -> tuple[bool, int]:
        """(log this line?, lines suppressed in the interval that just ended: summarize if > 0)."""
        if self._lines <= 0 or self._interval <= 0:
            return True, 0  # limiting disabled
        window = self._windows.get(reason)
        ended = 0
        if window is None or self._ended(window, now):
            ended = window.suppressed if window is not None else 0
            self._windows.pop(reason, None)
            if len(self._windows) >= self.MAX_REASONS:
                del self._windows[next(iter(self._windows))]
            window = self._windows[reason] = _Window(now)
        if window.logged < self._lines:
            window.logged += 1
            return True, ended
        window.suppressed += 1
        return False, ended

    def _end(self, window: _Window) -> float:
        return window.start + self._interval

    def _ended(self, window: _Window, now: float) -> bool:
        """Whether `window` is over at `now` (or the clock went back). The same sum as
        deadline(), never `now - start >= interval`: floats round those two apart (start
        126.40685752053078, interval 10: end 136.40685752053076, but end - start is
        9.999999999999986), and a window still open at its own deadline keeps the engine's
        timer at that instant for ever, so a driver that follows get_timer() never moves on."""
        return now >= self._end(window) or now < window.start

    def deadline(self) -> float | None:
        """When the earliest interval with suppressed lines ends (its summary is due), if any."""
        due = [self._end(w) for w in self._windows.values() if w.suppressed]
        return min(due) if due and self._interval > 0 else None

    def flush(self, now: float) -> list[tuple[str, int]]:
        """(reason, suppressed) for every interval that has ended with lines suppressed."""
        out = []
        for reason, window in list(self._windows.items()):
            if self._ended(window, now):
                if window.suppressed:
                    out.append((reason, window.suppressed))
                del self._windows[reason]
        return out


class DropLog:
    """The engine's log of dropped and refused datagrams, bounded under a flood.

    info() logs one line per event unless its reason (a fixed string from our code, never peer
    data) has used up its lines in the current interval; flush() logs one warning per ended
    interval that suppressed lines ("suppressed K drops: reason"). The engine calls flush() from
    its timer and reports deadline() in its own, so a summary comes out when it is due even if no
    datagram ever follows the flood.
    """

    __slots__ = ("_limiter", "_log")

    def __init__(self, logger: Any, lines: int, interval: float) -> None:
        self._log = logger
        self._limiter = LogLimiter(lines, interval)

    def reconfigure(self, lines: int, interval: float) -> None:
        self._limiter.reconfigure(lines, interval)

    def info(
        self, now: float, reason: str, event: str, logger: Any = None, **fields: object
    ) -> None:
        """Log `event` at info, or at debug once `reason` is over its lines for the interval
        (debug still shows each); `logger` is an IKE SA's bound logger, else the engine's."""
        admitted, suppressed = self._limiter.admit(reason, now)
        if suppressed:
            self._summary(reason, suppressed)
        target = self._log if logger is None else logger
        emit = target.info if admitted else target.debug
        emit(event, reason=fields.pop("detail", reason), **fields)

    def flush(self, now: float) -> None:
        for reason, suppressed in self._limiter.flush(now):
            self._summary(reason, suppressed)

    def deadline(self) -> float | None:
        return self._limiter.deadline()

    def _summary(self, reason: str, suppressed: int) -> None:
        self._log.warning(
            f"suppressed {suppressed} drops: {reason}", suppressed=suppressed, reason=reason
        )
