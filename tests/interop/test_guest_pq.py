"""Issue 15's guest rows: the post-quantum hybrid with real ESP in the QEMU guest. strongSwan
6.0.6 (kernel-netlink) against our daemon (--kernel xfrm): an x25519 + ML-KEM-768 IKE SA, then
its child rekeyed with PFS over IKE_FOLLOWUP_KE (RFC 9370 §2.2.4), or (with an RFC 8784 PPK in
its keys) the IKE SA itself rekeyed over IKE_FOLLOWUP_KE; pings through the child as ESP, both
kernels holding the same keys. One boot runs every scenario of guest_pq.py in both roles."""

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

pytestmark = [pytest.mark.interop, pytest.mark.guest, pytest.mark.sw6]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("guest_pq.py")
COMMON = {
    "strongswan6",
    "hybrid_ike_sa",
    "one_intermediate",
    "one_followup_ke",
    "children_and_keys_match",
    "ping",
    "wire_esp",
    "no_cleartext_echo",
    "kernel_states_both_sides",
    "kernel_keys_equal",
    "counters_moved",
    "down",
    "zero_after_teardown",
}
# the checks each scenario must have recorded, by scenario name
EXPECTED = {
    "hybrid-pfs-followup-esp-tunnel": COMMON | {"pfs_child_selected"},
    "hybrid-ppk-ike-rekey-esp-tunnel": COMMON | {"ppk_used", "ike_rekeyed_hybrid", "child_moved"},
}


def _scenarios() -> list[str]:
    sys.path.insert(0, str(SCRIPT.parent))  # guest_pq imports guest_interop's helpers
    spec = importlib.util.spec_from_file_location("guest_pq", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return list(module.SCENARIO_KEYS)


SCENARIOS = _scenarios()


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[guest.GuestRun]:
    need(is_root(), "the guest shares the host root read-only with QEMU; needs root")
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    need(strongswan.missing6() is None, strongswan.missing6() or "")
    try:
        image = guest.prepare(guest.default_cache(REPO))
    except guest.GuestError as exc:
        pytest.fail(f"cannot prepare the QEMU guest: {exc}", pytrace=False)
    results = tmp_path_factory.mktemp("guest-pq")
    python = guest.interpreter()
    run = guest.boot(image, [str(python), str(SCRIPT), "/results"], results, cwd=REPO, timeout=900)
    print(f"\n[guest pq] boot + scenarios: {run.wall_seconds:.1f} s, exit {run.exit_code}")
    yield run


@pytest.mark.parametrize("key", SCENARIOS)
def test_guest_pq(guest_run: guest.GuestRun, key: str) -> None:
    path = guest_run.results / f"{key}.json"
    assert path.exists(), f"no result; console:\n{guest_run.console[-3000:]}"
    record: dict[str, Any] = json.loads(path.read_text())
    checks = record["checks"]
    assert "error" not in checks, (
        f"{key} raised in the guest:\n{checks['error']}\n{checks.get('_logs', '')}"
    )
    expected = EXPECTED[record["name"]]
    assert set(checks) >= expected, f"checks missing: {expected - set(checks)}"
    failed = sorted(k for k, v in checks.items() if not k.startswith("_") and v is not True)
    details = {k: v for k, v in checks.items() if k.startswith("_")}
    assert not failed, f"failed checks {failed}; details: {details}"
    print(f"[guest pq] {key}: {record['seconds']} s, phases {checks['_phases']}")
