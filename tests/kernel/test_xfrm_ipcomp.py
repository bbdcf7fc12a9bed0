"""IPComp (RFC 3173) in NETLINK_XFRM messages: the IPComp SA (proto 108, spi = CPI, XFRMA_ALG_COMP
"deflate", no keys and no replay state), optional templates, and SAs the kernel makes itself
beside an IPComp SA (IPIP / IPv6 tunnel states) parse from a dump."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from ikev2.constants import IpProto
from ikev2.kernel import Aead, Direction, Mode, PolicySpec, SaSpec, Selector, Template
from ikev2.kernel import xfrm_codec as codec
from ikev2.kernel import xfrm_schemas as s
from ikev2.kernel.netlink import parse_attrs

SRC, DST = ip_address("192.0.2.1"), ip_address("192.0.2.2")
COMP = SaSpec(SRC, DST, 0x4A21, IpProto.COMP, Mode.TUNNEL, 0x1E0001, comp="deflate",
              replay_window=0)  # fmt: skip


def test_ipcomp_sa_encoding() -> None:
    body = codec.encode_sa(COMP)
    info = s.xfrm_usersa_info.parse(body[:224])
    assert (info.id.spi, info.id.proto, info.mode, info.reqid) == (0x4A21, 108, 1, 0x1E0001)
    assert info.replay_window == 0 and info.flags & s.XFRM_STATE_AF_UNSPEC
    attrs = parse_attrs(body[224:], "test")
    assert set(attrs) == {s.Xfrma.ALG_COMP}  # no keys, no ESN/replay attributes
    algo = s.xfrm_algo.parse(attrs[s.Xfrma.ALG_COMP])
    assert algo.name.rstrip(b"\0") == b"deflate" and algo.key_len_bits == 0
    assert len(attrs[s.Xfrma.ALG_COMP]) == 68  # struct xfrm_algo without key bytes
    parsed = codec.parse_sa(body, "test")
    assert (parsed.proto, parsed.spi, parsed.algorithm) == (IpProto.COMP, 0x4A21, "deflate")


def test_ipcomp_sa_never_carries_a_replay_window() -> None:
    spec = SaSpec(SRC, DST, 0x4A21, IpProto.COMP, Mode.TUNNEL, 1, comp="deflate",
                  replay_window=128, esn=False)  # fmt: skip
    body = codec.encode_sa(spec)
    assert s.xfrm_usersa_info.parse(body[:224]).replay_window == 0
    assert s.Xfrma.REPLAY_ESN_VAL not in parse_attrs(body[224:], "test")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(comp=None), "compression algorithm"),
        (dict(aead=Aead("rfc4106(gcm(aes))", bytes(36), 128)), "no keys"),
        (dict(spi=0x1_0000), "16 bits"),
    ],
)
def test_ipcomp_sa_validation(changes: dict[str, object], message: str) -> None:
    fields = dict(src=SRC, dst=DST, spi=0x4A21, proto=IpProto.COMP, mode=Mode.TUNNEL, reqid=1,
                  comp="deflate") | changes  # fmt: skip
    with pytest.raises(ValueError, match=message):
        SaSpec(**fields)  # type: ignore[arg-type]


def test_an_esp_sa_has_no_compression() -> None:
    with pytest.raises(ValueError, match="compression algorithm"):
        SaSpec(SRC, DST, 0x1000, IpProto.ESP, Mode.TRANSPORT, 1,
               aead=Aead("rfc4106(gcm(aes))", bytes(36), 128), comp="deflate")  # fmt: skip


def test_policy_with_ipcomp_then_esp_templates_round_trips() -> None:
    policy = PolicySpec(
        Selector(ip_network("10.2.0.0/24"), ip_network("10.1.0.0/24")),
        Direction.IN,
        templates=(
            Template(IpProto.COMP, Mode.TUNNEL, 7, DST, SRC, optional=True),
            Template(IpProto.ESP, Mode.TRANSPORT, 7),
        ),
    )
    body = codec.encode_policy(policy)
    attrs = parse_attrs(body[168:], "test")
    blob = attrs[s.Xfrma.TMPL]
    first, second = s.xfrm_user_tmpl.parse(blob[:64]), s.xfrm_user_tmpl.parse(blob[64:128])
    assert (first.id.proto, first.mode, first.optional) == (108, 1, 1)
    assert (second.id.proto, second.mode, second.optional) == (50, 0, 0)
    assert codec.parse_policy(body, "test") == policy


@pytest.mark.parametrize("proto", [IpProto.IPIP, IpProto.IPV6])
def test_the_kernels_own_tunnel_state_parses(proto: IpProto) -> None:
    """Linux adds an IPIP (or IPv6) state beside each IPComp SA for packets sent uncompressed;
    a dump (flush_owned at start) must read it, not raise."""
    body = bytearray(codec.encode_sa(COMP))
    info = s.xfrm_usersa_info.parse(bytes(body[:224]))
    info.id.proto = int(proto)
    info.reqid = 0
    body[:224] = s.xfrm_usersa_info.build(info)
    parsed = codec.parse_sa(bytes(body[:224]), "test")
    assert parsed.proto == proto and parsed.reqid == 0
