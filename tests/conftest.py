"""Shared test configuration: Hypothesis profiles and the environment gates.

CI runs with HYPOTHESIS_PROFILE=ci: derandomized (a fixed seed), so a failure reproduces.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
