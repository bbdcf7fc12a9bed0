"""Issue 14's guest rows with real ESP in the QEMU guest, strongSwan 5.9.8 (kernel-netlink)
against our daemon (--kernel xfrm): a route-based VPN over an xfrm interface the daemon makes
(if_id 42; traffic routed into it is ESP, traffic routed around it meets no policy), and
start_action = trap (the first packet brings the tunnel up). One boot runs guest_routed.py."""

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
SCRIPT = Path(__file__).with_name("guest_routed.py")
EXPECTED = {
    "xfrm-interface-esp-tunnel--ours-initiator": {
        "children_and_keys_match", "interface_made", "sas_carry_if_id", "policies_carry_if_id",
        "ping", "wire_esp", "counters_moved", "policies_match_only_that_if_id",
        "sas_untouched_around", "down", "zero_after_teardown", "interface_removed_on_stop",
    },
    "trap-esp-tunnel--ours-initiator": {
        "trap_installed", "acquire_logged", "tunnel_up_by_traffic", "children_and_keys_match",
        "ping", "wire_esp", "down", "zero_after_teardown",
    },
}  # fmt: skip


def _scenarios() -> list[str]:
    sys.path.insert(0, str(SCRIPT.parent))  # guest_routed imports guest_interop's helpers
    spec = importlib.util.spec_from_file_location("guest_routed", SCRIPT)
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
    need(strongswan.available() is None, strongswan.available() or "")
    try:
        image = guest.prepare(guest.default_cache(REPO))
    except guest.GuestError as exc:
        pytest.fail(f"cannot prepare the QEMU guest: {exc}", pytrace=False)
    results = tmp_path_factory.mktemp("guest-routed")
    python = guest.interpreter()
    run = guest.boot(image, [str(python), str(SCRIPT), "/results"], results, cwd=REPO, timeout=900)
    print(f"\n[guest routed] boot + scenarios: {run.wall_seconds:.1f} s, exit {run.exit_code}")
    yield run


@pytest.mark.parametrize("key", SCENARIOS)
def test_guest_routed(guest_run: guest.GuestRun, key: str) -> None:
    path = guest_run.results / f"{key}.json"
    assert path.exists(), f"no result; console:\n{guest_run.console[-3000:]}"
    record: dict[str, Any] = json.loads(path.read_text())
    checks = record["checks"]
    assert "error" not in checks, (
        f"{key} raised in the guest:\n{checks['error']}\n{checks.get('_logs', '')}"
    )
    assert set(checks) >= EXPECTED[key], f"checks missing: {EXPECTED[key] - set(checks)}"
    failed = sorted(k for k, v in checks.items() if not k.startswith("_") and v is not True)
    details = {k: v for k, v in checks.items() if k.startswith("_")}
    assert not failed, f"failed checks {failed}; details: {details}"
    extra = {
        k: checks[k] for k in ("_first_packet_answered", "_first_series_received") if k in checks
    }
    print(f"[guest routed] {key}: {record['seconds']} s {extra}")
