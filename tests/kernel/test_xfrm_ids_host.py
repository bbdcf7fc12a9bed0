"""Route-based VPN policies against the host's XFRM (root; each test in a fresh namespace):
the policies KernelApplier makes for a child with if_id_in/if_id_out and mark_in/mark_out carry
XFRMA_IF_ID and XFRMA_MARK in the kernel (`ip xfrm policy` shows them), two children with the
same selectors but different interface IDs coexist, and a policy is found (deleted) only by its
own mark and if_id. The host has no ESP (TESTBED §1), so SAs with these attributes are proven in
the QEMU guest (tests/interop/test_guest_interop.py, the xfrm interface row) and their encoding
in tests/service/test_xfrm_ids.py."""

from __future__ import annotations

import errno
import subprocess
from dataclasses import replace

import pytest

from ikev2.engine.config import XfrmIds
from ikev2.kernel import Direction, KernelError, Mark
from ikev2.kernel.xfrm import XfrmKernel
from ikev2.service.kernel_apply import KernelApplier, resolve_ids
from ikev2.testing.netns import run_in_netns

from ..service.test_kernel_apply import established, ts

pytestmark = pytest.mark.root

ROUTED = XfrmIds(mark_in=(0x10, 0xFF), mark_out=(0x20, 0xFF), if_id_in=42, if_id_out=43)


def test_policies_carry_if_id_and_mark(netns: str) -> None:
    def body() -> tuple[list[tuple[object, ...]], str, list[int], str]:
        kernel = XfrmKernel(events=False)
        applier = KernelApplier(kernel)
        reqid = applier.kernel_reqid(1)
        event = replace(established(0x1111, 0x2222, local_ts=ts("0.0.0.0/0"),
                                    remote_ts=ts("0.0.0.0/0")), xfrm_ids=ROUTED)  # fmt: skip
        policies = applier._policies(event, reqid, resolve_ids(ROUTED, reqid))
        other = replace(event, xfrm_ids=XfrmIds(if_id_in=7, if_id_out=7))
        others = applier._policies(other, reqid + 1, resolve_ids(other.xfrm_ids, reqid + 1))
        for spec in [*policies, *others]:
            kernel.update_policy(spec)
        listed = sorted(((p.direction, p.mark, p.if_id) for p in kernel.list_policies()), key=repr)
        shown = subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True).stdout
        errors = []
        out = policies[0]
        try:  # the same selector and direction, without the if_id: not this policy
            kernel.delete_policy(out.selector, out.direction, out.mark, None)
        except KernelError as exc:
            errors.append(exc.errno)
        for spec in [*policies, *others]:
            kernel.delete_policy(spec.selector, spec.direction, spec.mark, spec.if_id)
        after = subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True).stdout
        kernel.close()
        return listed, shown, errors, after

    listed, shown, errors, after = run_in_netns(netns, body)
    out, inbound = (Mark(0x20, 0xFF), 43), (Mark(0x10, 0xFF), 42)
    expected = [(Direction.OUT, *out), (Direction.IN, *inbound), (Direction.FWD, *inbound)]
    expected += [(d, None, 7) for d in (Direction.OUT, Direction.IN, Direction.FWD)]
    assert listed == sorted(expected, key=repr)
    assert shown.count("if_id 0x2b") == 1 and shown.count("if_id 0x2a") == 2, shown
    assert shown.count("if_id 0x7") == 3, shown
    assert "mark 0x20/0xff" in shown and shown.count("mark 0x10/0xff") == 2, shown
    assert errors == [errno.ENOENT]
    assert after.strip() == ""
