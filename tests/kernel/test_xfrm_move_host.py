"""MOBIKE's kernel side against the host XFRM, in a fresh network namespace (root). The host
has XFRM policies but no ESP (TESTBED §1), so the SAs of a moved child live in the in-memory
kernel here while its policies go through NETLINK_XFRM: KernelApplier.child_moved replaces the
tunnel templates in place (XFRM_MSG_UPDPOLICY, never a moment without a policy) and nothing
stale stays. Moving SAs under real traffic is the guest row (tests/interop/test_guest_mobike.py).
"""

from __future__ import annotations

import errno
import subprocess
from dataclasses import replace
from ipaddress import ip_address

import pytest

from ikev2.kernel import KernelError
from ikev2.kernel.memory import InMemoryKernel
from ikev2.kernel.xfrm import XfrmKernel
from ikev2.service.kernel_apply import KernelApplier, sa_spec
from ikev2.testing.netns import run_in_netns
from tests.service.test_kernel_apply import LOCAL, REMOTE, deleted, established

pytestmark = pytest.mark.root

NEW_LOCAL = ip_address("198.51.100.7")


class PoliciesOnHost(InMemoryKernel):
    """SAs in memory (the host cannot hold ESP SAs), policies in the host's XFRM."""

    def __init__(self, xfrm: XfrmKernel) -> None:
        super().__init__()
        self.xfrm = xfrm

    def add_policy(self, spec):  # type: ignore[no-untyped-def]
        self.xfrm.add_policy(spec)

    def update_policy(self, spec):  # type: ignore[no-untyped-def]
        self.xfrm.update_policy(spec)

    def delete_policy(self, selector, direction, mark=None, if_id=None):  # type: ignore[no-untyped-def]
        self.xfrm.delete_policy(selector, direction, mark, if_id)

    def list_policies(self):  # type: ignore[no-untyped-def]
        return self.xfrm.list_policies()


def _ip_xfrm_policy() -> str:
    return subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True).stdout


def test_moved_child_policies_replaced_in_place_on_host_xfrm(netns: str) -> None:
    def body() -> tuple[str, str, int, int, str]:
        xfrm = XfrmKernel(events=False)
        kernel = PoliciesOnHost(xfrm)
        applier = KernelApplier(kernel)
        old = established(0x1111, 0x2222)
        applier.child_established(old)
        before = _ip_xfrm_policy()
        new = replace(
            old,
            inbound=replace(old.inbound, dst=NEW_LOCAL),
            outbound=replace(old.outbound, src=NEW_LOCAL),
        )
        applier.child_moved(old, new)
        after = _ip_xfrm_policy()
        count = len(xfrm.list_policies())
        applier.child_deleted(replace(deleted(new), local=NEW_LOCAL))
        left = len(xfrm.list_policies())
        xfrm.close()
        return before, after, count, left, _ip_xfrm_policy()

    before, after, count, left, final = run_in_netns(netns, body)
    assert f"tmpl src {LOCAL} dst {REMOTE}" in before
    assert f"tmpl src {NEW_LOCAL} dst {REMOTE}" in after  # out
    assert f"tmpl src {REMOTE} dst {NEW_LOCAL}" in after  # in and fwd
    assert str(LOCAL) not in after
    assert count == 3 and left == 0 and final.strip() == ""


def test_move_sa_of_a_missing_sa_is_esrch_on_host(netns: str) -> None:
    def body() -> tuple[str, int]:
        xfrm = XfrmKernel(events=False)
        event = established(0x1111, 0x2222)
        spec = sa_spec(event, event.inbound, 0x1E0003, True)
        try:
            xfrm.move_sa(LOCAL, spec)
        except KernelError as exc:
            return exc.op, exc.errno
        finally:
            xfrm.close()
        return "no error", 0

    op, code = run_in_netns(netns, body)
    assert (op, code) == ("move_sa", errno.ESRCH)
