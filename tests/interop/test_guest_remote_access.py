"""Remote access with real XFRM in the QEMU guest, both roles (guest_remote_access.py runs
inside): a road warrior gets its virtual IP, pings a host behind the gateway through the tunnel
from it, and the kernel policies name the leased address; `down` leaves nothing behind (and,
with ours as the client, removes the addresses it put on lo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import guest, strongswan
from ikev2.testing.interop import OURS_INITIATOR, OURS_RESPONDER

from .guest_rows import boot_once

pytestmark = [pytest.mark.interop, pytest.mark.guest]

SCRIPT = Path(__file__).with_name("guest_remote_access.py")
EXPECTED = {
    "gateway": {"established", "strongswan_got_vips", "ours_lists_remote_vips", "ping",
                "gateway_policy_names_lease", "gateway_counters_moved", "down",
                "zero_after_teardown"},
    "client": {"established", "ours_got_vips", "vips_on_lo", "route_from_vip", "rule_220",
               "ping", "client_policy_from_vip", "client_counters_moved", "down",
               "vips_removed", "routes_removed", "zero_after_teardown"},
}  # fmt: skip


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> guest.GuestRun:
    return boot_once(
        tmp_path_factory, SCRIPT, "remote access", needs=(strongswan.available,), timeout=600,
        show_exit=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "role"),
    [
        pytest.param("gateway", OURS_RESPONDER, id=f"gateway-{OURS_RESPONDER}"),
        pytest.param("client", OURS_INITIATOR, id=f"client-{OURS_INITIATOR}"),
    ],
)
def test_guest_remote_access(guest_run: guest.GuestRun, scenario: str, role: str) -> None:
    path = guest_run.results / f"{scenario}--{role}.json"
    assert path.exists(), f"no result; console:\n{guest_run.console[-3000:]}"
    record: dict[str, Any] = json.loads(path.read_text())
    checks = record["checks"]
    assert "error" not in checks, f"{checks['error']}\n{checks.get('_logs', '')}"
    missing = EXPECTED[scenario] - set(checks)
    assert not missing, f"checks not recorded: {missing}"
    failed = sorted(k for k in EXPECTED[scenario] if checks[k] is not True)
    shown = {k: v for k, v in checks.items() if k.startswith("_")}
    assert not failed, f"failed: {failed}\n{json.dumps(shown, indent=1)[-5000:]}"
