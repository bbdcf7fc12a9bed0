"""IKE_INTERMEDIATE (RFC 9242) with RFC 9370 additional key exchanges, two engines back to back.

IKE_SA_INIT  { SA(KE, ADDKE1..), KEi, Ni, N(INTERMEDIATE_EXCHANGE_SUPPORTED) } -->
IKE_INTERMEDIATE (MID n) { KEi(n) } -->  <-- { KEr(n) }      n = 1..N, keys updated after each
IKE_AUTH (MID N+1) { ..., AUTH over ... | IntAuth_iN | IntAuth_rN | N+1 } -->
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ikev2.constants import ExchangeType, KeId, NotifyType, PayloadType, ProtocolId
from ikev2.engine.events import ChildSaEstablished, Datagram, IkeSaEstablished, IkeSaFailed
from ikev2.engine.state import IkeState
from ikev2.engine.tasks import ike_init, intermediate
from ikev2.wire import KePayload, Payload, decode_message

from .pairing import Pair, Side, psk_connections, settle
from .test_kem_paths import unscheduled

HYBRID = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
TWO_ADDKE = "aes256-sha256-ecp256-ke1_mlkem768-ke2_mlkem1024"
CLASSIC = "aes256gcm16-prfsha256-x25519"


class Tap:
    """Every datagram each side sends, decoded: (sender is initiator, message)."""

    def __init__(self, pair: Pair) -> None:
        self.sent: list[tuple[bool, Datagram]] = []
        self.pair = pair
        previous = pair.tamper

        def record(side: Side, datagram: Datagram) -> Datagram | None:
            self.sent.append((side is pair.i, datagram))
            return previous(side, datagram) if previous else datagram

        pair.tamper = record

    def headers(self, from_initiator: bool, exchange: int) -> list:  # type: ignore[type-arg]
        out = []
        for by_i, datagram in self.sent:
            message = decode_message(datagram.data)
            if by_i == from_initiator and message.header.exchange == exchange:
                out.append(message)
        return out


def established(pair: Pair) -> tuple[IkeSaEstablished, IkeSaEstablished]:
    (ei,) = pair.i.of(IkeSaEstablished)
    (er,) = pair.r.of(IkeSaEstablished)
    (sa_i,) = pair.i.engine.sas.values()
    (sa_r,) = pair.r.engine.sas.values()
    assert sa_i.state is sa_r.state is IkeState.ESTABLISHED
    assert sa_i.keys is not None and sa_i.keys == sa_r.keys  # every SK_* agrees
    assert sa_i.intermediate is None and sa_r.intermediate is None  # dropped once established
    (ci,) = pair.i.of(ChildSaEstablished)
    (cr,) = pair.r.of(ChildSaEstablished)
    assert ci.outbound.enc_key == cr.inbound.enc_key and ci.inbound.enc_key == cr.outbound.enc_key
    return ei, er


def no_state_left(pair: Pair) -> None:
    settle(pair)
    for side in (pair.i, pair.r):
        assert unscheduled(side.engine) == []
        timer = side.engine.get_timer()
        while timer is not None:  # whatever is left runs out on its own deadline
            pair.now = max(pair.now, timer)
            side.events += side.engine.handle_timer(pair.now)
            timer = side.engine.get_timer()
        assert side.engine.sas == {}


@pytest.mark.parametrize(
    ("ike", "methods", "suite_tail"),
    [
        (HYBRID, (KeId.ML_KEM_768,), "CURVE25519/KE1_ML_KEM_768"),
        (TWO_ADDKE, (KeId.ML_KEM_768, KeId.ML_KEM_1024), "ECP256/KE1_ML_KEM_768/KE2_ML_KEM_1024"),
    ],
    ids=["x25519+mlkem768", "ecp256+mlkem768+mlkem1024"],
)
def test_additional_key_exchanges_back_to_back(
    ike: str, methods: tuple[int, ...], suite_tail: str
) -> None:
    pair = Pair(*psk_connections(ike))
    tap = Tap(pair)
    pair.initiate()
    keys_after_init = None
    for _ in range(200):  # to the IKE_SA_INIT response: the keys of IKE_SA_INIT alone
        pair.step()
        (sa_i,) = pair.i.engine.sas.values()
        if sa_i.keys is not None:
            keys_after_init = sa_i.keys
            break
    pair.run(until=5)
    ei, er = established(pair)
    assert ei.suite.endswith(suite_tail) and er.suite == ei.suite
    (sa_i,) = pair.i.engine.sas.values()
    assert keys_after_init is not None and sa_i.keys != keys_after_init  # §2.2.2 updates
    # RFC 9242 §3.2: the intermediate exchanges take message IDs 1..N, IKE_AUTH N+1
    requests = tap.headers(True, ExchangeType.IKE_INTERMEDIATE)
    assert sorted({m.header.message_id for m in requests}) == list(range(1, len(methods) + 1))
    (auth,) = {m.header.message_id for m in tap.headers(True, ExchangeType.IKE_AUTH)}
    assert auth == len(methods) + 1
    (init_request,) = tap.headers(True, ExchangeType.IKE_SA_INIT)
    (init_response,) = tap.headers(False, ExchangeType.IKE_SA_INIT)
    for message in (init_request, init_response):
        assert message.notify(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is not None
    responses = tap.headers(False, ExchangeType.IKE_INTERMEDIATE)
    assert {m.header.message_id for m in responses} == {m.header.message_id for m in requests}


@pytest.mark.parametrize("seed", range(8))
def test_loss_duplication_and_reordering(seed: int) -> None:
    """Every message (fragments of the intermediate ones included) may be lost, duplicated or
    reordered. The half-open limit is raised so that the retransmissions of three round trips
    before IKE_AUTH fit in it (with 30 s a run of losses can end the responder's SA: correct,
    but not what this test is about)."""
    conn_i, conn_r = psk_connections(TWO_ADDKE)
    timers = replace(conn_r.timers, half_open_timeout=600.0, retransmit_tries=8)
    pair = Pair(
        replace(conn_i, timers=timers),
        replace(conn_r, timers=timers),
        seed=seed + 10,
        loss=0.2,
        duplicate=0.25,
        reorder=0.3,
    )
    pair.initiate()
    pair.run(until=600)
    settle(pair)
    established(pair)


def _intermediate_of(datagram: Datagram) -> bool:
    return decode_message(datagram.data).header.exchange == ExchangeType.IKE_INTERMEDIATE


@pytest.mark.parametrize("lose", ["requests", "responses"])
def test_lost_intermediate_messages_are_retransmitted_and_replayed(lose: str) -> None:
    """The first copy of every IKE_INTERMEDIATE request (or response) is lost; duplicates of
    the others arrive: the initiator retransmits, the responder answers from its cache and
    never runs a key exchange twice."""
    pair = Pair(*psk_connections(TWO_ADDKE))
    seen: set[bytes] = set()
    lost: set[int] = set()

    def tamper(side: Side, datagram: Datagram) -> Datagram | None:
        by_i = side is pair.i
        mine = _intermediate_of(datagram) and by_i == (lose == "requests")
        if mine and datagram.data not in seen:
            seen.add(datagram.data)
            lost.add(decode_message(datagram.data).header.message_id)
            return None
        return datagram

    pair.tamper = tamper
    pair.initiate()
    pair.run(until=60)
    established(pair)
    assert lost == {1, 2}  # the first copy of each exchange's message went missing


def test_duplicated_and_reordered_intermediate_messages() -> None:
    """Every IKE_INTERMEDIATE datagram twice, fragmented, fragments in reverse order."""
    conn_i, conn_r = psk_connections(TWO_ADDKE)
    pair = Pair(replace(conn_i, fragment_size=500), replace(conn_r, fragment_size=500))
    pair.initiate()
    pair.run(until=0.5)  # nothing else is queued: step by hand, reversing each burst
    for _ in range(50):
        for side, other in ((pair.i, pair.r), (pair.r, pair.i)):
            burst = side.engine.datagrams_to_send()
            burst = list(reversed(burst)) + burst if any(map(_intermediate_of, burst)) else burst
            pair.in_flight += [(other, d) for d in burst]
        if not pair.in_flight:
            break
        while pair.in_flight:
            target, d = pair.in_flight.pop(0)
            target.events += target.engine.receive_datagram(d.data, d.local, d.remote, pair.now)
    established(pair)


@pytest.mark.parametrize(
    ("size_i", "size_r"), [(500, 500), (500, 0), (0, 400)], ids=["both", "initiator", "responder"]
)
def test_fragmented_intermediate_messages(size_i: int, size_r: int) -> None:
    """RFC 7383 for IKE_INTERMEDIATE: ML-KEM shares exceed the MTU. IntAuth covers the message
    as if unfragmented, so the AUTH payloads verify whoever fragments (RFC 9242 §3.3.2)."""
    conn_i, conn_r = psk_connections(TWO_ADDKE)
    pair = Pair(replace(conn_i, fragment_size=size_i), replace(conn_r, fragment_size=size_r))
    tap = Tap(pair)
    pair.initiate()
    pair.run(until=5)
    established(pair)
    for by_i, size in ((True, size_i), (False, size_r)):
        messages = tap.headers(by_i, ExchangeType.IKE_INTERMEDIATE)
        fragments = [m for m in messages if m.payloads[-1].payload_type == PayloadType.SKF]
        sizes = [len(d.data) for s, d in tap.sent if s == by_i and _intermediate_of(d)]
        assert max(sizes) <= (size or 1252)  # the default: 1280 - IPv4 - UDP (RFC 7383 §2.5.1)
        if size:  # 1.1-1.6 KB shares in 500 (or 400) octets: three to five fragments each
            assert len(fragments) == len(messages) >= 6


def test_a_classic_responder_gets_the_classic_proposal_chosen() -> None:
    pair = Pair(*psk_connections(f"{HYBRID},{CLASSIC}", ike_r=CLASSIC))
    tap = Tap(pair)
    pair.initiate()
    pair.run(until=5)
    ei, _er = established(pair)
    assert ei.suite == "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE25519"
    assert tap.headers(True, ExchangeType.IKE_INTERMEDIATE) == []


def test_a_peer_without_rfc_9370_falls_back_to_the_classic_proposal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A responder of RFC 7296 alone (strongSwan 5.9): it knows neither IKE_INTERMEDIATE nor
    the ADDKE transform types, so it rejects the hybrid proposal whole (RFC 7296 §3.3.6) and
    takes the classic one we offer second."""
    from ikev2.engine import proposals

    ike_types = proposals.ALLOWED_TYPES[ProtocolId.IKE] - set(proposals.ADDKE_TYPES)
    monkeypatch.setitem(proposals.ALLOWED_TYPES, ProtocolId.IKE, ike_types)
    monkeypatch.setattr(ike_init, "_announces_intermediate", lambda message: False)
    proposals._choose.cache_clear()
    pair = Pair(*psk_connections(f"{HYBRID},{CLASSIC}"))
    tap = Tap(pair)
    pair.initiate()
    pair.run(until=5)
    proposals._choose.cache_clear()
    ei, er = established(pair)
    assert ei.suite == er.suite == "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE25519"
    assert tap.headers(True, ExchangeType.IKE_INTERMEDIATE) == []
    (response,) = tap.headers(False, ExchangeType.IKE_SA_INIT)
    assert response.notify(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED) is None


def test_an_initiator_not_announcing_intermediate_gets_the_classic_proposal() -> None:
    """RFC 9370 §2.2.1: without N(INTERMEDIATE_EXCHANGE_SUPPORTED) from the initiator the
    responder must not choose additional key exchanges."""
    pair = Pair(*psk_connections(f"{HYBRID},{CLASSIC}"))
    real = intermediate.wanted
    try:
        intermediate.wanted = lambda conn: False  # type: ignore[assignment]
        pair.initiate()
    finally:
        intermediate.wanted = real  # type: ignore[assignment]
    pair.run(until=5)
    ei, _er = established(pair)
    assert ei.suite == "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE25519"


def test_hybrid_only_against_classic_only_fails_cleanly() -> None:
    pair = Pair(*psk_connections(HYBRID, ike_r=CLASSIC))
    pair.initiate()
    pair.run(until=5)
    (failed,) = pair.i.of(IkeSaFailed)
    assert failed.notify is NotifyType.NO_PROPOSAL_CHOSEN
    no_state_left(pair)


def _patch_request(monkeypatch: pytest.MonkeyPatch, change: object) -> None:
    """The initiator's IKE_INTERMEDIATE payloads, changed by `change(payloads)` on the way."""
    original = intermediate.AdditionalKeExchange.build_i

    def build_i(self, sa, now):  # type: ignore[no-untyped-def]
        payloads = original(self, sa, now)
        return None if payloads is None else change(payloads)  # type: ignore[operator]

    monkeypatch.setattr(intermediate.AdditionalKeExchange, "build_i", build_i)


@pytest.mark.parametrize(
    ("change", "notify"),
    [
        (lambda p: [], NotifyType.INVALID_SYNTAX),
        (
            lambda p: [KePayload(KeId.CURVE25519, bytes(range(1, 33)))],
            NotifyType.NO_PROPOSAL_CHOSEN,
        ),
        (lambda p: [KePayload(KeId.ML_KEM_768, b"\xff" * 1184)], NotifyType.NO_PROPOSAL_CHOSEN),
        (lambda p: [*p, *p], NotifyType.INVALID_SYNTAX),  # two KE payloads: the rules table
    ],
    ids=["missing", "other-method", "bad-share", "two-ke"],
)
def test_a_bad_intermediate_request_is_refused_and_leaves_no_sa(
    monkeypatch: pytest.MonkeyPatch, change: object, notify: NotifyType
) -> None:
    _patch_request(monkeypatch, change)
    pair = Pair(*psk_connections(HYBRID))
    pair.initiate()
    pair.run(until=5)
    (failed_i,) = pair.i.of(IkeSaFailed)
    (failed_r,) = pair.r.of(IkeSaFailed)
    assert failed_i.notify is notify and failed_r.notify is notify
    assert not pair.i.of(IkeSaEstablished) and not pair.r.of(IkeSaEstablished)
    no_state_left(pair)


@pytest.mark.parametrize(
    "answer",
    [
        lambda p: [],
        lambda p: [KePayload(KeId.ML_KEM_1024, bytes(1568))],
        lambda p: [KePayload(KeId.ML_KEM_768, bytes(1088))],  # decapsulates to the wrong key
    ],
    ids=["missing", "other-method", "wrong-ciphertext"],
)
def test_a_bad_intermediate_response_ends_the_initiator(
    monkeypatch: pytest.MonkeyPatch, answer: object
) -> None:
    original = intermediate._answer

    def bad(sa, state, ke):  # type: ignore[no-untyped-def]
        return answer(original(sa, state, ke))  # type: ignore[operator]

    monkeypatch.setattr(intermediate, "_answer", bad)
    pair = Pair(*psk_connections(HYBRID))
    pair.initiate()
    pair.run(until=5)
    no_state_left(pair)  # the responder's half-open SA expires on its deadline
    assert len(pair.i.of(IkeSaFailed)) == 1  # at once, or (wrong keys) when IKE_AUTH times out
    assert not pair.i.of(IkeSaEstablished) and not pair.r.of(IkeSaEstablished)


def test_ike_auth_before_the_additional_key_exchanges_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(intermediate, "start", lambda sa, methods: None)
    pair = Pair(*psk_connections(HYBRID))
    pair.initiate()
    pair.run(until=5)
    (failed_r,) = pair.r.of(IkeSaFailed)
    assert failed_r.notify is NotifyType.INVALID_SYNTAX
    assert not pair.i.of(IkeSaEstablished)
    no_state_left(pair)


def test_a_responder_choosing_addke_without_announcing_intermediate_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = ike_init.build_r

    def build_r(sa):  # type: ignore[no-untyped-def]
        sa.intermediate = None  # as a responder that forgot N(INTERMEDIATE_EXCHANGE_SUPPORTED)
        return real(sa)

    monkeypatch.setattr(ike_init, "build_r", build_r)
    pair = Pair(*psk_connections(HYBRID))
    pair.initiate()
    pair.run(until=5)
    (failed,) = pair.i.of(IkeSaFailed)
    assert "without IKE_INTERMEDIATE" in failed.reason
    no_state_left(pair)


def test_an_unannounced_intermediate_request_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A classic IKE SA (no N(INTERMEDIATE_EXCHANGE_SUPPORTED)) gets INVALID_SYNTAX for an
    IKE_INTERMEDIATE and ends, rather than running a key exchange nobody negotiated."""
    real = ike_init.process_i

    def process_i(sa, raw, message, now):  # type: ignore[no-untyped-def]
        keyed = real(sa, raw, message, now)
        if keyed:  # as an initiator that runs an additional key exchange on its own
            intermediate.start(sa, (KeId.ML_KEM_768,))
        return keyed

    monkeypatch.setattr(ike_init, "process_i", process_i)
    pair = Pair(*psk_connections(CLASSIC))
    pair.initiate()
    pair.run(until=5)
    (failed_i,) = pair.i.of(IkeSaFailed)
    (failed_r,) = pair.r.of(IkeSaFailed)
    assert failed_i.notify is failed_r.notify is NotifyType.INVALID_SYNTAX
    assert "not negotiated" in failed_r.reason
    no_state_left(pair)


def test_intermediate_payload_list_is_what_the_rules_allow() -> None:
    """The request we build carries exactly one KE and nothing else."""
    pair = Pair(*psk_connections(HYBRID))
    built: list[list[Payload]] = []
    original = intermediate.AdditionalKeExchange.build_i

    def spy(self, sa, now):  # type: ignore[no-untyped-def]
        payloads = original(self, sa, now)
        built.append(payloads)
        return payloads

    intermediate.AdditionalKeExchange.build_i = spy  # type: ignore[method-assign]
    try:
        pair.initiate()
        pair.run(until=5)
    finally:
        intermediate.AdditionalKeExchange.build_i = original  # type: ignore[method-assign]
    ((ke,),) = built
    assert isinstance(ke, KePayload) and ke.group == KeId.ML_KEM_768 and len(ke.data) == 1184
    established(pair)


def test_int_auth_is_rfc_9242s_computation_over_the_request() -> None:
    """IntAuth_i1 = prf(SK_pi, A | P), built here from the RFC's text with struct and hmac:
    A is the IKE header (Next Payload SK, Length as if unencrypted) and the Encrypted payload
    header (Next Payload of the first inner payload, Length 4 + |P|); P the inner payloads;
    SK_pi those of IKE_SA_INIT, which protect the first IKE_INTERMEDIATE."""
    import hashlib
    import hmac
    import struct

    pair = Pair(*psk_connections(HYBRID))
    pair.initiate()
    (sa_i,) = pair.i.engine.sas.values()
    for _ in range(50):
        pair.step()
        if sa_i.intermediate is not None and sa_i.intermediate.int_auth_i:
            break
    state, keys, exchange = sa_i.intermediate, sa_i.keys, sa_i.pending
    assert state is not None and keys is not None
    assert isinstance(exchange, intermediate.AdditionalKeExchange) and exchange.ke is not None
    share = exchange.ke.public_bytes
    inner = struct.pack("!BBHHH", 0, 0, 8 + len(share), KeId.ML_KEM_768, 0) + share
    total = 28 + 4 + len(inner)
    ike_header = sa_i.spi_i + sa_i.spi_r + struct.pack("!BBBBII", 46, 0x20, 43, 0x08, 1, total)
    sk_header = struct.pack("!BBH", 34, 0, 4 + len(inner))  # 34: KE
    expected = hmac.new(keys.sk_pi, ike_header + sk_header + inner, hashlib.sha256).digest()
    assert state.int_auth_i == expected
    pair.run(until=5)
    established(pair)


@pytest.mark.parametrize("auth", ["ecdsa-certificates", "eap-mschapv2"])
def test_signatures_and_eap_cover_the_intermediate_exchanges(auth: str) -> None:
    """IntAuth ends the signed octets of every AUTH method: certificates (RFC 7427) and the
    MSK-keyed AUTH after EAP (RFC 7296 §2.16), where IKE_AUTH_MID is the first IKE_AUTH's."""
    from .pairing import cert_connections
    from .test_eap_auth import eap_connections

    conn_i, conn_r = cert_connections("ecdsa") if auth.startswith("ecdsa") else eap_connections()
    proposals = psk_connections(HYBRID)[0].ike_proposals
    pair = Pair(replace(conn_i, ike_proposals=proposals), replace(conn_r, ike_proposals=proposals))
    tap = Tap(pair)
    pair.initiate()
    pair.run(until=5)
    ei, _er = established(pair)
    assert ei.suite.endswith("KE1_ML_KEM_768")
    auth_ids = sorted({m.header.message_id for m in tap.headers(True, ExchangeType.IKE_AUTH)})
    assert auth_ids[0] == 2 and auth_ids == list(range(2, 2 + len(auth_ids)))


def _defaults(ike_r: str = "default") -> Pair:
    conn_i, conn_r = psk_connections("default", ike_r=ike_r)
    return Pair(conn_i, conn_r)


def test_the_default_proposals_negotiate_the_hybrid() -> None:
    from ikev2.engine.proposal_strings import DEFAULT_PROPOSALS

    assert "-x25519-ke1_mlkem768" in DEFAULT_PROPOSALS[ProtocolId.IKE][0]
    pair = _defaults()
    pair.initiate()
    pair.run(until=5)
    ei, er = established(pair)
    assert ei.suite == er.suite == "AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE25519/KE1_ML_KEM_768"


@pytest.mark.parametrize("classic_side", ["responder", "initiator"])
def test_the_defaults_meet_a_classic_configuration(classic_side: str) -> None:
    conn_i, conn_r = psk_connections("default", ike_r=CLASSIC)
    if classic_side == "initiator":
        conn_i, conn_r = psk_connections(CLASSIC, ike_r="default")
    pair = Pair(conn_i, conn_r)
    pair.initiate()
    pair.run(until=5)
    ei, er = established(pair)
    assert ei.suite == er.suite == "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE25519"


def test_the_defaults_fall_back_against_a_peer_without_rfc_9370(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our defaults as initiator, a responder of RFC 7296 alone with strongSwan 5.9.8's
    defaults-like classic policy: it skips the hybrid (unknown transform types) for a classic
    proposal of ours."""
    from ikev2.engine import proposals

    ike_types = proposals.ALLOWED_TYPES[ProtocolId.IKE] - set(proposals.ADDKE_TYPES)
    monkeypatch.setitem(proposals.ALLOWED_TYPES, ProtocolId.IKE, ike_types)
    monkeypatch.setattr(ike_init, "_announces_intermediate", lambda message: False)
    proposals._choose.cache_clear()
    pair = _defaults(ike_r="aes128-sha256-x25519,aes256gcm16-prfsha384-ecp384")
    pair.initiate()
    pair.run(until=5)
    proposals._choose.cache_clear()
    ei, er = established(pair)
    assert ei.suite == er.suite == "AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE25519"
