"""The IKE_SA_INIT gate under a flood (RFC 7296 §2.6): a per-source half-open cap (strongSwan's
charon.block_threshold) beside the global one (charon.init_limit_half_open, our
max_half_open), half-open SAs freed when they time out, and rate-limited gate logging."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

import structlog

from ikev2.constants import ExchangeType
from ikev2.engine import Engine
from ikev2.engine.config import EngineConfig
from ikev2.engine.dos import HalfOpenTable, LogLimiter
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished
from ikev2.wire import decode_message

from .pairing import ADDR_I, ADDR_R, Pair, psk_connections, seeded_env, with_

ATTACKER = ipaddress.ip_address("192.0.2.66")
GATE_EVENTS = {"COOKIE demanded", "IKE_SA_INIT dropped", "IKE_SA_INIT refused"}


def flood(responder: Engine, count: int, start: float, step: float, seed: int = 666) -> float:
    """`count` IKE_SA_INITs from ATTACKER, each retried with the COOKIE it is sent (a
    cookie-answering flood: the attacker receives at its address). Returns the clock after."""
    _conn_i, conn_a = psk_connections(addr_i=ADDR_R, addr_r=ATTACKER)
    conn_a = with_(conn_a, local_addrs=(ATTACKER,), remote_addrs=(ADDR_R,))
    attacker = Engine(EngineConfig((conn_a,)), seeded_env(seed), strict=True)
    now = start
    for _ in range(count):
        attacker.initiate("net", now)
        for _round in range(2):  # the request, then its retry with the COOKIE
            for d in attacker.datagrams_to_send():
                if decode_message(d.data).header.exchange == ExchangeType.IKE_SA_INIT:
                    responder.receive_datagram(d.data, d.local, d.remote, now)
            for d in responder.datagrams_to_send():
                if d.remote[0] == ATTACKER:
                    attacker.receive_datagram(d.data, d.local, d.remote, now)
        now += step
    return now


def gate_config(conn_r: Any, **changes: Any) -> EngineConfig:
    # the responder accepts any source (remote_addrs empty), as a road-warrior gateway does
    return EngineConfig((with_(conn_r, remote_addrs=()),), **changes)


def test_one_source_cannot_lock_out_another() -> None:
    conn_i, conn_r = psk_connections()
    # cookies always demanded, and a global cap the flood alone could fill many times over
    pair = Pair(conn_i, conn_r, engine_r=gate_config(conn_r, cookie_threshold=0, max_half_open=20))
    r = pair.r.engine
    pair.now = flood(r, 3000, start=0.0, step=0.0003)
    assert r.half_open.count(ATTACKER) == r.config.block_threshold == 5
    assert len(r.half_open) == 5 and r.half_open.sources == 1
    pair.initiate()
    pair.run(until=pair.now + 5)
    assert len(pair.i.of(IkeSaEstablished)) == 1 and len(pair.r.of(IkeSaEstablished)) == 1
    assert r.half_open.count(ADDR_I) == 0  # IKE_AUTH moved it out of the half-open table


def test_without_the_per_source_cap_the_flood_fills_the_global_limit() -> None:
    conn_i, conn_r = psk_connections()
    config = gate_config(conn_r, cookie_threshold=0, max_half_open=20, block_threshold=0)
    pair = Pair(conn_i, conn_r, engine_r=config)
    pair.now = flood(pair.r.engine, 40, start=0.0, step=0.001)
    assert len(pair.r.engine.half_open) == 20  # the control: the lock-out the cap prevents
    pair.initiate()
    pair.run(until=pair.now + 5)
    assert not pair.r.of(IkeSaEstablished)


def test_half_open_timeout_returns_every_per_source_record() -> None:
    conn_i, conn_r = psk_connections()
    pair = Pair(conn_i, conn_r, engine_r=gate_config(conn_r))
    r = pair.r.engine
    pair.now = flood(r, 200, start=0.0, step=0.001)
    assert r.half_open.count(ATTACKER) == 5
    timeout = conn_r.timers.half_open_timeout
    deadline = r.get_timer()
    assert deadline is not None and deadline <= timeout + 1
    r.handle_timer(timeout + 1)
    assert r.half_open.count(ATTACKER) == 0
    assert len(r.half_open) == 0 and r.half_open.sources == 0
    assert not r.sas and not r.by_spi and not r._scheduled and r.get_timer() is None
    # the source is welcome again once its half-open SAs are gone
    flood(r, 10, start=timeout + 2, step=0.001, seed=667)
    assert r.half_open.count(ATTACKER) == 5


def test_gate_log_lines_stay_bounded_under_a_flood() -> None:
    conn_i, conn_r = psk_connections()
    config = gate_config(conn_r, cookie_threshold=0, drop_log_lines=10, drop_log_interval=10.0)
    pair = Pair(conn_i, conn_r, engine_r=config)
    with structlog.testing.capture_logs() as logs:
        now = flood(pair.r.engine, 3000, start=0.0, step=0.001)  # 3 s: one interval
    gate = [e for e in logs if e["event"] in GATE_EVENTS and e["log_level"] != "debug"]
    drops = [e for e in gate if e["reason"] == "per-source half-open limit reached"]
    cookies = [e for e in gate if e["event"] == "COOKIE demanded"]
    assert len(drops) == 10 and len(cookies) <= 10
    responder = [
        e
        for e in logs
        if not str(e.get("peer", "")).startswith(f"{ADDR_R}:") and e["log_level"] != "debug"
    ]
    assert len(responder) < 100  # 3000 IKE_SA_INITs, 2995 of them dropped
    # the next interval opens with one summary of what the last one suppressed
    with structlog.testing.capture_logs() as logs:
        flood(pair.r.engine, 1, start=now + 10, step=0.001, seed=667)
    (summary,) = [e for e in logs if e["event"].startswith("suppressed")]
    assert summary["event"] == "suppressed 2985 drops: per-source half-open limit reached"
    assert summary["suppressed"] == 2985  # 2995 dropped, 10 logged


def test_gate_log_summary_comes_with_any_later_request_and_follows_update_config() -> None:
    conn_i, conn_r = psk_connections()
    config = gate_config(conn_r, drop_log_lines=2, drop_log_interval=5.0)
    pair = Pair(conn_i, conn_r, engine_r=config)
    r = pair.r.engine
    flood(r, 10, start=0.0, step=0.01)  # 5 admitted, 5 dropped: 2 logged, 3 suppressed
    # the legitimate initiator's IKE_SA_INIT, after the interval, carries the summary out
    pair.now = 6.0
    with structlog.testing.capture_logs() as logs:
        pair.initiate()
        pair.run(until=8)
    summaries = [e for e in logs if e["event"].startswith("suppressed")]
    assert [e["event"] for e in summaries] == [
        "suppressed 3 drops: per-source half-open limit reached"
    ]
    assert len(pair.r.of(IkeSaEstablished)) == 1
    r.update_config(replace(r.config, drop_log_lines=0))  # 0: every line
    with structlog.testing.capture_logs() as logs:
        flood(r, 20, start=9.0, step=0.01, seed=668)
    drops = [e for e in logs if e.get("reason") == "per-source half-open limit reached"]
    assert len(drops) == 20  # the attacker still holds its 5 half-open SAs


def test_half_open_table_counts_per_source() -> None:
    table: HalfOpenTable[str] = HalfOpenTable()
    a, b = (ATTACKER, 500), (ADDR_I, 4500)
    table[(b"1" * 8, a)] = "x"
    table[(b"2" * 8, a)] = "y"
    table[(b"2" * 8, a)] = "y2"  # a replacement is not a second SA
    table[(b"3" * 8, b)] = "z"
    assert table.count(ATTACKER) == 2 and table.count(ADDR_I) == 1 and table.sources == 2
    assert table.pop((b"9" * 8, a)) is None and table.count(ATTACKER) == 2
    assert table.pop((b"1" * 8, a)) == "x"
    del table[(b"2" * 8, a)]
    assert table.count(ATTACKER) == 0 and table.sources == 1  # no entry left at zero
    assert table.get((b"3" * 8, b)) == "z" and len(table) == 1


def test_log_limiter_windows_and_summary() -> None:
    limiter = LogLimiter(lines=2, interval=1.0)
    assert [limiter.admit("a", 0.1 * n) for n in range(4)] == [
        (True, 0),
        (True, 0),
        (False, 0),
        (False, 0),
    ]
    assert limiter.admit("b", 0.5) == (True, 0)  # reasons are limited apart
    assert limiter.admit("a", 1.2) == (True, 2)  # new interval: summarize the 2 suppressed
    assert limiter.admit("a", 1.3) == (True, 0)
    assert limiter.admit("a", 1.4) == (False, 0)
    assert limiter.flush(5.0) == [("a", 1)]
    assert LogLimiter(lines=0, interval=1.0).admit("a", 0.0) == (True, 0)  # disabled


# a window start whose end does not round-trip: (START + 10) - START == 9.999999999999986
AWKWARD_START = 126.40685752053078


def test_log_limiter_window_ends_at_its_own_deadline() -> None:
    """flush(deadline()) must end the window deadline() reported, whatever the float rounding:
    the engine's timer is that deadline, so a window that outlives it stops the clock."""
    limiter = LogLimiter(lines=1, interval=10.0)
    assert limiter.admit("a", AWKWARD_START) == (True, 0)
    assert limiter.admit("a", AWKWARD_START) == (False, 0)
    due = limiter.deadline()
    assert due == AWKWARD_START + 10.0
    assert limiter.flush(due) == [("a", 1)]
    assert limiter.deadline() is None
    assert limiter.admit("a", due) == (True, 0)  # admit() agrees: a new window at the deadline


def test_summary_deadline_is_consumed_by_the_timer_at_an_awkward_start() -> None:
    """A flood at a time whose window end rounds: handle_timer(get_timer()) must move the
    engine's timer on (it used to report the same instant forever, so a driver that follows
    get_timer() never advanced its clock)."""
    conn_i, conn_r = psk_connections()
    config = gate_config(conn_r, drop_log_lines=1, drop_log_interval=10.0)
    pair = Pair(conn_i, conn_r, engine_r=config)
    pair.now = AWKWARD_START
    peer, local = (ATTACKER, 500), (ADDR_R, 500)
    for _ in range(3):  # one logged, two suppressed
        pair.r.engine.receive_datagram(b"\x00garbage", peer, local, pair.now)
    due = pair.r.engine.get_timer()
    assert due == AWKWARD_START + 10.0
    with structlog.testing.capture_logs() as logs:
        pair.r.engine.handle_timer(due)
    assert [e["event"] for e in logs] == ["suppressed 2 drops: undecodable datagram"]
    assert pair.r.engine.get_timer() is None
    pair.run(until=pair.now + 100, max_steps=10)  # settles: nothing is left to do


def test_cookie_demand_still_answered_when_its_log_line_is_suppressed() -> None:
    conn_i, conn_r = psk_connections()
    config = gate_config(conn_r, cookie_threshold=0, drop_log_lines=1, block_threshold=0)
    pair = Pair(conn_i, conn_r, engine_r=config)
    flood(pair.r.engine, 3, start=0.0, step=0.001)
    pair.initiate()
    pair.run(until=5)
    assert len(pair.i.of(IkeSaEstablished)) == 1
    assert pair.delivered == 6  # the COOKIE round, then the two exchanges


def test_summary_falls_due_on_the_timer_when_no_datagram_follows() -> None:
    """The flood stops: the suppressed-lines summary must not wait for the next IKE_SA_INIT."""
    conn_i, conn_r = psk_connections()
    config = gate_config(conn_r, drop_log_lines=2, drop_log_interval=5.0)
    r = Pair(conn_i, conn_r, engine_r=config).r.engine
    flood(r, 10, start=0.0, step=0.01)  # 5 admitted, 5 refused: 2 logged, 3 suppressed
    deadline = r.get_timer()
    assert conn_r.timers.half_open_timeout > 10  # so the deadline below is the summary's
    assert deadline is not None and 5.0 < deadline <= 5.1  # 5 s after the first refusal
    with structlog.testing.capture_logs() as logs:
        r.handle_timer(deadline)
    summaries = [e["event"] for e in logs if e["event"].startswith("suppressed")]
    assert summaries == ["suppressed 3 drops: per-source half-open limit reached"]
    later = r.get_timer()
    assert later is not None and later > 10  # nothing more to summarize: the half-open timeout


def test_undecodable_and_unknown_spi_floods_log_bounded_lines() -> None:
    conn_i, conn_r = psk_connections()
    config = gate_config(conn_r, drop_log_lines=5, drop_log_interval=10.0)
    r = Pair(conn_i, conn_r, engine_r=config).r.engine
    peer, local = (ATTACKER, 500), (ADDR_R, 500)
    # an IKE header with unknown SPIs (an INFORMATIONAL request), and plain garbage
    unknown = bytes(range(1, 9)) + bytes(range(9, 17)) + bytes([0, 0x20, 37, 0x08]) + bytes(4)
    unknown += (28).to_bytes(4, "big")
    with structlog.testing.capture_logs() as logs:
        for i in range(1000):
            r.receive_datagram(b"\x00garbage" * (1 + i % 3), peer, local, i * 0.001)
            r.receive_datagram(unknown, peer, local, i * 0.001)
    dropped = [e for e in logs if e["event"] == "datagram dropped" and e["log_level"] == "info"]
    assert len([e for e in dropped if e["reason"] == "unknown IKE SPI"]) == 5
    assert len([e for e in dropped if e["reason"] != "unknown IKE SPI"]) == 5
    assert len([e for e in logs if e["log_level"] != "debug"]) <= 12
    assert not r.sas
    with structlog.testing.capture_logs() as logs:
        r.handle_timer(10.5)
    summaries = sorted(e["event"] for e in logs if e["event"].startswith("suppressed"))
    assert summaries == [
        "suppressed 995 drops: undecodable datagram",
        "suppressed 995 drops: unknown IKE SPI",
    ]


def test_forged_messages_on_an_established_sa_log_bounded_lines_and_leave_it_usable() -> None:
    """Valid SPIs, broken ICVs and stray message IDs: each is dropped before authentication,
    logged at info a bounded number of times (debug shows every one), and the IKE SA stays
    usable: a child rekey afterwards completes."""
    conn_i, conn_r = psk_connections()
    config = EngineConfig((conn_r,), drop_log_lines=3, drop_log_interval=10.0)
    pair = Pair(conn_i, conn_r, engine_r=config)
    sa_id = pair.initiate()
    pair.run(until=5)
    (established,) = pair.i.of(ChildSaEstablished)
    r = pair.r.engine
    pair.i.engine.rekey_child(sa_id, established.spi_in, pair.now)
    (request,) = pair.i.engine.datagrams_to_send()
    broken_icv = request.data[:-1] + bytes([request.data[-1] ^ 1])
    header = bytearray(request.data)
    header[20:24] = (1000).to_bytes(4, "big")  # a message ID outside the window
    stray = bytes(header)
    with structlog.testing.capture_logs() as logs:
        for _ in range(500):
            r.receive_datagram(broken_icv, request.local, request.remote, pair.now)
            r.receive_datagram(stray, request.local, request.remote, pair.now)
    info = [e for e in logs if e["log_level"] == "info"]
    debug = [e for e in logs if e["log_level"] == "debug" and "dropped" in e["event"]]
    assert len(info) == 6 and len(debug) == 994
    assert {e["reason"] for e in info} == {"request ICV check failed", "unexpected message ID"}
    assert not r.datagrams_to_send()  # nothing answered
    # the real request still works: the rekey completes on both sides
    pair.r.events += r.receive_datagram(request.data, request.local, request.remote, pair.now)
    pair.run(until=pair.now + 5)
    assert len(pair.i.of(ChildSaEstablished)) == 2 and len(pair.r.of(ChildSaEstablished)) == 2
