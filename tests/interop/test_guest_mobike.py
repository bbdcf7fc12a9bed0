"""Issue 16's guest row: MOBIKE with real ESP in the QEMU guest. strongSwan 5.9.8
(kernel-netlink) against our daemon (--kernel xfrm): the initiator's first address is removed
while it pings through the child; both kernels move the child's SAs in place (same SPIs) and
its policies to the second link, and the pings go on (the lost ones are counted and printed).
One boot runs guest_mobike.py's scenario in both roles."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import guest, strongswan
from ikev2.testing.gates import is_root, need

pytestmark = [pytest.mark.interop, pytest.mark.guest]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("guest_mobike.py")
EXPECTED = {
    "children_and_keys_match",
    "mobike_negotiated",
    "pings_before_the_move",
    "pings_after_the_move",
    "lost_at_most_3_s",
    "same_ike_sa",
    "same_child_spis",
    "moved_both_sides",
    "kernel_states_both_sides",
    "kernel_sas_on_the_new_path",
    "kernel_keys_equal",
    "policies_on_the_new_path",
    "down",
    "zero_after_teardown",
}


def _scenarios() -> list[tuple[str, str]]:
    sys.path.insert(0, str(SCRIPT.parent))  # guest_mobike imports guest_interop's helpers
    spec = importlib.util.spec_from_file_location("guest_mobike", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return [(s.key, s.role) for s in module.SCENARIOS]


SCENARIOS = _scenarios()


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[guest.GuestRun]:
    need(is_root(), "the guest shares the host root read-only with QEMU; needs root")
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    need(strongswan.available() is None, strongswan.available() or "")
    try:
        image = guest.prepare(guest.default_cache(REPO))
    except guest.GuestError as exc:
        pytest.fail(f"cannot prepare the QEMU guest: {exc}", pytrace=False)
    results = tmp_path_factory.mktemp("guest-mobike")
    python = guest.interpreter()
    run = guest.boot(image, [str(python), str(SCRIPT), "/results"], results, cwd=REPO, timeout=900)
    print(f"\n[guest mobike] boot + scenarios: {run.wall_seconds:.1f} s, exit {run.exit_code}")
    yield run


@pytest.mark.parametrize(("key", "role"), SCENARIOS, ids=[k for k, _ in SCENARIOS])
def test_guest_mobike_move(guest_run: guest.GuestRun, key: str, role: str) -> None:
    path = guest_run.results / f"{key}.json"
    assert path.exists(), f"no result; console:\n{guest_run.console[-3000:]}"
    record: dict[str, Any] = json.loads(path.read_text())
    checks = record["checks"]
    assert "error" not in checks, (
        f"{key} raised in the guest:\n{checks['error']}\n{checks.get('_logs', '')}"
    )
    assert set(checks) >= EXPECTED, f"checks missing: {EXPECTED - set(checks)}"
    failed = sorted(k for k, v in checks.items() if not k.startswith("_") and v is not True)
    details = {k: v for k, v in checks.items() if k.startswith("_")}
    assert not failed, f"failed checks {failed}; details: {details}"
    print(f"[guest mobike] {key}: {checks['_lost_pings']} of 60 pings lost during the move, "
          f"{record['seconds']} s, phases {checks['_phases']}")  # fmt: skip
