"""kill -9 and restart with real XFRM state and traffic (issue 18): one guest boot runs
guest_crash.py (our daemon against strongSwan 5.9.8, ESP between two namespaces, a ping
flowing); here every check it recorded is asserted, and the timeline is printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ikev2.testing import guest, strongswan

from .guest_rows import boot_once, row_checks

pytestmark = [pytest.mark.interop, pytest.mark.guest]

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
def crash_run(tmp_path_factory: pytest.TempPathFactory) -> guest.GuestRun:
    return boot_once(
        tmp_path_factory, SCRIPT, "crash", needs=(strongswan.available,), what="scenario"
    )


def test_kill_9_then_restart_leaves_nothing_stale_and_traffic_returns(
    crash_run: guest.GuestRun,
) -> None:
    checks = row_checks(crash_run, "kill-9-restart", EXPECTED)["checks"]
    details = {k: v for k, v in checks.items() if k.startswith("_") and k != "_logs"}
    print(f"\n[guest crash] {json.dumps(details, default=str)[:3000]}")
