"""Two of our daemons over an impaired link (tc netem in the QEMU guest: 30 % loss, 200 ms
jitter, reordering, duplication): N up / child rekey / IKE rekey / down cycles, every step must
succeed and no IKE SA, kernel state or policy may be left on either side (orphans: 0)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import guest

from .guest_rows import boot_once

pytestmark = [pytest.mark.guest]

SCRIPT = Path(__file__).with_name("guest_impair.py")
CYCLES = int(os.environ.get("IKEV2_IMPAIR_CYCLES", "10"))  # about 21 s each under TCG


@pytest.fixture(scope="module")
def impair_run(tmp_path_factory: pytest.TempPathFactory) -> guest.GuestRun:
    return boot_once(
        tmp_path_factory, SCRIPT, "impair", args=(str(CYCLES),), timeout=600 + 60 * CYCLES,
        what="cycles",
    )  # fmt: skip


def test_cycles_over_netem_all_succeed_and_leave_no_orphans(impair_run: guest.GuestRun) -> None:
    path = impair_run.results / "impairment.json"
    assert path.exists(), f"no result; console:\n{impair_run.console[-3000:]}"
    record: dict[str, Any] = json.loads(path.read_text())
    assert "error" not in record, f"raised in the guest:\n{record['error']}\n{record['_logs']}"
    summary = {k: v for k, v in record.items() if k not in ("_logs", "_netem", "_establish_s")}
    print(f"\n[guest impair] {json.dumps(summary)[:3000]}")
    assert record["cycles"] == CYCLES
    assert record["orphans"] == 0, record["_orphans"]
    for step in ("up", "child_rekey", "ike_rekey", "down"):
        assert record[f"{step}_ok"] == CYCLES, (step, record["_failures"])
    # the link really was impaired: netem dropped and duplicated packets on both ends
    for stats in record["_netem"]:
        assert "netem" in stats and " dropped 0," not in stats, stats
