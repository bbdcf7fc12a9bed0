"""EAP-RADIUS (RFC 3579) against strongSwan 5.9.8 and Debian's freeradius on the host: a
strongSwan road warrior authenticates with EAP-MSCHAPv2 or EAP-MD5 to our gateway, which holds
no EAP password at all (`remote.auth = "eap-radius"`) and relays every round to a freeradius in
its own namespace. Both sides end with the same IKE SA and child, their keys equal (our key log
against strongSwan's), strongSwan's log shows the method and (MSCHAPv2) the MSK, freeradius
logs the login; a wrong password is rejected by freeradius and nothing stays up."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ikev2.testing import freeradius
from ikev2.testing.gates import need
from ikev2.testing.interop import OURS_RESPONDER
from ikev2.testing.keycompare import compare_child, compare_ike
from ikev2.testing.topology import Topology

from .test_eap import METHOD_NAME, PASSWORD, EapRun, _ours_gateway

pytestmark = pytest.mark.interop

SECRET = "interop RADIUS shared secret 0123"


class RadiusRun(EapRun):
    def __init__(self, topo: Topology, method: str, workdir: Path, ss_password: str) -> None:
        super().__init__(topo, OURS_RESPONDER, method, workdir, ss_password=ss_password)
        gateway = topo.right
        self.radius = freeradius.FreeRadius(workdir, SECRET, {"carol": PASSWORD},
                                            netns=gateway.ns)  # fmt: skip
        key = workdir / "ours" / "moon.key"
        tree = _ours_gateway(gateway.addr, topo.left.addr, method, key, PASSWORD)
        tree["connections"]["rw"]["remote"] = {"auth": "eap-radius", "id": "%any"}
        tree["daemon"]["radius_server"] = f"127.0.0.1:{self.radius.port}"
        tree["secrets"] = {"radius": {"secret": SECRET}}  # no EAP user here: RADIUS has them
        self.ours.configure(tree)

    def start(self) -> RadiusRun:
        self.radius.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self.radius.stop()


@pytest.fixture
def runs() -> Iterator[list[RadiusRun]]:
    made: list[RadiusRun] = []
    yield made
    for run in made:
        run.stop()


@pytest.mark.parametrize("role", [pytest.param(OURS_RESPONDER, id=OURS_RESPONDER)])
@pytest.mark.parametrize("method", ["mschapv2", "md5"])
def test_eap_radius(
    method: str, role: str, pair: Topology, runs: list[RadiusRun], tmp_path: Path
) -> None:
    need(freeradius.available() is None, freeradius.available() or "")
    run = RadiusRun(pair, method, tmp_path / "run", PASSWORD)
    runs.append(run.start())
    ok, output = run.initiate()
    assert ok, f"establishing failed:\n{output}\n{run.logs()}\n{run.radius.log()[-2000:]}"
    ours = run.ours.wait_for(lambda sas: any(s.get("children") for s in sas))
    theirs = run.ss.wait_for(lambda sas: any(s.installed_children for s in sas))
    (mine,), (other,) = ours, theirs
    assert (mine["spi_i"].lower(), mine["spi_r"].lower()) == (other.spi_i, other.spi_r)
    [twin] = other.installed_children
    log = run.ss.log()
    msk = "" if method == "mschapv2" else "no "
    name = METHOD_NAME[method]
    assert re.search(rf"EAP method {name} succeeded, {msk}MSK established", log), run.logs()
    assert "authentication of 'moon.ikev2.test' with EAP successful" in log, run.logs()
    assert "Login OK: [carol]" in run.radius.log()
    key_log = run.ours.key_log()
    assert [] in [compare_ike(key_log, k, other.spi_i, other.spi_r) for k in run.ss.ike_keys()]
    keys = {k.spi_in: k for k in run.ss.child_keys()}[twin.spi_in]
    assert compare_child(key_log, keys, they_initiated=True) == []


@pytest.mark.parametrize("role", [pytest.param(OURS_RESPONDER, id=OURS_RESPONDER)])
def test_eap_radius_wrong_password(
    role: str, pair: Topology, runs: list[RadiusRun], tmp_path: Path
) -> None:
    need(freeradius.available() is None, freeradius.available() or "")
    run = RadiusRun(pair, "mschapv2", tmp_path / "run", "not carol's password")
    runs.append(run.start())
    ok, output = run.initiate(timeout=15)
    assert not ok, output
    assert "RADIUS refused" in run.ours.log(), run.logs()
    run.ours.wait_for(lambda sas: not sas, 10)
    run.ss.wait_for(lambda sas: not any(s.installed_children for s in sas), 10)
