"""Child SA negotiation: the SA / TSi / TSr part of IKE_AUTH (RFC 7296 §1.2) and of
CREATE_CHILD_SA (§1.3.1), both roles.

    [N(USE_TRANSPORT_MODE)], [N(IPCOMP_SUPPORTED)], SA, TSi, TSr  -->
          <--  [N(USE_TRANSPORT_MODE)], [N(IPCOMP_SUPPORTED)], SA, TSi, TSr
               |  N(NO_PROPOSAL_CHOSEN or TS_UNACCEPTABLE)

IPCOMP_SUPPORTED (RFC 3173 compression): tasks/ipcomp.py.

If only the child fails, the IKE SA stays up (§1.2); the error notify replaces the child payloads.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ...constants import NotifyType, ProtocolId
from ...crypto.keymat import derive_child_keys
from ...crypto.suites import encr_suite, integ_suite
from ...errors import NoProposalChosen, ProtocolError, TsUnacceptable
from ...wire import (
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TrafficSelector,
    TsiPayload,
    TsrPayload,
)
from ..config import ChildConfig, Mode, ProposalSpec, TrafficSelectorSpec
from ..events import ChildSaEstablished, ChildSaFailed, SaDirection
from ..ike_sa import ChildSa
from ..proposals import NegotiatedSuite, check_selected, select_proposal, spec_to_proposals
from ..spis import SpiRegistry
from ..support import crypto_supports, describe_suite
from ..ts import check_narrowed, narrow, selector_to_networks, spec_to_selector
from . import config_payload, find_payload, ipcomp

if TYPE_CHECKING:
    from ..ike_sa import IkeSa

# The manager allocates reqids (one per child SA; the kernel ties SAs and policies with them).
# A responder asks with the child's config and its (local, remote) selectors: a child the peer
# recreates on a new IKE SA (§2.8.3 reauthentication) keeps the reqid of the one it replaces.
TsSpecs = tuple[TrafficSelectorSpec, ...]
ReqidSource = Callable[[ChildConfig, TsSpecs, TsSpecs], int]

# RFC 7296 §1.2: the KE of a child created in IKE_AUTH comes from IKE_SA_INIT, so KE
# transforms are left out of (and ignored in) IKE_AUTH child proposals.
KE_TRANSFORM = 4
KE_TRANSFORMS = frozenset({KE_TRANSFORM, *range(6, 13)})  # KE and ADDKE1..7 (RFC 9370 §2.2.1)


def new_spi(sa: IkeSa) -> int:
    """A random inbound ESP/AH SPI that no other child of this engine holds (engine/spis.py;
    values below 256 are reserved, RFC 4303 §2.1)."""
    draw = sa.env.spi_bytes or sa.random_bytes
    if sa.host is None:  # an IKE SA outside an engine (unit tests): no other children
        return SpiRegistry(tuple).draw(draw)
    return sa.host.spis.draw(draw)


@functools.lru_cache(maxsize=256)
def _without_ke(specs: tuple[ProposalSpec, ...]) -> tuple[ProposalSpec, ...]:
    """Our child proposals without PFS, for the child of IKE_AUTH (RFC 7296 §1.2); cached, as
    dataclasses.replace costs ~7 µs a call."""
    return tuple(replace(s, ke=(), addke=()) for s in specs)


def _strip_ke(proposals: Sequence[Proposal]) -> tuple[Proposal, ...]:
    """The offer without KE and ADDKE1..7 (RFC 9370 §2.2.3: none of them apply in IKE_AUTH)."""
    return tuple(
        Proposal(
            p.number,
            p.protocol,
            p.spi,
            tuple(t for t in p.transforms if t.type not in KE_TRANSFORMS),
        )
        for p in proposals
    )


def with_spi(proposal: Proposal, spi_in: int) -> Proposal:
    """The chosen proposal as we answer it: with our inbound SPI (RFC 7296 §3.3.1)."""
    return Proposal(
        proposal.number, proposal.protocol, struct.pack("!I", spi_in), proposal.transforms
    )


@dataclass(slots=True)
class ChildRequest:
    """What the initiator of a child remembers until the response comes."""

    child: ChildSa
    proposals: tuple[Proposal, ...]
    tsi: tuple[TrafficSelector, ...]
    tsr: tuple[TrafficSelector, ...]


# --- initiator
def build_i(sa: IkeSa, config: ChildConfig, reqid: int) -> tuple[ChildRequest, list[Payload]]:
    protocol = config.proposals[0].protocol
    child = ChildSa(config, reqid, ProtocolId(protocol), new_spi(sa), mode=config.mode)
    proposals = spec_to_proposals(_without_ke(config.proposals), struct.pack("!I", child.spi_in))
    tsi = tuple(spec_to_selector(ts) for ts in config.local_ts)
    tsr = tuple(spec_to_selector(ts) for ts in config.remote_ts)
    payloads: list[Payload] = []
    if config.mode is Mode.TRANSPORT:
        payloads.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
    payloads += ipcomp.offer(sa, child)
    payloads += [SaPayload(proposals), TsiPayload(tsi), TsrPayload(tsr)]
    return ChildRequest(child, proposals, tsi, tsr), payloads


def process_i(sa: IkeSa, request: ChildRequest, payloads: Sequence[Payload], now: float) -> None:
    config = request.child.config
    for p in payloads:
        if isinstance(p, NotifyPayload) and p.notify_type < 16384:
            _failed(sa, config, "peer refused the child SA", p.notify_type)
            return
    sa_payload = find_payload(payloads, SaPayload)
    tsi = find_payload(payloads, TsiPayload)
    tsr = find_payload(payloads, TsrPayload)
    if sa_payload is None or tsi is None or tsr is None or len(sa_payload.proposals) != 1:
        _failed(sa, config, "response lacks SA, TSi or TSr", None)
        return
    try:
        chosen = sa_payload.proposals[0]
        check_selected(chosen, request.proposals)
        if len(chosen.spi) != 4:
            raise NoProposalChosen("child SPI is not 4 bytes")
        narrowed_i = check_narrowed(tsi.selectors, request.tsi)
        narrowed_r = check_narrowed(tsr.selectors, request.tsr)
    except ProtocolError as exc:
        _failed(sa, config, f"unacceptable child response: {exc.reason}", exc.notify)
        return
    child = request.child
    refusal = ipcomp.accept(sa, child, payloads)
    if refusal is not None:
        _failed(sa, config, refusal, None)
        return
    child.spi_out = struct.unpack("!I", chosen.spi)[0]
    transport = any(
        isinstance(p, NotifyPayload) and p.notify_type == NotifyType.USE_TRANSPORT_MODE
        for p in payloads
    )
    child.mode = Mode.TRANSPORT if transport and config.mode is Mode.TRANSPORT else Mode.TUNNEL
    suite = NegotiatedSuite.from_proposal(chosen)
    establish(sa, child, suite, narrowed_i, narrowed_r, KeyInput(sa.nonce_i, sa.nonce_r), now)


# --- responder
def respond(
    sa: IkeSa, payloads: Sequence[Payload], reqid_source: ReqidSource, now: float
) -> list[Payload]:
    """Pick a child config for the initiator's SA/TS; the child part of our response."""
    sa_payload = find_payload(payloads, SaPayload)
    tsi = find_payload(payloads, TsiPayload)
    tsr = find_payload(payloads, TsrPayload)
    if sa_payload is None or tsi is None or tsr is None:
        return []  # RFC 6023 childless, or nothing asked
    wants_transport = any(
        isinstance(p, NotifyPayload) and p.notify_type == NotifyType.USE_TRANSPORT_MODE
        for p in payloads
    )
    refusal: ProtocolError = NoProposalChosen("no child config accepts the proposals")
    offered = _strip_ke(sa_payload.proposals)
    for config in sa.conn.children:
        protocol = config.proposals[0].protocol
        chosen = select_proposal(
            offered, _without_ke(tuple(config.proposals)), protocol, crypto_supports
        )
        if chosen is None or len(chosen.spi) != 4:
            continue
        try:  # RFC 7296 §2.9: narrow the initiator's TSi to our remote side, TSr to our local
            remote = config_payload.remote_ts(sa, config)  # a virtual IP narrows TSi
            narrowed_i = narrow(tsi.selectors, [spec_to_selector(t) for t in remote])
            narrowed_r = narrow(tsr.selectors, [spec_to_selector(t) for t in config.local_ts])
        except TsUnacceptable as exc:
            refusal = exc
            continue
        mode = Mode.TRANSPORT if wants_transport and config.mode is Mode.TRANSPORT else Mode.TUNNEL
        reqid = reqid_source(config, ts_specs(narrowed_r), ts_specs(narrowed_i))
        child = ChildSa(config, reqid, ProtocolId(protocol), new_spi(sa), mode=mode)
        child.spi_out = struct.unpack("!I", chosen.spi)[0]
        child.created_by_request = sa.responses.current  # unconfirmed until a later request
        child.made_by_peer = True
        suite = NegotiatedSuite.from_proposal(chosen)
        keys = KeyInput(sa.nonce_i, sa.nonce_r)
        answer: list[Payload] = []
        if mode is Mode.TRANSPORT:
            answer.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        answer += ipcomp.answer(sa, child, payloads)
        establish(sa, child, suite, narrowed_i, narrowed_r, keys, now, creator_is_us=False)
        ours = with_spi(chosen, child.spi_in)
        return [*answer, SaPayload((ours,)), TsiPayload(narrowed_i), TsrPayload(narrowed_r)]
    sa.log.info("child refused", reason=refusal.reason)
    assert refusal.notify is not None
    return [NotifyPayload(refusal.notify)]


# --- shared
@dataclass(frozen=True, slots=True)
class KeyInput:
    """The nonces of the exchange that created the child, and the PFS shared secret if any."""

    nonce_i: bytes = field(repr=False)
    nonce_r: bytes = field(repr=False)
    shared_secret: bytes | None = field(default=None, repr=False)
    additional: tuple[bytes, ...] = field(default=(), repr=False)  # RFC 9370 SK(1)..SK(n)


def establish(
    sa: IkeSa,
    child: ChildSa,
    suite: NegotiatedSuite,
    tsi: Sequence[TrafficSelector],
    tsr: Sequence[TrafficSelector],
    key_input: KeyInput,
    now: float,
    *,
    creator_is_us: bool = True,
) -> None:
    """RFC 7296 §2.17: KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr); emit the kernel's view and
    arm the child's lifetimes (§2.8: soft rekey with jitter, hard expiry)."""
    assert sa.keys is not None
    encr = encr_suite(suite.encr, suite.encr_key_bits) if suite.encr is not None else None
    integ = integ_suite(suite.integ) if suite.integ else None
    keys = derive_child_keys(
        sa.prf_id,
        sa.keys.sk_d,
        encr,
        integ,
        key_input.nonce_i,
        key_input.nonce_r,
        key_input.shared_secret,
        key_input.additional,
    )
    # "i" keys protect traffic from the initiator of the exchange to its responder
    out_enc, out_auth, in_enc, in_auth = (
        (keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r)
        if creator_is_us
        else (keys.encr_r, keys.integ_r, keys.encr_i, keys.integ_i)
    )
    local_sel, remote_sel = (
        (tsi, tsr) if creator_is_us else (tsr, tsi)
    )  # TSi: the exchange initiator

    def direction(src_is_local: bool, spi: int, enc_key: bytes, auth_key: bytes) -> SaDirection:
        local, remote = sa.local[0], sa.remote[0]
        return SaDirection(
            src=local if src_is_local else remote,
            dst=remote if src_is_local else local,
            spi=spi,
            enc_alg=encr.xfrm_name if encr else None,
            enc_key=enc_key,
            icv_bits=(encr.xfrm_icv_bits or 0) if encr else 0,
            auth_alg=integ.xfrm_name if integ else None,
            auth_key=auth_key,
            auth_trunc_bits=integ.xfrm_trunc_bits if integ else 0,
        )

    nat = sa.nat_local or sa.nat_remote
    event = ChildSaEstablished(
        ike_sa_id=sa.home().id,
        connection=sa.conn.name,
        child=child.config.name,
        reqid=child.reqid,
        protocol=child.protocol,
        mode=child.mode,
        inbound=direction(False, child.spi_in, in_enc, in_auth),
        outbound=direction(True, child.spi_out, out_enc, out_auth),
        local_ts=ts_specs(local_sel),
        remote_ts=ts_specs(remote_sel),
        encap=(sa.local[1], sa.remote[1]) if nat or sa.tcp else None,  # RFC 9329 §6.5
        encap_tcp=sa.tcp is not None,
        xfrm_ids=child.config.xfrm_ids,
        cpi_in=child.cpi_in if child.cpi_out else 0,
        cpi_out=child.cpi_out if child.cpi_in else 0,
        esn=suite.esn,
        replay_window=child.config.replay_window,
        rekey_time=child.config.rekey_time,
        life_time=child.config.life_time,
        life_bytes=child.config.life_bytes,
        life_packets=child.config.life_packets,
        suite=describe_suite(suite),
    )
    child.event = event
    config = child.config
    child.rekey_at = (
        now + config.rekey_time - sa.jitter(config.rekey_time) if config.rekey_time > 0 else None
    )
    child.expire_at = now + config.life_time if config.life_time > 0 else None
    sa.home().children.append(child)  # a rekey of the IKE SA may have moved the children
    sa.log.info(
        "child SA established",
        child=child.config.name,
        spi_in=f"{child.spi_in:08x}",
        spi_out=f"{child.spi_out:08x}",
        mode=child.mode.value,
        suite=event.suite,
        **(
            {"cpi_in": f"{event.cpi_in:04x}", "cpi_out": f"{event.cpi_out:04x}"}
            if event.cpi_in
            else {}
        ),
    )
    sa.emit(event)


def ts_specs(selectors: Sequence[TrafficSelector]) -> tuple[TrafficSelectorSpec, ...]:
    return _specs_of(tuple(selectors))


@functools.lru_cache(maxsize=1024)
def _specs_of(selectors: tuple[TrafficSelector, ...]) -> tuple[TrafficSelectorSpec, ...]:
    """Selectors as the kernel's prefix-based policies see them (a range may be several CIDRs);
    cached, as the same few selectors recur for every SA of a connection."""
    return tuple(
        TrafficSelectorSpec(net, ts.ip_protocol, ts.start_port, ts.end_port)
        for ts in selectors
        for net in selector_to_networks(ts)
    )


def _failed(sa: IkeSa, config: ChildConfig, reason: str, notify: int | None) -> None:
    try:
        typed = NotifyType(notify) if notify is not None else None
    except ValueError:
        typed = None
    sa.log.warning("child SA failed", child=config.name, reason=reason)
    sa.emit(ChildSaFailed(sa.id, sa.conn.name, config.name, reason, typed))
