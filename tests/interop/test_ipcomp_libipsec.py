"""IPComp (RFC 3173) against strongSwan 5.9.8 on the host, both roles, `ipcomp` on both sides.

strongSwan's kernel-libipsec (the host's userspace ESP) has no IPComp: it cannot allocate a
CPI, so it offers none as initiator and answers without IPCOMP_SUPPORTED as responder ("unable
to allocate a CPI from kernel, IPComp disabled"). The row proves the fallback: the child comes
up without IPComp on both sides, keys equal. The rows where both sides compress run with
kernel-netlink in the QEMU guest (tests/interop/test_guest_ipcomp.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ikev2.testing.interop import OURS_INITIATOR, ROLES, ChildSpec, Peers, Spec
from ikev2.testing.topology import Topology

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("role", ROLES)
def test_ipcomp_falls_back_without_kernel_ipcomp(role: str, pair: Topology, tmp_path: Path) -> None:
    spec = Spec("s2s", children=(ChildSpec(ipcomp=True),))
    with Peers(spec, pair, role, tmp_path) as p:
        p.establish()
        ((ours, twin),) = p.check_children(expected=1)
        assert not ours["cpi_in"] and not ours["cpi_out"], ours
        assert "cpi-in" not in twin.raw and "cpi-out" not in twin.raw, twin.raw
        log = p.ss.log()
        assert "unable to allocate a CPI from kernel, IPComp disabled" in log, p.logs()
        if role == OURS_INITIATOR:  # we offered it; strongSwan's answer had none
            assert re.search(r"parsed IKE_AUTH request 1 \[[^\]]*N\(IPCOMP_SUP\)", log), log
            assert not re.search(r"generating IKE_AUTH response 1 \[[^\]]*IPCOMP", log), log
        else:  # strongSwan could not offer it
            assert not re.search(r"generating IKE_AUTH request 1 \[[^\]]*IPCOMP", log), log
