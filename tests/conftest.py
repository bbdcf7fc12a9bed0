"""Shared test configuration: Hypothesis profiles and the preflight of outside programs.

CI runs with HYPOTHESIS_PROFILE=ci: derandomized (a fixed seed), so a failure reproduces.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from ikev2.testing import preflight

GATED = ("root", "guest", "interop", "sw6")

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The preflight (ikev2.testing.preflight): before any test runs, every outside program and
    plugin the selected root/guest/interop tests use must be there, or the run stops with one
    line per missing piece naming its Debian package."""
    groups = {m for item in items for m in GATED if item.get_closest_marker(m) is not None}
    if not groups or not preflight.applies():
        return
    lines = preflight.missing(groups)
    if lines:
        pytest.exit("preflight failed:\n  " + "\n  ".join(lines), returncode=3)
