"""Reqids stay in the service's range: at its end the counter starts again from 1, skipping
every reqid still held by a child, a queued or running child exchange, or a reauth plan."""

from __future__ import annotations

import pytest

from ikev2.engine.reqids import ReqidCounter, ReqidsExhausted

from .pairing import Pair, psk_connections


def test_reqids_wrap_and_skip_those_in_use() -> None:
    pair = Pair(*psk_connections())
    engine = pair.i.engine
    engine._reqids = ReqidCounter(engine.sas.values, maximum=4)  # a range of 4
    first = pair.initiate()
    pair.run()
    assert [c.reqid for c in engine.sas[first].children] == [1]
    # 2..4, then the range starts again without 1 (the live child's); 2..4 were never used
    assert [next(engine._reqids) for _ in range(7)] == [2, 3, 4, 2, 3, 4, 2]


def test_a_counter_with_every_reqid_in_use_says_so() -> None:
    pair = Pair(*psk_connections())
    engine = pair.i.engine
    engine._reqids = ReqidCounter(engine.sas.values, maximum=1)
    pair.initiate()  # takes reqid 1 for its IKE_AUTH child
    pair.run()
    with pytest.raises(ReqidsExhausted):
        next(engine._reqids)


def test_many_initiations_never_leave_the_range() -> None:
    """The initiator churns through more IKE SAs than the range holds; each child gets a reqid
    of the range that no live child holds."""
    pair = Pair(*psk_connections())
    engine = pair.i.engine
    engine._reqids = ReqidCounter(engine.sas.values, maximum=3)
    live: list[int] = []
    for _ in range(10):  # two IKE SAs stay up while the next one comes
        sa_id = pair.initiate()
        pair.run()
        [child] = engine.sas[sa_id].children
        others = {c.reqid for sa in engine.sas.values() if sa.id != sa_id for c in sa.children}
        assert 1 <= child.reqid <= 3 and child.reqid not in others and len(others) == len(live)
        live.append(sa_id)
        if len(live) == 2:
            engine.terminate(live.pop(0), pair.now)
            pair.run()
