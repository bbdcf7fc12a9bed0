"""One interop row for `ikev2 import-swanctl`: the swanctl.conf the harness writes for a
strongSwan "moon" (certificates, DN identities) is imported, and our daemon runs the imported
TOML against the original strongSwan peer "sun"; the IKE SA and child must be the same SA on both
ends with equal keys (ikev2.testing.interop.Peers checks)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ikev2.testing.interop import OURS_INITIATOR, Peers, Spec, swanctl_config
from ikev2.testing.strongswan import render_conf
from ikev2.testing.topology import Topology

pytestmark = pytest.mark.interop

SPEC = Spec("imported-ecdsa-dn", auth="ecdsa", id_kind="dn")


@pytest.mark.parametrize("role", [OURS_INITIATOR])
def test_imported_swanctl(role: str, pair: Topology, tmp_path: Path) -> None:
    peers = Peers(SPEC, pair, role, tmp_path / "run")
    pos = peers.pos
    files = swanctl_config(
        SPEC, "moon", pos["ours_addr"], pos["ours_peer"], pos["ours_net"], pos["ss_net"],
        initiator=True, is_ours_side=True,
    )  # fmt: skip
    swanctl = tmp_path / "moon-swanctl"
    for sub, paths in (("x509", files.certs), ("x509ca", files.cacerts), ("private", files.keys)):
        (swanctl / sub).mkdir(parents=True)
        for path in paths:
            shutil.copy(path, swanctl / sub / path.name)
            (swanctl / sub / path.name).chmod(0o600)
    (swanctl / "swanctl.conf").write_text(render_conf(files.conf) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "ikev2.cli", "import-swanctl", str(swanctl / "swanctl.conf")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tree = tomllib.loads(done.stdout)
    assert tree["connections"][SPEC.name]["local"]["key"].endswith("moon.key")
    tree["daemon"] = {"port": 500, "nat_port": 4500, "addresses": [pos["ours_addr"]]}
    peers.ours.configure(tree)  # instead of the harness's own TOML for our side
    try:
        peers.start()
        peers.establish()
        peers.check_children(expected=1)
    finally:
        peers.stop()
