"""`ikev2 demo` end to end, as the README's first command runs it (namespaces when root)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


@pytest.mark.parametrize("loopback", [False, True], ids=["as-run", "loopback"])
def test_demo_negotiates_shows_both_sides_and_tears_down(loopback: bool) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ikev2.cli", "demo", *(["--loopback"] if loopback else [])],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    where = "two network namespaces" if os.geteuid() == 0 and not loopback else "loopback"
    assert where in out
    # which kernel each side used, and why, in plain words
    assert re.search(r"moon: kernel = (xfrm|memory) \(.+\)", out)
    assert re.search(r"sun: kernel = (xfrm|memory) \(.+\)", out)
    assert out.count("ESTABLISHED") == 2 and out.count("TUNNEL ESP") == 2
    assert "10.1.0.0/24 === 10.2.0.0/24" in out and "10.2.0.0/24 === 10.1.0.0/24" in out
    assert "sun now has 0 IKE SA(s)" in out
    assert "exit codes {'moon': 0, 'sun': 0}" in out and "demo succeeded" in out
    if os.geteuid() == 0:  # the namespaces are gone again
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert "ikev2demo-" not in netns
