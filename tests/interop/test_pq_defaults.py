"""Our default IKE proposals (issue 15: the post-quantum hybrid x25519 + ML-KEM-768 first, then
the classic proposals) against Debian's strongSwan 5.9.8, which has no RFC 9370: the hybrid must
fall away by itself (RFC 7296 §3.3.6: 5.9.8 rejects a proposal with transform types it does not
know) and a classic suite be negotiated, with no IKE_INTERMEDIATE, in both roles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing.interop import ROLES, Peers, Spec
from ikev2.testing.topology import Topology

pytestmark = pytest.mark.interop


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Any]:
    made: list[Peers] = []

    def make(spec: Spec, topo: Topology, role: str) -> Peers:
        p = Peers(spec, topo, role, tmp_path / f"run{len(made)}")
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.stop()


# (strongSwan's IKE proposals, what it must select from / offer to our defaults)
ROWS = [
    ("aes256gcm16-prfsha256-x25519", "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519"),
    ("default", None),  # 5.9.8's own defaults: whatever it selects, classic and ours
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("ss_ike", "suite"), ROWS, ids=["ss-aes256gcm16-x25519", "ss-default"])
def test_our_defaults_fall_back_to_classic_against_598(
    ss_ike: str, suite: str | None, role: str, pair: Topology, peers: Any
) -> None:
    spec = Spec(f"pq-defaults-{ss_ike}", ours_ike=("default",), ss_ike=(ss_ike,))
    p = peers(spec, pair, role)
    p.establish()
    log = p.ss.log()
    assert "Starting IKE charon daemon (strongSwan 5.9.8" in log
    selected = [ln for ln in log.splitlines() if "selected proposal: IKE:" in ln]
    assert selected, p.logs()
    chosen = selected[-1].split("selected proposal: IKE:", 1)[1].strip()
    if suite is not None:
        assert chosen == suite
    assert "ML_KEM" not in chosen and "KE1_" not in chosen
    assert "IKE_INTERMEDIATE" not in log
    mine, _theirs = p.ike_pair()
    assert "ML_KEM" not in str(mine.get("suite", "")), mine
    p.check_children(expected=1)
