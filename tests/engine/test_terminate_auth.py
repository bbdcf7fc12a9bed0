"""`down` while our IKE_AUTH is out (RFC 7296 §1.4.1, §2.2): the peer may have set the IKE SA
up and lost only its answer, so a Delete goes under the next message ID instead of nothing."""

from __future__ import annotations

from ikev2.constants import ExchangeType
from ikev2.engine.events import Datagram, IkeSaDeleted, IkeSaEstablished
from ikev2.engine.state import IkeState
from ikev2.wire import decode_message

from .pairing import Pair, Side, psk_connections


def _exchange(d: Datagram) -> int:
    return int(decode_message(d.data).header.exchange)


def test_terminate_with_ike_auth_out_deletes_at_the_peer() -> None:
    pair = Pair(*psk_connections())
    dropped: list[Datagram] = []

    def lose_auth_answer(side: Side, d: Datagram) -> Datagram | None:
        if side is pair.r and _exchange(d) == ExchangeType.IKE_AUTH:
            dropped.append(d)
            return None
        return d

    pair.tamper = lose_auth_answer
    sa_id = pair.initiate()
    for _ in range(10):
        pair.step()
        if dropped:
            break
    assert dropped and pair.i.engine.sas[sa_id].state is IkeState.AUTH_SENT
    assert len(pair.r.of(IkeSaEstablished)) == 1  # the responder has it up
    pair.i.events += pair.i.engine.terminate(sa_id, pair.now)
    pair.run(until=pair.now + 1)
    (gone,) = pair.r.of(IkeSaDeleted)
    assert gone.reason == "deleted by peer"
    assert not pair.r.engine.sas and not pair.i.engine.sas
    assert [e.ike_sa_id for e in pair.i.of(IkeSaDeleted)] == [sa_id]


def test_terminate_delete_is_retransmitted_then_dropped() -> None:
    pair = Pair(*psk_connections())
    pair.tamper = lambda side, d: None if side is pair.r and _exchange(d) != 34 else d
    sa_id = pair.initiate()
    for _ in range(10):
        pair.step()
        if pair.i.engine.sas[sa_id].state is IkeState.AUTH_SENT:
            break
    pair.i.events += pair.i.engine.terminate(sa_id, pair.now)
    sa = pair.i.engine.sas[sa_id]
    assert sa.state is IkeState.DELETING and sa.requests.outstanding is not None
    assert sa.requests.outstanding.message_id == 2  # the next after IKE_AUTH's (§2.2)
    pair.run(until=pair.now + 1000)
    assert not pair.i.engine.sas and pair.i.of(IkeSaDeleted)
