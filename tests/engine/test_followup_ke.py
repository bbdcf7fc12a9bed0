"""RFC 9370 §2.2.4 IKE_FOLLOWUP_KE: additional key exchanges in CREATE_CHILD_SA, for a child SA
with PFS and for the IKE SA rekey, two engines back to back.

    CREATE_CHILD_SA { SA(KE, ADDKE1), Ni, KEi, [TSi, TSr] } -->
                        <-- { SA, Nr, KEr, N(ADDITIONAL_KEY_EXCHANGE)(link), [TSi, TSr] }
    IKE_FOLLOWUP_KE { KEi(1), N(ADDITIONAL_KEY_EXCHANGE)(link) } -->  <-- { KEr(1) }
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ikev2.constants import ExchangeType, NotifyType
from ikev2.engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    IkeSaDeleted,
    IkeSaEstablished,
)
from ikev2.engine.tasks import followup_ke
from ikev2.wire import NotifyPayload

from .pairing import Pair, psk_connections, settle
from .test_intermediate import Tap
from .test_kem_paths import unscheduled
from .test_rekey import assert_consistent

HYBRID = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
PFS_ONE = "aes256gcm16-x25519-ke1_mlkem768"
PFS_TWO = "aes256gcm16-ecp256-ke1_mlkem768-ke2_mlkem1024"


def up(ike: str = HYBRID, esp: str = PFS_ONE, **kwargs: object) -> Pair:
    pair = Pair(*psk_connections(ike, esp), **kwargs)  # type: ignore[arg-type]
    pair.initiate()
    pair.run(until=1)
    assert len(pair.i.of(IkeSaEstablished)) == len(pair.r.of(IkeSaEstablished)) == 1
    return pair


@pytest.mark.parametrize("by_initiator", [True, False])
@pytest.mark.parametrize(("esp", "rounds"), [(PFS_ONE, 1), (PFS_TWO, 2)], ids=["one", "two"])
def test_child_rekey_with_additional_key_exchanges(
    by_initiator: bool, esp: str, rounds: int
) -> None:
    pair = up(esp=esp)
    tap = Tap(pair)
    side = pair.i if by_initiator else pair.r
    (old,) = side.of(ChildSaEstablished)
    (sa,) = side.engine.sas.values()
    side.events += side.engine.rekey_child(sa.id, old.spi_in, pair.now)
    pair.run(until=3)
    _, new_i = pair.i.of(ChildSaEstablished)
    _, new_r = pair.r.of(ChildSaEstablished)
    assert new_i.suite == new_r.suite and new_i.suite.endswith(
        "KE1_ML_KEM_768" if rounds == 1 else "KE2_ML_KEM_1024"
    )
    assert new_i.outbound.enc_key == new_r.inbound.enc_key
    assert new_i.inbound.enc_key == new_r.outbound.enc_key
    followups = tap.headers(by_initiator, ExchangeType.IKE_FOLLOWUP_KE)
    assert len({m.header.message_id for m in followups}) == rounds
    for s in (pair.i, pair.r):
        (deleted,) = s.of(ChildSaDeleted)
        assert deleted.spi_in == s.of(ChildSaEstablished)[0].spi_in
    assert_consistent(pair)


@pytest.mark.parametrize("by_initiator", [True, False])
def test_ike_rekey_with_an_additional_key_exchange(by_initiator: bool) -> None:
    pair = up(esp="aes256gcm16")
    tap = Tap(pair)
    side = pair.i if by_initiator else pair.r
    (sa,) = side.engine.sas.values()
    old_spis = (sa.spi_i, sa.spi_r)
    side.events += side.engine.rekey_ike(sa.id, pair.now)
    pair.run(until=3)
    for s in (pair.i, pair.r):
        (new,) = [e for e in s.of(IkeSaEstablished) if e.rekeyed_from is not None]
        assert new.suite.endswith("CURVE25519/KE1_ML_KEM_768")
        assert (new.spi_i, new.spi_r) != old_spis
        (gone,) = s.of(IkeSaDeleted)
        assert gone.reason == "rekeyed"
    (sa_i,) = pair.i.engine.sas.values()
    (sa_r,) = pair.r.engine.sas.values()
    assert sa_i.keys == sa_r.keys and sa_i.keys is not None
    followups = tap.headers(by_initiator, ExchangeType.IKE_FOLLOWUP_KE)
    assert len({m.header.message_id for m in followups}) == 1  # (in fragments: ML-KEM)
    assert_consistent(pair)
    # the new IKE SA works: a child rekey over it completes
    side = pair.i if by_initiator else pair.r
    (new_sa,) = side.engine.sas.values()
    (child,) = new_sa.children
    side.events += side.engine.rekey_child(new_sa.id, child.spi_in, pair.now)
    pair.run(until=5)
    assert_consistent(pair)


@pytest.mark.parametrize("seed", range(4))
def test_followups_over_a_lossy_link(seed: int) -> None:
    pair = up(esp=PFS_TWO, seed=seed + 3)
    pair.loss, pair.duplicate, pair.reorder = 0.2, 0.2, 0.3
    (sa,) = pair.i.engine.sas.values()
    (child,) = sa.children
    pair.i.events += pair.i.engine.rekey_child(sa.id, child.spi_in, pair.now)
    pair.run(until=pair.now + 300)
    settle(pair)
    assert_consistent(pair)
    assert len(pair.i.of(ChildSaEstablished)) == len(pair.r.of(ChildSaEstablished)) == 2


def test_an_unknown_link_gets_state_not_found_and_keeps_the_old_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = followup_ke.FollowupKeExchange.build_i

    def build_i(self, sa, now):  # type: ignore[no-untyped-def]
        payloads = real(self, sa, now)
        return [p if not isinstance(p, NotifyPayload) else followup_ke.link_notify(b"x" * 8)
                for p in payloads]  # fmt: skip

    monkeypatch.setattr(followup_ke.FollowupKeExchange, "build_i", build_i)
    pair = up()
    (sa,) = pair.i.engine.sas.values()
    (child,) = sa.children
    pair.i.events += pair.i.engine.rekey_child(sa.id, child.spi_in, pair.now)
    pair.run(until=3)
    (failed,) = pair.i.of(ChildSaFailed)
    assert "STATE_NOT_FOUND" in failed.reason
    assert len(pair.i.of(ChildSaEstablished)) == len(pair.r.of(ChildSaEstablished)) == 1
    assert not pair.i.of(ChildSaDeleted) and not pair.r.of(ChildSaDeleted)
    assert_consistent(pair)
    assert unscheduled(pair.i.engine) == unscheduled(pair.r.engine) == []
    # the old child rekeys again later, for real
    (sa,) = pair.i.engine.sas.values()
    monkeypatch.undo()
    pair.i.events += pair.i.engine.rekey_child(sa.id, child.spi_in, pair.now)
    pair.run(until=5)
    assert len(pair.i.of(ChildSaEstablished)) == 2
    assert_consistent(pair)


def test_a_followup_request_without_pending_exchange_is_refused() -> None:
    pair = up(esp="aes256gcm16")
    (sa_r,) = pair.r.engine.sas.values()
    answer = followup_ke.respond(sa_r, (followup_ke.link_notify(b"12345678"),), pair.now)
    assert answer == [NotifyPayload(NotifyType.STATE_NOT_FOUND)]


def test_classic_pfs_still_has_no_followup() -> None:
    pair = up(esp="aes256gcm16-x25519")
    tap = Tap(pair)
    (sa,) = pair.i.engine.sas.values()
    (child,) = sa.children
    pair.i.events += pair.i.engine.rekey_child(sa.id, child.spi_in, pair.now)
    pair.run(until=3)
    assert tap.headers(True, ExchangeType.IKE_FOLLOWUP_KE) == []
    assert len(pair.i.of(ChildSaEstablished)) == 2
    assert_consistent(pair)


def test_a_peer_choosing_none_for_the_addke_runs_no_followup() -> None:
    """RFC 9370 §2.2.1: ADDKE NONE chosen: the additional exchange does not take place."""
    conn_i, conn_r = psk_connections(HYBRID, PFS_ONE + "-ke1_none", esp_r="aes256gcm16-x25519")
    pair = Pair(conn_i, conn_r)
    pair.initiate()
    pair.run(until=1)
    tap = Tap(pair)
    (sa,) = pair.i.engine.sas.values()
    (child,) = sa.children
    pair.i.events += pair.i.engine.rekey_child(sa.id, child.spi_in, pair.now)
    pair.run(until=3)
    assert tap.headers(True, ExchangeType.IKE_FOLLOWUP_KE) == []
    _, new_i = pair.i.of(ChildSaEstablished)
    assert new_i.suite.endswith("CURVE25519")
    assert_consistent(pair)


def test_rekey_lifetimes_with_followups_keep_running() -> None:
    conn_i, conn_r = psk_connections(HYBRID, PFS_ONE)
    child_i = replace(conn_i.children[0], rekey_time=30, life_time=60)
    child_r = replace(conn_r.children[0], rekey_time=30, life_time=60)
    pair = Pair(replace(conn_i, children=(child_i,)), replace(conn_r, children=(child_r,)))
    pair.initiate()
    pair.run(until=200)
    assert len(pair.i.of(ChildSaEstablished)) >= 5  # rekeyed every ~30 s, each with a follow-up
    assert_consistent(pair)
