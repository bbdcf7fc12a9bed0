"""Proposal building, responder selection and the initiator's check (RFC 7296 §2.7, §3.3)."""

from __future__ import annotations

import pytest

from ikev2.constants import EncrId, EsnId, IntegId, KeId, PrfId, ProtocolId, TransformType
from ikev2.engine.config import ProposalSpec
from ikev2.engine.proposal_strings import parse_proposals
from ikev2.engine.proposals import (
    NegotiatedSuite,
    check_selected,
    is_aead,
    select_or_raise,
    select_proposal,
    spec_to_proposals,
)
from ikev2.errors import InvalidSyntax, NoProposalChosen
from ikev2.wire import Proposal, Transform

IKE, ESP, AH = ProtocolId.IKE, ProtocolId.ESP, ProtocolId.AH
ENCR, PRF, INTEG, KE, ESN = (
    TransformType.ENCR,
    TransformType.PRF,
    TransformType.INTEG,
    TransformType.KE,
    TransformType.ESN,
)
SPI = b"\x11\x22\x33\x44"


def everything(transform_type: int, transform_id: int, key_bits: int | None) -> bool:
    return True


def ike(text: str) -> tuple[ProposalSpec, ...]:
    return parse_proposals(text, IKE)


def esp(text: str) -> tuple[ProposalSpec, ...]:
    return parse_proposals(text, ESP)


def offer(*texts: str, protocol: ProtocolId = IKE, spi: bytes = b"") -> tuple[Proposal, ...]:
    """The peer's SA payload built from strongSwan strings, one proposal per string."""
    specs = [s for t in texts for s in parse_proposals(t, protocol)]
    return spec_to_proposals(specs, spi)


def ids(proposal: Proposal) -> dict[int, tuple[int, int | None]]:
    assert len({t.type for t in proposal.transforms}) == len(proposal.transforms)
    return {t.type: (t.id, t.key_length) for t in proposal.transforms}


# --------------------------------------------------------------------------- building


def test_spec_to_proposals_order_numbers_and_key_length() -> None:
    (p1, p2) = spec_to_proposals(
        ike("aes256-aes128-sha256-prfsha384-x25519-ecp256,default")[:2], b""
    )
    assert (p1.number, p2.number) == (1, 2)
    assert p1.protocol == IKE and p1.spi == b""
    assert p1.transforms == (
        Transform(ENCR, EncrId.AES_CBC, 256),
        Transform(ENCR, EncrId.AES_CBC, 128),
        Transform(PRF, PrfId.HMAC_SHA2_384),
        Transform(INTEG, IntegId.HMAC_SHA2_256_128),
        Transform(KE, KeId.CURVE25519),
        Transform(KE, KeId.ECP256),
    )


def test_spec_to_proposals_esp_has_esn_and_no_key_length_for_chacha() -> None:
    (p,) = spec_to_proposals(esp("chacha20poly1305"), SPI)
    assert p.transforms == (
        Transform(ENCR, EncrId.CHACHA20_POLY1305, None),
        Transform(ESN, EsnId.NO_ESN),
    )
    assert p.spi == SPI


def test_spec_to_proposals_without_ke_for_ike_auth() -> None:
    (p,) = spec_to_proposals(esp("aes128gcm16-ecp256"), SPI, include_ke=False)
    assert KE not in {t.type for t in p.transforms}


def test_mixed_aead_spec_is_split_in_two_proposals() -> None:
    props = spec_to_proposals(ike("aes128gcm16-aes128-sha256-x25519"), b"")
    assert [p.number for p in props] == [1, 2]
    assert INTEG not in {t.type for t in props[0].transforms}
    assert ids(props[1])[INTEG] == (IntegId.HMAC_SHA2_256_128, None)


def test_is_aead_table() -> None:
    assert is_aead(EncrId.AES_GCM_16) and is_aead(EncrId.CHACHA20_POLY1305)
    assert is_aead(EncrId.AES_CCM_8) and is_aead(EncrId.NULL_AUTH_AES_GMAC)
    assert not is_aead(EncrId.AES_CBC) and not is_aead(EncrId.AES_CTR)
    assert not is_aead(EncrId.NULL)


# --------------------------------------------------------------------------- selection


def test_peer_order_wins_over_ours() -> None:
    peer = offer("aes128-sha256-modp2048", "aes256gcm16-prfsha384-ecp384")
    ours = ike("aes256gcm16-prfsha384-ecp384,aes128-sha256-modp2048")
    chosen = select_proposal(peer, ours, IKE, everything)
    assert chosen is not None and chosen.number == 1
    assert ids(chosen)[ENCR] == (EncrId.AES_CBC, 128)


def test_peer_order_wins_within_a_type() -> None:
    peer = offer("aes128-aes256-sha1-sha256-ecp256-x25519")
    ours = ike("aes256-aes128-sha256-sha1-x25519-ecp256")
    chosen = select_proposal(peer, ours, IKE, everything)
    assert chosen is not None
    assert ids(chosen) == {
        ENCR: (EncrId.AES_CBC, 128),
        PRF: (PrfId.HMAC_SHA1, None),
        INTEG: (IntegId.HMAC_SHA1_96, None),
        KE: (KeId.ECP256, None),
    }


def test_aead_without_integ() -> None:
    peer = offer("aes256gcm16-prfsha256-x25519")
    chosen = select_proposal(peer, ike("aes256gcm16-prfsha256-x25519"), IKE, everything)
    assert chosen is not None
    assert set(ids(chosen)) == {ENCR, PRF, KE}
    suite = NegotiatedSuite.from_proposal(chosen)
    assert suite == NegotiatedSuite(
        IKE, EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256, None, KeId.CURVE25519, False, b""
    )


def test_aead_with_integ_none_is_accepted_and_keeps_none() -> None:
    gcm = Transform(ENCR, EncrId.AES_GCM_16, 128)
    peer = (
        Proposal(
            1,
            IKE,
            b"",
            (gcm, Transform(PRF, PrfId.HMAC_SHA2_256), Transform(INTEG, 0), Transform(KE, 19)),
        ),
    )
    chosen = select_proposal(peer, ike("aes128gcm16-prfsha256-ecp256"), IKE, everything)
    assert chosen is not None and ids(chosen)[INTEG] == (IntegId.NONE, None)
    assert NegotiatedSuite.from_proposal(chosen).integ is None


def test_aead_with_real_integ_is_invalid() -> None:
    gcm = Transform(ENCR, EncrId.AES_GCM_16, 128)
    sha = Transform(INTEG, IntegId.HMAC_SHA2_256_128)
    peer = (Proposal(1, ESP, SPI, (gcm, sha, Transform(ESN, 0))),)
    ours = (ProposalSpec(ESP, ((EncrId.AES_GCM_16, 128),), (), (IntegId.HMAC_SHA2_256_128,)),)
    assert select_proposal(peer, ours, ESP, everything) is None


def test_mixed_peer_proposal_falls_back_to_classic_cipher() -> None:
    # The peer mixes GCM and CBC in one proposal with a real INTEG: only CBC can be chosen.
    peer = spec_to_proposals(
        (ProposalSpec(ESP, ((EncrId.AES_GCM_16, 128), (EncrId.AES_CBC, 128)), (), (12,)),), SPI
    )
    peer = (Proposal(1, ESP, SPI, peer[0].transforms[:1] + peer[1].transforms),)
    assert [t.id for t in peer[0].transforms if t.type == ENCR] == [20, 12]
    chosen = select_proposal(peer, esp("aes128gcm16-aes128-sha256"), ESP, everything)
    assert chosen is not None and ids(chosen)[ENCR] == (EncrId.AES_CBC, 128)


def test_only_the_last_proposal_matches() -> None:
    peer = offer(
        "aes128-sha1-modp2048",
        "aes256-sha512-ecp521",
        "3des-md5-modp1024",
        "aes256gcm16-prfsha384-x25519",
    )
    chosen = select_proposal(peer, ike("aes256gcm16-prfsha384-x25519"), IKE, everything)
    assert chosen is not None and chosen.number == 4


def test_a_repeated_offer_keeps_its_own_spi_and_number() -> None:
    """The choice is cached per offer's transforms; SPI and number come from each offer."""
    ours = esp("aes128gcm16") + esp("aes256-sha256")
    first = offer("aes256-sha256", "aes128gcm16", protocol=ESP, spi=SPI)
    second = offer("aes256-sha256", "aes128gcm16", protocol=ESP, spi=b"\x99\x88\x77\x66")
    renumbered = tuple(Proposal(p.number + 2, p.protocol, p.spi, p.transforms) for p in second)
    a = select_proposal(first, ours, ESP, everything)
    b = select_proposal(renumbered, ours, ESP, everything)
    assert a is not None and b is not None
    assert (a.number, a.spi) == (1, SPI)
    assert (b.number, b.spi) == (3, b"\x99\x88\x77\x66")
    assert a.transforms == b.transforms and ids(a)[ENCR] == (EncrId.AES_CBC, 256)
    # a different supported() is a different question, not a cache hit
    assert select_proposal(first, ours, ESP, lambda t, i, k: t != ENCR) is None


def test_only_offers_of_a_usual_size_are_cached() -> None:
    """An unauthenticated peer cannot park large offers in the choice cache."""
    from ikev2.engine import proposals

    ours = ike("aes256gcm16-prfsha384-x25519")
    big = offer(*["aes128-sha1-modp2048"] * 20, "aes256gcm16-prfsha384-x25519")
    assert sum(len(p.transforms) for p in big) > proposals.CACHED_OFFER_SIZE
    proposals._choose.cache_clear()
    chosen = select_proposal(big, ours, IKE, everything)
    assert chosen is not None and chosen.number == 21
    assert proposals._choose.cache_info().currsize == 0
    # few transforms, but one with a 60 KB TLV attribute: refused, and not kept either
    [last] = big[-1:]
    heavy = Transform(ENCR, EncrId.AES_CBC, 128, ((17, bytes(60_000)),))
    padded = Proposal(1, IKE, b"", (*last.transforms, heavy))
    assert select_proposal((padded,), ours, IKE, everything) is not None
    assert proposals._choose.cache_info().currsize == 0
    select_proposal(big[-1:], ours, IKE, everything)
    assert proposals._choose.cache_info().currsize == 1


def test_no_match_returns_none_and_select_or_raise_raises() -> None:
    peer = offer("aes128-sha1-modp2048")
    ours = ike("aes256gcm16-prfsha384-x25519")
    assert select_proposal(peer, ours, IKE, everything) is None
    with pytest.raises(NoProposalChosen) as info:
        select_or_raise(peer, ours, IKE, everything)
    assert info.value.notify == 14


def test_unsupported_by_crypto_layer_is_skipped() -> None:
    peer = offer("aes128-sha256-x448-x25519")

    def no_x448(transform_type: int, transform_id: int, key_bits: int | None) -> bool:
        return not (transform_type == KE and transform_id == KeId.CURVE448)

    chosen = select_proposal(peer, ike("aes128-sha256-x448-x25519"), IKE, no_x448)
    assert chosen is not None and ids(chosen)[KE] == (KeId.CURVE25519, None)


def test_unknown_transform_type_rejects_that_proposal() -> None:
    (good,) = offer("aes128-sha256-x25519")
    bad = Proposal(1, IKE, b"", (*good.transforms, Transform(200, 1)))
    second = Proposal(2, IKE, b"", good.transforms)
    chosen = select_proposal((bad, second), ike("aes128-sha256-x25519"), IKE, everything)
    assert chosen is not None and chosen.number == 2
    assert select_proposal((bad,), ike("aes128-sha256-x25519"), IKE, everything) is None


def test_type_not_allowed_for_protocol_rejects_proposal() -> None:
    (good,) = offer("aes128-sha256-x25519")
    with_esn = Proposal(1, IKE, b"", (*good.transforms, Transform(ESN, 0)))
    assert select_proposal((with_esn,), ike("aes128-sha256-x25519"), IKE, everything) is None


def test_unknown_transform_id_and_attribute_are_skipped() -> None:
    (good,) = offer("aes128-sha256-x25519")
    odd = (
        Transform(ENCR, 1000, 128),
        Transform(ENCR, EncrId.AES_CBC, 128, attributes=((999, 1),)),
    )
    p = Proposal(1, IKE, b"", odd + good.transforms)
    chosen = select_proposal((p,), ike("aes128-sha256-x25519"), IKE, everything)
    assert chosen is not None
    (encr,) = [t for t in chosen.transforms if t.type == ENCR]
    assert encr == Transform(ENCR, EncrId.AES_CBC, 128)
    only_odd = Proposal(1, IKE, b"", odd + good.transforms[1:])
    assert select_proposal((only_odd,), ike("aes128-sha256-x25519"), IKE, everything) is None


def test_key_length_mismatch() -> None:
    peer = offer("aes256-sha256-x25519")
    assert select_proposal(peer, ike("aes128-sha256-x25519"), IKE, everything) is None
    no_len = Proposal(1, IKE, b"", (Transform(ENCR, EncrId.AES_CBC, None), *peer[0].transforms[1:]))
    assert select_proposal((no_len,), ike("aes256-sha256-x25519"), IKE, everything) is None


def test_ike_requires_ke_and_prf() -> None:
    (p,) = offer("aes128-sha256-x25519")
    no_ke = Proposal(1, IKE, b"", tuple(t for t in p.transforms if t.type != KE))
    no_prf = Proposal(1, IKE, b"", tuple(t for t in p.transforms if t.type != PRF))
    no_integ = Proposal(1, IKE, b"", tuple(t for t in p.transforms if t.type != INTEG))
    for broken in (no_ke, no_prf, no_integ):
        assert select_proposal((broken,), ike("aes128-sha256-x25519"), IKE, everything) is None


def test_esn_handling() -> None:
    ours_noesn = esp("aes128gcm16")
    ours_esn = esp("aes128gcm16-esn")
    peer_both = offer("aes128gcm16-esn-noesn", protocol=ESP, spi=SPI)
    chosen = select_proposal(peer_both, ours_noesn, ESP, everything)
    assert chosen is not None and ids(chosen)[ESN] == (EsnId.NO_ESN, None)
    chosen = select_proposal(peer_both, ours_esn, ESP, everything)
    assert chosen is not None and NegotiatedSuite.from_proposal(chosen).esn is True
    peer_esn_only = offer("aes128gcm16-esn", protocol=ESP, spi=SPI)
    assert select_proposal(peer_esn_only, ours_noesn, ESP, everything) is None
    # ESN absent: read as NO_ESN, and the answer does not add a type the peer did not send
    peer_none = (Proposal(1, ESP, SPI, tuple(t for t in peer_both[0].transforms if t.type != ESN)),)
    chosen = select_proposal(peer_none, ours_noesn, ESP, everything)
    assert chosen is not None and ESN not in ids(chosen)
    assert NegotiatedSuite.from_proposal(chosen).esn is False
    assert select_proposal(peer_none, ours_esn, ESP, everything) is None


def test_esp_pfs() -> None:
    with_none = Proposal(
        1,
        ESP,
        SPI,
        (
            Transform(ENCR, EncrId.AES_GCM_16, 256),
            Transform(KE, KeId.ECP256),
            Transform(KE, KeId.NONE),
            Transform(ESN, 0),
        ),
    )
    # We want no PFS: the peer's KE NONE is chosen.
    chosen = select_proposal((with_none,), esp("aes256gcm16"), ESP, everything)
    assert chosen is not None and ids(chosen)[KE] == (KeId.NONE, None)
    assert NegotiatedSuite.from_proposal(chosen).ke is None
    # We want PFS: ECP256.
    chosen = select_proposal((with_none,), esp("aes256gcm16-ecp256"), ESP, everything)
    assert chosen is not None and ids(chosen)[KE] == (KeId.ECP256, None)
    # The peer insists on PFS and we do not do it.
    (pfs_only,) = offer("aes256gcm16-ecp256", protocol=ESP, spi=SPI)
    assert select_proposal((pfs_only,), esp("aes256gcm16"), ESP, everything) is None
    # We insist on PFS and the peer offers none.
    (no_pfs,) = offer("aes256gcm16", protocol=ESP, spi=SPI)
    assert select_proposal((no_pfs,), esp("aes256gcm16-ecp256"), ESP, everything) is None
    # In IKE_AUTH KE is ignored on both sides.
    chosen = select_proposal((no_pfs,), esp("aes256gcm16-ecp256"), ESP, everything, skip_ke=True)
    assert chosen is not None and KE not in ids(chosen)
    chosen = select_proposal((pfs_only,), esp("aes256gcm16"), ESP, everything, skip_ke=True)
    assert chosen is not None and KE not in ids(chosen)


def test_protocol_mismatch_and_ah() -> None:
    peer = offer("sha256", protocol=AH, spi=SPI)
    assert select_proposal(peer, esp("aes128-sha256"), ESP, everything) is None
    chosen = select_proposal(peer, parse_proposals("sha256", AH), AH, everything)
    assert chosen is not None and ids(chosen) == {
        INTEG: (IntegId.HMAC_SHA2_256_128, None),
        ESN: (EsnId.NO_ESN, None),
    }
    suite = NegotiatedSuite.from_proposal(chosen)
    assert suite.encr is None and suite.integ == IntegId.HMAC_SHA2_256_128 and suite.spi == SPI


def test_result_carries_peer_number_and_spi_and_is_checkable() -> None:
    peer = offer("aes128-sha1-modp2048", "aes128gcm16-aes256gcm16-esn", protocol=ESP, spi=SPI)
    chosen = select_proposal(peer, esp("aes256gcm16-esn"), ESP, everything)
    assert chosen is not None and (chosen.number, chosen.spi) == (2, SPI)
    check_selected(chosen, peer)  # does not raise


def test_addke_only_with_none() -> None:
    (p,) = offer("aes128-sha256-x25519")
    addke_none = Proposal(1, IKE, b"", (*p.transforms, Transform(TransformType.ADDKE1, 0)))
    chosen = select_proposal((addke_none,), ike("aes128-sha256-x25519"), IKE, everything)
    assert chosen is not None and ids(chosen)[TransformType.ADDKE1] == (0, None)
    addke_kem = Proposal(1, IKE, b"", (*p.transforms, Transform(TransformType.ADDKE1, 36)))
    assert select_proposal((addke_kem,), ike("aes128-sha256-x25519"), IKE, everything) is None


# --------------------------------------------------------------------------- initiator's check


def test_check_selected_rejects_transform_never_offered() -> None:
    offered = offer("aes128-sha256-x25519")
    bad = Proposal(
        1,
        IKE,
        b"",
        (
            Transform(ENCR, EncrId.AES_CBC, 256),  # we offered 128 only
            Transform(PRF, PrfId.HMAC_SHA2_256),
            Transform(INTEG, IntegId.HMAC_SHA2_256_128),
            Transform(KE, KeId.CURVE25519),
        ),
    )
    with pytest.raises(NoProposalChosen, match="not offered"):
        check_selected(bad, offered)
    good = Proposal(1, IKE, b"", (Transform(ENCR, EncrId.AES_CBC, 128), *bad.transforms[1:]))
    check_selected(good, offered)


def test_check_selected_structure() -> None:
    offered = offer("aes128-sha256-x25519-ecp256")
    (mine,) = offered
    two_ke = Proposal(1, IKE, b"", mine.transforms)
    with pytest.raises(InvalidSyntax, match="2 transforms"):
        check_selected(two_ke, offered)
    missing = Proposal(1, IKE, b"", tuple(t for t in mine.transforms if t.type != PRF)[:-1])
    with pytest.raises(InvalidSyntax, match="lacks"):
        check_selected(missing, offered)
    one_each = Proposal(1, IKE, b"", mine.transforms[:-1])
    with pytest.raises(NoProposalChosen, match="#2"):
        check_selected(Proposal(2, IKE, b"", one_each.transforms), offered)
    with pytest.raises(NoProposalChosen, match="protocol"):
        check_selected(Proposal(1, ESP, b"", one_each.transforms), offered)
    extra = Proposal(1, IKE, b"", (*one_each.transforms, Transform(ESN, 0)))
    with pytest.raises(NoProposalChosen, match="type 5"):
        check_selected(extra, offered)
    check_selected(one_each, offered)
