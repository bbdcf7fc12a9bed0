"""Traffic selectors: configuration <-> wire, intersection and narrowing (RFC 7296 §2.9, §3.13.1).

A selector is a box in three dimensions: an address range, an IP protocol (0 = any) and a port
range (for ICMP the "ports" carry type/code, RFC 4301 §4.4.1.1, and are compared as plain
16-bit ranges). OPAQUE ports (start 65535, end 0, §3.13.1) are kept as a point of their own:
they meet only another OPAQUE range or the full 0..65535 range.

Selectors of types we do not interpret (wire's RawTrafficSelector: FC, security labels) never
intersect anything, so narrowing drops them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from ..constants import IpProto, TsType
from ..errors import TsUnacceptable
from ..wire import Selector, TrafficSelector
from .config import IPAddress, IPNetwork, TrafficSelectorSpec

OPAQUE = (65535, 0)  # §3.13.1: "start port 65535 and end port 0" means OPAQUE
ALL_PORTS = (0, 65535)
TS_TYPE_FOR_VERSION: dict[int, TsType] = {4: TsType.IPV4_ADDR_RANGE, 6: TsType.IPV6_ADDR_RANGE}


@functools.lru_cache(maxsize=1024)
def spec_to_selector(spec: TrafficSelectorSpec) -> TrafficSelector:
    """A configured network/protocol/ports as a wire selector (an address range); cached, as
    the same configured selectors are turned into wire ones for every SA."""
    network = spec.network
    return TrafficSelector(
        ts_type=TS_TYPE_FOR_VERSION[network.version],
        ip_protocol=int(spec.ip_protocol),
        start_port=spec.start_port,
        end_port=spec.end_port,
        start_addr=network.network_address,
        end_addr=network.broadcast_address,
    )


def selector_to_networks(ts: TrafficSelector) -> list[IPNetwork]:
    """The CIDR blocks covering exactly the selector's address range (a range may need several)."""
    if int(ts.start_addr) > int(ts.end_addr) or ts.start_addr.version != ts.end_addr.version:
        return []
    return list(ipaddress.summarize_address_range(ts.start_addr, ts.end_addr))


def selector_for_address(address: IPAddress) -> TrafficSelector:
    """A single host, any protocol and port: e.g. a transport-mode selector for our address."""
    return spec_to_selector(TrafficSelectorSpec(ipaddress.ip_network(address)))


def _is_interpreted(ts: Selector) -> bool:
    return isinstance(ts, TrafficSelector) and ts.ts_type in TS_TYPE_FOR_VERSION.values()


def _ports(ts: TrafficSelector) -> tuple[int, int] | None:
    """(start, end), OPAQUE as itself; None for an empty range."""
    ports = (ts.start_port, ts.end_port)
    if ports == OPAQUE:
        return OPAQUE
    return ports if ts.start_port <= ts.end_port else None


def _intersect_ports(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    if OPAQUE in (a, b):
        return OPAQUE if {a, b} <= {OPAQUE, ALL_PORTS} else None
    start, end = max(a[0], b[0]), min(a[1], b[1])
    return (start, end) if start <= end else None


def _intersect_protocol(a: int, b: int) -> int | None:
    if a == IpProto.ANY:
        return b
    if b in (IpProto.ANY, a):
        return a
    return None


def intersect(a: Selector, b: Selector) -> TrafficSelector | None:
    """The selector covering what both cover, or None when they do not meet."""
    if not (_is_interpreted(a) and _is_interpreted(b)):
        return None
    assert isinstance(a, TrafficSelector) and isinstance(b, TrafficSelector)
    if a.ts_type != b.ts_type or a.start_addr.version != b.start_addr.version:
        return None
    # compare as integers: the two ends of one selector have the version its type says
    start = max(int(a.start_addr), int(b.start_addr))
    end = min(int(a.end_addr), int(b.end_addr))
    if start > end:
        return None
    address_class = type(a.start_addr)
    start_addr, end_addr = address_class(start), address_class(end)
    protocol = _intersect_protocol(a.ip_protocol, b.ip_protocol)
    ports_a, ports_b = _ports(a), _ports(b)
    if protocol is None or ports_a is None or ports_b is None:
        return None
    ports = _intersect_ports(ports_a, ports_b)
    if ports is None:
        return None
    return TrafficSelector(a.ts_type, protocol, ports[0], ports[1], start_addr, end_addr)


def contains(outer: Selector, inner: Selector) -> bool:
    """True when every packet `inner` covers is covered by `outer`."""
    return _is_interpreted(inner) and intersect(outer, inner) == inner


def intersect_all(
    proposed: Sequence[Selector], allowed: Sequence[Selector]
) -> tuple[TrafficSelector, ...]:
    """Each proposed selector cut down to each allowed one, in the proposer's order.

    Empty intersections are dropped, and so is a result lying inside another result: e.g. the
    specific-packet selector an initiator puts first (§2.9) when a wider one of its list is kept.
    """
    if len(proposed) > CACHED_SELECTORS or not all(
        isinstance(t, TrafficSelector) for t in proposed
    ):
        # a peer's unusually long list, or raw selectors (their data of any size): not kept
        return _intersect_all_uncached(tuple(proposed), tuple(allowed))
    return _intersect_all(tuple(proposed), tuple(allowed))


CACHED_SELECTORS = 16


def _intersect_all_uncached(
    proposed: tuple[Selector, ...], allowed: tuple[Selector, ...]
) -> tuple[TrafficSelector, ...]:
    """intersect_all, cached: the peers of a connection propose the same few selector lists."""
    pieces: list[TrafficSelector] = []
    for p in proposed:
        for a in allowed:
            piece = intersect(p, a)
            if piece is not None and piece not in pieces:
                pieces.append(piece)
    if len(pieces) < 2:  # the common case: nothing to compare
        return tuple(pieces)
    return tuple(
        piece
        for piece in pieces
        if not any(other != piece and contains(other, piece) for other in pieces)
    )


_intersect_all = functools.lru_cache(maxsize=1024)(_intersect_all_uncached)


def narrow(
    proposed: Sequence[Selector], allowed: Sequence[Selector]
) -> tuple[TrafficSelector, ...]:
    """The responder's narrowing of one side (§2.9): TSi against our remote selectors, TSr
    against our local ones. Raises TsUnacceptable (TS_UNACCEPTABLE) when nothing is left."""
    narrowed = intersect_all(proposed, allowed)
    if not narrowed:
        raise TsUnacceptable(
            f"none of the {len(proposed)} proposed traffic selectors meets our "
            f"{len(allowed)} ({', '.join(map(describe, proposed))})"
        )
    return narrowed


def narrow_pair(
    tsi: Sequence[Selector],
    tsr: Sequence[Selector],
    remote_ts: Sequence[Selector],
    local_ts: Sequence[Selector],
) -> tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]]:
    """Both sides for the responder: (TSi ∩ remote_ts, TSr ∩ local_ts); TsUnacceptable if either
    side is empty."""
    return narrow(tsi, remote_ts), narrow(tsr, local_ts)


def check_narrowed(
    returned: Sequence[Selector], proposed: Sequence[Selector]
) -> tuple[TrafficSelector, ...]:
    """The initiator's check of the responder's TSi or TSr (§2.9): each returned selector must lie
    inside one we proposed. Raises TsUnacceptable otherwise or when nothing was returned; gives
    back the returned selectors, typed."""
    if not returned:
        raise TsUnacceptable("responder returned no traffic selectors")
    checked: list[TrafficSelector] = []
    for ts in returned:
        if not isinstance(ts, TrafficSelector) or not any(contains(p, ts) for p in proposed):
            raise TsUnacceptable(f"responder's selector {describe(ts)} is wider than we proposed")
        checked.append(ts)
    return tuple(checked)


def describe(ts: Selector) -> str:
    """strongSwan-like text: 10.0.1.0/24[tcp/80], 10.0.0.1..10.0.0.5, 2001:db8::/64[udp/1-2]."""
    if not isinstance(ts, TrafficSelector):
        return f"<selector type {ts.ts_type}, {len(ts.data)} bytes>"
    networks = selector_to_networks(ts)
    where = str(networks[0]) if len(networks) == 1 else f"{ts.start_addr}..{ts.end_addr}"
    ports = (ts.start_port, ts.end_port)
    if ts.ip_protocol == IpProto.ANY and ports == ALL_PORTS:
        return where
    try:
        proto = IpProto(ts.ip_protocol).name.lower()
    except ValueError:
        proto = str(ts.ip_protocol)
    if ports == ALL_PORTS:
        port_text = ""
    elif ports == OPAQUE:
        port_text = "/OPAQUE"
    elif ts.start_port == ts.end_port:
        port_text = f"/{ts.start_port}"
    else:
        port_text = f"/{ts.start_port}-{ts.end_port}"
    return f"{where}[{proto}{port_text}]"
