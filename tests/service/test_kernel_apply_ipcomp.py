"""IPComp children (RFC 3173) -> kernel state, on the in-memory kernel: strongSwan's layout (an
IPComp SA per direction in the child's mode, ESP in transport mode between the same addresses,
policies with an IPComp then an ESP template, the inbound IPComp one optional), removed with the
child, kept across a rekey of the same reqid, and undone when the ESP SA is refused."""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import replace

import pytest

from ikev2.constants import IpProto
from ikev2.engine.config import Mode
from ikev2.engine.events import ChildSaEstablished
from ikev2.kernel import Direction, KernelError, SaInfo, SaSpec
from ikev2.kernel import Mode as XfrmMode
from ikev2.kernel.memory import InMemoryKernel
from ikev2.service.kernel_apply import KernelApplier

from .test_kernel_apply import LOCAL, REMOTE, deleted, established


def ipcomp_child(
    spi_in: int, spi_out: int, cpi_in: int, cpi_out: int, mode: Mode = Mode.TUNNEL
) -> ChildSaEstablished:
    return replace(established(spi_in, spi_out, mode=mode), cpi_in=cpi_in, cpi_out=cpi_out)


def by_proto(kernel: InMemoryKernel) -> dict[tuple[IpProto, int], SaInfo]:
    return {(sa.proto, sa.spi): sa for sa in kernel.list_sas()}


@pytest.mark.parametrize("mode", [Mode.TUNNEL, Mode.TRANSPORT])
def test_an_ipcomp_child_gets_comp_sas_and_two_template_policies(mode: Mode) -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    event = ipcomp_child(0x1111, 0x2222, 0x4A01, 0x4B02, mode=mode)
    applier.child_established(event)
    sas = by_proto(kernel)
    assert set(sas) == {(IpProto.ESP, 0x1111), (IpProto.ESP, 0x2222),
                        (IpProto.COMP, 0x4A01), (IpProto.COMP, 0x4B02)}  # fmt: skip
    child_mode = XfrmMode.TUNNEL if mode is Mode.TUNNEL else XfrmMode.TRANSPORT
    comp_in, comp_out = sas[(IpProto.COMP, 0x4A01)], sas[(IpProto.COMP, 0x4B02)]
    assert (comp_in.dst, comp_in.src, comp_in.mode) == (LOCAL, REMOTE, child_mode)
    assert (comp_out.dst, comp_out.mode, comp_out.algorithm) == (REMOTE, child_mode, "deflate")
    for spi in (0x1111, 0x2222):  # ESP under the IPComp SA, in transport mode
        assert sas[(IpProto.ESP, spi)].mode == XfrmMode.TRANSPORT
    comp_specs = [c[1] for c in kernel.calls if c[0] == "add_sa" and c[1].proto == IpProto.COMP]
    assert all(isinstance(s, SaSpec) and s.lifetime.hard_seconds is None for s in comp_specs)
    policies = kernel.list_policies()
    assert len(policies) == (3 if mode is Mode.TUNNEL else 2)
    for policy in policies:
        comp, esp = policy.templates
        assert (comp.proto, comp.mode, esp.proto, esp.mode) == (
            IpProto.COMP, child_mode, IpProto.ESP, XfrmMode.TRANSPORT)  # fmt: skip
        assert comp.optional is (policy.direction is not Direction.OUT)
        assert not esp.optional and esp.src is None
        if mode is Mode.TUNNEL:
            assert {comp.src, comp.dst} == {LOCAL, REMOTE}
    applier.child_deleted(deleted(event))
    assert kernel.list_sas() == [] and kernel.list_policies() == []


def test_a_child_without_ipcomp_is_as_before() -> None:
    kernel = InMemoryKernel()
    KernelApplier(kernel).child_established(established(0x1111, 0x2222))
    assert {sa.proto for sa in kernel.list_sas()} == {IpProto.ESP}
    assert all(sa.mode == XfrmMode.TUNNEL for sa in kernel.list_sas())
    assert all(len(p.templates) == 1 for p in kernel.list_policies())


def test_a_rekey_brings_new_comp_sas_and_the_old_ones_go_with_the_old_child() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    old = ipcomp_child(0x1111, 0x2222, 0x4A01, 0x4B02)
    new = ipcomp_child(0x3333, 0x4444, 0x4C03, 0x4D04)
    applier.child_established(old)
    applier.child_established(new)
    assert len(kernel.list_sas()) == 8 and len(kernel.list_policies()) == 3
    applier.child_deleted(deleted(old))
    assert {(sa.proto, sa.spi) for sa in kernel.list_sas()} == {
        (IpProto.ESP, 0x3333), (IpProto.ESP, 0x4444),
        (IpProto.COMP, 0x4C03), (IpProto.COMP, 0x4D04)}  # fmt: skip
    assert len(kernel.list_policies()) == 3
    assert applier.remove_all() == (2, 3) and kernel.list_sas() == []


def test_a_refused_esp_sa_takes_its_comp_sa_back_out() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    taken = ipcomp_child(0x1111, 0x2222, 0x4A01, 0x4B02)
    # an ESP SA with the outbound key exists already: the second add_sa fails with EEXIST
    applier.child_established(ipcomp_child(0x9999, 0x2222, 0x4E05, 0x4F06))
    before = {(sa.proto, sa.spi) for sa in kernel.list_sas()}
    with pytest.raises(KernelError) as failed:
        applier.child_established(taken)
    assert failed.value.errno == errno.EEXIST
    assert {(sa.proto, sa.spi) for sa in kernel.list_sas()} == before  # nothing of it stayed


def test_a_moved_child_takes_its_comp_sas_along() -> None:
    """MOBIKE or a NAT rebinding (child_moved): the IPComp SAs move with the ESP SAs."""
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    moved = ipaddress.ip_address("198.51.100.7")
    old = ipcomp_child(0x1111, 0x2222, 0x4A01, 0x4B02)
    new = replace(
        old,
        inbound=replace(old.inbound, src=moved),
        outbound=replace(old.outbound, dst=moved),
    )
    applier.child_established(old)
    applier.child_moved(old, new)
    ends = {(sa.proto, sa.spi): (sa.src, sa.dst) for sa in kernel.list_sas()}
    assert ends == {
        (IpProto.ESP, 0x1111): (moved, LOCAL), (IpProto.ESP, 0x2222): (LOCAL, moved),
        (IpProto.COMP, 0x4A01): (moved, LOCAL), (IpProto.COMP, 0x4B02): (LOCAL, moved),
    }  # fmt: skip
    applier.child_deleted(replace(deleted(new), remote=moved))
    assert kernel.list_sas() == [] and kernel.list_policies() == []
