"""SA proposals: build our offer, choose from the peer's offer, check the peer's choice.

RFC 7296 §2.7 (negotiation), §3.3 (SA payload), §3.3.3 (mandatory transform types),
§3.3.6 (unknown transforms and attributes); RFC 5282 §8 (combined-mode ciphers in IKEv2);
RFC 9370 §2.2 (additional key exchanges, ADDKE1..7).

Pure functions on the wire layer's frozen dataclasses; which algorithms the crypto layer can run is
asked through a `supported(transform_type, transform_id, key_bits)` callable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ..constants import EncrId, EsnId, IntegId, KeId, ProtocolId, TransformType
from ..errors import InvalidSyntax, NoProposalChosen
from ..wire import Proposal, Transform
from .config import ProposalSpec

Supported = Callable[[int, int, int | None], bool]

# Combined-mode (AEAD) ciphers: RFC 4106 (GCM), RFC 4309 (CCM), RFC 4543 (GMAC),
# RFC 5529 (Camellia CCM), RFC 7634 (ChaCha20-Poly1305), RFC 8750 (implicit IV).
AEAD_ENCR_IDS: frozenset[int] = frozenset(
    {
        EncrId.AES_CCM_8,
        EncrId.AES_CCM_12,
        EncrId.AES_CCM_16,
        EncrId.AES_GCM_8,
        EncrId.AES_GCM_12,
        EncrId.AES_GCM_16,
        EncrId.NULL_AUTH_AES_GMAC,
        EncrId.CAMELLIA_CCM_8,
        EncrId.CAMELLIA_CCM_12,
        EncrId.CAMELLIA_CCM_16,
        EncrId.CHACHA20_POLY1305,
        EncrId.AES_CCM_8_IIV,
        EncrId.AES_GCM_16_IIV,
        EncrId.CHACHA20_POLY1305_IIV,
    }
)

ADDKE_TYPES: tuple[int, ...] = tuple(range(TransformType.ADDKE1, TransformType.ADDKE7 + 1))

# RFC 7296 §3.3.3: the transform types each protocol may carry, and those it must carry.
# INTEG is mandatory for IKE only with a non-AEAD cipher (RFC 5282 §8), checked separately.
# ESN is mandatory for ESP/AH in the RFC, but an absent ESN is read as NO_ESN (as strongSwan does).
ALLOWED_TYPES: dict[int, frozenset[int]] = {
    ProtocolId.IKE: frozenset(
        {TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.KE, *ADDKE_TYPES}
    ),
    ProtocolId.ESP: frozenset(
        {TransformType.ENCR, TransformType.INTEG, TransformType.KE, TransformType.ESN, *ADDKE_TYPES}
    ),
    ProtocolId.AH: frozenset(
        {TransformType.INTEG, TransformType.KE, TransformType.ESN, *ADDKE_TYPES}
    ),
}
REQUIRED_TYPES: dict[int, frozenset[int]] = {
    ProtocolId.IKE: frozenset({TransformType.ENCR, TransformType.PRF, TransformType.KE}),
    ProtocolId.ESP: frozenset({TransformType.ENCR}),
    ProtocolId.AH: frozenset({TransformType.INTEG}),
}

# Transform ids that are "absence of an algorithm"; the crypto layer is not asked about them.
NONE_IDS: dict[int, int] = {
    TransformType.INTEG: IntegId.NONE,
    TransformType.KE: KeId.NONE,
    **{t: KeId.NONE for t in ADDKE_TYPES},
}
# ADDKE transforms carry key exchange method ids: the crypto layer is asked about them as KE.
_ASK_AS: dict[int, int] = {t: TransformType.KE for t in ADDKE_TYPES}


def is_aead(encr_id: int) -> bool:
    """True for combined-mode ciphers, which carry their own integrity (no INTEG transform)."""
    return encr_id in AEAD_ENCR_IDS


@dataclass(frozen=True, slots=True)
class NegotiatedSuite:
    """The algorithms of one selected proposal, flattened for the crypto layer."""

    protocol: ProtocolId
    encr: int | None  # None for AH
    encr_key_bits: int | None
    prf: int | None  # IKE only
    integ: int | None  # None for AEAD ciphers (or INTEG NONE)
    ke: int | None  # None when no key exchange (child SA without PFS)
    esn: bool
    spi: bytes
    additional_ke: tuple[int, ...] = ()  # RFC 9370 ADDKE1..7 chosen, NONE left out

    @classmethod
    def from_proposal(cls, proposal: Proposal) -> NegotiatedSuite:
        by_type = {t.type: t for t in proposal.transforms}
        encr = by_type.get(TransformType.ENCR)
        prf = by_type.get(TransformType.PRF)
        integ = by_type.get(TransformType.INTEG)
        ke = by_type.get(TransformType.KE)
        esn = by_type.get(TransformType.ESN)
        return cls(
            protocol=ProtocolId(proposal.protocol),
            encr=encr.id if encr else None,
            encr_key_bits=encr.key_length if encr else None,
            prf=prf.id if prf else None,
            integ=integ.id if integ and integ.id != IntegId.NONE else None,
            ke=ke.id if ke and ke.id != KeId.NONE else None,
            esn=bool(esn and esn.id == EsnId.ESN),
            spi=proposal.spi,
            additional_ke=tuple(
                by_type[t].id for t in ADDKE_TYPES if t in by_type and by_type[t].id != KeId.NONE
            ),
        )


# --------------------------------------------------------------------------- our offer


def _split_aead(spec: ProposalSpec) -> Iterator[ProposalSpec]:
    """A spec mixing AEAD and classic ciphers becomes two proposals (RFC 5282 §8), AEAD first."""
    aead = tuple(e for e in spec.encr if is_aead(e[0]))
    classic = tuple(e for e in spec.encr if not is_aead(e[0]))
    if aead and classic:
        yield ProposalSpec(spec.protocol, aead, spec.prf, (), spec.ke, spec.esn, spec.addke)
        yield ProposalSpec(
            spec.protocol, classic, spec.prf, spec.integ, spec.ke, spec.esn, spec.addke
        )
    elif aead:
        yield ProposalSpec(spec.protocol, aead, spec.prf, (), spec.ke, spec.esn, spec.addke)
    else:
        yield spec


def _spec_esn(spec: ProposalSpec) -> tuple[int, ...]:
    """An ESP/AH spec without ESN choices means NO_ESN only."""
    return spec.esn or (EsnId.NO_ESN,)


def spec_to_proposals(
    specs: Sequence[ProposalSpec],
    spi: bytes,
    *,
    include_ke: bool = True,
    include_addke: bool = True,
) -> tuple[Proposal, ...]:
    """Our SA payload's proposals, numbered from 1 (RFC 7296 §3.3.1).

    Transform order: ENCR (KEY_LENGTH attribute when key bits are given), PRF, INTEG, KE,
    ADDKE1..7 (RFC 9370 §2.2.1), ESN. include_ke=False leaves KE and ADDKE out, for the child SA
    of IKE_AUTH (RFC 7296 §1.2); include_addke=False leaves only ADDKE out (an exchange that
    cannot run the follow-up key exchanges).
    """
    proposals: list[Proposal] = []
    for spec in (part for s in specs for part in _split_aead(s)):
        transforms: list[Transform] = [
            Transform(TransformType.ENCR, encr_id, key_bits) for encr_id, key_bits in spec.encr
        ]
        if spec.protocol == ProtocolId.IKE:
            transforms += [Transform(TransformType.PRF, prf_id) for prf_id in spec.prf]
        transforms += [Transform(TransformType.INTEG, integ_id) for integ_id in spec.integ]
        if include_ke:
            transforms += [Transform(TransformType.KE, ke_id) for ke_id in spec.ke]
        if include_ke and include_addke:
            transforms += [
                Transform(ADDKE_TYPES[index], ke_id)
                for index, choices in enumerate(spec.addke)
                for ke_id in choices
            ]
        if spec.protocol != ProtocolId.IKE:
            transforms += [Transform(TransformType.ESN, esn) for esn in _spec_esn(spec)]
        proposals.append(Proposal(len(proposals) + 1, spec.protocol, spi, tuple(transforms)))
    return tuple(proposals)


# --------------------------------------------------------------------------- responder's choice


def _group(transforms: Sequence[Transform]) -> dict[int, list[Transform]]:
    grouped: dict[int, list[Transform]] = {}
    for transform in transforms:
        grouped.setdefault(transform.type, []).append(transform)
    return grouped


def _first_acceptable(
    candidates: Sequence[Transform],
    allowed: Sequence[int],
    supported: Supported,
) -> Transform | None:
    """The peer's first transform (peer order) that our spec allows and we implement."""
    for transform in candidates:
        if transform.attributes:  # RFC 7296 §3.3.6: unrecognized attribute -> skip the transform
            continue
        if transform.id not in allowed or transform.key_length is not None:
            continue
        if NONE_IDS.get(transform.type) == transform.id or transform.type == TransformType.ESN:
            return transform
        if supported(_ASK_AS.get(transform.type, transform.type), transform.id, None):
            return transform
    return None


def _addke_choices(spec: ProposalSpec, additional_ke: bool) -> dict[int, tuple[int, ...]]:
    """Our alternatives for ADDKE1..7 (RFC 9370 §2.2.1): an absent or empty entry means NONE
    only; additional_ke=False (the exchange cannot run them) allows NONE alone everywhere."""
    no_ke: tuple[int, ...] = (KeId.NONE,)
    choices: dict[int, tuple[int, ...]] = {}
    for index, transform_type in enumerate(ADDKE_TYPES):
        ours = spec.addke[index] if index < len(spec.addke) else ()
        if not ours:
            ours = no_ke
        elif not additional_ke:
            ours = no_ke if KeId.NONE in ours else ()  # () : this spec cannot fit
        choices[transform_type] = ours
    return choices


def _match_spec(
    grouped: dict[int, list[Transform]],
    spec: ProposalSpec,
    supported: Supported,
    skip_ke: bool,
    additional_ke: bool = True,
) -> list[Transform] | None:
    """One transform per offered type, all allowed by `spec`; None when the spec does not fit."""
    protocol = spec.protocol
    no_ke: tuple[int, ...] = (KeId.NONE,)
    # Our alternatives per type, for the types other than ENCR. KE: for a child an empty spec
    # means no PFS, so only NONE (or an absent KE) fits; IKE always needs a real key exchange.
    ke_choices = spec.ke
    if protocol == ProtocolId.IKE:
        ke_choices = tuple(k for k in spec.ke if k != KeId.NONE)
    elif skip_ke or not spec.ke:
        ke_choices = no_ke
    # the child of IKE_AUTH (skip_ke): no key exchange of any kind (RFC 7296 §1.2)
    addke = {t: no_ke for t in ADDKE_TYPES} if skip_ke else _addke_choices(spec, additional_ke)
    if any(not choices for choices in addke.values()):
        return None  # an additional key exchange we require cannot run here
    ours: dict[int, tuple[int, ...]] = {
        TransformType.PRF: spec.prf,
        TransformType.KE: ke_choices,
        TransformType.ESN: _spec_esn(spec),
        **addke,
    }
    if skip_ke:
        grouped = {
            t: ts for t, ts in grouped.items() if t != TransformType.KE and t not in ADDKE_TYPES
        }
    elif TransformType.KE not in grouped and KeId.NONE not in ours[TransformType.KE]:
        return None  # IKE always, or a child with PFS required: the peer omits the key exchange
    if any(t not in grouped and KeId.NONE not in addke[t] for t in ADDKE_TYPES):
        return None  # RFC 9370 §2.2.1: an ADDKE we require, absent from the offer
    esn_absent = protocol != ProtocolId.IKE and TransformType.ESN not in grouped
    if esn_absent and EsnId.NO_ESN not in ours[TransformType.ESN]:
        return None  # an absent ESN transform means NO_ESN

    encr_choices: list[Transform | None] = [None]
    if protocol != ProtocolId.AH:
        encr_choices = [
            t
            for t in grouped.get(TransformType.ENCR, [])
            if not t.attributes
            and (t.id, t.key_length) in spec.encr
            and supported(TransformType.ENCR, t.id, t.key_length)
        ]
    # Several acceptable ciphers: try them in the peer's order, since an AEAD one changes INTEG.
    for encr in encr_choices:
        aead = encr is not None and is_aead(encr.id)
        ours[TransformType.INTEG] = _integ_choices(spec, aead)
        if TransformType.INTEG not in grouped and not aead and IntegId.NONE not in spec.integ:
            continue  # no integrity protection offered (AH always has INTEG: REQUIRED_TYPES)
        others = {t: c for t, c in grouped.items() if t != TransformType.ENCR}
        chosen = _pick_each(others, ours, supported)
        if chosen is not None:
            return sorted([encr, *chosen] if encr else chosen, key=lambda t: t.type)
    return None


def _integ_choices(spec: ProposalSpec, aead: bool) -> tuple[int, ...]:
    if aead:  # RFC 5282 §8: with a combined-mode cipher INTEG is absent or NONE
        return (IntegId.NONE,)
    if spec.protocol == ProtocolId.IKE:  # RFC 7296 §3.3.3: IKE needs a real INTEG
        return tuple(i for i in spec.integ if i != IntegId.NONE)
    return spec.integ


def _pick_each(
    grouped: dict[int, list[Transform]],
    ours: dict[int, tuple[int, ...]],
    supported: Supported,
) -> list[Transform] | None:
    """For each type, the peer's first transform we accept; None if some type has none.
    RFC 9370 §2.2.1: the ADDKE choices never repeat a method (NONE aside); ADDKE1 picks first."""
    chosen: list[Transform] = []
    used_addke: set[int] = set()
    for transform_type, candidates in sorted(grouped.items()):
        allowed = ours[transform_type]
        if transform_type in ADDKE_TYPES:
            allowed = tuple(k for k in allowed if k == KeId.NONE or k not in used_addke)
        pick = _first_acceptable(candidates, allowed, supported)
        if pick is None:
            return None
        if transform_type in ADDKE_TYPES and pick.id != KeId.NONE:
            used_addke.add(pick.id)
        chosen.append(pick)
    return chosen


def select_proposal(
    offered: Sequence[Proposal],
    ours: Sequence[ProposalSpec],
    protocol: ProtocolId,
    supported: Supported,
    *,
    skip_ke: bool = False,
    additional_ke: bool = True,
) -> Proposal | None:
    """The responder's choice (RFC 7296 §2.7): the peer's first proposal that one of our specs fits.

    The peer's preference wins, both between proposals and between transforms of one type. The
    result holds exactly one transform of each type the peer's proposal has, with the peer's
    proposal number and SPI. A proposal with a transform type we do not recognise for `protocol`
    is rejected whole (§3.3.6); unknown transform ids and transforms with unknown attributes are
    skipped. skip_ke=True ignores KE and ADDKE transforms (the child SA of IKE_AUTH, RFC 7296
    §1.2). additional_ke=False accepts only NONE for ADDKE1..7 (RFC 9370 §2.2.1: an initiator
    that did not announce IKE_INTERMEDIATE, or an exchange without the follow-up exchanges).
    """
    offer = tuple((p.protocol, p.transforms) for p in offered)
    choose = _choose if _cacheable(offered) else _choose_uncached
    found = choose(offer, tuple(ours), protocol, supported, skip_ke, additional_ke)
    if found is None:
        return None
    index, chosen = found
    proposal = offered[index]
    return Proposal(proposal.number, proposal.protocol, proposal.spi, chosen)


CACHED_OFFER_SIZE = 64  # transforms; strongSwan's default IKE offer has ~40


def _cacheable(offered: Sequence[Proposal]) -> bool:
    """The offer comes unauthenticated (IKE_SA_INIT): cache only offers of a usual size and
    without attributes other than KEY_LENGTH (whose TLV values could be kilobytes), so a peer
    cannot park large offers in memory; at most 512 × 64 small transforms stay."""
    count = 0
    for proposal in offered:
        count += len(proposal.transforms)
        if count > CACHED_OFFER_SIZE or any(t.attributes for t in proposal.transforms):
            return False
    return True


def _choose_uncached(
    offer: tuple[tuple[int, tuple[Transform, ...]], ...],
    ours: tuple[ProposalSpec, ...],
    protocol: ProtocolId,
    supported: Supported,
    skip_ke: bool,
    additional_ke: bool = True,
) -> tuple[int, tuple[Transform, ...]] | None:
    """(index of the proposal chosen, its chosen transforms): a pure function of the offer's
    transforms and our specs, so cached; peers of one connection send the same few offers."""
    allowed_types = ALLOWED_TYPES[protocol]
    specs = [spec for spec in ours if spec.protocol == protocol]
    for index, (offered_protocol, transforms) in enumerate(offer):
        if offered_protocol != protocol:
            continue
        grouped = _group(transforms)
        if not set(grouped) <= allowed_types:
            continue
        if not REQUIRED_TYPES[protocol] - {TransformType.KE} <= set(grouped):
            continue
        for spec in specs:
            chosen = _match_spec(grouped, spec, supported, skip_ke, additional_ke)
            if chosen is not None:
                return index, tuple(chosen)
    return None


_choose = functools.lru_cache(maxsize=512)(_choose_uncached)


def select_or_raise(
    offered: Sequence[Proposal],
    ours: Sequence[ProposalSpec],
    protocol: ProtocolId,
    supported: Supported,
    *,
    skip_ke: bool = False,
    additional_ke: bool = True,
) -> Proposal:
    """select_proposal, raising NoProposalChosen (RFC 7296 §2.21) when nothing fits."""
    chosen = select_proposal(
        offered, ours, protocol, supported, skip_ke=skip_ke, additional_ke=additional_ke
    )
    if chosen is None:
        raise NoProposalChosen(f"none of {len(offered)} {protocol.name} proposals is acceptable")
    return chosen


# --------------------------------------------------------------------------- initiator's check


def _same_transform(a: Transform, b: Transform) -> bool:
    return (a.id, a.key_length, tuple(a.attributes)) == (b.id, b.key_length, tuple(b.attributes))


def _omitted_means_none(transform_type: int, offered: Sequence[Transform]) -> bool:
    """An ADDKE type the responder left out, where we offered NONE for it, reads as NONE.

    RFC 9370 §2.1 has the responder return one transform of every type, and our responder
    does so (NONE included); but the ADDKE types are "optional in IKE, AH, ESP" (§2.2.1, the
    transform type table), so a responder that selects NONE may drop the type the way an
    optional transform is dropped (RFC 7296 §3.3.6). strongSwan 6 does exactly this. A type
    offered without NONE stays required: its omission is still a malformed choice."""
    return transform_type in ADDKE_TYPES and any(t.id == KeId.NONE for t in offered)


def check_selected(response: Proposal, offered: Sequence[Proposal]) -> None:
    """The initiator's check of the responder's SA payload (RFC 7296 §2.7, §3.3.6).

    The single proposal must name one we offered, hold exactly one transform of each type that
    proposal had, and each transform (id, key length) must be one we offered. Raises
    InvalidSyntax for a malformed choice and NoProposalChosen for a choice we never offered.
    """
    ours = next((p for p in offered if p.number == response.number), None)
    if ours is None:
        raise NoProposalChosen(f"responder chose proposal #{response.number}, not offered")
    if response.protocol != ours.protocol:
        raise NoProposalChosen(
            f"responder chose protocol {response.protocol} for proposal #{response.number}, "
            f"offered {ours.protocol}"
        )
    offered_by_type = _group(ours.transforms)
    chosen_by_type = _group(response.transforms)
    for transform_type, chosen in chosen_by_type.items():
        if len(chosen) != 1:
            raise InvalidSyntax(
                f"responder chose {len(chosen)} transforms of type {transform_type}"
            )
        if transform_type not in offered_by_type:
            raise NoProposalChosen(f"responder chose transform type {transform_type}, not offered")
        pick = chosen[0]
        if not any(_same_transform(t, pick) for t in offered_by_type[transform_type]):
            raise NoProposalChosen(
                f"responder chose transform type {transform_type} id {pick.id} "
                f"key length {pick.key_length}, not offered"
            )
    missing = {
        t
        for t in set(offered_by_type) - set(chosen_by_type)
        if not _omitted_means_none(t, offered_by_type[t])
    }
    if missing:
        raise InvalidSyntax(
            f"responder's proposal lacks transform types {sorted(int(t) for t in missing)}"
        )
    methods = [t.id for t in response.transforms if t.type in ADDKE_TYPES and t.id != KeId.NONE]
    if len(methods) != len(set(methods)):  # RFC 9370 §2.2.1
        raise NoProposalChosen("responder chose one additional key exchange method twice")
