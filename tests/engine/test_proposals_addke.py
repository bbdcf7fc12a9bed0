"""RFC 9370 §2.2.1 additional key exchanges (ADDKE1..7) in proposals: strongSwan-style strings,
building, the responder's choice (with NONE, required and absent ADDKEs, no repeated method)
and the initiator's check."""

from __future__ import annotations

import pytest

from ikev2.constants import KeId, ProtocolId, TransformType
from ikev2.engine.proposal_strings import (
    ProposalSyntaxError,
    format_proposal,
    format_proposals,
    parse_proposals,
)
from ikev2.engine.proposals import (
    ADDKE_TYPES,
    NegotiatedSuite,
    check_selected,
    select_proposal,
    spec_to_proposals,
)
from ikev2.engine.support import crypto_supports, describe_suite
from ikev2.errors import InvalidSyntax, NoProposalChosen
from ikev2.wire import Proposal, Transform

IKE, ESP = ProtocolId.IKE, ProtocolId.ESP
ADDKE1, ADDKE2 = TransformType.ADDKE1, TransformType.ADDKE2
HYBRID = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
CLASSIC = "aes256gcm16-prfsha256-x25519"


def ike(text: str):  # type: ignore[no-untyped-def]
    return parse_proposals(text, IKE)


def offer(text: str) -> tuple[Proposal, ...]:
    return spec_to_proposals(ike(text), b"")


def addke_of(proposal: Proposal) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for t in proposal.transforms:
        if t.type in ADDKE_TYPES:
            out.setdefault(t.type, []).append(t.id)
    return out


@pytest.mark.parametrize(
    ("text", "addke"),
    [
        (HYBRID, ((KeId.ML_KEM_768,),)),
        (
            "aes256-sha256-ecp256-ke1_mlkem768-ke2_mlkem1024",
            ((KeId.ML_KEM_768,), (KeId.ML_KEM_1024,)),
        ),
        (f"{HYBRID}-ke1_none", ((KeId.ML_KEM_768, KeId.NONE),)),
        ("aes256gcm16-prfsha256-x25519-ke3_mlkem1024", ((), (), (KeId.ML_KEM_1024,))),
        ("aes256gcm16-prfsha256-x25519-KE1_MLKEM768-ke1_mlkem1024", ((36, 37),)),
    ],
)
def test_strings_parse_and_round_trip(text: str, addke: tuple[tuple[int, ...], ...]) -> None:
    (spec,) = ike(text)
    assert spec.addke == addke
    assert parse_proposals(format_proposal(spec), IKE) == (spec,)


def test_format_writes_strongswan_keywords() -> None:
    specs = ike(f"{HYBRID}-ke1_none,aes256-sha256-ecp256-ke1_mlkem768-ke2_mlkem1024")
    assert format_proposals(specs) == (
        "aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke1_none,"
        "aes256-sha256-ecp256-ke1_mlkem768-ke2_mlkem1024"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("aes256gcm16-prfsha256-x25519-ke8_mlkem768", "ke1_ to ke7_"),
        ("aes256gcm16-prfsha256-x25519-ke0_mlkem768", "ke1_ to ke7_"),
        ("aes256gcm16-prfsha256-x25519-ke1_mlkem76", "did you mean ke1_mlkem768"),
        ("aes256gcm16-prfsha256-ke1_mlkem768", "key exchange method"),
    ],
)
def test_bad_additional_key_exchange_tokens(text: str, message: str) -> None:
    with pytest.raises(ProposalSyntaxError, match=message):
        ike(text)


def test_offer_carries_addke_transforms_after_ke() -> None:
    (p,) = offer(f"{HYBRID}-ke1_none-ke2_mlkem1024")
    types = [t.type for t in p.transforms]
    assert types.index(TransformType.KE) < types.index(ADDKE1) < types.index(ADDKE2)
    assert addke_of(p) == {ADDKE1: [KeId.ML_KEM_768, KeId.NONE], ADDKE2: [KeId.ML_KEM_1024]}
    (plain,) = spec_to_proposals(ike(HYBRID), b"", include_addke=False)
    assert addke_of(plain) == {}
    (child,) = spec_to_proposals(parse_proposals("aes256gcm16-mlkem768", ESP), b"\0" * 4)
    assert addke_of(child) == {}


def test_hybrid_is_chosen_and_named() -> None:
    chosen = select_proposal(offer(HYBRID), ike(HYBRID), IKE, crypto_supports)
    assert chosen is not None and addke_of(chosen) == {ADDKE1: [KeId.ML_KEM_768]}
    suite = NegotiatedSuite.from_proposal(chosen)
    assert suite.additional_ke == (KeId.ML_KEM_768,)
    assert describe_suite(suite) == "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE25519/KE1_ML_KEM_768"
    check_selected(chosen, offer(HYBRID))


def test_required_addke_never_falls_to_none_and_moves_to_the_next_proposal() -> None:
    peer = spec_to_proposals(ike(f"{HYBRID}-ke1_none,{CLASSIC}"), b"")
    # we require ADDKE1: the peer's first proposal (which allows NONE) gives ML-KEM-768
    chosen = select_proposal(peer, ike(HYBRID), IKE, crypto_supports)
    assert chosen is not None and chosen.number == 1
    assert addke_of(chosen) == {ADDKE1: [KeId.ML_KEM_768]}
    # a classic-only policy takes NONE from the first proposal (RFC 9370 §2.2.1)
    chosen = select_proposal(peer, ike(CLASSIC), IKE, crypto_supports)
    assert chosen is not None and chosen.number == 1 and addke_of(chosen) == {ADDKE1: [0]}
    assert NegotiatedSuite.from_proposal(chosen).additional_ke == ()
    # a peer offering no ADDKE at all never fits a policy that requires one
    assert select_proposal(offer(CLASSIC), ike(HYBRID), IKE, crypto_supports) is None


def test_without_intermediate_only_none_fits() -> None:
    """An initiator that did not announce IKE_INTERMEDIATE (RFC 9370 §2.2.1)."""
    peer = spec_to_proposals(ike(f"{HYBRID},{CLASSIC}"), b"")
    chosen = select_proposal(
        peer, ike(f"{HYBRID},{CLASSIC}"), IKE, crypto_supports, additional_ke=False
    )
    assert chosen is not None and chosen.number == 2
    optional = spec_to_proposals(ike(f"{HYBRID}-ke1_none"), b"")
    chosen = select_proposal(
        optional, ike(f"{HYBRID}-ke1_none"), IKE, crypto_supports, additional_ke=False
    )
    assert chosen is not None and addke_of(chosen) == {ADDKE1: [KeId.NONE]}


def test_unsupported_method_is_skipped_for_the_next() -> None:
    # ML-KEM-512 is not in cryptography: the responder takes the peer's second choice
    (spec,) = ike("aes256gcm16-prfsha256-x25519-ke1_mlkem512-ke1_mlkem1024")
    chosen = select_proposal(spec_to_proposals((spec,), b""), (spec,), IKE, crypto_supports)
    assert chosen is not None and addke_of(chosen) == {ADDKE1: [KeId.ML_KEM_1024]}


def test_the_choice_repeats_no_method() -> None:
    """RFC 9370 §2.2.1: no duplicated ADDKE choice (NONE aside)."""
    text = "aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke1_mlkem1024-ke2_mlkem768-ke2_mlkem1024"
    chosen = select_proposal(offer(text), ike(text), IKE, crypto_supports)
    assert chosen is not None
    assert addke_of(chosen) == {ADDKE1: [KeId.ML_KEM_768], ADDKE2: [KeId.ML_KEM_1024]}
    # and an initiator refuses a responder that repeats one
    (ours,) = offer(text)
    doubled = Proposal(
        1,
        IKE,
        b"",
        (
            *(t for t in chosen.transforms if t.type not in ADDKE_TYPES),
            Transform(ADDKE1, KeId.ML_KEM_768),
            Transform(ADDKE2, KeId.ML_KEM_768),
        ),
    )
    with pytest.raises(NoProposalChosen, match="twice"):
        check_selected(doubled, (ours,))


def test_initiator_refuses_a_choice_without_the_addke_it_offered() -> None:
    (ours,) = offer(HYBRID)
    stripped = Proposal(1, IKE, b"", tuple(t for t in ours.transforms if t.type != ADDKE1))
    with pytest.raises(Exception, match="lacks transform types"):
        check_selected(stripped, (ours,))


def test_omitted_addke_reads_as_none_only_where_none_was_offered() -> None:
    """strongSwan 6 selects NONE for an optional ADDKE by leaving the type out of its answer:
    the ADDKE types are optional transform types (RFC 9370 §2.2.1), so where we offered NONE
    the omission reads as NONE and no IKE_INTERMEDIATE runs; our own responder still returns
    NONE explicitly (RFC 9370 §2.1: one transform of every type, all returned)."""
    (ours,) = offer(f"{HYBRID}-ke1_none")
    chosen = select_proposal((ours,), ike(CLASSIC), IKE, crypto_supports)
    assert chosen is not None
    omitted = Proposal(1, IKE, b"", tuple(t for t in chosen.transforms if t.type != ADDKE1))
    check_selected(omitted, (ours,))
    assert NegotiatedSuite.from_proposal(omitted).additional_ke == ()
    # the same omission against an offer that required ADDKE1 stays a malformed choice
    (required,) = offer(HYBRID)
    with pytest.raises(InvalidSyntax, match=r"lacks transform types \[6\]"):
        check_selected(omitted, (required,))
    # and ENCR, PRF or KE may never be left out, NONE or not
    no_ke = Proposal(
        1, IKE, b"", tuple(t for t in omitted.transforms if t.type != TransformType.KE)
    )
    with pytest.raises(InvalidSyntax, match=r"lacks transform types \[4\]"):
        check_selected(no_ke, (ours,))
    # two ADDKEs, only the second optional: dropping it passes, dropping the first does not
    (two,) = offer("aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke2_mlkem1024-ke2_none")
    pick = select_proposal((two,), ike(CLASSIC + "-ke1_mlkem768"), IKE, crypto_supports)
    assert pick is not None and addke_of(pick) == {ADDKE1: [KeId.ML_KEM_768], ADDKE2: [0]}
    check_selected(
        Proposal(1, IKE, b"", tuple(t for t in pick.transforms if t.type != ADDKE2)), (two,)
    )
    with pytest.raises(InvalidSyntax, match=r"lacks transform types \[6\]"):
        check_selected(
            Proposal(1, IKE, b"", tuple(t for t in pick.transforms if t.type != ADDKE1)), (two,)
        )


def test_our_responder_returns_none_explicitly() -> None:
    """RFC 9370 §2.1: the responder returns one transform of each offered type, NONE too."""
    chosen = select_proposal(offer(f"{HYBRID}-ke1_none"), ike(CLASSIC), IKE, crypto_supports)
    assert chosen is not None
    assert [t for t in chosen.transforms if t.type == ADDKE1] == [Transform(ADDKE1, KeId.NONE)]


def test_ike_auth_child_ignores_addke() -> None:
    """RFC 9370 §2.2.3: ADDKE has no meaning for the child SA of IKE_AUTH."""
    spec = parse_proposals("aes256gcm16-x25519-ke1_mlkem768", ESP)
    peer = spec_to_proposals(spec, b"\1\2\3\4")
    assert select_proposal(peer, spec, ESP, crypto_supports, skip_ke=True) is not None
    # in CREATE_CHILD_SA (no IKE_FOLLOWUP_KE here yet) a required ADDKE does not fit
    required = Proposal(
        1, ESP, b"\1\2\3\4", (*peer[0].transforms, Transform(ADDKE1, KeId.ML_KEM_768))
    )
    assert select_proposal((required,), spec, ESP, crypto_supports, additional_ke=False) is None
