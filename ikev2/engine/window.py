"""Message IDs and retransmission (RFC 7296 §2.1–2.2), window size 1.

Only the initiator of an exchange retransmits: RequestWindow keeps the outstanding request and
its back-off schedule (strongSwan's: timeout × base^try, give up after `tries` retransmits).
The responder keeps its last response: ResponseWindow replays it for a duplicate request and
never processes that request again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .config import Timers


@dataclass(slots=True)
class Outstanding:
    message_id: int
    packets: tuple[bytes, ...] = field(repr=False)
    sent_at: float
    deadline: float
    retransmits: int = 0


class RetransmitAction(enum.Enum):
    NONE = "none"
    RESEND = "resend"
    GIVE_UP = "give-up"


class RequestWindow:
    """Our requests: the next message ID and the one request in flight."""

    def __init__(self, timers: Timers, first_id: int = 0) -> None:
        self.timers = timers
        self.next_id = first_id
        self.outstanding: Outstanding | None = None
        # RFC 9329 §6.2: over TCP a request is not resent on a timer; it waits the whole span
        # the UDP back-off would have taken, then the exchange is given up
        self.reliable = False

    @property
    def busy(self) -> bool:
        return self.outstanding is not None

    def allocate(self) -> int:
        message_id = self.next_id
        self.next_id += 1
        return message_id

    def sent(self, message_id: int, packets: tuple[bytes, ...], now: float) -> None:
        self.outstanding = Outstanding(
            message_id, packets, now, now + self._timeout(0), retransmits=0
        )

    def resend_same_id(self, packets: tuple[bytes, ...], now: float) -> None:
        """A new request under the same ID (IKE_SA_INIT retried with a COOKIE or another KE)."""
        assert self.outstanding is not None
        self.outstanding = Outstanding(self.outstanding.message_id, packets, now, now)
        self.outstanding.deadline = now + self._timeout(0)

    def matches(self, message_id: int) -> bool:
        return self.outstanding is not None and self.outstanding.message_id == message_id

    def done(self) -> None:
        self.outstanding = None

    def deadline(self) -> float | None:
        return self.outstanding.deadline if self.outstanding else None

    def on_timer(self, now: float) -> RetransmitAction:
        out = self.outstanding
        if out is None or now < out.deadline:
            return RetransmitAction.NONE
        if self.reliable or out.retransmits >= self.timers.retransmit_tries:
            return RetransmitAction.GIVE_UP
        out.retransmits += 1
        out.deadline = now + self._timeout(out.retransmits)
        return RetransmitAction.RESEND

    def _timeout(self, attempt: int) -> float:
        if self.reliable:
            return self.timers.retransmit_span
        return self.timers.retransmit_delay(attempt)


class RequestClass(enum.Enum):
    NEW = "new"
    RETRANSMIT = "retransmit"
    INVALID = "invalid"


class ResponseWindow:
    """Requests from the peer: the ID we expect next and our cached last response."""

    def __init__(self, first_id: int = 0) -> None:
        self.expected_id = first_id
        self.last_id: int | None = None
        self.last_response: tuple[bytes, ...] = ()

    def classify(self, message_id: int) -> RequestClass:
        if message_id == self.expected_id:
            return RequestClass.NEW
        if self.last_id is not None and message_id == self.last_id:
            return RequestClass.RETRANSMIT
        return RequestClass.INVALID

    def answered(self, message_id: int, packets: tuple[bytes, ...]) -> None:
        self.last_id = message_id
        self.last_response = packets
        self.expected_id = message_id + 1
