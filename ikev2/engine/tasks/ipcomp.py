"""IPComp for a child SA (RFC 3173), negotiated with IPCOMP_SUPPORTED (RFC 7296 §2.22, §3.10.1)
in IKE_AUTH and CREATE_CHILD_SA, both roles:

    N(IPCOMP_SUPPORTED, CPIi | DEFLATE), SA, TSi, TSr  -->
                            <--  N(IPCOMP_SUPPORTED, CPIr | DEFLATE), SA, TSi, TSr

The notify data is the sender's 2-octet CPI (the one its inbound IPComp SA will carry) and a
1-octet IPComp transform ID; protocol ID and SPI size are 0. As strongSwan does, we offer only
DEFLATE (RFC 2394, the Linux kernel's "deflate"), the responder answers with its own CPI only
when its child config has `ipcomp` too, and the initiator compresses only if answered. A rekey
negotiates it again with new CPIs (the notify goes in every CREATE_CHILD_SA of the child).

Peer input never raises: a notify with other than 3 octets of data, a transform we do not do,
or a CPI outside the negotiated range (RFC 3173 §3.3: 256 and up) is ignored with a log line.
An answer with IPCOMP_SUPPORTED that we did not ask for fails the child (the peer would send
compressed packets we cannot take), which is what strongSwan does too.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...constants import IpcompTransform, NotifyType
from ...wire import NotifyPayload, Payload
from ..spis import MIN_CPI, CpiRegistry

if TYPE_CHECKING:
    from ..ike_sa import ChildSa, IkeSa

NOTIFY_DATA = struct.Struct("!HB")  # CPI, transform ID (RFC 7296 §3.10.1)
TRANSFORMS = (IpcompTransform.DEFLATE,)  # what we offer and accept, in order
UNSOLICITED = "peer answered IPCOMP_SUPPORTED we did not send"


def _new_cpi(sa: IkeSa) -> int | None:
    """A CPI for our inbound IPComp SA that no other child of this engine holds (spis.py); drawn
    like SPIs, so service workers keep disjoint ranges."""
    draw = sa.env.spi_bytes or sa.random_bytes
    registry = sa.host.cpis if sa.host is not None else CpiRegistry(tuple)
    cpi = registry.draw(draw)
    if cpi is None:
        sa.log.warning("no free IPComp CPI; child goes without IPComp")
    return cpi


def _notify(cpi: int) -> NotifyPayload:
    return NotifyPayload(
        NotifyType.IPCOMP_SUPPORTED, data=NOTIFY_DATA.pack(cpi, IpcompTransform.DEFLATE)
    )


def peer_cpi(sa: IkeSa, payloads: Sequence[Payload]) -> int:
    """The CPI of the peer's first well-formed IPCOMP_SUPPORTED with a transform we do; 0 if
    none. Malformed ones are logged and skipped."""
    for p in payloads:
        if not isinstance(p, NotifyPayload) or p.notify_type != NotifyType.IPCOMP_SUPPORTED:
            continue
        if len(p.data) != NOTIFY_DATA.size:
            sa.log.info("IPCOMP_SUPPORTED ignored", reason=f"{len(p.data)} octets of data, not 3")
            continue
        cpi, transform = NOTIFY_DATA.unpack(p.data)
        if transform not in TRANSFORMS:
            sa.log.info("IPCOMP_SUPPORTED ignored", reason=f"transform {transform} is not DEFLATE")
            continue
        if cpi < MIN_CPI:
            sa.log.info("IPCOMP_SUPPORTED ignored", reason=f"CPI {cpi} is not a negotiated one")
            continue
        return int(cpi)
    return 0


# --- initiator of the child's exchange
def offer(sa: IkeSa, child: ChildSa) -> list[Payload]:
    """Our IPCOMP_SUPPORTED when the child's config wants IPComp (sets child.cpi_in)."""
    if not child.config.ipcomp:
        return []
    cpi = _new_cpi(sa)
    if cpi is None:
        return []
    child.cpi_in = cpi
    return [_notify(cpi)]


def accept(sa: IkeSa, child: ChildSa, payloads: Sequence[Payload]) -> str | None:
    """The responder's answer: sets child.cpi_out, or drops our offer when it declined.
    Returns why the child must fail (an answer we did not ask for), else None."""
    theirs = peer_cpi(sa, payloads)
    if not child.cpi_in:
        return UNSOLICITED if theirs else None
    if not theirs:
        sa.log.info("peer did not accept IPComp; child goes without", child=child.config.name)
        child.cpi_in = 0
        return None
    child.cpi_out = theirs
    return None


# --- responder
def answer(sa: IkeSa, child: ChildSa, payloads: Sequence[Payload]) -> list[Payload]:
    """Our IPCOMP_SUPPORTED for the initiator's, when our child config has IPComp too (sets
    both CPIs of the child); nothing otherwise."""
    theirs = peer_cpi(sa, payloads)
    if not theirs:
        return []
    if not child.config.ipcomp:
        sa.log.info("IPCOMP_SUPPORTED ignored", reason="ipcomp is off for this child")
        return []
    ours = _new_cpi(sa)
    if ours is None:
        return []
    child.cpi_in, child.cpi_out = ours, theirs
    return [_notify(ours)]
