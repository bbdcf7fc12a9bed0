"""What every QEMU guest row module (tests/interop/test_guest_*.py) shares: loading the
guest-side script for its scenario list, the one boot per module, and the per-row assertions on
the JSON record the guest left in results/<key>.json. Not itself a guest-side script: nothing
here runs inside the guest.

A missing precondition (root, QEMU, strongSwan, nftables) goes through gates.need, as before:
FAILS in CI with the reason, a visible skip elsewhere; a guest that cannot be prepared FAILS.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ikev2.testing import guest
from ikev2.testing.gates import is_root, need

REPO = Path(__file__).resolve().parents[2]
# a precondition: None when met, else the reason (strongswan.available, strongswan.missing6)
Need = Callable[[], str | None]


def load_script(path: Path, name: str) -> ModuleType:
    """Import the guest-side script at `path` as module `name` (for its SCENARIOS)."""
    if str(path.parent) not in sys.path:  # guest_mobike & co import guest_interop's helpers
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


def nft_installed() -> str | None:
    return None if shutil.which("nft") is not None else "nftables is not installed"


def boot_once(
    tmp_path_factory: pytest.TempPathFactory,
    script: Path,
    label: str,
    *,
    needs: Sequence[Need] = (),
    args: Sequence[str] = (),
    timeout: float = 900,
    what: str = "scenarios",
    show_exit: bool = True,
) -> guest.GuestRun:
    """Boot the guest once running `script /results *args`; results land in a tmp dir named
    guest-<label>. Prints the wall time as `[guest <label>] boot + <what>: ...`."""
    need(is_root(), "the guest shares the host root read-only with QEMU; needs root")
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    for check in needs:
        reason = check()
        need(reason is None, reason or "")
    try:
        image = guest.prepare(guest.default_cache(REPO))
    except guest.GuestError as exc:
        pytest.fail(f"cannot prepare the QEMU guest: {exc}", pytrace=False)
    results = tmp_path_factory.mktemp(f"guest-{label.replace(' ', '-')}")
    command = [str(guest.interpreter()), str(script), "/results", *args]
    run = guest.boot(image, command, results, cwd=REPO, timeout=timeout)
    tail = f", exit {run.exit_code}" if show_exit else ""
    print(f"\n[guest {label}] boot + {what}: {run.wall_seconds:.1f} s{tail}")
    return run


def row_record(run: guest.GuestRun, key: str, *, tail: str | None = None) -> dict[str, Any]:
    """The record of row `key`: it exists and nothing raised in the guest. `tail`: what to
    show when it is missing (default: the end of the console)."""
    path = run.results / f"{key}.json"
    shown = run.console[-3000:] if tail is None else tail
    assert path.exists(), f"no result; console:\n{shown}"
    record: dict[str, Any] = json.loads(path.read_text())
    checks = record["checks"]
    assert "error" not in checks, (
        f"{key} raised in the guest:\n{checks['error']}\n{checks.get('_logs', '')}"
    )
    return record


def all_checks_pass(checks: dict[str, Any], expected: set[str]) -> None:
    """Every expected check was recorded, and every recorded check (not `_` details) is True."""
    assert set(checks) >= expected, f"checks missing: {expected - set(checks)}"
    failed = sorted(k for k, v in checks.items() if not k.startswith("_") and v is not True)
    details = {k: v for k, v in checks.items() if k.startswith("_")}
    assert not failed, f"failed checks {failed}; details: {details}"


def row_checks(run: guest.GuestRun, key: str, expected: set[str]) -> dict[str, Any]:
    """row_record + all_checks_pass; returns the record."""
    record = row_record(run, key)
    all_checks_pass(record["checks"], expected)
    return record
