"""RFC 7296 §2.21.2: an initiator that cannot authenticate the responder tells it in a separate
INFORMATIONAL carrying AUTHENTICATION_FAILED. A responder still half-open at that point (an EAP
gateway: its certificate AUTH went out in the first IKE_AUTH answer, the EAP rounds have not
finished) must tear its IKE SA down at once, not keep it until half_open_timeout (30 s)."""

from __future__ import annotations

from dataclasses import replace

from ikev2.constants import NotifyType
from ikev2.engine.events import IkeSaEstablished, IkeSaFailed
from ikev2.engine.state import IkeState
from ikev2.engine.tasks import informational

from .pairing import Pair, pki_credentials
from .test_eap_auth import eap_connections
from .wiretap import Tap


def distrusting_client() -> Pair:
    """An EAP client that trusts another CA than the one that signed the gateway's cert."""
    conn_i, conn_r = eap_connections()
    wrong = pki_credentials("ecdsa", "moon", ca="rsa").trust_anchors
    conn_i = replace(conn_i, remote_auth=replace(conn_i.remote_auth, trust_anchors=wrong))
    return Pair(conn_i, conn_r)


def test_half_open_responder_ends_its_ike_sa_on_authentication_failed() -> None:
    pair = distrusting_client()
    tap = Tap(pair)
    pair.initiate()
    pair.run(until=1)  # well before the responder's half-open timeout
    (failed_i,) = pair.i.of(IkeSaFailed)
    assert failed_i.notify is NotifyType.AUTHENTICATION_FAILED
    (told,) = tap.of("INFORMATIONAL", response=False)
    assert told.sender == "initiator" and told.notify_names == ("AUTHENTICATION_FAILED",)
    (failed_r,) = pair.r.of(IkeSaFailed)
    assert failed_r.notify is NotifyType.AUTHENTICATION_FAILED
    assert "peer" in failed_r.reason and "AUTHENTICATION_FAILED" in failed_r.reason
    assert not pair.r.engine.sas, "the half-open IKE SA lingers at the responder"
    assert not pair.r.of(IkeSaEstablished)
    (answer,) = tap.of("INFORMATIONAL", response=True)  # every request gets its response
    assert answer.sender == "responder" and answer.message_id == told.message_id


def test_half_open_responder_answers_other_informationals_and_carries_on() -> None:
    """A half-open responder answers an INFORMATIONAL without an error (e.g. a liveness check
    between EAP rounds) and keeps going; only the failure notify ends the IKE SA."""
    pair = Pair(*eap_connections())
    pair.initiate()
    for _ in range(200):  # up to the responder's first IKE_AUTH answer (EAP under way)
        pair.step()
        sa = next(iter(pair.r.engine.sas.values()), None)
        if sa is not None and sa.eap is not None:
            break
    (sa_r,) = pair.r.engine.sas.values()
    assert sa_r.eap is not None and not pair.r.of(IkeSaEstablished)
    assert informational.respond(sa_r, ()) == []
    assert sa_r.state is IkeState.INIT_DONE and not pair.r.of(IkeSaFailed)
