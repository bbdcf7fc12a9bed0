"""InMemoryKernel: the same protocol and the same errnos as the XFRM adapter."""

from __future__ import annotations

import errno
import select
from ipaddress import ip_address, ip_network

import pytest

from ikev2.constants import IpProto, ProtocolId
from ikev2.kernel import (
    DEFAULT_REQID_BASE,
    Aead,
    Direction,
    Expire,
    Kernel,
    KernelError,
    Mode,
    PolicySpec,
    SaSpec,
    Selector,
    Template,
)
from ikev2.kernel.memory import InMemoryKernel

A, B = ip_address("10.0.0.1"), ip_address("10.0.0.2")
OURS = DEFAULT_REQID_BASE + 1
GCM = Aead("rfc4106(gcm(aes))", bytes(36), 128)


def sa(spi: int, reqid: int = OURS) -> SaSpec:
    return SaSpec(A, B, spi, IpProto.ESP, Mode.TUNNEL, reqid, aead=GCM)


def policy(reqid: int = OURS, direction: Direction = Direction.OUT) -> PolicySpec:
    sel = Selector(ip_network("10.1.0.0/24"), ip_network("10.2.0.0/24"))
    return PolicySpec(sel, direction, templates=(Template(IpProto.ESP, Mode.TUNNEL, reqid, A, B),))


@pytest.fixture
def kernel() -> InMemoryKernel:
    return InMemoryKernel()


def test_satisfies_the_protocol(kernel: InMemoryKernel) -> None:
    assert isinstance(kernel, Kernel)


def test_duplicate_sa_is_eexist_and_missing_is_esrch(kernel: InMemoryKernel) -> None:
    kernel.add_sa(sa(0x1000))
    with pytest.raises(KernelError) as dup:
        kernel.add_sa(sa(0x1000))
    assert (dup.value.op, dup.value.errno) == ("add_sa", errno.EEXIST)
    kernel.delete_sa(B, 0x1000, ProtocolId.ESP)
    with pytest.raises(KernelError) as missing:
        kernel.delete_sa(B, 0x1000, IpProto.ESP)
    assert (missing.value.op, missing.value.errno) == ("delete_sa", errno.ESRCH)
    with pytest.raises(KernelError):
        kernel.update_sa(sa(0x2000))


def test_allocated_spi_is_larval_until_update(kernel: InMemoryKernel) -> None:
    spi = kernel.allocate_spi(IpProto.ESP, A, B, OURS)
    with pytest.raises(KernelError) as info:
        kernel.add_sa(sa(spi))
    assert info.value.errno == errno.EEXIST
    kernel.update_sa(sa(spi))
    (listed,) = kernel.list_sas()
    assert (listed.spi, listed.algorithm) == (spi, "rfc4106(gcm(aes))")


def test_counters(kernel: InMemoryKernel) -> None:
    kernel.add_sa(sa(0x1000))
    kernel.add_traffic(B, 0x1000, IpProto.ESP, 84)
    counters = kernel.get_sa_counters(B, 0x1000, IpProto.ESP)
    assert (counters.bytes, counters.packets) == (84, 1)


def test_policies(kernel: InMemoryKernel) -> None:
    kernel.add_policy(policy())
    with pytest.raises(KernelError) as dup:
        kernel.add_policy(policy())
    assert dup.value.errno == errno.EEXIST
    kernel.add_policy(policy(direction=Direction.FWD))
    assert kernel.list_policies() == [policy(), policy(direction=Direction.FWD)]
    kernel.delete_policy(policy().selector, Direction.OUT)
    with pytest.raises(KernelError) as missing:
        kernel.delete_policy(policy().selector, Direction.OUT)
    assert missing.value.errno == errno.ENOENT


def test_host_like_mode_refuses_esp() -> None:
    kernel = InMemoryKernel(esp_supported=False)
    with pytest.raises(KernelError) as info:
        kernel.add_sa(sa(0x1000))
    assert info.value.op == "add_sa" and info.value.errno == errno.ENOSYS
    assert "ESP" in str(info.value) and kernel.list_sas() == []


def test_flush_owned_keeps_foreign(kernel: InMemoryKernel) -> None:
    kernel.add_sa(sa(0x1000))
    kernel.add_sa(sa(0x1001, reqid=7))
    kernel.allocate_spi(IpProto.ESP, B, A, OURS)
    kernel.add_policy(policy())
    kernel.add_policy(policy(reqid=7, direction=Direction.IN))
    assert kernel.flush_owned() == (2, 1)
    assert [s.spi for s in kernel.list_sas()] == [0x1001]
    assert kernel.list_policies() == [policy(reqid=7, direction=Direction.IN)]


def test_events_wake_the_fileno(kernel: InMemoryKernel) -> None:
    assert select.select([kernel.fileno()], [], [], 0)[0] == []
    event = Expire(A, B, 0x1000, IpProto.ESP, OURS, hard=False)
    kernel.inject(event)
    assert select.select([kernel.fileno()], [], [], 0)[0] == [kernel.fileno()]
    assert kernel.read_events() == [event]
    assert kernel.read_events() == []
    kernel.close()


def test_sockets_recorded(kernel: InMemoryKernel) -> None:
    kernel.bypass_socket(5, 2)
    kernel.enable_udp_encap(6)
    assert kernel.bypassed == {(5, 2)} and kernel.udp_encap == {6}
