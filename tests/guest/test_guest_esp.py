"""Real ESP/AH through our adapter in a QEMU guest: one test per scenario of one boot.

Each scenario (tests/guest/guest_scenarios.py, run inside the guest) installs SAs and policies
with ikev2.kernel.xfrm between two namespaces, pings, watches the veth and tears down through the
adapter; here we assert every check it recorded.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from ikev2.testing.guest import GuestRun

pytestmark = pytest.mark.guest


def _scenario_names() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location(
        "guest_scenarios", Path(__file__).with_name("guest_scenarios.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return tuple(module.SCENARIO_NAMES)


SCENARIOS = _scenario_names()
# the checks every ESP/AH scenario must have recorded (a missing one fails, it is not skipped)
ESP_CHECKS = {
    "policies_listed",
    "ping",
    "no_cleartext_echo",
    "counters_moved",
    "sas_listed",
    "bypassed_delivered",
    "bypassed_cleartext_udp500",
    "unbypassed_protected",
    "zero_after_teardown",
}
OTHER_CHECKS = {
    "events-acquire-expire": {"acquire", "expire_soft_then_hard", "zero_after_teardown"},
    "crash-then-flush-owned": {
        "flush_counts",
        "only_foreign_left",
        "second_flush_is_noop",
        "zero_after_teardown",
    },
}


def test_guest_booted_and_ran_every_scenario(guest_results: GuestRun) -> None:
    tail = guest_results.console[-3000:]
    assert guest_results.exit_code is not None, f"the guest never reported; console:\n{tail}"
    missing = [n for n in SCENARIOS if not (guest_results.results / f"{n}.json").exists()]
    assert not missing, f"no result for {missing}; console:\n{tail}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(guest_results: GuestRun, name: str) -> None:
    path = guest_results.results / f"{name}.json"
    log = guest_results.results / "command.log"
    assert path.exists(), (
        f"{name}: no result; guest log:\n{log.read_text() if log.exists() else ''}"
    )
    record = json.loads(path.read_text())
    assert "error" not in record, f"{name} raised in the guest:\n{record['error']}"
    checks = {k: v for k, v in record["checks"].items() if not k.startswith("_")}
    expected = OTHER_CHECKS.get(name, ESP_CHECKS)
    assert expected <= set(checks), f"{name}: checks missing: {expected - set(checks)}"
    if name not in OTHER_CHECKS:
        assert any(k.startswith("wire_") for k in checks), f"{name}: no wire check recorded"
    failed = {k: v for k, v in checks.items() if v is not True}
    details = {k: v for k, v in record["checks"].items() if k.startswith("_")}
    assert not failed, f"{name}: failed checks {sorted(failed)}; details: {details}"
