"""Fixtures of the kernel adapter tests.

`netns`: a fresh network namespace per test (deleted in teardown); tests run their body inside it
with `run_in_netns(netns, func)` (a forked child that setns(2)es into it), so nothing touches the
host's own XFRM tables. Without root these tests FAIL when env CI is set and skip visibly
otherwise (ikev2.testing.gates.need).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from ikev2.testing.gates import is_root, need
from ikev2.testing.netns import fresh_netns


@pytest.fixture
def netns() -> Iterator[str]:
    need(is_root(), "needs root (CAP_NET_ADMIN) for network namespaces and NETLINK_XFRM")
    need(shutil.which("ip") is not None, "needs iproute2's ip (apt-get install iproute2)")
    with fresh_netns("ikev2k") as name:
        yield name
