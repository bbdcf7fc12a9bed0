"""Environment gates for tests that need root, namespaces or QEMU (TESTBED §4): in CI (env CI
set) a missing requirement FAILS the test with the reason; elsewhere it is a visible skip."""

from __future__ import annotations

import os

import pytest


def need(condition: bool, reason: str) -> None:
    """Fail (CI) or skip (laptop) the calling test unless `condition` holds."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI requires this test to run, but: {reason}", pytrace=False)
    pytest.skip(f"{reason} (would FAIL in CI)")


def is_root() -> bool:
    return os.geteuid() == 0
