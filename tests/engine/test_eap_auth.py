"""Engines back to back with EAP (RFC 7296 §2.16): a gateway authenticating with its certificate,
a road warrior with EAP-MSCHAPv2 or EAP-MD5; wrong passwords, lost and duplicated rounds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ikev2.constants import ExchangeType, NotifyType
from ikev2.engine.config import AuthMethodName, ConnectionConfig, Credentials, Timers
from ikev2.engine.eap import EapType, mschapv2
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished, IkeSaFailed
from ikev2.engine.identity import parse_identity
from ikev2.engine.tasks import eap as eap_task
from ikev2.engine.tasks import has_notify
from ikev2.wire import AuthPayload, decode_message

from .pairing import Pair, cert_connections, pki_credentials, settle
from .test_handshake import assert_child_pair

PASSWORD = b"carol's long password"
METHODS = {"mschapv2": EapType.MSCHAPV2, "md5": EapType.MD5_CHALLENGE}


def eap_connections(
    method: str = "mschapv2",
    *,
    password: bytes = PASSWORD,
    user: bytes = b"carol@ikev2.test",
    eap_id: bytes | None = None,
    ask_identity: bool = False,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """moon: the road warrior (EAP); sun: the gateway (ECDSA certificate, EAP users)."""
    conn_i, conn_r = cert_connections("ecdsa")
    eap_type = METHODS[method]
    carol = parse_identity("carol@ikev2.test")
    client = Credentials(
        AuthMethodName.EAP, eap_types=(eap_type,), eap_id=eap_id, eap_secret=password
    )
    users = ((user, PASSWORD), (b"dave", b"dave's own password"))
    gateway = Credentials(
        AuthMethodName.EAP,
        eap_types=(eap_type,),
        eap_id=b"%any" if ask_identity else None,
        eap_users=users,
    )
    conn_i = replace(conn_i, local_id=carol, local_auth=client)
    conn_r = replace(conn_r, remote_id=None, remote_auth=gateway)
    return conn_i, conn_r


def run(pair: Pair) -> None:
    pair.initiate()
    pair.run(until=1)


@pytest.mark.parametrize("method", ["mschapv2", "md5"])
@pytest.mark.parametrize("ask_identity", [False, True])
def test_eap_client_against_certificate_gateway(method: str, ask_identity: bool) -> None:
    eap_id = b"carol" if ask_identity else None
    user = b"carol" if ask_identity else b"carol@ikev2.test"
    pair = Pair(*eap_connections(method, eap_id=eap_id, user=user, ask_identity=ask_identity))
    ids = record_auth_message_ids(pair)
    run(pair)
    (ei,) = pair.i.of(IkeSaEstablished)
    (er,) = pair.r.of(IkeSaEstablished)
    assert ei.spi_i == er.spi_i and ei.remote_id == "sun.ikev2.test"
    assert er.remote_id == "carol@ikev2.test"
    assert_child_pair(pair)
    # first IKE_AUTH, the EAP rounds, the final AUTH: one new message ID per round (§2.16)
    rounds = {"mschapv2": 3, "md5": 2}[method] + (1 if ask_identity else 0)
    assert ids == list(range(1, 2 + rounds))
    sa = next(iter(pair.r.engine.sas.values()))
    assert sa.eap.identity == (b"carol" if ask_identity else b"carol@ikev2.test")
    assert sa.eap.server is None and sa.eap.first == ()  # nothing kept but the identity


def record_auth_message_ids(pair: Pair) -> list[int]:
    """Collect the message IDs of the IKE_AUTH requests the initiator sends (first copies)."""
    seen: list[int] = []
    original = pair.i.engine.datagrams_to_send

    def spy() -> list:  # type: ignore[type-arg]
        out = original()
        for d in out:
            header = decode_message(d.data).header
            request = header.exchange == ExchangeType.IKE_AUTH and not header.is_response
            if request and header.message_id not in seen:
                seen.append(header.message_id)
        return out

    pair.i.engine.datagrams_to_send = spy  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("method", ["mschapv2", "md5"])
def test_wrong_password_fails_with_authentication_failed_and_installs_nothing(
    method: str,
) -> None:
    pair = Pair(*eap_connections(method, password=b"not carol's password"))
    run(pair)
    assert not pair.i.of(IkeSaEstablished) and not pair.r.of(IkeSaEstablished)
    assert not pair.i.of(ChildSaEstablished) and not pair.r.of(ChildSaEstablished)
    (fr,) = pair.r.of(IkeSaFailed)
    (fi,) = pair.i.of(IkeSaFailed)
    assert fr.notify is NotifyType.AUTHENTICATION_FAILED and "EAP" in fr.reason
    assert fi.notify is NotifyType.AUTHENTICATION_FAILED
    assert not pair.i.engine.sas and not pair.r.engine.sas


def test_unknown_user_fails() -> None:
    pair = Pair(*eap_connections(user=b"mallory"))
    run(pair)
    (fr,) = pair.r.of(IkeSaFailed)
    assert fr.notify is NotifyType.AUTHENTICATION_FAILED
    assert not pair.i.of(IkeSaEstablished) and not pair.r.engine.sas


def test_method_mismatch_is_refused_with_a_nak() -> None:
    conn_i, _ = eap_connections("md5")
    _, conn_r = eap_connections("mschapv2")
    pair = Pair(conn_i, conn_r)
    run(pair)
    (fr,) = pair.r.of(IkeSaFailed)
    assert "refused EAP method MSCHAPV2" in fr.reason and "wants 4" in fr.reason
    assert pair.i.of(IkeSaFailed) and not pair.i.engine.sas


def test_client_that_sends_auth_to_an_eap_gateway_fails() -> None:
    conn_i, _ = cert_connections("ecdsa")
    _, conn_r = eap_connections()
    conn_i = replace(conn_i, local_id=parse_identity("carol@ikev2.test"))
    pair = Pair(conn_i, conn_r)
    run(pair)
    (fr,) = pair.r.of(IkeSaFailed)
    assert fr.notify is NotifyType.AUTHENTICATION_FAILED and "wants EAP" in fr.reason


@pytest.mark.parametrize("seed", range(1, 13))
@pytest.mark.parametrize("method", ["mschapv2", "md5"])
def test_lost_and_duplicated_eap_rounds_still_establish(method: str, seed: int) -> None:
    # the whole conversation must fit in the half-open timeout (30 s, as strongSwan's): a
    # short first retransmit wait keeps a 30 % loss from running past it
    timers = Timers(retransmit_timeout=0.5)
    conn_i, conn_r = (replace(c, timers=timers) for c in eap_connections(method))
    pair = Pair(conn_i, conn_r, seed=seed, loss=0.3, duplicate=0.3, reorder=0.2)
    pair.initiate()
    pair.run(until=200)
    settle(pair)
    assert len(pair.i.of(IkeSaEstablished)) == 1 and len(pair.r.of(IkeSaEstablished)) == 1
    assert_child_pair(pair)
    assert not pair.i.of(IkeSaFailed) and not pair.r.of(IkeSaFailed)


def auth_request_id(side: object, pair: Pair, d: object) -> int:
    """The message ID of an IKE_AUTH request the initiator sends, -1 for anything else."""
    header = decode_message(d.data).header  # type: ignore[attr-defined]
    if side is pair.i and header.exchange == ExchangeType.IKE_AUTH and not header.is_response:
        return int(header.message_id)
    return -1


def test_lossy_runs_retransmit_eap_rounds() -> None:
    """The seeds above do exercise what they claim: some EAP round is sent more than once."""
    retransmitted = 0
    for seed in range(1, 13):
        timers = Timers(retransmit_timeout=0.5)
        conn_i, conn_r = (replace(c, timers=timers) for c in eap_connections())
        pair = Pair(conn_i, conn_r, seed=seed, loss=0.3, duplicate=0.3, reorder=0.2)
        sent: list[int] = []
        pair.tamper = lambda side, d, p=pair, s=sent: (s.append(auth_request_id(side, p, d)), d)[1]
        pair.initiate()
        pair.run(until=200)
        retransmitted += any(sent.count(mid) > 1 for mid in (2, 3, 4))
        assert sorted(set(sent) - {-1}) == [1, 2, 3, 4]
    assert retransmitted >= 6


def test_duplicated_eap_response_is_answered_from_cache_not_reprocessed() -> None:
    pair = Pair(*eap_connections())
    copies: list[bytes] = []

    def keep_eap_rounds(side, d):  # type: ignore[no-untyped-def]
        if side is pair.i:
            header = decode_message(d.data).header
            if header.exchange == ExchangeType.IKE_AUTH and header.message_id == 2:
                copies.append(d.data)
        return d

    pair.tamper = keep_eap_rounds
    pair.initiate()
    pair.run(until=1)
    assert len(pair.r.of(IkeSaEstablished)) == 1 and copies
    # replaying the second IKE_AUTH (an EAP round) after the fact gets nothing new
    sa_r = next(iter(pair.r.engine.sas.values()))
    before = len(pair.r.events)
    d = copies[0]
    assert sa_r.responses.last_id == 4  # four rounds with MSCHAPv2
    pair.r.events += pair.r.engine.receive_datagram(d, ("192.0.2.1", 500), ("192.0.2.2", 500),
                                                    pair.now)  # fmt: skip
    assert len(pair.r.events) == before and sa_r.responses.last_id == 4


# --- RFC 5998 EAP-only ------------------------------------------------------------------------


def eap_only_connections() -> tuple[ConnectionConfig, ConnectionConfig]:
    """The gateway's own side is EAP too: no certificate, no key, it proves itself through
    the method alone (RFC 5998)."""
    conn_i, conn_r = eap_connections("mschapv2")
    return conn_i, replace(conn_r, local_auth=Credentials(AuthMethodName.EAP, eap_types=(26,)))


def test_eap_only_with_a_mutual_method_establishes_on_the_msk_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # none of our methods is mutual (RFC 5998 §4); pretend MSCHAPv2 were, to run the path a
    # mutual method (EAP-TLS) would take: no responder AUTH until the MSK-keyed final one
    monkeypatch.setattr(mschapv2.MsChapV2Peer, "mutual", True)
    pair = Pair(*eap_only_connections())
    run(pair)
    (ei,) = pair.i.of(IkeSaEstablished)
    assert ei.remote_id == "sun.ikev2.test" and pair.r.of(IkeSaEstablished)
    assert_child_pair(pair)


def test_eap_only_with_a_method_that_is_not_mutual_is_refused() -> None:
    pair = Pair(*eap_only_connections())
    run(pair)
    (fi,) = pair.i.of(IkeSaFailed)
    assert fi.notify is NotifyType.AUTHENTICATION_FAILED
    assert "needs a mutual method" in fi.reason and "MSCHAPV2" in fi.reason
    assert not pair.i.of(IkeSaEstablished) and not pair.r.of(IkeSaEstablished)
    assert not pair.i.of(ChildSaEstablished) and not pair.r.of(ChildSaEstablished)


def test_eap_only_gateway_refuses_a_client_that_did_not_announce_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eap_task, "first_request_notifies", lambda sa: [])
    pair = Pair(*eap_only_connections())
    run(pair)
    (fr,) = pair.r.of(IkeSaFailed)
    assert fr.notify is NotifyType.AUTHENTICATION_FAILED and "did not announce" in fr.reason
    assert pair.i.of(IkeSaFailed) and not pair.i.engine.sas and not pair.r.engine.sas


def test_client_announces_eap_only_and_a_certificate_gateway_still_sends_auth() -> None:
    pair = Pair(*eap_connections())
    seen: list[bool] = []
    original = eap_task.respond_first

    def spy(sa, conn, payloads, now):  # type: ignore[no-untyped-def]
        seen.append(has_notify(payloads, NotifyType.EAP_ONLY_AUTHENTICATION))
        answer = original(sa, conn, payloads, now)
        seen.append(any(isinstance(p, AuthPayload) for p in answer))
        return answer

    eap_task.respond_first = spy  # type: ignore[assignment]
    try:
        run(pair)
    finally:
        eap_task.respond_first = original  # type: ignore[assignment]
    assert seen == [True, True] and pair.i.of(IkeSaEstablished)


def test_gateway_offering_two_methods_follows_the_clients_nak() -> None:
    """remote.auth = "eap" (strongSwan's eap-dynamic): MSCHAPv2 is offered, an MD5-only
    client Naks it, and MD5 runs instead (RFC 3748 §5.3.1)."""
    conn_i, _ = eap_connections("md5")
    _, conn_r = eap_connections("mschapv2")
    remote = replace(conn_r.remote_auth, eap_types=(EapType.MSCHAPV2, EapType.MD5_CHALLENGE))
    pair = Pair(conn_i, replace(conn_r, remote_auth=remote))
    ids = record_auth_message_ids(pair)
    run(pair)
    assert pair.i.of(IkeSaEstablished) and pair.r.of(IkeSaEstablished)
    assert_child_pair(pair)
    assert ids == [1, 2, 3, 4]  # first, the Nak, the MD5 response, the final AUTH


# --- reauthentication (RFC 7296 §2.8.3) -------------------------------------------------------


def test_client_reauthenticates_with_the_eap_rounds_again() -> None:
    pair = Pair(*eap_connections())
    run(pair)
    (old,) = pair.i.engine.sas.values()
    pair.i.events += pair.i.engine.reauthenticate(old.id, pair.now)
    pair.run(until=pair.now + 5)
    reauths = [e for e in pair.i.of(IkeSaEstablished) if e.reauth_of is not None]
    assert len(reauths) == 1 and reauths[0].reauth_of == old.id
    (new_r,) = pair.r.engine.sas.values()
    assert new_r.eap.identity == b"carol@ikev2.test"  # the new SA ran EAP from the start
    assert len(pair.r.of(IkeSaEstablished)) == 2 and not pair.r.of(IkeSaFailed)
    assert len(pair.i.engine.sas) == 1


def test_gateway_cannot_reauthenticate_an_eap_client_and_keeps_the_sa() -> None:
    """The client authenticates by EAP, which only an initiator can: the gateway's attempt is
    refused with AUTHENTICATION_FAILED (no exception out of the client's engine) and the
    established IKE SA stays."""
    pair = Pair(*eap_connections())
    run(pair)
    (old_r,) = pair.r.engine.sas.values()
    pair.r.events += pair.r.engine.reauthenticate(old_r.id, pair.now)
    pair.run(until=pair.now + 5)
    (refused,) = pair.i.of(IkeSaFailed)
    assert refused.notify is NotifyType.AUTHENTICATION_FAILED
    assert "cannot be the responder" in refused.reason
    assert old_r.id in pair.r.engine.sas and len(pair.i.engine.sas) == 1


# --- EAP-TLS (RFC 5216) -----------------------------------------------------------------------


def tls_connections(
    client_chain: str = "ecdsa", eap_only: bool = False
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """moon: a road warrior with its certificate inside EAP-TLS; sun: the gateway, its TLS
    certificate its IKE one, trusting the ecdsa CA for clients."""
    conn_i, conn_r = cert_connections("ecdsa")
    moon = pki_credentials(client_chain, "moon", ca="ecdsa")
    client = Credentials(AuthMethodName.EAP, eap_types=(EapType.TLS,), certs=moon.certs,
                         private_key=moon.private_key)  # fmt: skip
    gateway = Credentials(AuthMethodName.EAP, eap_types=(EapType.TLS,),
                          trust_anchors=conn_r.remote_auth.trust_anchors)  # fmt: skip
    conn_i = replace(conn_i, local_auth=client)
    conn_r = replace(conn_r, remote_auth=gateway)
    if eap_only:
        own = conn_r.local_auth
        conn_r = replace(conn_r, local_auth=Credentials(
            AuthMethodName.EAP, eap_types=(EapType.TLS,), certs=own.certs,
            private_key=own.private_key))  # fmt: skip
    return conn_i, conn_r


@pytest.mark.parametrize("eap_only", [False, True])
def test_eap_tls_establishes_with_certificates_inside_eap(eap_only: bool) -> None:
    pair = Pair(*tls_connections(eap_only=eap_only))
    ids = record_auth_message_ids(pair)
    run(pair)
    (ei,) = pair.i.of(IkeSaEstablished)
    (er,) = pair.r.of(IkeSaEstablished)
    assert ei.remote_id == "sun.ikev2.test" and er.remote_id == "moon.ikev2.test"
    assert_child_pair(pair)
    assert len(ids) >= 4  # first, the TLS flights, the final AUTH
    sa = next(iter(pair.r.engine.sas.values()))
    assert sa.eap.identity == b"moon.ikev2.test"


def test_eap_tls_with_an_untrusted_client_certificate_fails() -> None:
    pair = Pair(*tls_connections(client_chain="untrusted"))
    run(pair)
    (fr,) = pair.r.of(IkeSaFailed)
    assert fr.notify is NotifyType.AUTHENTICATION_FAILED and "certificate" in fr.reason
    assert not pair.i.of(IkeSaEstablished) and not pair.r.of(ChildSaEstablished)
    assert not pair.r.engine.sas


def test_eap_tls_client_refuses_a_gateway_certificate_without_its_id() -> None:
    conn_i, conn_r = tls_connections(eap_only=True)  # no certificate AUTH: TLS alone checks
    # the gateway claims another IKE ID: its TLS certificate (sun) does not carry it
    other = parse_identity("gateway.ikev2.test")
    pair = Pair(replace(conn_i, remote_id=None), replace(conn_r, local_id=other))
    run(pair)
    (fi,) = pair.i.of(IkeSaFailed)
    assert fi.notify is NotifyType.AUTHENTICATION_FAILED
    assert "gateway.ikev2.test is not in the TLS certificate" in fi.reason
    assert not pair.i.of(IkeSaEstablished)
