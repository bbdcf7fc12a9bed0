"""SET_WINDOW_SIZE (RFC 7296 §2.3, §3.10.1): how many requests each side takes at once.

    IKE_AUTH request or response:  N(SET_WINDOW_SIZE, 4 octets: the window)

The window is 1 until the initial exchanges are done. We announce ours ([daemon] window_size,
strongSwan's charon.window_size) only when it is over 1, in our IKE_AUTH request as initiator
and in the IKE_AUTH response that establishes the IKE SA as responder; from then on we accept
that many requests at once. A peer's announced window caps how many we send (its default is 1:
strongSwan, for one, announces nothing and takes one request at a time). A malformed notify is
ignored and leaves the window at 1.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...constants import NotifyType
from ...wire import NotifyPayload, Payload
from ..window import MAX_WINDOW

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..ike_sa import IkeSa


def ours(sa: IkeSa) -> int:
    """Our window size ([daemon] window_size), within 1..MAX_WINDOW."""
    size = sa.host.window_size if sa.host is not None else 1
    return max(1, min(MAX_WINDOW, size))


def announce(sa: IkeSa) -> list[Payload]:
    """The SET_WINDOW_SIZE notify for our IKE_AUTH message (none at size 1, the default), and
    the responder window opened to match: we take what we announce."""
    size = ours(sa)
    if size <= 1:
        return []
    sa.responses.size = size
    return [NotifyPayload(NotifyType.SET_WINDOW_SIZE, data=struct.pack("!I", size))]


def learn(sa: IkeSa, payloads: Sequence[Payload]) -> None:
    """The peer's window from its IKE_AUTH message: we send at most min(its, ours) at once."""
    notify = next(
        (
            p
            for p in payloads
            if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.SET_WINDOW_SIZE
        ),
        None,
    )
    if notify is None:
        return
    if len(notify.data) != 4:
        sa.log.info("SET_WINDOW_SIZE ignored", reason="not 4 octets", size=len(notify.data))
        return
    (peer,) = struct.unpack("!I", notify.data)
    if peer < 1:
        sa.log.info("SET_WINDOW_SIZE ignored", reason="window 0")
        return
    sa.requests.size = min(peer, ours(sa))
    sa.log.debug("peer window", peer=peer, requests_at_once=sa.requests.size)
