"""The three encoders agree: plain-struct builders (layouts.py, the default), compiled construct
and interpreted construct give identical octets, and everything decodes back to the dataclass it
came from. Random payloads come from Hypothesis strategies over every payload class."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ikev2.wire import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CfgAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    RawTrafficSelector,
    SaPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    VendorPayload,
    decode_message,
    decode_payloads,
    encode_payloads,
)
from ikev2.wire.codec import COMPILED_CODEC, INTERPRETED_CODEC, LAYOUT_CODEC
from ikev2.wire.layouts import LAYOUTS, STRUCT_BUILDERS
from ikev2.wire.schemas import SCHEMAS
from ikev2.wire.struct_codec import DEFAULT_CODEC

HEX_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "captures" / "ikev2-reference.hex"
u8, u16 = st.integers(0, 0xFF), st.integers(0, 0xFFFF)
blob = st.binary(max_size=40)

transforms = st.builds(
    Transform,
    st.integers(1, 12),
    u16,
    st.none() | u16,
    st.lists(
        st.tuples(st.integers(1, 0x7FFF).filter(lambda t: t != 14), u16 | blob), max_size=2
    ).map(tuple),
)


@st.composite
def sa_payloads(draw: st.DrawFn) -> SaPayload:
    count = draw(st.integers(1, 3))
    proposals = []
    for number in range(1, count + 1):
        protocol, spi = draw(st.sampled_from([(1, 0), (1, 8), (2, 4), (3, 4), (9, 3)]))
        proposals.append(
            Proposal(
                number,
                protocol,
                draw(st.binary(min_size=spi, max_size=spi)),
                tuple(draw(st.lists(transforms, max_size=4))),
            )
        )
    return SaPayload(tuple(proposals))


@st.composite
def selectors(draw: st.DrawFn) -> TrafficSelector | RawTrafficSelector:
    kind = draw(st.sampled_from(["v4", "v6", "raw"]))
    if kind == "raw":
        return RawTrafficSelector(draw(st.integers(9, 255)), draw(blob))
    family, size, ts_type = (IPv4Address, 4, 7) if kind == "v4" else (IPv6Address, 16, 8)
    a, b = sorted(draw(st.lists(st.binary(min_size=size, max_size=size), min_size=2, max_size=2)))
    low, high = sorted(draw(st.lists(u16, min_size=2, max_size=2)))
    return TrafficSelector(ts_type, draw(u8), low, high, family(a), family(b))


ts_list = st.lists(selectors(), max_size=3).map(tuple)
payloads: st.SearchStrategy[Payload] = st.one_of(
    sa_payloads(),
    st.builds(KePayload, st.integers(1000, 2000), blob),  # unregistered groups: any length
    st.builds(KePayload, st.just(31), st.binary(min_size=32, max_size=32)),
    st.builds(IdiPayload, u8, blob),
    st.builds(IdrPayload, u8, blob),
    st.builds(CertPayload, u8, blob),
    st.builds(CertReqPayload, u8, blob),
    st.builds(AuthPayload, u8, blob),
    st.builds(NoncePayload, st.binary(min_size=16, max_size=256)),
    st.builds(NotifyPayload, u16, st.just(3), st.binary(min_size=4, max_size=4), blob),
    st.builds(NotifyPayload, u16, st.just(0), st.just(b""), blob),
    st.builds(DeletePayload, st.just(3), st.lists(st.binary(min_size=4, max_size=4)).map(tuple)),
    st.just(DeletePayload(1, ())),
    st.builds(VendorPayload, blob),
    st.builds(TsiPayload, ts_list),
    st.builds(TsrPayload, ts_list),
    st.builds(
        CpPayload,
        u8,
        st.lists(st.builds(CfgAttribute, st.integers(0, 0x7FFF), blob), max_size=3).map(tuple),
    ),
    st.builds(EapPayload, blob),
    st.builds(UnknownPayload, st.integers(100, 255), st.booleans(), blob),
)


def test_layouts_cover_every_schema() -> None:
    assert set(LAYOUTS) == set(SCHEMAS)


@settings(max_examples=1500)
@given(st.lists(payloads, min_size=1, max_size=6))
def test_four_codecs_agree_and_round_trip(chain: list[Payload]) -> None:
    codecs = (DEFAULT_CODEC, LAYOUT_CODEC, COMPILED_CODEC, INTERPRETED_CODEC)
    default, layout, compiled, interpreted = (encode_payloads(chain, codec=c) for c in codecs)
    assert default == layout == compiled == interpreted
    first, data = default
    for codec in codecs:
        assert decode_payloads(first, data, codec=codec) == tuple(chain)


def test_header_layout_matches_the_header_schema() -> None:
    raw = bytes.fromhex(HEX_FILE.read_text().split()[0])
    parsed = dict(SCHEMAS["IKE_HEADER"].parse(raw[:28]))
    header = decode_message(raw).header
    for field in ("spi_i", "spi_r", "next_payload", "version", "exchange", "flags", "length"):
        assert parsed[field] == getattr(header, field), field
    assert parsed["message_id"] == header.message_id
    assert STRUCT_BUILDERS["IKE_HEADER"](parsed) == raw[:28]
