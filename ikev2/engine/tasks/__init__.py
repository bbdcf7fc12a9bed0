"""One module per exchange concern, strongSwan-style: each has build_i / process_i for the
initiator of the exchange and a responder entry point (process_r + build_r)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ...constants import NotifyType
from ...wire import NotifyPayload, Payload

T = TypeVar("T")


def find_payload(payloads: Sequence[Payload], cls: type[T]) -> T | None:
    """The first payload of class cls, or None."""
    for p in payloads:
        if isinstance(p, cls):
            return p
    return None


def has_notify(payloads: Sequence[Payload], notify_type: NotifyType) -> bool:
    return any(isinstance(p, NotifyPayload) and p.notify_type == notify_type for p in payloads)


def error_notifies(payloads: Sequence[Payload]) -> list[NotifyPayload]:
    """RFC 7296 §3.10.1: notify types below 16384 report errors."""
    return [p for p in payloads if isinstance(p, NotifyPayload) and p.notify_type < 16384]


def as_notify_type(value: int | None) -> NotifyType | None:
    if value is None:
        return None
    try:
        return NotifyType(value)
    except ValueError:
        return None
