"""CP after EAP (RFC 7296 §2.16, §2.19): the virtual IP rides with the final AUTH round and the
lease belongs to the EAP identity, so two EAP users behind one IKE ID get two addresses."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from ikev2.engine.config import EngineConfig, PoolConfig, TrafficSelectorSpec
from ikev2.engine.events import ChildSaEstablished, VirtualIpsAssigned

from .pairing import Pair, Side
from .test_eap_auth import eap_connections

ip = ipaddress.ip_address
POOL = PoolConfig("rw4", ip("10.3.0.1"), ip("10.3.0.9"))


def remote_access_eap(user: bytes, password: bytes):  # type: ignore[no-untyped-def]
    conn_i, conn_r = eap_connections("mschapv2", eap_id=user, user=user, ask_identity=True)
    conn_i = replace(conn_i, local_auth=replace(conn_i.local_auth, eap_secret=password))
    any4 = (TrafficSelectorSpec(ipaddress.ip_network("0.0.0.0/0")),)
    pool_net = (TrafficSelectorSpec(ipaddress.ip_network("10.3.0.0/28")),)
    child_i = replace(conn_i.children[0], local_ts=any4)
    child_r = replace(conn_r.children[0], remote_ts=pool_net)
    client = replace(conn_i, vips=(ip("0.0.0.0"),), children=(child_i,))
    gateway = replace(conn_r, pools=("rw4",), children=(child_r,))
    return client, gateway


def test_eap_users_behind_one_ike_id_get_their_own_leases() -> None:
    client, gateway = remote_access_eap(b"carol", b"carol's long password")
    engine_r = EngineConfig((gateway,), pools=(POOL,))
    pair = Pair(client, gateway, engine_r=engine_r)
    pair.initiate()
    pair.run(until=5)
    assert pair.i.of(VirtualIpsAssigned)[0].vips == (ip("10.3.0.1"),)
    (child_r,) = pair.r.of(ChildSaEstablished)
    assert [str(t.network) for t in child_r.remote_ts] == ["10.3.0.1/32"]
    # dave: the same IKE ID (carol@ikev2.test), another EAP user, another address
    dave_client, _ = remote_access_eap(b"dave", b"dave's own password")
    other = Pair(dave_client, dave_client, seed=5)
    other.r = Side(pair.r.engine)
    other.now = pair.now
    other.initiate()
    other.run(until=other.now + 5)
    assert other.i.of(VirtualIpsAssigned)[0].vips == (ip("10.3.0.2"),)
    (pool,) = pair.r.engine.list_pools(other.now)
    assert sorted(lease.identity for lease in pool.leases) == ["carol", "dave"]
