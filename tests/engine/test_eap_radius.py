"""EAP-RADIUS on the gateway (RFC 3579), the engine's half: the gateway asks EAP-Identity
itself, then every EAP Response leaves as an EapBackendRequest and the IKE_AUTH request waits
until Engine.eap_backend_answer. The backend here runs our own EAP-MSCHAPv2 authenticator
(engine/eap) the way a RADIUS server runs the method; tests/service/test_radius.py and
tests/service/test_eap_radius_daemons.py put the real freeradius behind it."""

from __future__ import annotations

import os
from dataclasses import replace

from ikev2.constants import NotifyType
from ikev2.engine.config import AuthMethodName, Credentials
from ikev2.engine.eap import EapServer, EapType, Outcome, parse_packet
from ikev2.engine.events import (
    ChildSaEstablished,
    EapBackendRequest,
    IkeSaEstablished,
    IkeSaFailed,
)
from ikev2.engine.tasks.eap_radius import BackendAnswer, BackendVerdict

from .pairing import Pair
from .test_eap_auth import PASSWORD, eap_connections
from .wiretap import Tap


class Backend:
    """The RADIUS server's part: the method, from the client's Identity Response on."""

    def __init__(self, password: bytes = PASSWORD) -> None:
        users = {b"carol@ikev2.test": password}
        self.server: EapServer | None = None
        self.lookup = users.get
        self.requests: list[EapBackendRequest] = []

    def answer(self, request: EapBackendRequest) -> BackendAnswer:
        self.requests.append(request)
        if self.server is None:  # the Identity Response: start the method
            assert parse_packet(request.eap).type == EapType.IDENTITY
            self.server = EapServer(EapType.MSCHAPV2, request.identity, self.lookup, b"radius",
                                    os.urandom)  # fmt: skip
            return BackendAnswer(BackendVerdict.CHALLENGE, self.server.start())
        result = self.server.process(request.eap)
        if result.outcome is Outcome.SUCCESS:
            return BackendAnswer(BackendVerdict.ACCEPT, result.packet, self.server.msk)
        if result.outcome is Outcome.FAILURE:
            return BackendAnswer(BackendVerdict.REJECT, result.packet, reason=result.reason)
        return BackendAnswer(BackendVerdict.CHALLENGE, result.packet)


def radius_pair(password: bytes = PASSWORD) -> Pair:
    conn_i, conn_r = eap_connections("mschapv2", password=password)
    gateway = Credentials(AuthMethodName.EAP, eap_radius=True)
    return Pair(conn_i, replace(conn_r, remote_auth=gateway))


def drive(pair: Pair, backend: Backend, delay: float = 0.0, until: float = 60.0) -> None:
    """Run the pair; answer each backend request `delay` seconds after it appeared (the
    clock stops at that instant if no timer comes first)."""
    answered = 0
    due: list[tuple[float, EapBackendRequest]] = []
    for _ in range(5000):
        pending = pair.r.of(EapBackendRequest)
        due += [(pair.now + delay, request) for request in pending[answered:]]
        answered = len(pending)
        for item in [d for d in due if d[0] <= pair.now]:
            due.remove(item)
            reply = backend.answer(item[1])
            pair.r.events += pair.r.engine.eap_backend_answer(item[1].ike_sa_id, reply, pair.now)
        pair._collect()
        if due and not pair.in_flight:
            timers = [t for t in (pair.i.engine.get_timer(), pair.r.engine.get_timer()) if t]
            first = min(d[0] for d in due)
            if not timers or first <= min(timers):
                pair.now = max(pair.now, first)
                continue
        if not pair.step() and not due:
            return
        if pair.now > until:
            return


def test_relayed_mschapv2_establishes_with_the_backends_msk() -> None:
    pair = radius_pair()
    backend = Backend()
    pair.initiate()
    drive(pair, backend)
    (ei,) = pair.i.of(IkeSaEstablished)
    (er,) = pair.r.of(IkeSaEstablished)
    assert ei.spi_i == er.spi_i and er.remote_id == "carol@ikev2.test"
    assert len(pair.i.of(ChildSaEstablished)) == len(pair.r.of(ChildSaEstablished)) == 1
    # Identity, MSCHAPv2 Response, the Success acknowledgement: one request per round
    assert len(backend.requests) == 3
    assert {r.identity for r in backend.requests} == {b"carol@ikev2.test"}
    assert all(r.peer.startswith("192.0.2.1[") for r in backend.requests)
    sa = next(iter(pair.r.engine.sas.values()))
    assert sa.eap.identity == b"carol@ikev2.test"


def test_retransmissions_while_the_backend_thinks_ask_it_once() -> None:
    """The answer takes longer than the initiator's retransmission timeout (§2.1): each
    retransmitted request is dropped, the backend is asked once per round, and it completes."""
    pair = radius_pair()
    tap = Tap(pair)
    backend = Backend()
    pair.initiate()
    drive(pair, backend, delay=5.0, until=200)
    sent = [s.message_id for s in tap.of("IKE_AUTH", response=False)]
    assert len(sent) > len(set(sent))  # the initiator did retransmit while we waited
    assert pair.r.of(IkeSaEstablished) and pair.i.of(IkeSaEstablished)
    assert len(backend.requests) == 3
    assert pair.r.engine.sas  # well within the half-open timeout


def test_a_reject_fails_with_authentication_failed_and_installs_nothing() -> None:
    pair = radius_pair(password=b"not carol's password at all")
    backend = Backend()
    pair.initiate()
    drive(pair, backend)
    (fr,) = pair.r.of(IkeSaFailed)
    assert fr.notify is NotifyType.AUTHENTICATION_FAILED and "EAP" in fr.reason
    assert pair.i.of(IkeSaFailed) and not pair.r.of(IkeSaEstablished)
    assert not pair.r.of(ChildSaEstablished) and not pair.r.engine.sas


def test_a_late_answer_for_a_gone_ike_sa_is_dropped() -> None:
    pair = radius_pair()
    pair.initiate()
    for _ in range(100):
        pair.step()
        if pair.r.of(EapBackendRequest):
            break
    (request,) = pair.r.of(EapBackendRequest)
    answer = BackendAnswer(BackendVerdict.REJECT, b"", reason="late")
    assert pair.r.engine.eap_backend_answer(request.ike_sa_id + 99, answer, pair.now) == []
    # twice for the same round: the second finds nothing parked
    pair.r.events += pair.r.engine.eap_backend_answer(request.ike_sa_id, answer, pair.now)
    assert pair.r.of(IkeSaFailed)
    assert pair.r.engine.eap_backend_answer(request.ike_sa_id, answer, pair.now) == []
