"""kill -9 and restart with real XFRM state and traffic (issue 18): one guest boot runs
guest_crash.py (our daemon against strongSwan 5.9.8, ESP between two namespaces, a ping
flowing); here every check it recorded is asserted, and the timeline is printed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import guest, strongswan
from ikev2.testing.gates import is_root, need

pytestmark = [pytest.mark.interop, pytest.mark.guest]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("guest_crash.py")
EXPECTED = {
    "ping_before",
    "crash_left_kernel_state",
    "stale_control_socket_left",
    "traffic_while_dead",
    "flushed_on_start",
    "reestablished_by_itself",
    "initial_contact_sent",
    "peer_sas_replaced",
    "peer_kernel_only_new",
    "no_stale_state_of_ours",
    "no_stale_policy_of_ours",
    "traffic_back",
    "outage_within_one_dpd_interval",
    "down",
}


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[guest.GuestRun]:
    need(is_root(), "the guest shares the host root read-only with QEMU; needs root")
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    need(strongswan.available() is None, strongswan.available() or "")
    try:
        image = guest.prepare(guest.default_cache(REPO))
    except guest.GuestError as exc:
        pytest.fail(f"cannot prepare the QEMU guest: {exc}", pytrace=False)
    results = tmp_path_factory.mktemp("guest-crash")
    python = guest.interpreter()
    run = guest.boot(image, [str(python), str(SCRIPT), "/results"], results, cwd=REPO, timeout=900)
    print(f"\n[guest crash] boot + scenario: {run.wall_seconds:.1f} s, exit {run.exit_code}")
    yield run


def test_kill_9_then_restart_leaves_nothing_stale_and_traffic_returns(
    crash_run: guest.GuestRun,
) -> None:
    path = crash_run.results / "kill-9-restart.json"
    assert path.exists(), f"no result; console:\n{crash_run.console[-3000:]}"
    record: dict[str, Any] = json.loads(path.read_text())
    checks = record["checks"]
    assert "error" not in checks, f"raised in the guest:\n{checks['error']}\n{checks.get('_logs')}"
    assert set(checks) >= EXPECTED, f"checks missing: {EXPECTED - set(checks)}"
    failed = sorted(k for k, v in checks.items() if not k.startswith("_") and v is not True)
    details = {k: v for k, v in checks.items() if k.startswith("_") and k != "_logs"}
    assert not failed, f"failed checks {failed}; details: {details}"
    print(f"\n[guest crash] {json.dumps(details, default=str)[:3000]}")
