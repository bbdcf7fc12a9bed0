"""dpd_action / close_action (swanctl.conf, per child): `restart` brings the child up again
when the peer is found dead (RFC 7296 §2.4) or deletes the IKE SA (§1.4.1); `clear` does not.
Back-to-back engines; a dead peer is a link that drops everything it sends."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ikev2.config import parse_config
from ikev2.engine.config import ConnectionConfig, Recovery, Timers
from ikev2.engine.events import ChildSaEstablished, IkeSaDeleted, IkeSaEstablished, IkeSaFailed
from ikev2.errors import ConfigError

from .pairing import Pair, psk_connections

TIMERS = Timers(dpd_delay=10, retransmit_timeout=1, retransmit_base=1.5, retransmit_tries=2)
EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "config" / "example.toml"


def with_actions(conn: ConnectionConfig, dpd: Recovery, close: Recovery) -> ConnectionConfig:
    child = replace(conn.children[0], dpd_action=dpd, close_action=close)
    return replace(conn, children=(child,), timers=TIMERS)


def up(dpd: Recovery = Recovery.CLEAR, close: Recovery = Recovery.CLEAR) -> tuple[Pair, int]:
    conn_i, conn_r = psk_connections()
    pair = Pair(with_actions(conn_i, dpd, close), replace(conn_r, timers=TIMERS))
    first = pair.initiate()
    pair.run(until=1)
    assert len(pair.i.of(ChildSaEstablished)) == 1
    return pair, first


def kill_responder(pair: Pair) -> None:
    pair.tamper = lambda side, d: None if side is pair.r else d


def established_after(pair: Pair, first: int) -> list[IkeSaEstablished]:
    return [e for e in pair.i.of(IkeSaEstablished) if e.ike_sa_id != first]


def test_dpd_action_restart_brings_the_child_back_once_the_peer_answers() -> None:
    pair, first = up(dpd=Recovery.RESTART)
    kill_responder(pair)
    while not pair.i.of(IkeSaDeleted):  # a liveness check after 10 s, unanswered
        assert pair.now < 40 and pair.step()
    (dead,) = pair.i.of(IkeSaDeleted)
    assert dead.ike_sa_id == first and dead.reason.startswith("peer dead")
    assert first not in pair.i.engine.sas and pair.i.engine.sas  # a new IKE SA is under way
    pair.tamper = None  # the peer is back (one attempt: keyingtries is not implemented)
    pair.run(until=120)
    (again,) = established_after(pair, first)
    assert [c.config.name for c in pair.i.engine.sas[again.ike_sa_id].children] == ["net"]
    assert len(pair.i.of(ChildSaEstablished)) == 2
    # the responder's stale IKE SA went with our INITIAL_CONTACT (unique.py)
    (kept,) = pair.r.engine.sas.values()
    assert kept.children


def responder_restarts(remote_addrs: bool) -> tuple[Pair, int]:
    """dpd_action = restart on the RESPONDER of the IKE SA; the initiator goes dead."""
    conn_i, conn_r = psk_connections()
    conn_r = with_actions(conn_r, Recovery.RESTART, Recovery.CLEAR)
    if not remote_addrs:  # a responder-only connection: any peer, none to initiate to
        conn_r = replace(conn_r, remote_addrs=())
    pair = Pair(replace(conn_i, timers=TIMERS), conn_r)
    first = pair.initiate()
    pair.run(until=1)
    assert len(pair.r.of(ChildSaEstablished)) == 1
    pair.tamper = lambda side, d: None if side is pair.i else d  # the initiator went away
    while not pair.r.of(IkeSaDeleted):  # the responder's liveness check, unanswered
        assert pair.now < 40 and pair.step()
    (dead,) = pair.r.of(IkeSaDeleted)
    assert dead.reason.startswith("peer dead")
    return pair, first


def test_dpd_action_restart_as_the_responder_initiates_a_new_ike_sa() -> None:
    """Like strongSwan: restart re-initiates whatever our role was, when the connection names
    the peer's address."""
    pair, _ = responder_restarts(remote_addrs=True)
    pair.tamper = None
    pair.run(until=120)
    (again,) = pair.r.of(IkeSaEstablished)[1:]
    sa = pair.r.engine.sas[again.ike_sa_id]
    assert sa.initiator and [c.config.name for c in sa.children] == ["net"]
    assert len(pair.r.engine.sas) == 1  # the dead one is gone, nothing else was started


def test_dpd_action_restart_of_a_responder_only_connection_starts_nothing() -> None:
    pair, _ = responder_restarts(remote_addrs=False)
    pair.tamper = None
    pair.run(until=120)
    assert not pair.r.engine.sas and len(pair.r.of(IkeSaEstablished)) == 1


def test_dpd_action_clear_leaves_it_down() -> None:
    pair, _ = up(dpd=Recovery.CLEAR, close=Recovery.RESTART)
    kill_responder(pair)
    pair.run(until=40)
    assert pair.i.of(IkeSaDeleted) and not pair.i.engine.sas


def test_close_action_restart_after_the_peer_deletes_the_ike_sa() -> None:
    pair, first = up(close=Recovery.RESTART)
    (sa_r,) = pair.r.engine.sas
    pair.r.events += pair.r.engine.terminate(sa_r, pair.now)
    pair.run(until=5)
    (closed,) = pair.i.of(IkeSaDeleted)
    assert closed.reason == "deleted by peer"
    (again,) = established_after(pair, first)
    assert pair.i.engine.sas[again.ike_sa_id].children
    assert len(pair.r.engine.sas) == 1


def test_close_action_does_not_restart_what_we_deleted_ourselves() -> None:
    pair, first = up(dpd=Recovery.RESTART, close=Recovery.RESTART)
    pair.i.events += pair.i.engine.terminate(first, pair.now)
    pair.run(until=30)
    assert not pair.i.engine.sas and not pair.r.engine.sas
    assert not established_after(pair, first)


def test_a_rekeyed_ike_sa_restarts_nothing() -> None:
    pair, first = up(dpd=Recovery.RESTART, close=Recovery.RESTART)
    pair.i.events += pair.i.engine.rekey_ike(first, pair.now)
    pair.run(until=5)
    assert len(pair.i.engine.sas) == 1
    assert [e.rekeyed_from for e in established_after(pair, first)] == [first]
    assert len(pair.i.of(ChildSaEstablished)) == 1  # the child moved, nothing was recreated


# --- the config keys


def example(child_line: str) -> str:
    text = EXAMPLE.read_text()
    marker = "[connections.net.children."
    start = text.index(marker)
    end = text.index("\n", start)
    return text[: end + 1] + child_line + "\n" + text[end + 1 :]


@pytest.mark.parametrize(
    ("line", "dpd", "close"),
    [
        ('dpd_action = "restart"', Recovery.RESTART, Recovery.CLEAR),
        ('close_action = "start"', Recovery.CLEAR, Recovery.RESTART),  # 5.9.8's spelling
        ('close_action = "none"', Recovery.CLEAR, Recovery.CLEAR),
    ],
)
def test_actions_are_read(line: str, dpd: Recovery, close: Recovery) -> None:
    child = parse_config(example(line), EXAMPLE).engine.connections[0].children[0]
    assert (child.dpd_action, child.close_action) == (dpd, close)


@pytest.mark.parametrize(
    ("line", "words"),
    [('dpd_action = "trap"', "not supported yet"), ('close_action = "later"', "not allowed")],
)
def test_bad_actions_name_file_key_and_fix(line: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(example(line), EXAMPLE)
    message = str(info.value)
    key = line.split()[0]
    assert ": connections.net.children." in message and f".{key}: " in message, message
    assert words in message and "(fix: use " in message


# --- keyingtries


def dead_peer_pair(keyingtries: int) -> Pair:
    conn_i, conn_r = psk_connections()
    pair = Pair(replace(conn_i, timers=TIMERS, keyingtries=keyingtries), conn_r)
    kill_responder(pair)
    pair.initiate()
    return pair


@pytest.mark.parametrize("tries", [1, 3])
def test_keyingtries_bounds_the_attempts(tries: int) -> None:
    pair = dead_peer_pair(tries)
    pair.run(until=600)
    failed = pair.i.of(IkeSaFailed)
    assert len(failed) == tries and len({e.ike_sa_id for e in failed}) == tries
    assert all("retransmits exhausted" in e.reason for e in failed)
    assert not pair.i.engine.sas


def test_keyingtries_zero_keeps_trying_until_the_peer_answers() -> None:
    pair = dead_peer_pair(0)
    while len(pair.i.of(IkeSaFailed)) < 5:
        assert pair.now < 600 and pair.step()
    pair.tamper = None
    pair.run(until=pair.now + 60)
    (up_,) = pair.i.of(IkeSaEstablished)
    assert pair.i.engine.sas[up_.ike_sa_id].children
    assert up_.ike_sa_id not in pair.i.engine.retries.pending


def test_a_refusal_is_not_retried() -> None:
    conn_i, conn_r = psk_connections(psk_r=b"another long secret that does not match ours!")
    pair = Pair(replace(conn_i, keyingtries=0), conn_r)
    pair.initiate()
    pair.run(until=60)
    (failed,) = pair.i.of(IkeSaFailed)
    assert failed.notify is not None and not pair.i.engine.sas


@pytest.mark.parametrize(
    ("text", "words"), [("keyingtries = -1", ">= 0"), ('keyingtries = "x"', "type")]
)
def test_bad_keyingtries_names_file_key_and_fix(text: str, words: str) -> None:
    conf = EXAMPLE.read_text().replace("fragmentation = true", f"{text}\nfragmentation = true", 1)
    with pytest.raises(ConfigError) as info:
        parse_config(conf, EXAMPLE)
    assert ": connections.net.keyingtries: " in str(info.value) and words in str(info.value)


def test_keyingtries_is_read() -> None:
    conf = EXAMPLE.read_text().replace(
        "fragmentation = true", "keyingtries = 0\nfragmentation = true", 1
    )
    assert parse_config(conf, EXAMPLE).engine.connections[0].keyingtries == 0
    assert parse_config(EXAMPLE.read_text(), EXAMPLE).engine.connections[0].keyingtries == 1
