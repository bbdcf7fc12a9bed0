"""One QEMU boot per test session module: the guest runs guest_scenarios.py and leaves one JSON
file per scenario in a results dir; each scenario is then its own pytest test.

Cannot boot (no root, no QEMU, no kernel package)? In CI the tests FAIL with the reason; on a
laptop they skip visibly. Nothing here reads /work/shared: the cache lives in .cache/guest/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ikev2.testing import guest
from ikev2.testing.gates import is_root, need

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).with_name("guest_scenarios.py")


@pytest.fixture(scope="module")
def guest_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[guest.GuestRun]:
    need(is_root(), "the guest shares the host root read-only with QEMU; needs root")
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    try:
        image = guest.prepare(guest.default_cache(REPO))
    except guest.GuestError as exc:
        pytest.fail(f"cannot prepare the QEMU guest: {exc}", pytrace=False)
    results = tmp_path_factory.mktemp("guest-results")
    python = guest.interpreter()
    run = guest.boot(image, [str(python), str(SCENARIOS), "/results"], results, cwd=REPO)
    print(f"\n[guest] boot + scenarios: {run.wall_seconds:.1f} s wall, exit {run.exit_code}")
    yield run
