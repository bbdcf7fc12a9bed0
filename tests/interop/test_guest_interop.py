"""Real XFRM interop in the QEMU guest: strongSwan (kernel-netlink) and our daemon (--kernel xfrm)
install ESP/AH SAs, pings pass, ESP/AH is on the wire. One boot runs every scenario of
guest_interop.py; each scenario x role is then its own test (and its own docs/interop.md row).
"""

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
SCRIPT = Path(__file__).with_name("guest_interop.py")


def _scenarios() -> list[tuple[str, str, str]]:
    spec = importlib.util.spec_from_file_location("guest_interop", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return [(s.key, s.name, s.role) for s in module.SCENARIOS]


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
    results = tmp_path_factory.mktemp("guest-interop")
    python = guest.interpreter()
    run = guest.boot(image, [str(python), str(SCRIPT), "/results"], results, cwd=REPO, timeout=900)
    print(f"\n[guest interop] boot + scenarios: {run.wall_seconds:.1f} s, exit {run.exit_code}")
    yield run


def test_guest_ran_every_scenario(guest_run: guest.GuestRun) -> None:
    tail = guest_run.console[-3000:]
    assert guest_run.exit_code is not None, f"the guest never reported; console:\n{tail}"
    missing = [k for k, _, _ in SCENARIOS if not (guest_run.results / f"{k}.json").exists()]
    assert not missing, f"no result for {missing}; console:\n{tail}"


def _param(key: str, name: str, role: str) -> Any:
    return pytest.param(name, role, id=key)


@pytest.mark.parametrize(("scenario", "role"), [_param(*s) for s in SCENARIOS])
def test_guest(guest_run: guest.GuestRun, scenario: str, role: str) -> None:
    path = guest_run.results / f"{scenario}--{role}.json"
    log = guest_run.results / "command.log"
    assert path.exists(), (
        f"no result; guest log:\n{log.read_text()[-3000:] if log.exists() else ''}"
    )
    record: dict[str, Any] = json.loads(path.read_text())
    checks = record["checks"]
    assert "error" not in checks, (
        f"{scenario} raised in the guest:\n{checks['error']}\n{checks.get('_logs', '')}"
    )
    expected = {
        "children_and_keys_match",
        "ping",
        "kernel_states_both_sides",
        "kernel_keys_equal",
        "kernel_proto_mode",
        "counters_moved",
        "down",
        "zero_after_teardown",
    }
    if "-in-v6-" in scenario:  # IPv6 outer addresses: both kernels' SAs use them
        expected.add("kernel_outer_ipv6")
    assert expected <= set(checks), f"checks missing: {expected - set(checks)}"
    assert any(k.startswith("wire_") for k in checks), "no wire check recorded"
    failed = sorted(k for k, v in checks.items() if not k.startswith("_") and v is not True)
    details = {k: v for k, v in checks.items() if k.startswith("_")}
    assert not failed, f"failed checks {failed}; details: {details}"
