"""Post-quantum preshared keys (RFC 8784), two engines back to back, every case of §3.

IKE_SA_INIT { ..., N(USE_PPK) } -->                      <-- { ..., N(USE_PPK) }
IKE_AUTH { IDi, AUTH(SK_pi), N(PPK_IDENTITY), [N(NO_PPK_AUTH(SK_pi'))], ... } -->
                                       <-- { IDr, AUTH(SK_pr), N(PPK_IDENTITY), ... }

Policies per side: "required" (ppk_required), "optional" (a PPK, not required), "none" (no PPK
configured at all).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import structlog

from ikev2.constants import ExchangeType, NotifyType
from ikev2.crypto.keymat import IkeKeys
from ikev2.crypto.ppk import mix_ppk
from ikev2.engine.config import ConnectionConfig
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished, IkeSaFailed
from ikev2.engine.state import IkeState
from ikev2.engine.tasks import ike_auth, ppk
from ikev2.engine.views import ike_sa_view
from ikev2.wire import NotifyPayload, Payload, decode_message

from .pairing import Pair, Side, psk_connections, settle

PPK_ID = b"ppk-moon"
PPK = bytes.fromhex("5f7a" * 16)  # 32 bytes
OTHER_PPK = bytes.fromhex("a5c3" * 16)
HYBRID = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"


def policy(conn: ConnectionConfig, kind: str, **kw: Any) -> ConnectionConfig:
    """A connection with PPK policy `kind`: required, optional or none."""
    if kind == "none":
        return conn
    ppk_id = kw.get("ppk_id", PPK_ID)
    ppks = kw.get("ppks", ((PPK_ID, PPK),))
    return replace(conn, ppk_id=ppk_id, ppk_required=kind == "required", ppks=ppks)


class Spy:
    """The decrypted IKE_AUTH request the responder got and its answer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.request: tuple[Payload, ...] = ()
        self.answer: list[Payload] = []
        real = ike_auth.respond

        def respond(sa: Any, payloads: tuple[Payload, ...], *args: Any) -> list[Payload]:
            self.request = payloads
            self.answer = real(sa, payloads, *args)
            return self.answer

        monkeypatch.setattr(ike_auth, "respond", respond)

    def notifies(self, which: str) -> dict[int, bytes]:
        payloads = self.request if which == "request" else self.answer
        return {p.notify_type: p.data for p in payloads if isinstance(p, NotifyPayload)}


def init_notifies(pair: Pair, tap: list[tuple[bool, bytes]], from_i: bool) -> set[int]:
    out: set[int] = set()
    for by_i, data in tap:
        message = decode_message(data)
        if by_i == from_i and message.header.exchange == ExchangeType.IKE_SA_INIT:
            out |= {n.notify_type for n in message.notifies}
    return out


def run(
    conn_i: ConnectionConfig, conn_r: ConnectionConfig, *, ike: str | None = None
) -> tuple[Pair, list[tuple[bool, bytes]]]:
    if ike is not None:
        conn_i, conn_r = replace_ike(conn_i, conn_r, ike)
    pair = Pair(conn_i, conn_r)
    tap: list[tuple[bool, bytes]] = []

    def record(side: Side, datagram: Any) -> Any:
        tap.append((side is pair.i, datagram.data))
        return datagram

    pair.tamper = record
    pair.initiate()
    settle(pair)
    return pair, tap


def replace_ike(
    conn_i: ConnectionConfig, conn_r: ConnectionConfig, ike: str
) -> tuple[ConnectionConfig, ConnectionConfig]:
    base_i, base_r = psk_connections(ike=ike)
    return (replace(conn_i, ike_proposals=base_i.ike_proposals),
            replace(conn_r, ike_proposals=base_r.ike_proposals))  # fmt: skip


def outcome(pair: Pair) -> str:
    """ "ppk", "no-ppk" (established both sides, with or without the PPK) or "failed"."""
    if pair.i.of(IkeSaFailed) or pair.r.of(IkeSaFailed):
        assert not pair.i.of(ChildSaEstablished) or not pair.r.of(ChildSaEstablished)
        return "failed"
    (sa_i,) = pair.i.engine.sas.values()
    (sa_r,) = pair.r.engine.sas.values()
    assert sa_i.state is sa_r.state is IkeState.ESTABLISHED
    assert sa_i.keys == sa_r.keys  # every SK_*, SK_d included
    (ci,) = pair.i.of(ChildSaEstablished)
    (cr,) = pair.r.of(ChildSaEstablished)
    assert ci.outbound.enc_key == cr.inbound.enc_key and ci.inbound.enc_key == cr.outbound.enc_key
    used = {ike_sa_view(sa_i).ppk, ike_sa_view(sa_r).ppk}
    assert len(used) == 1, "one side thinks the PPK is in the keys, the other not"
    return "ppk" if used == {True} else "no-ppk"


# RFC 8784 §3: initiator policy x responder policy (both have the same PPK when they have one)
CASES = [
    ("required", "required", "ppk"),
    ("required", "optional", "ppk"),
    ("required", "none", "failed"),  # no USE_PPK back: the initiator aborts
    ("optional", "required", "ppk"),
    ("optional", "optional", "ppk"),
    ("optional", "none", "no-ppk"),  # no USE_PPK back: plain IKEv2
    ("none", "required", "failed"),  # AUTHENTICATION_FAILED in IKE_AUTH
    ("none", "optional", "no-ppk"),
    ("none", "none", "no-ppk"),
]


@pytest.mark.parametrize(("init", "resp", "expected"), CASES)
def test_policy_matrix(
    init: str, resp: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(monkeypatch)
    conn_i, conn_r = psk_connections()
    pair, tap = run(policy(conn_i, init), policy(conn_r, resp))
    assert outcome(pair) == expected
    # USE_PPK in IKE_SA_INIT from whoever has a PPK (§3)
    assert (NotifyType.USE_PPK in init_notifies(pair, tap, True)) == (init != "none")
    answered = NotifyType.USE_PPK in init_notifies(pair, tap, False)
    assert answered == (resp != "none" and init != "none")
    if init == "required" and resp == "none":
        (failed,) = pair.i.of(IkeSaFailed)
        assert "USE_PPK" in failed.reason
        assert not spy.request  # aborted before IKE_AUTH
        return
    if init == "none" and resp == "required":
        (failed,) = pair.r.of(IkeSaFailed)
        assert failed.notify is NotifyType.AUTHENTICATION_FAILED
        (seen,) = pair.i.of(IkeSaFailed)
        assert seen.notify is NotifyType.AUTHENTICATION_FAILED
        return
    sent = spy.notifies("request")
    if expected == "ppk":
        assert sent[NotifyType.PPK_IDENTITY] == bytes([ppk.PPK_ID_FIXED]) + PPK_ID
        # NO_PPK_AUTH only from an initiator whose PPK is optional (§3)
        assert (NotifyType.NO_PPK_AUTH in sent) == (init == "optional")
        assert spy.notifies("answer")[NotifyType.PPK_IDENTITY] == b""
    else:
        assert NotifyType.PPK_IDENTITY not in sent and NotifyType.NO_PPK_AUTH not in sent
        assert NotifyType.PPK_IDENTITY not in spy.notifies("answer")


def plain_keys(conn_i: ConnectionConfig, conn_r: ConnectionConfig) -> tuple[IkeKeys, bytes]:
    """The IKE keys and the initiator's outbound child key of the same run without PPKs."""
    pair, _ = run(conn_i, conn_r)
    (sa,) = pair.i.engine.sas.values()
    (child,) = pair.i.of(ChildSaEstablished)
    assert sa.keys is not None
    return sa.keys, child.outbound.enc_key


@pytest.mark.parametrize("ike", ["aes256gcm16-prfsha256-x25519", HYBRID])
def test_keys_are_the_rfc_8784_mix_of_the_plain_ones(
    ike: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SK_e/SK_a stay, SK_d/SK_pi/SK_pr = prf+(PPK, SK_x'), with SK_x' the keys after every
    IKE_INTERMEDIATE key update (hybrid); the child is keyed from the new SK_d. Classic: the
    same seeds without PPKs give exactly SK_x' (ML-KEM draws OpenSSL's randomness, so the hybrid
    compares both sides' SK_x' instead)."""
    mixed: list[IkeKeys] = []

    def recording_mix(prf_id: int, key: bytes, keys: IkeKeys) -> IkeKeys:
        mixed.append(keys)
        return mix_ppk(prf_id, key, keys)

    conn_i, conn_r = replace_ike(*psk_connections(), ike)
    plain, plain_child = plain_keys(conn_i, conn_r)
    monkeypatch.setattr(ppk, "mix_ppk", recording_mix)
    pair, _ = run(policy(conn_i, "optional"), policy(conn_r, "optional"))
    assert outcome(pair) == "ppk"
    (sa,) = pair.i.engine.sas.values()
    primed_i, primed_r = mixed  # once per side, the responder after the initiator
    assert primed_i == primed_r and sa.keys == mix_ppk(sa.prf_id, PPK, primed_i)
    assert sa.keys.sk_ei == primed_i.sk_ei and sa.keys.sk_d != primed_i.sk_d
    (child,) = pair.i.of(ChildSaEstablished)
    if ike != HYBRID:
        assert primed_i == plain
        assert child.outbound.enc_key != plain_child


def test_unknown_ppk_id_optional_falls_back_to_no_ppk_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The responder has no PPK for the PPK_ID: it verifies NO_PPK_AUTH and both go on with the
    plain keys; no PPK_IDENTITY in its answer (§3)."""
    spy = Spy(monkeypatch)
    conn_i, conn_r = psk_connections()
    plain, _ = plain_keys(conn_i, conn_r)
    other = ((b"ppk-other", OTHER_PPK),)
    pair, _ = run(policy(conn_i, "optional"), policy(conn_r, "optional", ppk_id=None, ppks=other))
    assert outcome(pair) == "no-ppk"
    assert NotifyType.NO_PPK_AUTH in spy.notifies("request")
    assert NotifyType.PPK_IDENTITY not in spy.notifies("answer")
    (sa,) = pair.i.engine.sas.values()
    assert sa.keys == plain


@pytest.mark.parametrize(
    ("init", "resp"), [("optional", "required"), ("required", "optional"), ("required", "required")]
)
def test_unknown_ppk_id_fails_when_either_requires(init: str, resp: str) -> None:
    """Responder requiring a PPK it does not have, or an initiator requiring one (no NO_PPK_AUTH
    to fall back to): AUTHENTICATION_FAILED, no IKE SA on either side."""
    conn_i, conn_r = psk_connections()
    other = ((b"ppk-other", OTHER_PPK),)
    pair, _ = run(policy(conn_i, init), policy(conn_r, resp, ppk_id=None, ppks=other))
    assert outcome(pair) == "failed"
    (failed,) = pair.r.of(IkeSaFailed)
    assert failed.notify is NotifyType.AUTHENTICATION_FAILED
    assert "PPK_ID 'ppk-moon'" in failed.reason
    assert not pair.i.of(IkeSaEstablished)


def test_responder_naming_another_ppk_id_treats_ours_as_unknown() -> None:
    """A responder connection with ppk_id accepts only that PPK_ID (as strongSwan): ours falls
    back to NO_PPK_AUTH even though the responder holds our PPK too."""
    conn_i, conn_r = psk_connections()
    both = ((PPK_ID, PPK), (b"ppk-other", OTHER_PPK))
    pair, _ = run(policy(conn_i, "optional"),
                  policy(conn_r, "optional", ppk_id=b"ppk-other", ppks=both))  # fmt: skip
    assert outcome(pair) == "no-ppk"


@pytest.mark.parametrize("init", ["optional", "required"])
def test_same_ppk_id_different_ppk_fails_closed(init: str) -> None:
    """The responder has a PPK for the PPK_ID but not the same one: AUTH does not verify, and a
    PPK it has never falls back to NO_PPK_AUTH (fail closed)."""
    conn_i, conn_r = psk_connections()
    pair, _ = run(policy(conn_i, init), policy(conn_r, "optional", ppks=((PPK_ID, OTHER_PPK),)))
    assert outcome(pair) == "failed"
    (failed,) = pair.r.of(IkeSaFailed)
    assert failed.notify is NotifyType.AUTHENTICATION_FAILED
    assert "PSK AUTH value does not verify" in failed.reason


def _responder_hides_ppk_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ppk, "response_notifies_r", lambda sa: [])


def test_initiator_requiring_a_ppk_fails_when_the_answer_lacks_ppk_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """§3: no PPK_IDENTITY in the IKE_AUTH response, PPK required: the initiator fails and tells
    the responder (RFC 7296 §2.21.2)."""
    _responder_hides_ppk_identity(monkeypatch)
    conn_i, conn_r = psk_connections()
    pair, _ = run(policy(conn_i, "required"), policy(conn_r, "optional"))
    (failed,) = pair.i.of(IkeSaFailed)
    assert failed.notify is NotifyType.AUTHENTICATION_FAILED
    assert "did not use" in failed.reason
    assert pair.i.engine.sas == {}


def test_optional_initiator_goes_back_to_the_plain_keys_without_ppk_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """§3: PPK optional and no PPK_IDENTITY back: the initiator verifies the responder's AUTH
    with SK_pr' (here the responder used the PPK all the same, so that AUTH fails: proof that
    the initiator really switched back)."""
    _responder_hides_ppk_identity(monkeypatch)
    seen: list[bool] = []
    real = ppk.response_i

    def spy(sa: Any, payloads: tuple[Payload, ...]) -> None:
        real(sa, payloads)
        seen.append(ppk.used(sa))

    monkeypatch.setattr(ppk, "response_i", spy)
    conn_i, conn_r = psk_connections()
    pair, _ = run(policy(conn_i, "optional"), policy(conn_r, "optional"))
    assert seen == [False]
    (failed,) = pair.i.of(IkeSaFailed)
    assert failed.notify is NotifyType.AUTHENTICATION_FAILED


@pytest.mark.parametrize("data", [b"", b"\x02", b"\x07ppk-moon", b"\x00ppk-moon"])
def test_malformed_ppk_identity_reads_as_unknown(data: bytes) -> None:
    assert ppk.decode_ppk_id(data) is None
    assert ppk.decode_ppk_id(b"\x01" + PPK_ID) == ppk.decode_ppk_id(b"\x02" + PPK_ID) == PPK_ID


def test_malformed_ppk_identity_from_the_peer_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PPK_IDENTITY of an unknown PPK_ID type is an unknown PPK_ID: NO_PPK_AUTH applies."""
    monkeypatch.setattr(ppk, "encode_ppk_id", lambda ppk_id: b"\x09" + ppk_id)
    conn_i, conn_r = psk_connections()
    pair, _ = run(policy(conn_i, "optional"), policy(conn_r, "optional"))
    assert outcome(pair) == "no-ppk"


def test_certificates_with_ppk_and_no_ppk_auth_fallback() -> None:
    """Signature AUTH: NO_PPK_AUTH carries the signature made over the SK_pi' octets."""
    from .pairing import cert_connections

    conn_i, conn_r = cert_connections("ecdsa")
    pair, _ = run(policy(conn_i, "optional"), policy(conn_r, "optional"))
    assert outcome(pair) == "ppk"
    pair, _ = run(policy(conn_i, "optional"),
                  policy(conn_r, "optional", ppk_id=None, ppks=((b"x", OTHER_PPK),)))  # fmt: skip
    assert outcome(pair) == "no-ppk"


def test_ike_rekey_keeps_the_ppk_in_the_keys() -> None:
    """The rekeyed IKE SA derives from the PPK's SK_d (RFC 7296 §2.18): still listed as PPK."""
    conn_i, conn_r = psk_connections()
    pair, _ = run(policy(conn_i, "required"), policy(conn_r, "required"))
    (sa,) = pair.i.engine.sas.values()
    pair.i.events += pair.i.engine.rekey_ike(sa.id, pair.now)
    settle(pair)
    for side in (pair.i, pair.r):
        (new,) = side.engine.sas.values()
        assert new.id != sa.id or side is pair.r
        assert ike_sa_view(new).ppk and new.state is IkeState.ESTABLISHED


def test_no_log_line_and_no_repr_holds_the_ppk() -> None:
    conn_i, conn_r = psk_connections()
    with structlog.testing.capture_logs() as logs:
        pair, _ = run(policy(conn_i, "optional"), policy(conn_r, "optional"))
    assert outcome(pair) == "ppk"
    text = repr(logs) + repr(conn_i) + repr(conn_r) + repr(pair.i.engine.sas)
    for sa in (*pair.i.engine.sas.values(), *pair.r.engine.sas.values()):
        text += repr(sa.ppk) + repr(ike_sa_view(sa))
    for needle in (PPK.hex(), PPK.hex().upper(), repr(PPK), PPK.decode("latin-1")):
        assert needle not in text
    assert any(e.get("event") == "PPK used" and e.get("ppk_id") == "ppk-moon" for e in logs)
