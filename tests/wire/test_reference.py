"""The strongSwan reference capture: every IKE message decodes, re-encodes byte-identically with
the compiled and the interpreted schemas, and carries the values tshark shows
(/work/shared/reference/ikev2-reference-decrypted.txt, summarised in the summary file)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest

from ikev2.constants import (
    EncrId,
    ExchangeType,
    IdType,
    IntegId,
    KeId,
    NotifyType,
    PrfId,
    ProtocolId,
    TransformType,
)
from ikev2.wire import (
    CertReqPayload,
    DeletePayload,
    Header,
    IdiPayload,
    KePayload,
    Message,
    NoncePayload,
    SaPayload,
    SkPayload,
    Transform,
    TsiPayload,
    decode_message,
    decode_payloads,
    encode_message,
    encode_payloads,
    sk_associated_data,
    validate_payloads,
)
from ikev2.wire.codec import COMPILED_CODEC, INTERPRETED_CODEC, LAYOUT_CODEC, PayloadCodec
from ikev2.wire.struct_codec import DEFAULT_CODEC

CODECS = pytest.mark.parametrize(
    "codec",
    [DEFAULT_CODEC, LAYOUT_CODEC, COMPILED_CODEC, INTERPRETED_CODEC],
    ids=["default", "layout", "compiled", "interpreted"],
)

# (frame, exchange, message ID, is_response) from ikev2-reference-summary.txt
SUMMARY = [
    (1, "IKE_SA_INIT", 0, False), (2, "IKE_SA_INIT", 0, True),
    (3, "IKE_AUTH", 1, False), (4, "IKE_AUTH", 1, True),
    (5, "CREATE_CHILD_SA", 2, False), (6, "CREATE_CHILD_SA", 2, True),
    (13, "CREATE_CHILD_SA", 3, False), (14, "CREATE_CHILD_SA", 3, True),
    (15, "INFORMATIONAL", 4, False), (16, "INFORMATIONAL", 4, True),
    (17, "CREATE_CHILD_SA", 5, False), (18, "CREATE_CHILD_SA", 5, True),
    (19, "INFORMATIONAL", 6, False), (20, "INFORMATIONAL", 6, True),
    (21, "INFORMATIONAL", 0, False), (22, "INFORMATIONAL", 0, True),
]  # fmt: skip
for first in (23, 29, 35, 41, 47):  # five more IKE SAs: INIT, AUTH, INFORMATIONAL (delete)
    for step, exchange in enumerate(("IKE_SA_INIT", "IKE_AUTH", "INFORMATIONAL")):
        SUMMARY += [
            (first + 2 * step, exchange, step, False),
            (first + 2 * step + 1, exchange, step, True),
        ]


def test_the_capture_has_46_ike_messages(reference: dict[int, bytes]) -> None:
    assert sorted(reference) == [*range(1, 7), *range(13, 53)]


@CODECS
def test_every_message_round_trips_byte_identical(
    reference: dict[int, bytes], codec: PayloadCodec
) -> None:
    for frame, raw in reference.items():
        message = decode_message(raw, codec=codec)
        assert encode_message(message, codec=codec) == raw, f"frame {frame}"
        assert message == decode_message(raw), f"frame {frame}: compiled and interpreted differ"


@pytest.mark.parametrize(("frame", "exchange", "mid", "response"), SUMMARY)
def test_headers_match_the_summary(
    reference: dict[int, bytes], frame: int, exchange: str, mid: int, response: bool
) -> None:
    header = decode_message(reference[frame]).header
    assert ExchangeType(header.exchange).name == exchange
    assert header.message_id == mid
    assert header.is_response is response
    # the original initiator sends every request here (no rekey by the responder)
    assert header.is_initiator is (not response)
    assert header.length == len(reference[frame])


def test_first_ike_sa_init_fields(reference: dict[int, bytes]) -> None:
    message = decode_message(reference[1])
    assert message.header.spi_i.hex() == "9c82f7e8e9024c09"
    assert message.header.spi_r == bytes(8)
    sa = message.find(SaPayload)
    assert sa is not None
    (proposal,) = sa.proposals
    assert (proposal.number, proposal.protocol, proposal.spi) == (1, ProtocolId.IKE, b"")
    assert proposal.transforms == (
        Transform(TransformType.ENCR, EncrId.AES_GCM_16, key_length=256),
        Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
        Transform(TransformType.KE, KeId.CURVE25519),
    )
    ke = message.find(KePayload)
    assert ke is not None and ke.group == KeId.CURVE25519
    assert ke.data.hex() == "30decadece91eeb22b80d5c33bc4e5443a452c443b094a0d1e56bb60acf2084b"
    nonce = message.find(NoncePayload)
    assert nonce is not None
    assert nonce.data.hex() == "0c7c282c274cdb250b51bdf03bc221f106b1aafa53651d39a947d3f50bee6c1c"
    assert [n.notify_type for n in message.notifies] == [
        NotifyType.NAT_DETECTION_SOURCE_IP,
        NotifyType.NAT_DETECTION_DESTINATION_IP,
        NotifyType.IKEV2_FRAGMENTATION_SUPPORTED,
        NotifyType.SIGNATURE_HASH_ALGORITHMS,
        NotifyType.REDIRECT_SUPPORTED,
    ]
    hashes = message.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    assert hashes is not None and hashes.data.hex() == "0002000300040005"
    assert message.notify(NotifyType.COOKIE) is None


def test_ike_sa_init_response_and_modp_proposal(reference: dict[int, bytes]) -> None:
    response = decode_message(reference[2])
    assert response.header.spi_r.hex() == "31c0026ab24c1042"
    assert response.find(CertReqPayload) is not None
    assert NotifyType.MULTIPLE_AUTH_SUPPORTED in [n.notify_type for n in response.notifies]
    modp = decode_message(reference[35])
    sa = modp.find(SaPayload)
    assert sa is not None
    assert [(t.type, t.id, t.key_length) for t in sa.proposals[0].transforms] == [
        (TransformType.ENCR, EncrId.AES_CBC, 128),
        (TransformType.INTEG, IntegId.HMAC_SHA2_256_128, None),
        (TransformType.PRF, PrfId.HMAC_SHA2_256, None),
        (TransformType.KE, KeId.MODP2048, None),
    ]
    ke = modp.find(KePayload)
    assert ke is not None and (ke.group, len(ke.data)) == (KeId.MODP2048, 256)


def test_sk_envelope_and_associated_data(reference: dict[int, bytes]) -> None:
    encrypted = 0
    for frame, raw in reference.items():
        message = decode_message(raw)
        sk = message.find(SkPayload)
        if sk is None:
            continue
        encrypted += 1
        assert message.payloads == (sk,), f"frame {frame}: SK must be the only payload"
        assert sk.body == raw[32:]
        ad = sk_associated_data(message.header, sk.inner_next_payload, len(sk.body))
        assert ad == raw[:32], f"frame {frame}"
    assert encrypted == 34
    first_auth = decode_message(reference[3]).find(SkPayload)
    assert first_auth is not None and first_auth.inner_next_payload == 35  # IDi


def test_inner_chains_round_trip_and_follow_the_rules(
    reference: dict[int, bytes], inner_chains: dict[int, Any]
) -> None:
    assert len(inner_chains) == 34
    for frame, chain in inner_chains.items():
        for codec in (DEFAULT_CODEC, LAYOUT_CODEC, COMPILED_CODEC, INTERPRETED_CODEC):
            payloads = decode_payloads(
                chain.first_type, chain.data, is_response=chain.is_response, codec=codec
            )
            assert encode_payloads(payloads, codec=codec) == (chain.first_type, chain.data)
        header = decode_message(reference[frame]).header
        validate_payloads(header.exchange, header.is_response, payloads, inner=True)


def test_inner_field_values(inner_chains: dict[int, Any]) -> None:
    auth = decode_payloads(inner_chains[3].first_type, inner_chains[3].data)
    message = Message(Header(bytes(8), bytes(8), 0, ExchangeType.IKE_AUTH, 0x08, 1, 0), auth)
    idi = message.find(IdiPayload)
    assert idi is not None and idi.id_type == IdType.FQDN and idi.data == b"init-psk.sbase.test"
    assert idi.body == b"\x02\x00\x00\x00init-psk.sbase.test"
    tsi = message.find(TsiPayload)
    assert tsi is not None
    (selector,) = tsi.selectors
    assert (selector.start_addr, selector.end_addr) == (  # type: ignore[union-attr]
        IPv4Address("10.99.0.64"),
        IPv4Address("10.99.0.127"),
    )
    assert [n.notify_type for n in message.notifies] == [
        NotifyType.MOBIKE_SUPPORTED,
        NotifyType.NO_ADDITIONAL_ADDRESSES,
        NotifyType.MULTIPLE_AUTH_SUPPORTED,
        NotifyType.EAP_ONLY_AUTHENTICATION,
        NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED,
    ]
    (delete,) = decode_payloads(inner_chains[15].first_type, inner_chains[15].data)
    assert isinstance(delete, DeletePayload) and delete.protocol == ProtocolId.ESP
    assert len(delete.spis) == 1 and len(delete.spis[0]) == 4
    (ike_delete,) = decode_payloads(inner_chains[21].first_type, inner_chains[21].data)
    assert ike_delete == DeletePayload(ProtocolId.IKE, ())
    rekey_request = decode_payloads(inner_chains[13].first_type, inner_chains[13].data)
    assert rekey_request[0].notify_type == NotifyType.REKEY_SA  # type: ignore[union-attr]


def test_outer_payloads_follow_the_rules(reference: dict[int, bytes]) -> None:
    for raw in reference.values():
        message = decode_message(raw)
        header = message.header
        validate_payloads(header.exchange, header.is_response, message.payloads, inner=False)
