"""Collisions while RFC 9370 IKE_FOLLOWUP_KE exchanges are out (issue 15): both peers rekey the
same child, or the IKE SA, at once, with additional key exchanges; nonces fixed so each side
wins in turn (RFC 7296 §2.8.1, §2.8.2). No SA may be lost or duplicated, nothing deleted twice,
and every surviving SA's keys agree on both sides."""

from __future__ import annotations

import pytest

from ikev2.constants import ExchangeType
from ikev2.engine.events import ChildSaDeleted, ChildSaEstablished, IkeSaEstablished

from .pairing import Pair, psk_connections, settle
from .test_collisions import SIDES, losing_nonce_first, rekey_child, rekey_ike, sides
from .test_intermediate import Tap
from .test_rekey import assert_consistent

HYBRID = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
PFS = "aes256gcm16-x25519-ke1_mlkem768"


def established() -> Pair:
    pair = Pair(*psk_connections(HYBRID, PFS))
    pair.initiate()
    pair.run(until=1)
    assert len(pair.i.of(ChildSaEstablished)) == len(pair.r.of(ChildSaEstablished)) == 1
    return pair


def keys_agree(pair: Pair) -> None:
    for sa_i in pair.i.engine.sas.values():
        (sa_r,) = [s for s in pair.r.engine.sas.values() if s.spi_i == sa_i.spi_i]
        assert sa_i.keys == sa_r.keys
    events_i = {e.spi_in: e for e in pair.i.of(ChildSaEstablished)}
    events_r = {e.spi_in: e for e in pair.r.of(ChildSaEstablished)}
    for sa in pair.i.engine.sas.values():
        for child in sa.children:
            mine, theirs = events_i[child.spi_in], events_r[child.spi_out]
            assert mine.outbound.enc_key == theirs.inbound.enc_key


def both_followed_up(tap: Tap) -> None:
    """Each peer's rekey ran its IKE_FOLLOWUP_KE: the collision really had follow-ups out."""
    for from_initiator in (True, False):
        assert tap.headers(from_initiator, ExchangeType.IKE_FOLLOWUP_KE)


@pytest.mark.parametrize("winner", SIDES)
def test_simultaneous_child_rekey_with_followups(winner: str) -> None:
    pair = established()
    win, lose = sides(pair, winner)
    tap = Tap(pair)
    losing_nonce_first(pair, lose)
    rekey_child(win, pair)
    rekey_child(lose, pair)
    pair.run(until=30)
    settle(pair)
    assert_consistent(pair, children=1)
    keys_agree(pair)
    both_followed_up(tap)
    for side in (pair.i, pair.r):
        gone = [e.spi_in for e in side.of(ChildSaDeleted)]
        assert len(gone) == len(set(gone))  # never deleted twice
        (child,) = [c for sa in side.engine.sas.values() for c in sa.children]
        assert child.event.suite.endswith("KE1_ML_KEM_768")


@pytest.mark.parametrize("winner", SIDES)
def test_simultaneous_ike_rekey_with_followups(winner: str) -> None:
    pair = established()
    win, lose = sides(pair, winner)
    tap = Tap(pair)
    losing_nonce_first(pair, lose)
    rekey_ike(win, pair)
    rekey_ike(lose, pair)
    pair.run(until=60)
    settle(pair)
    assert_consistent(pair, children=1, ike_sas=1)
    keys_agree(pair)
    both_followed_up(tap)
    for side in (pair.i, pair.r):
        rekeyed = [e for e in side.of(IkeSaEstablished) if e.rekeyed_from is not None]
        assert rekeyed and all(e.suite.endswith("KE1_ML_KEM_768") for e in rekeyed)
        assert not side.of(ChildSaDeleted)  # the child moved, never lost


@pytest.mark.parametrize("ike_rekeyer", SIDES)
def test_child_rekey_while_ike_rekey_with_followups(ike_rekeyer: str) -> None:
    pair = established()
    ike_side, child_side = sides(pair, ike_rekeyer)
    rekey_ike(ike_side, pair)
    rekey_child(child_side, pair)
    pair.run(until=60)
    settle(pair)
    assert_consistent(pair, children=1, ike_sas=1)
    keys_agree(pair)
