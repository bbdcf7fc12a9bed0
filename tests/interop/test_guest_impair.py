"""Our daemon over an impaired link (tc netem in the QEMU guest: 30 % loss, 200 ms jitter,
reordering, duplication) against another of ours and against strongSwan 5.9.8: N up / child
rekey / IKE rekey / down cycles each; every step must succeed and no IKE SA, kernel state or
policy may be left on either side (orphans: 0). One guest boot per peer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import strongswan

from .guest_rows import boot_once

SCRIPT = Path(__file__).with_name("guest_impair.py")
CYCLES = int(os.environ.get("IKEV2_IMPAIR_CYCLES", "10"))  # 12-32 s each under TCG


def impaired_run(tmp_path_factory: pytest.TempPathFactory, peer: str) -> dict[str, Any]:
    run = boot_once(
        tmp_path_factory, SCRIPT, f"impair {peer}", args=(str(CYCLES), peer),
        needs=(strongswan.available,) if peer == "strongswan" else (),
        timeout=600 + 60 * CYCLES, what="cycles",
    )  # fmt: skip
    path = run.results / f"impairment-{peer}.json"
    assert path.exists(), f"no result; console:\n{run.console[-3000:]}"
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def check(record: dict[str, Any]) -> None:
    assert "error" not in record, f"raised in the guest:\n{record['error']}\n{record['_logs']}"
    summary = {k: v for k, v in record.items() if k not in ("_logs", "_netem", "_establish_s")}
    print(f"\n[guest impair] {json.dumps(summary)[:3000]}")
    assert record["cycles"] == CYCLES
    assert record["orphans"] == 0, record["_orphans"]
    for step in ("up", "child_rekey", "ike_rekey", "down"):
        assert record[f"{step}_ok"] == CYCLES, (step, record["_failures"])
    # the link really was impaired: netem dropped packets on both ends
    for sent, dropped in record["_netem_sent_dropped"]:
        assert sent > 0 and dropped > 0, record["_netem"]


@pytest.mark.guest
def test_two_of_ours_over_netem(tmp_path_factory: pytest.TempPathFactory) -> None:
    check(impaired_run(tmp_path_factory, "ours"))


@pytest.mark.guest
@pytest.mark.interop
def test_ours_against_strongswan_over_netem(tmp_path_factory: pytest.TempPathFactory) -> None:
    check(impaired_run(tmp_path_factory, "strongswan"))
