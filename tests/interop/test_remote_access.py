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

import pytest

from ikev2.testing.daemon import OurDaemon
from ikev2.testing.interop import OURS_INITIATOR, OURS_RESPONDER
from ikev2.testing.remote_access import (
    CAROL,
    DAVE,
    ours_client,
    ours_gateway,
    ss_gateway,
    ss_road_warriors,
    vips_of,
)
from ikev2.testing.strongswan import Charon, ConfValue, IkeSaInfo
from ikev2.testing.topology import Topology

pytestmark = pytest.mark.interop


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


def _vips(sa: IkeSaInfo) -> list[str]:
    return vips_of(dict(sa.raw))


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    made: list[Run] = []
    yield made
    for run in made:
        run.stop()


def _gateway_run(pair: Topology, tmp_path: Path, runs: list[Run], v4: str) -> Run:
    run = Run(pair, tmp_path / "run", OURS_RESPONDER)
    run.ours.configure(ours_gateway(run.gateway_addr, v4))
    run.ss.configure(ss_road_warriors(run.client_addr, run.gateway_addr))
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
    run.ours.configure(ours_client(run.client_addr, run.gateway_addr, str(hook)))
    run.ss.configure(ss_gateway(run.gateway_addr, run.client_addr))
    runs.append(run)
    run.start()
    done = run.ours.up("rw", timeout=20)
    assert done.ok, f"up failed:\n{done.output}\n{run.logs()}"
    (ours,) = run.ours.wait_for(lambda sas: any(s.get("children") for s in sas))
    assert ours["local_vips"] == ["10.4.0.1", "fd04::1"], ours
    assert ours["children"][0]["local_ts"] == ["10.4.0.1/32", "fd04::1/128"]
    (theirs,) = run.ss.wait_for(lambda sas: any(s.installed_children for s in sas))
    assert vips_of(theirs.raw, "remote-vips") == ["10.4.0.1", "fd04::1"], theirs.raw
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
