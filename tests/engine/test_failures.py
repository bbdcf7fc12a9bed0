"""Failure scenarios: each asserts the exact notify and that no side keeps state it should not.

RFC 7296 §2.21 (error handling), §2.6 (COOKIE), §1.2 (INVALID_KE_PAYLOAD), §2.4 (liveness).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from ikev2.constants import NotifyType
from ikev2.engine.config import EngineConfig, Timers
from ikev2.engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    Datagram,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
)
from ikev2.engine.state import IkeState

from .pairing import Pair, Side, fqdn, psk_connections


def test_no_common_proposal() -> None:
    conn_i, conn_r = psk_connections("aes128-sha256-modp2048", ike_r="aes256gcm16-prfsha256-x25519")
    pair = Pair(conn_i, conn_r)
    pair.initiate()
    pair.run()
    (failed,) = pair.i.of(IkeSaFailed)
    assert failed.notify is NotifyType.NO_PROPOSAL_CHOSEN
    assert not pair.r.events and not pair.r.engine.sas and not pair.i.engine.sas


def test_invalid_ke_payload_retry_in_requested_group() -> None:
    conn_i, conn_r = psk_connections(
        "aes256gcm16-prfsha256-x25519-ecp256", ike_r="aes256gcm16-prfsha256-ecp256"
    )
    pair = Pair(conn_i, conn_r)
    pair.initiate()
    pair.run(until=1)
    (established,) = pair.i.of(IkeSaEstablished)
    assert established.suite.endswith("ECP256")
    assert pair.delivered == 6  # INVALID_KE_PAYLOAD round, then the two exchanges


def test_cookie_round_when_responder_is_under_load() -> None:
    conn_i, conn_r = psk_connections()
    pair = Pair(conn_i, conn_r, engine_r=EngineConfig((conn_r,), cookie_threshold=0))
    pair.initiate()
    pair.run(until=1)
    assert len(pair.i.of(IkeSaEstablished)) == 1 and len(pair.r.of(IkeSaEstablished)) == 1
    assert pair.delivered == 6  # COOKIE round first


def test_forged_cookie_is_refused() -> None:
    conn_i, conn_r = psk_connections()
    pair = Pair(conn_i, conn_r, engine_r=EngineConfig((conn_r,), cookie_threshold=0))
    gate = pair.r.engine.cookies
    nonce, spi = b"n" * 32, b"s" * 8
    ip = conn_i.local_addrs[0]
    good = gate.make(nonce, ip, spi, 0.0)
    assert gate.verify(good, nonce, ip, spi, 1.0)
    assert not gate.verify(good[:-1] + bytes([good[-1] ^ 1]), nonce, ip, spi, 1.0)
    assert not gate.verify(good, nonce, ip, b"t" * 8, 1.0)
    # still valid after one rotation, not after two
    assert gate.verify(good, nonce, ip, spi, 150.0)
    assert not gate.verify(good, nonce, ip, spi, 300.0)


def test_responder_rejects_unknown_initiator_id() -> None:
    conn_i, conn_r = psk_connections()
    pair = Pair(conn_i, replace(conn_r, remote_id=fqdn("someone.else")))
    pair.initiate()
    pair.run()
    assert pair.i.of(IkeSaFailed)[0].notify is NotifyType.AUTHENTICATION_FAILED
    assert pair.r.of(IkeSaFailed)[0].notify is NotifyType.AUTHENTICATION_FAILED
    assert not pair.i.engine.sas and not pair.r.engine.sas


def test_initiator_rejects_responder_auth() -> None:
    conn_i, conn_r = psk_connections()
    # the responder accepts the initiator but proves itself with another key (§2.21.2)
    bad_local = replace(conn_r.local_auth, psk=b"not the secret the initiator expects")
    pair = Pair(conn_i, replace(conn_r, local_auth=bad_local))
    pair.initiate()
    pair.run()
    assert pair.i.of(IkeSaFailed)[0].notify is NotifyType.AUTHENTICATION_FAILED
    assert not pair.i.engine.sas
    # the responder heard AUTHENTICATION_FAILED in an INFORMATIONAL and dropped its SA
    assert pair.r.of(IkeSaEstablished) and pair.r.of(IkeSaDeleted)
    assert not pair.r.engine.sas


def test_unacceptable_traffic_selectors_keep_the_ike_sa() -> None:
    conn_i, conn_r = psk_connections(net_r="10.2.0.0/24")
    conn_r = psk_connections(net_i="10.9.0.0/24", net_r="10.8.0.0/24")[1]
    pair = Pair(conn_i, conn_r)
    pair.initiate()
    pair.run(until=5)
    (failed,) = pair.i.of(ChildSaFailed)
    assert failed.notify is NotifyType.TS_UNACCEPTABLE
    assert not pair.i.of(ChildSaEstablished) and not pair.r.of(ChildSaEstablished)
    assert len(pair.i.of(IkeSaEstablished)) == 1  # §1.2: only the child failed
    (sa,) = pair.i.engine.sas.values()
    assert sa.state is IkeState.ESTABLISHED and not sa.children


@pytest.mark.parametrize("seed", range(8))
def test_lossy_link_converges(seed: int) -> None:
    timers = Timers(retransmit_tries=10, dpd_delay=0)
    conn_i, conn_r = psk_connections()
    pair = Pair(
        replace(conn_i, timers=timers),
        replace(conn_r, timers=timers),
        seed=seed,
        loss=0.3,
        duplicate=0.2,
        reorder=0.3,
    )
    pair.initiate()
    pair.run(until=600)
    assert len(pair.i.of(IkeSaEstablished)) == 1 and len(pair.r.of(IkeSaEstablished)) == 1
    assert len(pair.i.of(ChildSaEstablished)) == 1 and len(pair.r.of(ChildSaEstablished)) == 1
    (ci,) = pair.i.of(ChildSaEstablished)
    (cr,) = pair.r.of(ChildSaEstablished)
    assert ci.outbound.enc_key == cr.inbound.enc_key


def test_duplicated_requests_are_answered_from_cache_not_reprocessed() -> None:
    pair = Pair(*psk_connections(), duplicate=1.0)
    pair.initiate()
    pair.run(until=10)
    assert len(pair.r.of(IkeSaEstablished)) == 1 and len(pair.r.of(ChildSaEstablished)) == 1
    assert len(pair.i.of(IkeSaEstablished)) == 1


def test_retransmit_limit_caps_each_wait_not_the_number_of_tries() -> None:
    """strongSwan's retransmit_limit: 4 × 1.8^n, each wait at most the limit; the same tries."""
    capped = Timers(retransmit_tries=8, retransmit_limit=30)
    assert [capped.retransmit_delay(n) for n in range(5)] == pytest.approx(
        [4, 7.2, 12.96, 23.328, 30]
    )
    assert capped.retransmit_span == pytest.approx(4 + 7.2 + 12.96 + 23.328 + 5 * 30)
    assert Timers(retransmit_tries=8).retransmit_delay(8) == pytest.approx(4 * 1.8**8)
    # a dead peer: the initiator sends 1 + 8 times, at the capped intervals, then gives up
    conn_i, conn_r = psk_connections()
    pair = Pair(replace(conn_i, timers=capped), conn_r)
    sends: list[float] = []

    def black_hole(side: Side, d: Datagram) -> None:
        if side is pair.i:
            sends.append(pair.now)

    pair.tamper = black_hole
    pair.initiate()
    pair.run(until=capped.retransmit_span + 1)
    assert len(sends) == 9
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert max(gaps) == pytest.approx(30) and gaps[:4] == pytest.approx([4, 7.2, 12.96, 23.328])
    assert pair.i.of(IkeSaFailed)


def test_dead_peer_is_detected_and_deleted() -> None:
    timers = Timers(dpd_delay=10, retransmit_tries=2)
    conn_i, conn_r = psk_connections()
    pair = Pair(replace(conn_i, timers=timers), replace(conn_r, timers=timers))
    pair.initiate()
    pair.run(until=1)
    assert pair.i.of(IkeSaEstablished)
    pair.tamper = lambda side, d: None if side is pair.r else d  # the responder vanishes
    pair.r.engine.config = EngineConfig(())
    pair.run(until=200)
    deleted = pair.i.of(IkeSaDeleted)
    assert deleted and "dead" in deleted[0].reason
    assert pair.i.of(ChildSaDeleted)
    assert not pair.i.engine.sas


def test_liveness_checks_keep_a_healthy_sa() -> None:
    timers = Timers(dpd_delay=10)
    conn_i, conn_r = psk_connections()
    pair = Pair(replace(conn_i, timers=timers), replace(conn_r, timers=timers))
    pair.initiate()
    pair.run(until=100)
    assert not pair.i.of(IkeSaDeleted) and not pair.r.of(IkeSaDeleted)
    (sa,) = pair.i.engine.sas.values()
    assert sa.requests.next_id > 5  # several liveness checks went out and were answered


def test_delete_from_initiator_removes_everything_on_both_sides() -> None:
    pair = Pair(*psk_connections())
    sa_id = pair.initiate()
    pair.run(until=1)
    pair.i.events += pair.i.engine.terminate(sa_id, pair.now)
    pair.run(until=2)
    for side in (pair.i, pair.r):
        assert len(side.of(IkeSaDeleted)) == 1 and len(side.of(ChildSaDeleted)) == 1
        assert not side.engine.sas and not side.engine.by_spi


def test_child_delete_keeps_ike_sa() -> None:
    pair = Pair(*psk_connections())
    sa_id = pair.initiate()
    pair.run(until=1)
    (child,) = pair.i.of(ChildSaEstablished)
    pair.i.events += pair.i.engine.terminate_child(sa_id, child.spi_in, pair.now)
    pair.run(until=2)
    for side in (pair.i, pair.r):
        (deleted,) = side.of(ChildSaDeleted)
        assert {deleted.spi_in, deleted.spi_out} == {child.spi_in, child.spi_out}
        assert not side.of(IkeSaDeleted)
        (sa,) = side.engine.sas.values()
        assert not sa.children
