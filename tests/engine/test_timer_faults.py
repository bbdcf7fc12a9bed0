"""A fault in one IKE SA's deadline drops that SA only (the manager's handle_timer): the other
SAs' liveness checks (RFC 7296 §2.4) and the retransmission schedule (§2.1) go on."""

from __future__ import annotations

import pytest

from ikev2.engine import timers
from ikev2.engine.config import Timers
from ikev2.engine.events import IkeSaDeleted, IkeSaEstablished
from ikev2.engine.ike_sa import IkeSa

from .pairing import Pair, psk_connections, with_


def _two_sas(pair: Pair) -> tuple[int, int]:
    first = pair.initiate()
    pair.run(until=1)
    second = pair.initiate()
    pair.run(until=2)
    assert {e.ike_sa_id for e in pair.i.of(IkeSaEstablished)} == {first, second}
    return first, second


def test_a_raising_timer_drops_only_its_sa(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_i, conn_r = psk_connections()
    conn_i = with_(conn_i, timers=Timers(dpd_delay=10))
    conn_r = with_(conn_r, timers=Timers(dpd_delay=0))
    pair = Pair(conn_i, conn_r)
    bad, good = _two_sas(pair)
    assert len(pair.r.engine.sas) == 2
    pair.i.engine.strict = False  # the daemon's mode: log our bug, do not raise it
    real = timers.on_timer
    dpd_sent: list[int] = []

    def on_timer(sa: IkeSa, now: float) -> None:
        if sa.id == bad:
            raise OverflowError("(34, 'Numerical result out of range')")
        before = sa.requests.next_id
        real(sa, now)
        if sa.requests.next_id > before:
            dpd_sent.append(sa.id)

    monkeypatch.setattr(timers, "on_timer", on_timer)
    pair.run(until=35)
    assert bad not in pair.i.engine.sas and good in pair.i.engine.sas
    (deleted,) = pair.i.of(IkeSaDeleted)
    assert deleted.ike_sa_id == bad and "OverflowError" in deleted.reason
    assert dpd_sent.count(good) >= 2  # liveness checks at 10 s, 20 s, 30 s go on
    # the established SA sent its Delete (§1.4.1): the responder keeps only the good one
    assert len(pair.r.engine.sas) == 1
    assert pair.i.engine.get_timer() is not None


def test_retransmit_delay_cannot_overflow() -> None:
    normal = Timers()
    assert [round(normal.retransmit_delay(n), 3) for n in range(3)] == [4.0, 7.2, 12.96]
    assert Timers(retransmit_limit=10).retransmit_delay(5) == 10
    huge = Timers(retransmit_base=1e200).retransmit_delay(3)
    assert 0 < huge < float("inf")
    assert Timers(retransmit_tries=1208).retransmit_delay(1208) == huge
    assert Timers(retransmit_tries=1208).retransmit_span < float("inf")
