"""Childless IKE SAs (RFC 6023) and swanctl.conf's `childless` policy, engines back to back,
each claim read off the wire with the tap:

    HDR, SA, KEi, Ni  -->   <--  HDR, SA, KEr, Nr, N(CHILDLESS_IKEV2_SUPPORTED)
    HDR, SK {IDi, AUTH}  -->    <--  HDR, SK {IDr, AUTH}          (no SA, TSi, TSr)
    HDR, SK {SA, Ni, TSi, TSr}  -->    <--  HDR, SK {SA, Nr, TSi, TSr}   (CREATE_CHILD_SA)
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest

from ikev2.config import parse_config
from ikev2.constants import NotifyType
from ikev2.engine.config import ChildConfig, Childless, ConnectionConfig, TrafficSelectorSpec
from ikev2.engine.events import (
    ChildSaEstablished,
    IkeSaEstablished,
    IkeSaFailed,
    VirtualIpsAssigned,
)
from ikev2.engine.state import IkeState
from ikev2.errors import ConfigError

from .pairing import Pair, psk_connections, with_
from .test_config_payload import remote_access
from .wiretap import Tap

SUPPORTED = "CHILDLESS_IKEV2_SUPPORTED"


def pair_with(policy_i: Childless, policy_r: Childless, *, children_i: int = 1) -> tuple[Pair, Tap]:
    conn_i, conn_r = psk_connections()
    extra = tuple(
        replace(
            conn_i.children[0],
            name=f"extra{n}",
            local_ts=(TrafficSelectorSpec(ipaddress.ip_network(f"10.1.{n}.0/24")),),
        )
        for n in range(1, children_i)
    )
    extra_r = tuple(replace(conn_r.children[0], name=c.name, remote_ts=c.local_ts) for c in extra)
    conn_i = with_(conn_i, childless=policy_i, children=conn_i.children[:children_i] + extra)
    conn_r = with_(conn_r, childless=policy_r, children=conn_r.children + extra_r)
    pair = Pair(conn_i, conn_r)
    return pair, Tap(pair)


def auth_carries_child(tap: Tap) -> bool:
    (request,) = tap.of("IKE_AUTH", response=False)
    return bool(request.proposed_spis)


def children(side_events: list[ChildSaEstablished]) -> list[str]:
    return [e.child for e in side_events]


def test_default_allow_announces_and_keeps_the_child_in_ike_auth() -> None:
    pair, tap = pair_with(Childless.ALLOW, Childless.ALLOW)
    pair.initiate()
    pair.run()
    assert SUPPORTED in tap.notify_names("IKE_SA_INIT", response=True)
    assert SUPPORTED not in tap.notify_names("IKE_SA_INIT", response=False)
    assert auth_carries_child(tap)
    assert not tap.of("CREATE_CHILD_SA")
    assert len(pair.i.of(ChildSaEstablished)) == len(pair.r.of(ChildSaEstablished)) == 1


@pytest.mark.parametrize("policy", [Childless.FORCE, Childless.PREFER])
def test_force_and_prefer_defer_the_first_child_to_create_child_sa(policy: Childless) -> None:
    pair, tap = pair_with(policy, Childless.ALLOW)
    sa_id = pair.initiate()
    pair.run()
    assert not auth_carries_child(tap)  # RFC 6023 §4: IKE_AUTH without SA, TSi, TSr
    (create,) = tap.of("CREATE_CHILD_SA", response=False)
    assert create.message_id == 2 and create.proposed_spis
    (child_i,) = pair.i.of(ChildSaEstablished)
    (child_r,) = pair.r.of(ChildSaEstablished)
    assert child_i.ike_sa_id == sa_id and child_i.child == child_r.child == "net"
    assert child_i.outbound.spi == child_r.inbound.spi
    assert child_i.local_ts == child_r.remote_ts
    assert pair.i.engine.sas[sa_id].state is IkeState.ESTABLISHED


def test_deferred_first_child_goes_ahead_of_the_others_with_its_reqid() -> None:
    pair, tap = pair_with(Childless.FORCE, Childless.ALLOW, children_i=3)
    pair.initiate()
    pair.run()
    assert not auth_carries_child(tap)
    assert len(tap.of("CREATE_CHILD_SA", response=False)) == 3
    made = pair.i.of(ChildSaEstablished)
    assert children(made) == ["net", "extra1", "extra2"]
    assert [e.reqid for e in made] == sorted(e.reqid for e in made)  # drawn at initiate
    assert sorted(children(pair.r.of(ChildSaEstablished))) == ["extra1", "extra2", "net"]


def test_prefer_keeps_the_child_in_ike_auth_when_the_peer_says_nothing() -> None:
    pair, tap = pair_with(Childless.PREFER, Childless.NEVER)
    pair.initiate()
    pair.run()
    assert SUPPORTED not in tap.notify_names("IKE_SA_INIT", response=True)  # never: silent
    assert auth_carries_child(tap)
    assert len(pair.i.of(ChildSaEstablished)) == 1


def test_force_initiator_fails_before_ike_auth_without_the_peers_support() -> None:
    pair, tap = pair_with(Childless.FORCE, Childless.NEVER)
    pair.initiate()
    pair.run(until=100)
    (failed,) = pair.i.of(IkeSaFailed)
    assert "does not support childless" in failed.reason
    assert not tap.of("IKE_AUTH")
    assert not pair.i.engine.sas and not pair.i.of(IkeSaEstablished)


def test_force_responder_refuses_an_ike_auth_carrying_a_child() -> None:
    pair, tap = pair_with(Childless.ALLOW, Childless.FORCE)
    pair.initiate()
    pair.run(until=100)
    assert SUPPORTED in tap.notify_names("IKE_SA_INIT", response=True)
    assert tap.notify_names("IKE_AUTH", response=True) == {"INVALID_SYNTAX"}
    (failed_i,) = pair.i.of(IkeSaFailed)
    assert failed_i.notify is NotifyType.INVALID_SYNTAX
    (failed_r,) = pair.r.of(IkeSaFailed)
    assert "carries a child" in failed_r.reason
    assert not pair.r.of(IkeSaEstablished) and not pair.r.of(ChildSaEstablished)
    assert not pair.i.engine.sas and not pair.r.engine.sas


def test_never_responder_refuses_a_childless_ike_auth() -> None:
    pair, tap = pair_with(Childless.ALLOW, Childless.NEVER, children_i=0)
    pair.initiate()
    pair.run(until=100)
    assert not auth_carries_child(tap)
    assert tap.notify_names("IKE_AUTH", response=True) == {"INVALID_SYNTAX"}
    assert "carries no child" in pair.r.of(IkeSaFailed)[0].reason
    assert not pair.r.of(IkeSaEstablished) and not pair.r.engine.sas


def test_force_responder_accepts_a_childless_ike_sa_then_children_on_demand() -> None:
    """`ikev2 up CONN` of a connection without children, then `up CONN --child NAME` twice:
    both children go under the one IKE SA (initiate_child), none in IKE_AUTH."""
    pair, tap = pair_with(Childless.ALLOW, Childless.FORCE)
    sa_id = pair.i.engine.initiate("net", pair.now, children=())
    pair.run()
    assert not auth_carries_child(tap)
    assert pair.r.of(IkeSaEstablished) and not pair.i.of(ChildSaEstablished)
    assert pair.i.engine.initiate_child("net", "net", pair.now) == sa_id
    pair.run()
    assert pair.i.engine.initiate_child("net", "net", pair.now) == sa_id  # one more, as swanctl
    pair.run()
    made = pair.i.of(ChildSaEstablished)
    assert [e.ike_sa_id for e in made] == [sa_id, sa_id]
    assert len({e.inbound.spi for e in made}) == 2
    assert len(tap.of("CREATE_CHILD_SA", response=False)) == 2
    assert len(pair.i.engine.sas) == 1 and len(pair.r.engine.sas) == 1


def test_initiate_child_without_an_ike_sa_starts_one_carrying_it() -> None:
    pair, tap = pair_with(Childless.ALLOW, Childless.ALLOW)
    sa_id = pair.i.engine.initiate_child("net", "net", pair.now)
    pair.run()
    assert auth_carries_child(tap)
    (made,) = pair.i.of(ChildSaEstablished)
    assert made.ike_sa_id == sa_id


def test_initiate_child_while_the_ike_sa_is_set_up_joins_it() -> None:
    pair, tap = pair_with(Childless.FORCE, Childless.ALLOW)
    sa_id = pair.initiate()
    assert pair.i.engine.initiate_child("net", "net", pair.now) == sa_id
    pair.run()
    assert [e.ike_sa_id for e in pair.i.of(ChildSaEstablished)] == [sa_id, sa_id]
    assert len(tap.of("CREATE_CHILD_SA", response=False)) == 2


def test_deferred_child_of_a_road_warrior_uses_the_virtual_ip() -> None:
    """CP rides in the childless IKE_AUTH (RFC 7296 §2.19); the child that follows in
    CREATE_CHILD_SA is narrowed to the lease on both sides."""
    client, gateway, engine_r = remote_access(v6=None, vips=(ipaddress.ip_address("0.0.0.0"),))
    client = with_(client, childless=Childless.FORCE)
    client_child = replace(
        client.children[0], local_ts=(TrafficSelectorSpec(ipaddress.ip_network("0.0.0.0/0")),)
    )
    client = with_(client, children=(client_child,))
    pair = Pair(client, gateway, engine_r=engine_r)
    tap = Tap(pair)
    pair.initiate()
    pair.run()
    assert not auth_carries_child(tap)
    (vips,) = pair.i.of(VirtualIpsAssigned)
    (child_i,) = pair.i.of(ChildSaEstablished)
    (child_r,) = pair.r.of(ChildSaEstablished)
    lease = ipaddress.ip_network(f"{vips.vips[0]}/32")
    assert [ts.network for ts in child_i.local_ts] == [lease]
    assert [ts.network for ts in child_r.remote_ts] == [lease]


# --- configuration
BASE = """
[connections.rw]
remote_addrs = ["192.0.2.2"]
{extra}
[connections.rw.local]
auth = "psk"
id = "moon.example"
[connections.rw.remote]
auth = "psk"
id = "sun.example"
[secrets.ike-1]
ids = ["moon.example", "sun.example"]
secret = "a long and hard to guess secret, for tests only"
"""


def _conn(extra: str, tmp_path: Path) -> ConnectionConfig:
    path = tmp_path / "c.toml"
    return parse_config(BASE.format(extra=extra), path).engine.connections[0]


@pytest.mark.parametrize("value", ["allow", "prefer", "force", "never", "FORCE"])
def test_config_childless_values(value: str, tmp_path: Path) -> None:
    conn = _conn(f'childless = "{value}"', tmp_path)
    assert conn.childless is Childless(value.lower())


def test_config_childless_default_and_mistake(tmp_path: Path) -> None:
    assert _conn("", tmp_path).childless is Childless.ALLOW
    with pytest.raises(ConfigError) as err:
        _conn('childless = "sometimes"', tmp_path)
    assert "connections.rw.childless" in str(err.value) and "force" in str(err.value)


def test_child_config_names_are_what_initiate_child_looks_up() -> None:
    conn_i, _ = psk_connections()
    assert isinstance(conn_i.child("net"), ChildConfig)
    with pytest.raises(KeyError):
        conn_i.child("nope")


def test_reauthentication_under_force_is_childless_too() -> None:
    """§2.8.3 reauthentication builds a new IKE SA with its children: under force its IKE_AUTH
    is childless as well and the child follows in CREATE_CHILD_SA, keeping its reqid."""
    pair, tap = pair_with(Childless.FORCE, Childless.ALLOW)
    sa_id = pair.initiate()
    pair.run()
    (first,) = pair.i.of(ChildSaEstablished)
    pair.i.events += pair.i.engine.reauthenticate(sa_id, pair.now)
    pair.run(until=pair.now + 30)
    auths = tap.of("IKE_AUTH", response=False)
    assert len(auths) == 2 and not any(a.proposed_spis for a in auths)
    assert len(tap.of("CREATE_CHILD_SA", response=False)) == 2
    (new_sa,) = pair.i.engine.sas.values()
    assert new_sa.id != sa_id and len(new_sa.children) == 1
    assert new_sa.children[0].reqid == first.reqid
