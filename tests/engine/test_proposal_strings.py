"""strongSwan proposal strings <-> ProposalSpec."""

from __future__ import annotations

import pytest

from ikev2.constants import EncrId as E
from ikev2.constants import EsnId, IntegId, KeId, PrfId, ProtocolId
from ikev2.engine.config import ProposalSpec
from ikev2.engine.proposal_strings import (
    ProposalSyntaxError,
    format_proposal,
    format_proposals,
    parse_proposals,
)

IKE, ESP, AH = ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH
NO_ESN = (EsnId.NO_ESN,)

# (string, protocol, expected spec, canonical string or None when it is the input itself)
CASES: list[tuple[str, ProtocolId, ProposalSpec, str | None]] = [
    (
        "aes256gcm16-prfsha256-x25519",
        IKE,
        ProposalSpec(IKE, ((E.AES_GCM_16, 256),), (PrfId.HMAC_SHA2_256,), (), (KeId.CURVE25519,)),
        None,
    ),
    (
        "aes128-sha256-modp2048",
        IKE,
        ProposalSpec(
            IKE,
            ((E.AES_CBC, 128),),
            (PrfId.HMAC_SHA2_256,),  # derived from the integrity algorithm, as strongSwan does
            (IntegId.HMAC_SHA2_256_128,),
            (KeId.MODP2048,),
        ),
        None,
    ),
    (
        "aes256-sha384-ecp384",
        IKE,
        ProposalSpec(
            IKE,
            ((E.AES_CBC, 256),),
            (PrfId.HMAC_SHA2_384,),
            (IntegId.HMAC_SHA2_384_192,),
            (KeId.ECP384,),
        ),
        None,
    ),
    (
        "chacha20poly1305-prfsha512-curve448",
        IKE,
        ProposalSpec(
            IKE, ((E.CHACHA20_POLY1305, None),), (PrfId.HMAC_SHA2_512,), (), (KeId.CURVE448,)
        ),
        "chacha20poly1305-prfsha512-x448",
    ),
    (
        "aes256gcm16-sha256-ecp256",  # AEAD: sha256 only gives the PRF, then is dropped
        IKE,
        ProposalSpec(IKE, ((E.AES_GCM_16, 256),), (PrfId.HMAC_SHA2_256,), (), (KeId.ECP256,)),
        "aes256gcm16-prfsha256-ecp256",
    ),
    (
        "aes128-aes256-sha256-sha1-modp2048-ecp256",
        IKE,
        ProposalSpec(
            IKE,
            ((E.AES_CBC, 128), (E.AES_CBC, 256)),
            (PrfId.HMAC_SHA2_256, PrfId.HMAC_SHA1),
            (IntegId.HMAC_SHA2_256_128, IntegId.HMAC_SHA1_96),
            (KeId.MODP2048, KeId.ECP256),
        ),
        None,
    ),
    (
        "aes128-sha256-prfaescmac-mlkem768",
        IKE,
        ProposalSpec(
            IKE,
            ((E.AES_CBC, 128),),
            (PrfId.AES128_CMAC,),
            (IntegId.HMAC_SHA2_256_128,),
            (KeId.ML_KEM_768,),
        ),
        None,
    ),
    (
        "aes128ctr-aesxcbc-modp8192",
        IKE,
        ProposalSpec(
            IKE,
            ((E.AES_CTR, 128),),
            (PrfId.AES128_XCBC,),
            (IntegId.AES_XCBC_96,),
            (KeId.MODP8192,),
        ),
        None,
    ),
    (
        "aes128-sha256",
        ESP,
        ProposalSpec(ESP, ((E.AES_CBC, 128),), (), (IntegId.HMAC_SHA2_256_128,), (), NO_ESN),
        None,
    ),
    (
        "aes256gcm16-ecp256-esn",
        ESP,
        ProposalSpec(ESP, ((E.AES_GCM_16, 256),), (), (), (KeId.ECP256,), (EsnId.ESN,)),
        None,
    ),
    (
        "aes128gcm16-noesn",
        ESP,
        ProposalSpec(ESP, ((E.AES_GCM_16, 128),), (), (), (), NO_ESN),
        "aes128gcm16",
    ),
    (
        "aes128gcm",  # strongSwan: gcm without ICV length is gcm16
        ESP,
        ProposalSpec(ESP, ((E.AES_GCM_16, 128),), (), (), (), NO_ESN),
        "aes128gcm16",
    ),
    (
        "aes192gcm8-aes256ccm12-esn-noesn",
        ESP,
        ProposalSpec(
            ESP, ((E.AES_GCM_8, 192), (E.AES_CCM_12, 256)), (), (), (), (EsnId.ESN, EsnId.NO_ESN)
        ),
        None,
    ),
    (
        "null-aescmac",
        ESP,
        ProposalSpec(ESP, ((E.NULL, None),), (), (IntegId.AES_CMAC_96,), (), NO_ESN),
        None,
    ),
    ("sha256", AH, ProposalSpec(AH, (), (), (IntegId.HMAC_SHA2_256_128,), (), NO_ESN), None),
    (
        "sha512-modp3072-esn",
        AH,
        ProposalSpec(AH, (), (), (IntegId.HMAC_SHA2_512_256,), (KeId.MODP3072,), (EsnId.ESN,)),
        None,
    ),
]


@pytest.mark.parametrize(("text", "protocol", "expected", "canonical"), CASES)
def test_parse_and_round_trip(
    text: str, protocol: ProtocolId, expected: ProposalSpec, canonical: str | None
) -> None:
    (spec,) = parse_proposals(text, protocol)
    assert spec == expected
    assert format_proposal(spec) == (canonical or text)
    assert parse_proposals(format_proposal(spec), protocol) == (spec,)


def test_keywords_are_case_insensitive_and_aliases_agree() -> None:
    assert parse_proposals("AES128-SHA256", ESP) == parse_proposals("aes128-sha2_256", ESP)
    assert parse_proposals("aes128gcm128", ESP) == parse_proposals("aes128gcm16", ESP)
    assert parse_proposals("aes-sha-curve25519", IKE) == parse_proposals("aes128-sha1-x25519", IKE)


def test_comma_list_keeps_order() -> None:
    specs = parse_proposals("aes256gcm16-prfsha384-ecp384, aes128-sha256-modp3072", IKE)
    assert [s.encr for s in specs] == [((E.AES_GCM_16, 256),), ((E.AES_CBC, 128),)]
    assert format_proposals(specs) == "aes256gcm16-prfsha384-ecp384,aes128-sha256-modp3072"


@pytest.mark.parametrize("protocol", [IKE, ESP, AH])
def test_default_expands_and_round_trips(protocol: ProtocolId) -> None:
    specs = parse_proposals("default", protocol)
    assert specs and all(s.protocol == protocol for s in specs)
    assert parse_proposals(format_proposals(specs), protocol) == specs
    with_extra = parse_proposals("aes128-sha1-modp2048,default", IKE)
    assert with_extra[0].ke == (KeId.MODP2048,)
    assert with_extra[1:] == parse_proposals("default", IKE)


def test_default_ike_has_aead_and_classic_proposals() -> None:
    specs = parse_proposals("default", IKE)
    assert any(enc == (E.AES_GCM_16, 256) for s in specs for enc in s.encr)
    assert any(KeId.CURVE25519 in s.ke for s in specs)
    assert all(s.prf for s in specs)


def test_typo_names_token_and_suggests() -> None:
    with pytest.raises(ProposalSyntaxError) as info:
        parse_proposals("aes256gmc16-prfsha256-x25519", IKE)
    assert info.value.token == "aes256gmc16"
    assert "'aes256gmc16'" in str(info.value)
    assert "aes256gcm16" in str(info.value)
    with pytest.raises(ProposalSyntaxError, match=r"did you mean.*ecp384"):
        parse_proposals("aes128-sha256-ecp348", IKE)
    with pytest.raises(ProposalSyntaxError, match=r"'sha265'.*sha256"):
        parse_proposals("aes128-sha265", ESP)


def test_error_is_a_value_error_without_suggestion_for_nonsense() -> None:
    with pytest.raises(ValueError, match="'zzzzzz'") as info:
        parse_proposals("aes128-zzzzzz", ESP)
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "protocol", "message"),
    [
        ("aes128-sha256-prfsha256-modp2048", ESP, "not allowed in an ESP"),
        ("aes128-sha256-modp2048-esn", IKE, "not allowed in an IKE"),
        ("aes128-sha256", AH, "not allowed in an AH"),
        ("aes128-sha256", IKE, "key exchange"),
        ("aes128-modp2048", IKE, "integrity"),
        ("aes128gcm16-x25519", IKE, "PRF"),
        ("sha256-modp2048", IKE, "encryption"),
        ("aes128", ESP, "integrity"),
        ("modp2048", AH, "integrity"),
        ("aes128-sha256,,aes256-sha256", ESP, "empty"),
    ],
)
def test_incomplete_or_misplaced(text: str, protocol: ProtocolId, message: str) -> None:
    with pytest.raises(ProposalSyntaxError, match=message):
        parse_proposals(text, protocol)


def test_mixed_aead_and_classic_keeps_integ() -> None:
    (spec,) = parse_proposals("aes128gcm16-aes128-sha256-x25519", IKE)
    assert spec.integ == (IntegId.HMAC_SHA2_256_128,)
    assert spec.prf == (PrfId.HMAC_SHA2_256,)
    assert parse_proposals(format_proposal(spec), IKE) == (spec,)


def test_format_rejects_ids_without_keyword() -> None:
    with pytest.raises(ValueError, match="no strongSwan keyword"):
        format_proposal(ProposalSpec(ESP, ((E.DES, None),), integ=(IntegId.HMAC_SHA1_96,)))
