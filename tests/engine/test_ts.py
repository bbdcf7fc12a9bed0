"""Traffic-selector conversion, intersection and narrowing (RFC 7296 §2.9, §3.13.1)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ikev2.constants import IpProto, TsType
from ikev2.engine.config import TrafficSelectorSpec
from ikev2.engine.ts import (
    check_narrowed,
    contains,
    describe,
    intersect,
    intersect_all,
    narrow,
    narrow_pair,
    selector_for_address,
    selector_to_networks,
    spec_to_selector,
)
from ikev2.errors import TsUnacceptable
from ikev2.wire import RawTrafficSelector, TrafficSelector

V4, V6 = TsType.IPV4_ADDR_RANGE, TsType.IPV6_ADDR_RANGE


def ts(net: str, proto: int = 0, start: int = 0, end: int = 65535) -> TrafficSelector:
    return spec_to_selector(TrafficSelectorSpec(ipaddress.ip_network(net), proto, start, end))


def rng(first: str, last: str, proto: int = 0, start: int = 0, end: int = 65535) -> TrafficSelector:
    a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
    return TrafficSelector(V4 if a.version == 4 else V6, proto, start, end, a, b)


# --------------------------------------------------------------------------- conversions


def test_spec_to_selector() -> None:
    sel = ts("10.0.1.0/24", IpProto.TCP, 80, 80)
    assert sel == TrafficSelector(
        V4,
        6,
        80,
        80,
        ipaddress.IPv4Address("10.0.1.0"),
        ipaddress.IPv4Address("10.0.1.255"),
    )
    sel6 = ts("2001:db8::/64")
    assert sel6.ts_type == V6
    assert sel6.end_addr == ipaddress.IPv6Address("2001:db8::ffff:ffff:ffff:ffff")


def test_selector_to_networks_cidr_and_range() -> None:
    assert selector_to_networks(ts("10.0.1.0/24")) == [ipaddress.ip_network("10.0.1.0/24")]
    assert selector_to_networks(rng("10.0.0.1", "10.0.0.6")) == [
        ipaddress.ip_network(n)
        for n in ("10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32")
    ]
    assert selector_to_networks(rng("10.0.0.9", "10.0.0.1")) == []
    assert selector_to_networks(selector_for_address(ipaddress.ip_address("2001:db8::1"))) == [
        ipaddress.ip_network("2001:db8::1/128")
    ]


# --------------------------------------------------------------------------- intersection


def test_strongswan_wider_proposal_is_narrowed_to_ours() -> None:
    assert narrow([ts("10.0.0.0/16")], [ts("10.0.1.0/24")]) == (ts("10.0.1.0/24"),)


def test_our_wider_policy_keeps_the_proposal() -> None:
    assert narrow([ts("10.0.1.0/24")], [ts("10.0.0.0/8")]) == (ts("10.0.1.0/24"),)


def test_partial_overlap_gives_a_range() -> None:
    (got,) = narrow([rng("10.0.0.0", "10.0.0.200")], [rng("10.0.0.100", "10.0.1.0")])
    assert (str(got.start_addr), str(got.end_addr)) == ("10.0.0.100", "10.0.0.200")


def test_ports_and_protocols() -> None:
    web = ts("10.0.1.0/24", IpProto.TCP, 80, 443)
    any_proto = ts("10.0.0.0/16")
    assert intersect(any_proto, web) == web
    assert intersect(web, ts("10.0.1.0/24", IpProto.TCP, 400, 1000)) == ts(
        "10.0.1.0/24", IpProto.TCP, 400, 443
    )
    assert intersect(web, ts("10.0.1.0/24", IpProto.UDP)) is None
    assert intersect(web, ts("10.0.1.0/24", IpProto.TCP, 1000, 2000)) is None
    assert intersect(ts("10.0.1.0/24", 0, 53, 53), ts("10.0.0.0/8", IpProto.UDP)) == ts(
        "10.0.1.0/24", IpProto.UDP, 53, 53
    )


def test_opaque_ports() -> None:
    opaque = ts("10.0.1.0/24", IpProto.UDP, 65535, 0)
    assert intersect(opaque, ts("10.0.0.0/8")) == opaque
    assert intersect(ts("10.0.0.0/8"), opaque) == opaque
    assert intersect(opaque, ts("10.0.0.0/8", IpProto.UDP, 53, 53)) is None
    assert intersect(opaque, opaque) == opaque
    assert describe(opaque) == "10.0.1.0/24[udp/OPAQUE]"


def test_icmp_type_code_is_a_plain_range() -> None:
    echo = ts("10.0.1.0/24", IpProto.ICMP, 8 << 8, (8 << 8) | 0xFF)
    assert intersect(echo, ts("10.0.0.0/8", IpProto.ICMP)) == echo
    assert intersect(echo, ts("10.0.0.0/8", IpProto.ICMP, 0, 0x00FF)) is None


def test_ipv6_and_families_do_not_mix() -> None:
    assert narrow([ts("2001:db8::/32")], [ts("2001:db8:1::/48"), ts("10.0.0.0/8")]) == (
        ts("2001:db8:1::/48"),
    )
    assert intersect(ts("0.0.0.0/0"), ts("::/0")) is None
    with pytest.raises(TsUnacceptable):
        narrow([ts("10.0.0.0/8")], [ts("::/0")])


def test_raw_selectors_never_meet() -> None:
    raw = RawTrafficSelector(TsType.SECLABEL, b"\x00\x04lbl")
    assert intersect(raw, ts("0.0.0.0/0")) is None
    assert narrow([raw, ts("10.0.0.0/8")], [ts("0.0.0.0/0")]) == (ts("10.0.0.0/8"),)
    assert describe(raw).startswith("<selector type 10")


def test_several_selectors_keep_proposer_order() -> None:
    proposed = [ts("192.168.0.0/16"), ts("10.0.0.0/8")]
    allowed = [ts("10.1.0.0/16"), ts("192.168.5.0/24"), ts("10.2.0.0/16")]
    assert narrow(proposed, allowed) == (
        ts("192.168.5.0/24"),
        ts("10.1.0.0/16"),
        ts("10.2.0.0/16"),
    )


def test_specific_packet_selector_first() -> None:
    # §2.9: the initiator's first TS is the packet that triggered the SA; a wider one follows.
    packet = ts("10.0.1.5/32", IpProto.TCP, 8080, 8080)
    proposed = [packet, ts("10.0.0.0/16")]
    assert narrow(proposed, [ts("10.0.1.0/24")]) == (ts("10.0.1.0/24"),)
    narrowed = narrow(proposed, [ts("10.0.1.0/24", IpProto.TCP)])
    assert narrowed == (ts("10.0.1.0/24", IpProto.TCP),)
    assert any(contains(n, packet) for n in narrowed)
    # our policy only allows the packet's host: the specific selector survives on its own
    assert narrow(proposed, [ts("10.0.1.5/32")]) == (ts("10.0.1.5/32"),)
    # only the packet's port: the first selector comes first
    assert narrow(proposed, [ts("10.0.1.0/24", IpProto.TCP, 8000, 9000)]) == (
        ts("10.0.1.0/24", IpProto.TCP, 8000, 9000),
    )
    assert narrow(proposed, [packet, ts("10.0.0.0/24")]) == (packet, ts("10.0.0.0/24"))


def test_empty_is_ts_unacceptable() -> None:
    with pytest.raises(TsUnacceptable) as info:
        narrow([ts("10.0.0.0/16")], [ts("192.168.0.0/24")])
    assert info.value.notify == 38
    assert "10.0.0.0/16" in info.value.reason
    with pytest.raises(TsUnacceptable):
        narrow_pair(
            [ts("10.0.0.0/16")], [ts("10.1.0.0/16")], [ts("10.0.0.0/8")], [ts("10.2.0.0/24")]
        )


def test_narrow_pair_narrows_each_side_against_its_policy() -> None:
    tsi, tsr = narrow_pair(
        tsi=[ts("10.1.0.0/16")],
        tsr=[ts("0.0.0.0/0")],
        remote_ts=[ts("10.1.2.0/24")],
        local_ts=[ts("10.9.0.0/16")],
    )
    assert tsi == (ts("10.1.2.0/24"),) and tsr == (ts("10.9.0.0/16"),)


def test_check_narrowed() -> None:
    proposed = [ts("10.0.0.0/16"), ts("2001:db8::/32")]
    returned = [ts("10.0.1.0/24"), ts("2001:db8:5::/48", IpProto.TCP, 22, 22)]
    assert check_narrowed(returned, proposed) == tuple(returned)
    with pytest.raises(TsUnacceptable, match="wider"):
        check_narrowed([ts("10.0.0.0/8")], proposed)
    with pytest.raises(TsUnacceptable, match="wider"):
        check_narrowed([ts("10.0.1.0/24"), ts("192.168.0.0/24")], proposed)
    with pytest.raises(TsUnacceptable, match="no traffic"):
        check_narrowed([], proposed)
    with pytest.raises(TsUnacceptable):
        check_narrowed([RawTrafficSelector(TsType.SECLABEL, b"x")], proposed)


def test_describe() -> None:
    assert describe(ts("10.0.1.0/24")) == "10.0.1.0/24"
    assert describe(ts("10.0.1.0/24", IpProto.TCP, 80, 80)) == "10.0.1.0/24[tcp/80]"
    assert describe(rng("10.0.0.1", "10.0.0.6", 17, 1000, 2000)) == (
        "10.0.0.1..10.0.0.6[udp/1000-2000]"
    )
    assert describe(ts("2001:db8::/64", 132)) == "2001:db8::/64[132]"


# --------------------------------------------------------------------------- properties


@st.composite
def selectors(draw: st.DrawFn) -> TrafficSelector:
    """IPv4 selectors in a small space, so that they overlap often."""
    a = draw(st.integers(0, 255))
    b = draw(st.integers(a, 255))
    proto = draw(st.sampled_from([0, 0, IpProto.TCP, IpProto.UDP]))
    if draw(st.integers(0, 9)) == 0:
        ports = (65535, 0)
    else:
        p = draw(st.integers(0, 65535))
        ports = (p, draw(st.sampled_from([p, 65535, min(p + 100, 65535)])))
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    return TrafficSelector(
        V4,
        proto,
        ports[0],
        ports[1],
        ipaddress.IPv4Address(base + a),
        ipaddress.IPv4Address(base + b),
    )


selector_lists = st.lists(selectors(), min_size=1, max_size=4)


@given(selector_lists, selector_lists)
def test_property_result_inside_both(a: list[TrafficSelector], b: list[TrafficSelector]) -> None:
    for piece in intersect_all(a, b):
        assert any(contains(x, piece) for x in a)
        assert any(contains(y, piece) for y in b)


@given(selector_lists, selector_lists)
def test_property_idempotent(a: list[TrafficSelector], b: list[TrafficSelector]) -> None:
    once = intersect_all(a, b)
    assert intersect_all(once, b) == once
    assert intersect_all(once, once) == once


@given(selectors(), selectors())
def test_property_intersection_commutes(a: TrafficSelector, b: TrafficSelector) -> None:
    assert intersect(a, b) == intersect(b, a)
    both = intersect(a, b)
    if both is not None:
        assert contains(a, both) and contains(b, both)


@given(selector_lists, selector_lists)
def test_property_narrow_raises_exactly_when_empty(
    a: list[TrafficSelector], b: list[TrafficSelector]
) -> None:
    expected = intersect_all(a, b)
    if expected:
        assert narrow(a, b) == expected
        check_narrowed(expected, a)
    else:
        with pytest.raises(TsUnacceptable):
            narrow(a, b)
