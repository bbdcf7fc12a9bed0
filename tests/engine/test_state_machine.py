"""The state table (h11's rule) and a Hypothesis state machine over two engines.

Random sequences of real datagrams, mutated datagrams, random bytes, clock jumps, initiations
and deletes must never raise out of an engine, and once the link is left alone every IKE SA on
either side is established with its twin on the other side, or gone: nothing half-established.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from ikev2.engine.config import Timers
from ikev2.engine.events import Datagram
from ikev2.engine.state import TRANSITIONS, IkeInput, IkeState, next_state
from ikev2.errors import UsageError

from .pairing import Pair, Side, psk_connections


@pytest.mark.parametrize("state", list(IkeState))
@pytest.mark.parametrize("event", list(IkeInput))
def test_every_state_input_pair_is_in_the_table_or_refused(
    state: IkeState, event: IkeInput
) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(UsageError):
            next_state(state, event)


def test_close_is_reachable_from_every_live_state_and_final() -> None:
    for state in IkeState:
        if state is not IkeState.CLOSED:
            assert next_state(state, IkeInput.CLOSE) is IkeState.CLOSED
    assert not [pair for pair in TRANSITIONS if pair[0] is IkeState.CLOSED]


TIMERS = Timers(retransmit_tries=3, dpd_delay=20, half_open_timeout=30)


class TwoEngines(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        conn_i, conn_r = psk_connections()
        self.pair = Pair(replace(conn_i, timers=TIMERS), replace(conn_r, timers=TIMERS))
        self.seen: list[Datagram] = []
        self.pair.tamper = self._record

    def _record(self, side: Side, d: Datagram) -> Datagram:
        self.seen.append(d)
        return d

    def _side(self, to_initiator: bool) -> Side:
        return self.pair.i if to_initiator else self.pair.r

    def _inject(self, to_initiator: bool, data: bytes) -> None:
        side = self._side(to_initiator)
        conn = side.engine.config.connections[0]
        remote = (conn.remote_addrs[0], 500)
        local = (conn.local_addrs[0], 500)
        side.events += side.engine.receive_datagram(data, remote, local, self.pair.now)

    @rule()
    def initiate(self) -> None:
        self.pair.initiate()

    @rule(steps=st.integers(1, 6))
    def deliver(self, steps: int) -> None:
        for _ in range(steps):
            if not self.pair.step():
                break

    @rule(seconds=st.floats(0, 60))
    def clock_jumps(self, seconds: float) -> None:
        self.pair.now += seconds
        for side in (self.pair.i, self.pair.r):
            side.events += side.engine.handle_timer(self.pair.now)

    @rule(data=st.binary(max_size=400), to_initiator=st.booleans())
    def random_bytes(self, data: bytes, to_initiator: bool) -> None:
        self._inject(to_initiator, data)

    @precondition(lambda self: bool(self.seen))
    @rule(
        pick=st.integers(0, 10_000),
        position=st.integers(0, 10_000),
        flip=st.integers(1, 255),
        cut=st.integers(0, 10_000),
        to_initiator=st.booleans(),
    )
    def mutated(self, pick: int, position: int, flip: int, cut: int, to_initiator: bool) -> None:
        data = bytearray(self.seen[pick % len(self.seen)].data)
        data[position % len(data)] ^= flip
        self._inject(to_initiator, bytes(data[: max(28, len(data) - cut % 64)]))

    @precondition(lambda self: bool(self.seen))
    @rule(pick=st.integers(0, 10_000), to_initiator=st.booleans())
    def replayed(self, pick: int, to_initiator: bool) -> None:
        self._inject(to_initiator, self.seen[pick % len(self.seen)].data)

    @rule(pick=st.integers(0, 10))
    def terminate(self, pick: int) -> None:
        ids = sorted(self.pair.i.engine.sas)
        if ids:
            sa_id = ids[pick % len(ids)]
            self.pair.i.events += self.pair.i.engine.terminate(sa_id, self.pair.now)

    def teardown(self) -> None:
        # leave the link alone long enough for every timer (half-open, retransmits, DPD) to act
        self.pair.tamper = None
        self.pair.run(until=self.pair.now + 1000, max_steps=50_000)
        established = {IkeState.ESTABLISHED, IkeState.DELETING}
        pairs = {}
        for side in (self.pair.i, self.pair.r):
            for sa in side.engine.sas.values():
                assert sa.state in established, f"SA left {sa.state.value}"
                pairs.setdefault((sa.spi_i, sa.spi_r), []).append(sa)
        for key, sas in pairs.items():
            assert len(sas) == 2, f"IKE SA {key[0].hex()} exists on one side only"
            child_spis = [{(c.spi_in, c.spi_out) for c in sa.children} for sa in sas]
            assert child_spis[0] == {(o, i) for i, o in child_spis[1]}


TestTwoEngines = TwoEngines.TestCase
TestTwoEngines.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_saved_example_settles() -> None:
    """The sequence Hypothesis once found, replayed as plain calls (CI runs derandomized and
    may never draw it again). Its IKE_SA_INIT burst had the responder's per-source cap and the
    initiator's stray-response check suppress drop-log lines in a window opened at
    126.40685752053078 s, whose end does not round-trip in floats; the summary deadline was then
    reported by get_timer() and never consumed, so teardown's clock stood still (dos.LogLimiter)."""
    machine = TwoEngines()
    machine.random_bytes(data=b"\x08\xff\xee\xf8C", to_initiator=True)
    for _ in range(5):
        machine.initiate()
    machine.clock_jumps(seconds=38.59061850416295)
    machine.clock_jumps(seconds=42.043671176303725)
    for _ in range(3):
        machine.initiate()
    machine.deliver(steps=6)
    for _ in range(11):
        machine.initiate()
    machine.random_bytes(data=b"\xa6|2\xe9In\xdc\x1ef", to_initiator=False)
    machine.initiate()
    machine.deliver(steps=6)
    machine.initiate()
    machine.mutated(cut=3125, flip=186, pick=161, position=562, to_initiator=True)
    machine.random_bytes(data=b"\x16\xc8", to_initiator=False)
    machine.clock_jumps(seconds=45.7725678400641)
    machine.teardown()
    established = [
        sa for side in (machine.pair.i, machine.pair.r) for sa in side.engine.sas.values()
    ]
    assert len(established) == 12  # six IKE SAs, each with its twin
