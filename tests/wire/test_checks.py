"""One bad case per check that construct does not do (DESIGN §4): each must raise DecodeError
whose reason names the problem, at a plausible offset."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from ikev2.constants import ExchangeType, KeId, NotifyType, PayloadType, ProtocolId, TsType
from ikev2.errors import DecodeError
from ikev2.wire import (
    CfgAttribute,
    CpPayload,
    DeletePayload,
    Header,
    KePayload,
    Message,
    NoncePayload,
    NotifyPayload,
    Proposal,
    RawTrafficSelector,
    SaPayload,
    SkfPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    UnknownPayload,
    UnsupportedVersion,
    decode_message,
    decode_payloads,
    encode_message,
    encode_payloads,
    sk_associated_data,
)

HEADER = Header(b"\x11" * 8, b"\x22" * 8, 0, ExchangeType.IKE_SA_INIT, 0x08, 0, 0)
RESPONSE = Header(b"\x11" * 8, b"\x22" * 8, 0, ExchangeType.IKE_SA_INIT, 0x20, 0, 0)
SA = SaPayload(
    (
        Proposal(
            1,
            ProtocolId.IKE,
            b"",
            (Transform(1, 20, key_length=256), Transform(2, 5), Transform(4, 31)),
        ),
    )
)


def message(*payloads: object, header: Header = HEADER) -> bytes:
    return encode_message(Message(header, tuple(payloads)))  # type: ignore[arg-type]


def fails(data: bytes, *words: str) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode_message(data)
    for word in words:
        assert word in info.value.reason, info.value.reason
    assert 0 <= info.value.offset <= len(data)
    return info.value


def payload_chain(*payloads: object) -> bytes:
    return encode_payloads(payloads)[1]  # type: ignore[arg-type]


# ---- header and chain --------------------------------------------------------------------


def test_encode_recomputes_next_payload_and_length() -> None:
    data = message(NoncePayload(bytes(16)))
    header = decode_message(data).header
    assert header.next_payload == PayloadType.NONCE and header.length == len(data) == 28 + 20


def test_short_header() -> None:
    fails(message()[:27], "shorter than")


def test_trailing_bytes_after_the_message() -> None:
    assert fails(message(NoncePayload(bytes(16))) + b"\x00", "header length").offset == 24


def test_trailing_bytes_after_the_last_payload() -> None:
    data = bytearray(message(NoncePayload(bytes(16))) + b"\x00\x00")
    struct.pack_into(">I", data, 24, len(data))
    fails(bytes(data), "trailing")


def test_other_major_version_is_distinct() -> None:
    data = bytearray(message(NoncePayload(bytes(16))))
    data[17] = 0x10  # IKEv1
    error = fails(bytes(data), "version")
    assert isinstance(error, UnsupportedVersion)
    assert error.major_version == 1 and error.header.spi_i == b"\x11" * 8
    data[17] = 0x21  # a higher minor version is fine (RFC 7296 §2.5)
    decode_message(bytes(data))


def test_payload_length_below_four() -> None:
    data = bytearray(message(NoncePayload(bytes(16))))
    struct.pack_into(">H", data, 30, 3)
    assert fails(bytes(data), "length 3").offset == 30


def test_payload_length_overrun() -> None:
    data = bytearray(message(NoncePayload(bytes(16))))
    struct.pack_into(">H", data, 30, 21)
    fails(bytes(data), "overruns")


def test_truncated_generic_header() -> None:
    data = bytearray(message(NoncePayload(bytes(16))))
    data[16] = PayloadType.NONCE
    data[28] = PayloadType.VENDOR  # the nonce now claims a next payload
    fails(bytes(data), "truncated")


def test_sk_must_be_last() -> None:
    sk = SkPayload(PayloadType.IDi, bytes(32))
    data = bytearray(message(sk, NoncePayload(bytes(16))))
    fails(bytes(data), "SK must be the last")


def test_sk_inside_an_inner_chain() -> None:
    chain = payload_chain(NoncePayload(bytes(16)), SkPayload(0, bytes(8)))
    with pytest.raises(DecodeError, match="inside an encrypted"):
        decode_payloads(PayloadType.NONCE, chain)


def test_inner_offsets_are_shifted_by_base_offset() -> None:
    chain = bytearray(payload_chain(NoncePayload(bytes(16))))
    struct.pack_into(">H", chain, 2, 2)
    with pytest.raises(DecodeError) as info:
        decode_payloads(PayloadType.NONCE, bytes(chain), base_offset=32)
    assert info.value.offset == 32 + 2


# ---- SA ------------------------------------------------------------------------------------

SA_BODY_OFFSET = 28 + 4  # first proposal of a message whose first payload is the SA


def sa_message() -> bytearray:
    return bytearray(message(SA))


def test_sa_round_trip_with_attributes() -> None:
    sa = SaPayload(
        (
            Proposal(
                1,
                ProtocolId.ESP,
                b"\x01\x02\x03\x04",
                (Transform(1, 12, 128, ((7, b"xy"), (9, 3))),),
            ),
            Proposal(2, ProtocolId.ESP, b"\x01\x02\x03\x05", (Transform(1, 20, 256),)),
        )
    )
    assert decode_message(message(sa)).payloads == (sa,)


def test_proposal_claims_more_transforms_than_it_holds() -> None:
    data = sa_message()
    data[SA_BODY_OFFSET + 7] = 4  # Num Transforms 3 -> 4
    fails(bytes(data), "transform 3 of 4 has Last Substruc 0")


def test_proposal_holds_more_than_its_transforms() -> None:
    data = sa_message()
    data[SA_BODY_OFFSET + 7] = 2
    fails(bytes(data), "transform 2 of 2 has Last Substruc 3")


def test_proposal_length_out_of_bounds() -> None:
    data = sa_message()
    struct.pack_into(">H", data, SA_BODY_OFFSET + 2, 200)
    fails(bytes(data), "proposal length 200")


def test_transform_length_below_eight() -> None:
    data = sa_message()
    struct.pack_into(">H", data, SA_BODY_OFFSET + 8 + 2, 6)
    fails(bytes(data), "transform length 6")


def test_transform_attribute_overrun() -> None:
    data = sa_message()
    struct.pack_into(">H", data, SA_BODY_OFFSET + 8 + 8, 0x000E)  # KEY_LENGTH as TLV, len 256
    fails(bytes(data), "attribute length 256 overruns")


def test_proposal_number_zero_and_gaps() -> None:
    data = sa_message()
    data[SA_BODY_OFFSET + 4] = 0
    fails(bytes(data), "proposal number 0")
    p1, p3 = (Proposal(n, ProtocolId.IKE, b"", (Transform(4, 31),)) for n in (1, 3))
    fails(message(SaPayload((p1, p3))), "proposal number 3 follows 1")
    fails(message(SaPayload((p3, p1))), "first of several proposals has number 3")


def test_proposal_spi_size_for_protocol() -> None:
    esp = Proposal(1, ProtocolId.ESP, bytes(8), (Transform(1, 20, 256),))
    fails(message(SaPayload((esp,))), "SPI size 8", "ESP")


def test_sa_without_proposals() -> None:
    fails(message(SaPayload(())), "SA payload length 4")


# ---- KE / nonce ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "good", "bad"),
    [
        (KeId.CURVE25519, 32, 31),
        (KeId.CURVE448, 56, 57),
        (KeId.ECP256, 64, 65),
        (KeId.ECP384, 96, 64),
        (KeId.ECP521, 132, 133),
        (KeId.MODP2048, 256, 255),
        (KeId.MODP3072, 384, 256),
        (KeId.ML_KEM_1024, 1568, 1088),
    ],
)
def test_ke_data_length(group: int, good: int, bad: int) -> None:
    decode_message(message(KePayload(group, bytes(good))))
    fails(message(KePayload(group, bytes(bad))), "KE data", str(bad), KeId(group).name)


def test_ml_kem_768_length_depends_on_direction() -> None:
    encapsulation_key, ciphertext = KePayload(36, bytes(1184)), KePayload(36, bytes(1088))
    decode_message(message(encapsulation_key))
    decode_message(message(ciphertext, header=RESPONSE))
    fails(message(ciphertext), "1088", "1184")
    fails(message(encapsulation_key, header=RESPONSE), "1184", "1088")
    chain = payload_chain(ciphertext)  # inner chain, direction unknown: either size passes
    assert decode_payloads(PayloadType.KE, chain) == (ciphertext,)
    with pytest.raises(DecodeError):
        decode_payloads(PayloadType.KE, chain, is_response=False)


def test_unknown_group_is_not_checked() -> None:
    decode_message(message(KePayload(1234, bytes(3))))


@pytest.mark.parametrize("size", [15, 257])
def test_nonce_length(size: int) -> None:
    fails(message(NoncePayload(bytes(size))), "nonce", str(size))
    decode_message(message(NoncePayload(bytes(16))))
    decode_message(message(NoncePayload(bytes(256))))


# ---- Notify / Delete -----------------------------------------------------------------------


def test_notify_spi_size_overrun_and_protocol() -> None:
    data = bytearray(message(NotifyPayload(NotifyType.REKEY_SA, ProtocolId.ESP, bytes(4))))
    data[28 + 5] = 9
    fails(bytes(data), "SPI size 9")
    fails(message(NotifyPayload(NotifyType.REKEY_SA, ProtocolId.ESP, bytes(8))), "SPI size 8")


def test_delete_spi_sizes() -> None:
    fails(message(DeletePayload(ProtocolId.ESP, (bytes(8),))), "SPI size 8", "ESP")
    data = bytearray(message(DeletePayload(ProtocolId.IKE)))
    data[28 + 5] = 4
    fails(bytes(data), "SPI size 4", "IKE")
    decode_message(message(DeletePayload(ProtocolId.ESP, (bytes(4), b"\x01" * 4))))


def test_delete_count_mismatch() -> None:
    data = bytearray(message(DeletePayload(ProtocolId.ESP, (bytes(4), bytes(4)))))
    struct.pack_into(">H", data, 28 + 6, 3)
    fails(bytes(data), "delete payload length")


def test_delete_unknown_protocol() -> None:
    data = bytearray(message(DeletePayload(ProtocolId.ESP, (bytes(4),))))
    data[28 + 4] = 9
    fails(bytes(data), "unknown protocol 9")


# ---- traffic selectors ---------------------------------------------------------------------

V4 = TrafficSelector(7, 0, 0, 65535, IPv4Address("10.0.0.0"), IPv4Address("10.0.0.255"))
V6 = TrafficSelector(8, 6, 80, 80, IPv6Address("2001:db8::"), IPv6Address("2001:db8::ff"))


def test_selectors_round_trip_including_unknown_type() -> None:
    ts = TsiPayload((V4, V6, RawTrafficSelector(TsType.SECLABEL, b"label\x00")))
    assert decode_message(message(ts)).payloads == (ts,)


def test_ipv4_selector_length() -> None:
    data = bytearray(message(TsiPayload((V4,))))
    struct.pack_into(">H", data, 28 + 8 + 2, 20)
    fails(bytes(data), "IPV4_ADDR_RANGE selector length 20, must be 16")


def test_ipv6_selector_length() -> None:
    data = bytearray(message(TsiPayload((V6,))))
    struct.pack_into(">H", data, 28 + 8 + 2, 16)
    fails(bytes(data), "IPV6_ADDR_RANGE selector length 16, must be 40")


def test_selector_count_mismatch() -> None:
    data = bytearray(message(TsiPayload((V4,))))
    data[28 + 4] = 2
    fails(bytes(data), "selector 2 of 2")


def test_selector_start_after_end() -> None:
    backwards = TrafficSelector(7, 0, 0, 65535, IPv4Address("10.0.0.9"), IPv4Address("10.0.0.1"))
    fails(message(TsiPayload((backwards,))), "starting address")
    ports = TrafficSelector(7, 6, 90, 80, IPv4Address("10.0.0.1"), IPv4Address("10.0.0.1"))
    fails(message(TsiPayload((ports,))), "start port 90")
    opaque = TrafficSelector(7, 6, 65535, 0, IPv4Address("10.0.0.1"), IPv4Address("10.0.0.1"))
    decode_message(message(TsiPayload((opaque,))))


# ---- CP, SK, SKF, unknown ------------------------------------------------------------------


def test_cp_round_trip_and_overrun() -> None:
    cp = CpPayload(1, (CfgAttribute(1), CfgAttribute(3, bytes(4))))
    assert decode_message(message(cp)).payloads == (cp,)
    data = bytearray(message(cp))
    struct.pack_into(">H", data, 28 + 8 + 2, 9)
    fails(bytes(data), "configuration attribute length 9")


def test_skf_fragment_numbers() -> None:
    first = SkfPayload(PayloadType.IDi, 1, 2, bytes(20))
    assert decode_message(message(first)).payloads == (first,)
    fails(message(SkfPayload(PayloadType.IDi, 3, 2, bytes(20))), "fragment number 3 of 2")
    fails(message(SkfPayload(PayloadType.IDi, 0, 2, bytes(20))), "fragment number 0")
    fails(message(SkfPayload(PayloadType.IDi, 2, 2, bytes(20))), "must be 0")


def test_sk_associated_data_for_sk_and_skf() -> None:
    body = bytes(range(40))
    for payload, fragment in ((SkPayload(35, body), None), (SkfPayload(35, 1, 3, body), (1, 3))):
        data = message(payload, header=HEADER)
        prefix = len(data) - len(body)
        assert sk_associated_data(HEADER, 35, len(body), fragment) == data[:prefix]


def test_unknown_payload_kept_with_critical_bit() -> None:
    unknown = UnknownPayload(200, True, b"opaque")
    data = message(NoncePayload(bytes(16)), unknown)
    assert decode_message(data).payloads[1] == unknown
    assert encode_message(decode_message(data)) == data


def test_message_helpers() -> None:
    n1, n2 = NotifyPayload(NotifyType.COOKIE, data=b"c"), NotifyPayload(16388, data=bytes(20))
    msg = decode_message(message(n1, SA, n2))
    assert msg.find(SaPayload) == SA and msg.find(KePayload) is None
    assert msg.find_all(NotifyPayload) == msg.notifies == (n1, n2)
    assert msg.notify(NotifyType.NAT_DETECTION_SOURCE_IP) == n2
    assert HEADER.is_initiator and not HEADER.is_response and RESPONSE.is_response
