"""INITIAL_CONTACT (RFC 7296 §2.4) and strongSwan's `unique = no | never | replace | keep`:
what a responder does with a second IKE SA between the same identities. Several engines on one
simulated network (a restarted peer is a fresh engine), and the config key's errors."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest

from ikev2.config import parse_config
from ikev2.constants import ExchangeType, NotifyType
from ikev2.engine import Engine
from ikev2.engine.config import ConnectionConfig, EngineConfig, Unique
from ikev2.engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    Datagram,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
)
from ikev2.errors import ConfigError
from ikev2.wire import decode_message

from .pairing import ADDR_I, Side, psk_connections, seeded_env

ADDR_I2 = ipaddress.ip_address("192.0.2.3")  # the same peer identity from another address
EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "config" / "example.toml"


class Net:
    """Engines by address; datagrams go to the engine of their destination address."""

    def __init__(self) -> None:
        self.now = 0.0
        self.nodes: dict[object, Side] = {}
        self.log: list[tuple[object, Datagram]] = []  # (sender address, datagram)
        self.seed = 1

    def add(self, conn: ConnectionConfig) -> Side:
        self.seed += 1
        side = Side(Engine(EngineConfig((conn,)), seeded_env(self.seed), strict=True))
        self.nodes[conn.local_addrs[0]] = side
        return side

    def run(self, until: float) -> None:
        for _ in range(10_000):
            moved = False
            for address, side in list(self.nodes.items()):
                for d in side.engine.datagrams_to_send():
                    moved = True
                    self.log.append((address, d))
                    target = self.nodes.get(d.remote[0])
                    if target is not None:
                        target.events += target.engine.receive_datagram(
                            d.data, d.local, d.remote, self.now
                        )
            if moved:
                continue
            timers = [t for s in self.nodes.values() if (t := s.engine.get_timer()) is not None]
            if not timers or min(timers) > until:
                return
            self.now = max(self.now, min(timers))
            for side in self.nodes.values():
                side.events += side.engine.handle_timer(self.now)
        raise AssertionError("network did not settle")

    def informational_from(self, address: object, start: int = 0) -> int:
        return sum(
            1
            for sender, d in self.log[start:]
            if sender == address
            and decode_message(d.data).header.exchange == ExchangeType.INFORMATIONAL
            and not decode_message(d.data).header.is_response
        )


def setup(
    unique_r: Unique,
    *,
    unique_i: Unique = Unique.NO,
    other_address: bool = False,
    initial_contact: bool = True,
) -> tuple[Net, Side, Side, int]:
    """Responder `r` with unique_r, one IKE SA from initiator `i` up; returns the net, r, i
    and the responder's id of that IKE SA."""
    conn_i, conn_r = psk_connections()
    conn_r = replace(conn_r, unique=unique_r, remote_addrs=())  # any peer address
    net = Net()
    r = net.add(conn_r)
    i = net.add(replace(conn_i, unique=unique_i, send_initial_contact=initial_contact))
    i.engine.initiate("net", net.now)
    net.run(until=1)
    (first,) = r.engine.sas
    assert r.of(IkeSaEstablished) and len(r.of(ChildSaEstablished)) == 1
    return net, r, i, first


def restarted(
    net: Net, *, unique_i: Unique = Unique.NO, address: object = ADDR_I, ic: bool = True
) -> Side:
    """The same peer, restarted (a fresh engine: it knows no IKE SA), initiating again."""
    conn_i, _ = psk_connections()
    conn = replace(conn_i, unique=unique_i, local_addrs=(address,), send_initial_contact=ic)
    side = net.add(conn)
    side.engine.initiate("net", net.now)
    return side


def test_initial_contact_from_a_restarted_peer_replaces_the_old_ike_sa() -> None:
    net, r, _old_i, first = setup(Unique.NO)  # swanctl's default: INITIAL_CONTACT still counts
    mark = len(net.log)
    i = restarted(net)
    net.run(until=5)
    (kept,) = r.engine.sas
    assert kept != first and i.of(IkeSaEstablished)
    (gone,) = r.of(IkeSaDeleted)
    assert gone.ike_sa_id == first and "INITIAL_CONTACT" in gone.reason
    assert [e.ike_sa_id for e in r.of(ChildSaDeleted)] == [first]  # its child went with it
    assert net.informational_from(r.engine.config.connections[0].local_addrs[0], mark) == 0


def test_unique_never_ignores_initial_contact() -> None:
    net, r, _old_i, first = setup(Unique.NEVER)
    restarted(net)
    net.run(until=5)
    assert first in r.engine.sas and len(r.engine.sas) == 2
    assert not r.of(IkeSaDeleted)


def test_never_on_the_initiator_sends_no_initial_contact() -> None:
    net, r, _old_i, first = setup(Unique.NO)
    restarted(net, unique_i=Unique.NEVER)
    net.run(until=5)
    assert first in r.engine.sas and len(r.engine.sas) == 2


def test_a_second_up_sends_no_initial_contact() -> None:
    """strongSwan's has_contact: an initiator that holds an IKE SA with the peer does not
    claim to have none, so a second `up` does not cost the first."""
    net, r, i, first = setup(Unique.NO)
    i.engine.initiate("net", net.now)
    net.run(until=5)
    assert len(r.engine.sas) == 2 and first in r.engine.sas
    assert len(i.engine.sas) == 2 and not r.of(IkeSaDeleted)


def test_unique_no_keeps_a_duplicate_without_initial_contact() -> None:
    net, r, _old_i, first = setup(Unique.NO)
    restarted(net, address=ADDR_I2, ic=False)
    net.run(until=30)
    assert len(r.engine.sas) == 2 and first in r.engine.sas


def test_unique_replace_deletes_the_old_ike_sa_of_another_address_at_once() -> None:
    net, r, old_i, first = setup(Unique.REPLACE)
    i2 = restarted(net, address=ADDR_I2, ic=False)
    net.run(until=2)
    (kept,) = r.engine.sas
    assert kept != first and i2.of(IkeSaEstablished)
    (gone,) = r.of(IkeSaDeleted)
    assert gone.ike_sa_id == first and "unique" in gone.reason
    assert old_i.of(IkeSaDeleted)  # told with a Delete (RFC 7296 §1.4.1)
    assert not old_i.engine.sas


def test_unique_replace_gives_a_suspected_reauthentication_ten_seconds() -> None:
    net, r, _old_i, first = setup(Unique.REPLACE)
    restarted(net, ic=False)  # same address, no INITIAL_CONTACT: looks like §2.8.3
    net.run(until=9)
    assert first in r.engine.sas and len(r.engine.sas) == 2
    mark = len(net.log)
    net.run(until=15)
    assert first not in r.engine.sas and len(r.engine.sas) == 1
    (gone,) = r.of(IkeSaDeleted)
    assert gone.ike_sa_id == first
    # deleted with the peer (a Delete), not silently: the peer may still hold it
    assert net.informational_from(r.engine.config.connections[0].local_addrs[0], mark) >= 1


def test_unique_keep_refuses_the_new_ike_sa() -> None:
    net, r, old_i, first = setup(Unique.KEEP)
    i2 = restarted(net, address=ADDR_I2, ic=False)
    net.run(until=5)
    assert list(r.engine.sas) == [first] and old_i.engine.sas
    (failed,) = i2.of(IkeSaFailed)
    assert failed.notify is NotifyType.AUTHENTICATION_FAILED
    assert len(r.of(ChildSaEstablished)) == 1 and not i2.of(ChildSaEstablished)
    (refused,) = r.of(IkeSaFailed)
    assert "unique = keep" in refused.reason


def test_unique_keep_still_yields_to_initial_contact() -> None:
    net, r, _old_i, first = setup(Unique.KEEP)
    restarted(net, address=ADDR_I2)
    net.run(until=5)
    assert first not in r.engine.sas and len(r.engine.sas) == 1


# --- the config key


def example(line: str) -> str:
    return EXAMPLE.read_text().replace("fragmentation = true", f"{line}\nfragmentation = true", 1)


@pytest.mark.parametrize("value", [u.value for u in Unique])
def test_unique_key_is_read(value: str) -> None:
    config = parse_config(example(f'unique = "{value}"'), EXAMPLE)
    assert config.engine.connections[0].unique is Unique(value)


def test_unique_defaults_to_no() -> None:
    assert parse_config(EXAMPLE.read_text(), EXAMPLE).engine.connections[0].unique is Unique.NO


@pytest.mark.parametrize("text", ['unique = "yes"', "unique = 1"])
def test_a_bad_unique_names_file_key_and_fix(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(example(text), EXAMPLE)
    message = str(info.value)
    assert message.startswith(f"{EXAMPLE}: connections.net.unique: "), message
    assert "(fix: " in message
