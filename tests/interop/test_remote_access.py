"""Remote access (RFC 7296 §2.19, §3.15 configuration payload) against strongSwan 5.9.8 on the
host, both roles, PSK authentication (EAP is tests/interop/test_eap.py).

`ours-responder`: our daemon is the gateway with pools rw-v4/rw-v6; a strongSwan road warrior
asks for `vips = 0.0.0.0, ::` and must get the first address of each pool, its child's local
selectors narrowed to them; a reconnect gets the same addresses back; with the IPv4 pool full a
second client (another identity) gets INTERNAL_ADDRESS_FAILURE for IPv4 and only its IPv6
address, and the first keeps everything. `ours-initiator`: our daemon is the road warrior
(`vips`) against a strongSwan gateway with swanctl `pools {}`; it gets strongSwan's addresses and
DNS servers (its dns_hook sees them) and uses the address as the child's local selector.

Topology (tests/interop/conftest.py `pair`): the road warrior on the left (10.99.0.1), the
gateway on the right (10.99.0.2) with 10.2.0.0/24 and fd00:20::/64 behind it.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing.daemon import OurDaemon
from ikev2.testing.interop import OURS_INITIATOR, OURS_RESPONDER
from ikev2.testing.strongswan import Charon, ConfValue, IkeSaInfo
from ikev2.testing.topology import Topology

pytestmark = pytest.mark.interop

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16"
PSK = "remote-access interop PSK 5c1f0e9d2b"
CAROL, DAVE = "carol@ikev2.test", "dave@ikev2.test"
GATEWAY_ID = "gateway.ikev2.test"
BEHIND = ["10.2.0.0/24", "fd00:20::/64"]


class Run:
    def __init__(self, topo: Topology, workdir: Path, role: str) -> None:
        self.role = role
        client, gateway = topo.left, topo.right
        ours_gateway = role == OURS_RESPONDER
        # a strongSwan road warrior installs its virtual IPs (in its own namespace): libipsec
        # routes a child only from a local address inside its selectors
        extra: dict[str, ConfValue] = {"install_virtual_ip": True} if ours_gateway else {}
        self.ss = Charon(
            client.ns if ours_gateway else gateway.ns, workdir / "strongswan", extra=extra
        )
        self.ours = OurDaemon(gateway.ns if ours_gateway else client.ns, workdir / "ours")
        self.client_addr, self.gateway_addr = client.addr, gateway.addr
        self.hook_out = workdir / "hook.out"

    def start(self) -> Run:
        self.ss.start()
        self.ss.load()
        self.ours.start()
        return self

    def stop(self) -> None:
        self.ours.stop()
        self.ss.stop()

    def logs(self) -> str:
        return (
            f"--- strongSwan ({self.ss.ns}) ---\n{self.ss.tail(80)}\n"
            f"--- ours ({self.ours.ns}) ---\n{self.ours.tail(40)}"
        )


def _ss_conn(addr: str, peer: str, local_id: str, remote_id: str, **extra: ConfValue
             ) -> dict[str, ConfValue]:  # fmt: skip
    child: dict[str, ConfValue] = {"esp_proposals": ESP, "rekey_time": "0", "life_time": "0",
                                   "start_action": "none"}  # fmt: skip
    for key in ("local_ts", "remote_ts"):
        if key in extra:
            child[key] = extra.pop(key)
    return {
        "version": 2, "local_addrs": addr, "remote_addrs": peer, "proposals": IKE,
        "rekey_time": "0", "reauth_time": "0", "unique": "never", "dpd_delay": "0",
        "local": {"id": local_id, "auth": "psk"}, "remote": {"id": remote_id, "auth": "psk"},
        "children": {"net": child}, **extra,
    }  # fmt: skip


def _ours_gateway(run: Run, v4: str) -> dict[str, Any]:
    return {
        "daemon": {"addresses": [run.gateway_addr], "port": 500, "nat_port": 4500},
        "pools": {
            "rw-v4": {"addrs": v4, "dns": ["10.2.0.53"], "subnet": ["10.2.0.0/24"]},
            "rw-v6": {"addrs": "fd03::/120", "dns": ["fd00:20::53"]},
        },
        "connections": {
            "rw": {
                "local_addrs": [run.gateway_addr],
                "proposals": [IKE],
                "dpd_delay": "0s",
                "rekey_time": "0s",
                "pools": ["rw-v4", "rw-v6"],
                "local": {"id": GATEWAY_ID, "auth": "psk"},
                "remote": {"id": "%any", "auth": "psk"},
                "children": {
                    "net": {"local_ts": BEHIND, "esp_proposals": [ESP], "rekey_time": "0s"}
                },
            }
        },
        "secrets": {"rw": {"ids": [GATEWAY_ID], "secret": PSK}},
    }


def _ss_road_warriors(run: Run) -> dict[str, ConfValue]:
    """carol and dave, two road warriors in one charon, each asking for any v4 and v6 address."""
    conns: dict[str, ConfValue] = {}
    for name, ident in (("rw", CAROL), ("rw2", DAVE)):
        conns[name] = _ss_conn(run.client_addr, run.gateway_addr, ident, GATEWAY_ID,
                               vips="0.0.0.0,::", remote_ts=",".join(BEHIND))  # fmt: skip
    secrets = {"ike-rw": {"id-1": CAROL, "id-2": DAVE, "id-3": GATEWAY_ID, "secret": f'"{PSK}"'}}
    return {"connections": conns, "secrets": secrets}


def _ours_client(run: Run, hook: Path) -> dict[str, Any]:
    return {
        "daemon": {
            "addresses": [run.client_addr],
            "port": 500,
            "nat_port": 4500,
            "dns_hook": str(hook),
        },
        "connections": {
            "rw": {
                "local_addrs": [run.client_addr],
                "remote_addrs": [run.gateway_addr],
                "proposals": [IKE],
                "dpd_delay": "0s",
                "rekey_time": "0s",
                "vips": ["0.0.0.0", "::"],
                "local": {"id": CAROL, "auth": "psk"},
                "remote": {"id": GATEWAY_ID, "auth": "psk"},
                "children": {
                    "net": {"remote_ts": BEHIND, "esp_proposals": [ESP], "rekey_time": "0s"}
                },
            }
        },
        "secrets": {"rw": {"ids": [CAROL, GATEWAY_ID], "secret": PSK}},
    }


def _ss_gateway(run: Run) -> dict[str, ConfValue]:
    conn = _ss_conn(run.gateway_addr, run.client_addr, GATEWAY_ID, "%any",
                    pools="rw4,rw6", local_ts=",".join(BEHIND))  # fmt: skip
    return {
        "connections": {"rw": conn},
        "pools": {
            "rw4": {"addrs": "10.4.0.0/28", "dns": "10.2.0.53"},
            "rw6": {"addrs": "fd04::/120", "dns": "fd00:20::53"},
        },
        "secrets": {"ike-rw": {"id-1": CAROL, "id-2": GATEWAY_ID, "secret": f'"{PSK}"'}},
    }


def _vips(sa: IkeSaInfo) -> list[str]:
    value = sa.raw.get("local-vips") or []
    return [value] if isinstance(value, str) else list(value)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    made: list[Run] = []
    yield made
    for run in made:
        run.stop()


def _gateway_run(pair: Topology, tmp_path: Path, runs: list[Run], v4: str) -> Run:
    run = Run(pair, tmp_path / "run", OURS_RESPONDER)
    run.ours.configure(_ours_gateway(run, v4))
    run.ss.configure(_ss_road_warriors(run))
    runs.append(run)
    return run.start()


@pytest.mark.parametrize("role", [pytest.param(OURS_RESPONDER, id=OURS_RESPONDER)])
def test_gateway_leases_v4_v6_and_reconnect_keeps_them(
    role: str, pair: Topology, runs: list[Run], tmp_path: Path
) -> None:
    run = _gateway_run(pair, tmp_path, runs, "10.3.0.0/28")
    result = run.ss.initiate(child="net", ike="rw", timeout=20)
    assert result.ok, f"establishing failed:\n{result.output}\n{run.logs()}"
    (theirs,) = run.ss.wait_for(lambda sas: any(s.installed_children for s in sas))
    assert _vips(theirs) == ["10.3.0.1", "fd03::1"], theirs.raw
    (child,) = theirs.installed_children
    assert list(child.local_ts) == ["10.3.0.1/32", "fd03::1/128"], child.raw
    (ours,) = run.ours.list_sas()
    assert ours["remote_vips"] == ["10.3.0.1", "fd03::1"] and ours["remote_id"] == CAROL
    assert ours["children"][0]["remote_ts"] == ["10.3.0.1/32", "fd03::1/128"]
    # strongSwan parsed our CFG_REPLY (addresses, DNS servers, the split subnet) and took
    # both addresses
    log = run.ss.log()
    assert "parsed IKE_AUTH response 1 [ IDr AUTH CPRP(ADDR ADDR6 DNS DNS6 SUBNET)" in log, log
    assert "installing new virtual IP 10.3.0.1" in log and "virtual IP fd03::1" in log
    pools = {p["name"]: p for p in run.ours.control({"cmd": "list-pools"})["pools"]}
    assert pools["rw-v4"]["online"] == 1 and pools["rw-v4"]["size"] == 14
    assert pools["rw-v4"]["leases"][0]["identity"] == CAROL
    # reconnect: terminate and come back, the same addresses
    run.ss.terminate(ike="rw")
    run.ours.wait_for(lambda sas: not sas, timeout=10)
    pools = {p["name"]: p for p in run.ours.control({"cmd": "list-pools"})["pools"]}
    assert pools["rw-v4"]["online"] == 0
    result = run.ss.initiate(child="net", ike="rw", timeout=20)
    assert result.ok, f"reconnect failed:\n{result.output}\n{run.logs()}"
    (theirs,) = run.ss.wait_for(lambda sas: any(s.installed_children for s in sas))
    assert _vips(theirs) == ["10.3.0.1", "fd03::1"], theirs.raw


@pytest.mark.parametrize("role", [pytest.param(OURS_RESPONDER, id=OURS_RESPONDER)])
def test_gateway_pool_exhaustion(
    role: str, pair: Topology, runs: list[Run], tmp_path: Path
) -> None:
    """A one-address IPv4 pool: carol gets it, dave gets INTERNAL_ADDRESS_FAILURE for IPv4 and
    still his IPv6 address (§3.15.4 for the family that failed); carol keeps everything."""
    run = _gateway_run(pair, tmp_path, runs, "10.3.0.1-10.3.0.1")
    assert run.ss.initiate(child="net", ike="rw", timeout=20).ok, run.logs()
    result = run.ss.initiate(child="net", ike="rw2", timeout=20)
    assert result.ok, f"dave failed:\n{result.output}\n{run.logs()}"
    sas = run.ss.wait_for(lambda sas: len([s for s in sas if s.installed_children]) == 2)
    by_name = {s.name: s for s in sas}
    assert _vips(by_name["rw"]) == ["10.3.0.1", "fd03::1"]
    assert _vips(by_name["rw2"]) == ["fd03::2"], by_name["rw2"].raw
    (dave_child,) = by_name["rw2"].installed_children
    assert list(dave_child.local_ts) == ["fd03::2/128"]
    events = run.ours.log_events()
    assert any(e.get("event") == "no virtual IP left" and e.get("family") == "IPv4"
               for e in events), run.logs()  # fmt: skip
    ours = {s["remote_id"]: s for s in run.ours.list_sas()}
    assert ours[CAROL]["remote_vips"] == ["10.3.0.1", "fd03::1"]
    assert len(ours[CAROL]["children"]) == 1 and ours[DAVE]["remote_vips"] == ["fd03::2"]


HOOK = """#!/bin/sh
echo "$IKEV2_ACTION $IKEV2_VIPS / $IKEV2_DNS" >> "{out}"
"""


@pytest.mark.parametrize("role", [pytest.param(OURS_INITIATOR, id=OURS_INITIATOR)])
def test_client_gets_strongswan_pool_addresses_and_dns(
    role: str, pair: Topology, runs: list[Run], tmp_path: Path
) -> None:
    run = Run(pair, tmp_path / "run", OURS_INITIATOR)
    hook = tmp_path / "dns-hook"
    hook.write_text(HOOK.format(out=run.hook_out))
    hook.chmod(stat.S_IRWXU)
    run.ours.configure(_ours_client(run, hook))
    run.ss.configure(_ss_gateway(run))
    runs.append(run)
    run.start()
    done = run.ours.up("rw", timeout=20)
    assert done.ok, f"up failed:\n{done.output}\n{run.logs()}"
    (ours,) = run.ours.wait_for(lambda sas: any(s.get("children") for s in sas))
    assert ours["local_vips"] == ["10.4.0.1", "fd04::1"], ours
    assert ours["children"][0]["local_ts"] == ["10.4.0.1/32", "fd04::1/128"]
    (theirs,) = run.ss.wait_for(lambda sas: any(s.installed_children for s in sas))
    remote_vips = theirs.raw.get("remote-vips") or []
    assert list(remote_vips) == ["10.4.0.1", "fd04::1"], theirs.raw
    (child,) = theirs.installed_children
    assert list(child.remote_ts) == ["10.4.0.1/32", "fd04::1/128"]
    # the DNS servers of strongSwan's pools reached our hook; nothing wrote resolv.conf
    run.ours.wait_for(lambda sas: run.hook_out.exists(), timeout=10)
    assert run.hook_out.read_text().splitlines()[0] == "up 10.4.0.1 fd04::1 / 10.2.0.53 fd00:20::53"
    assert run.ours.down("rw").ok
    run.ours.wait_for(lambda sas: len(run.hook_out.read_text().splitlines()) >= 2, timeout=10)
    assert run.hook_out.read_text().splitlines()[1].startswith("down 10.4.0.1 fd04::1")
    events = [e.get("event") for e in run.ours.log_events()]
    assert "virtual IP installed" in events and "virtual IP removed" in events
    assert json.dumps(ours)  # the list-sas object stays JSON
