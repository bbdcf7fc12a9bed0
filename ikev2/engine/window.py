"""Message IDs and retransmission (RFC 7296 §2.1–2.3), window size 1 up to 64.

Only the initiator of an exchange retransmits: RequestWindow keeps the outstanding requests and
their back-off schedules (strongSwan's: timeout × base^try, give up after `tries` retransmits).
The responder keeps its last responses: ResponseWindow replays one for a duplicate request and
never processes that request again.

§2.3: a window over 1 is announced with SET_WINDOW_SIZE (tasks/window_size.py) and applies
once the initial exchanges are done. Then requests may be out at once whose IDs lie within
min(peer's window, ours) of the oldest unanswered one, each with its own timer; the responder
accepts message IDs in [expected, expected + our window - 1] in any order. Exchanges that
change the IKE SA as a whole (rekey, delete, MOBIKE, reauthentication) stay serialised: only
exchanges marked `parallel` (a class attribute, default False) share the window, and an
exclusive one starts only when nothing else is out.
Empty tuples cost nothing per IKE SA, so an idle SA pays no more than with window size 1.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .config import Timers

MAX_WINDOW = 64  # [daemon] window_size's upper limit (config_tunables.py)


@dataclass(slots=True)
class Outstanding:
    message_id: int
    packets: tuple[bytes, ...] = field(repr=False)
    sent_at: float
    deadline: float
    retransmits: int = 0
    exchange: Any = field(default=None, repr=False)  # None: IKE_SA_INIT's request


class RetransmitAction(enum.Enum):
    NONE = "none"
    RESEND = "resend"
    GIVE_UP = "give-up"


def runs_in_parallel(exchange: object) -> bool:
    """May this exchange share the request window with others (§2.3)? Only the ones marked so."""
    return bool(getattr(exchange, "parallel", False))


class RequestWindow:
    """Our requests: the next message ID and the requests in flight, oldest first."""

    __slots__ = ("next_id", "peak", "reliable", "size", "slots", "timers")

    def __init__(self, timers: Timers, first_id: int = 0) -> None:
        self.timers = timers
        self.next_id = first_id
        self.slots: tuple[Outstanding, ...] = ()
        self.size = 1  # §2.3: min(the peer's SET_WINDOW_SIZE, ours) once announced
        self.peak = 0  # the most requests ever in flight at once (list-sas shows it)
        # RFC 9329 §6.2: over TCP a request is not resent on a timer; it waits the whole span
        # the UDP back-off would have taken, then the exchange is given up
        self.reliable = False

    @property
    def busy(self) -> bool:
        return bool(self.slots)

    @property
    def outstanding(self) -> Outstanding | None:
        """The oldest request in flight."""
        return self.slots[0] if self.slots else None

    def exchanges(self) -> tuple[Any, ...]:
        """The exchanges of the requests in flight (IKE_SA_INIT's has none)."""
        return tuple(out.exchange for out in self.slots if out.exchange is not None)

    def can_start(self, exchange: object) -> bool:
        """§2.3: the next ID lies in the window (below the oldest unanswered ID + size: the
        peer takes no more, however many of those are answered), and no exclusive exchange
        on either side of it."""
        if not self.slots:
            return True
        if self.next_id >= self.slots[0].message_id + self.size:
            return False
        if not runs_in_parallel(exchange):
            return False
        return all(runs_in_parallel(out.exchange) for out in self.slots)

    def allocate(self) -> int:
        message_id = self.next_id
        self.next_id += 1
        return message_id

    def sent(
        self, message_id: int, packets: tuple[bytes, ...], now: float, exchange: object = None
    ) -> None:
        out = Outstanding(message_id, packets, now, now + self._timeout(0), exchange=exchange)
        self.slots = (*(o for o in self.slots if o.message_id != message_id), out)
        self.peak = max(self.peak, len(self.slots))

    def resend_same_id(self, packets: tuple[bytes, ...], now: float) -> None:
        """A new request under the same ID (IKE_SA_INIT retried with a COOKIE or another KE)."""
        assert self.slots
        first = self.slots[0]
        self.slots = (Outstanding(first.message_id, packets, now, now + self._timeout(0)),)

    def find(self, message_id: int) -> Outstanding | None:
        return next((out for out in self.slots if out.message_id == message_id), None)

    def matches(self, message_id: int) -> bool:
        return self.find(message_id) is not None

    def done(self, message_id: int | None = None) -> None:
        """The request `message_id` is answered (or abandoned); None: all of them."""
        if message_id is None:
            self.slots = ()
        else:
            self.slots = tuple(out for out in self.slots if out.message_id != message_id)

    def deadline(self) -> float | None:
        return min((out.deadline for out in self.slots), default=None)

    def on_timer(self, now: float) -> list[tuple[RetransmitAction, Outstanding]]:
        """What each request whose timer ran out needs: a resend, or giving up on it."""
        actions = []
        for out in self.slots:
            if now < out.deadline:
                continue
            if self.reliable or out.retransmits >= self.timers.retransmit_tries:
                actions.append((RetransmitAction.GIVE_UP, out))
                continue
            out.retransmits += 1
            out.deadline = now + self._timeout(out.retransmits)
            actions.append((RetransmitAction.RESEND, out))
        return actions

    def _timeout(self, attempt: int) -> float:
        if self.reliable:
            return self.timers.retransmit_span
        return self.timers.retransmit_delay(attempt)


class RequestClass(enum.Enum):
    NEW = "new"
    RETRANSMIT = "retransmit"
    INVALID = "invalid"


class ResponseWindow:
    """Requests from the peer: the lowest ID not answered yet, and our cached responses to the
    last `size` requests (§2.3: a duplicate of any of them is answered from here)."""

    __slots__ = ("answers", "current", "expected_id", "size")

    def __init__(self, first_id: int = 0) -> None:
        self.expected_id = first_id
        self.size = 1  # our window, once announced with SET_WINDOW_SIZE
        self.answers: tuple[tuple[int, tuple[bytes, ...]], ...] = ()  # by message ID, ascending
        self.current = first_id  # the ID of the request being answered

    def classify(self, message_id: int) -> RequestClass:
        if any(mid == message_id for mid, _packets in self.answers):
            return RequestClass.RETRANSMIT
        if self.expected_id <= message_id < self.expected_id + self.size:
            return RequestClass.NEW
        return RequestClass.INVALID

    def cached(self, message_id: int) -> tuple[bytes, ...]:
        return next((packets for mid, packets in self.answers if mid == message_id), ())

    @property
    def last_id(self) -> int | None:
        return self.answers[-1][0] if self.answers else None

    @property
    def last_response(self) -> tuple[bytes, ...]:
        return self.answers[-1][1] if self.answers else ()

    def answered(self, message_id: int, packets: tuple[bytes, ...]) -> None:
        kept = [entry for entry in self.answers if entry[0] != message_id]
        kept.append((message_id, packets))
        kept.sort(key=lambda entry: entry[0])
        # the `size` highest IDs: every answered one inside the window is among them
        self.answers = tuple(kept[-self.size :])
        if message_id < self.expected_id:  # an ID we already passed, e.g. one answered again
            return
        answered = {mid for mid, _packets in self.answers}
        while self.expected_id in answered or self.expected_id == message_id:
            self.expected_id += 1
