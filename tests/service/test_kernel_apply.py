"""Child SA events -> kernel state, on the in-memory kernel (same errnos as XFRM).

Rekeying brings a new child with the SAME reqid before the old one is deleted: the policies must
stay until the last SA of the reqid goes. A kernel failure must leave nothing half-installed.
"""

from __future__ import annotations

import ipaddress

import pytest

from ikev2.constants import ProtocolId
from ikev2.engine.config import ChildConfig, ConnectionConfig, Mode, TrafficSelectorSpec
from ikev2.engine.events import ChildSaDeleted, ChildSaEstablished, SaDirection
from ikev2.engine.reqids import DEFAULT_MAX_REQID
from ikev2.kernel import Direction, KernelError
from ikev2.kernel import Mode as XfrmMode
from ikev2.kernel.memory import InMemoryKernel
from ikev2.service.kernel_apply import TRAP_BASE, KernelApplier, selector_pairs
from ikev2.service.keylog import esp_line, ike_encr_name
from ikev2.tools.decrypt import encr_from_wireshark

LOCAL = ipaddress.ip_address("192.0.2.1")
REMOTE = ipaddress.ip_address("192.0.2.2")


def ts(*nets: str) -> tuple[TrafficSelectorSpec, ...]:
    return tuple(TrafficSelectorSpec(ipaddress.ip_network(n)) for n in nets)


def established(
    spi_in: int,
    spi_out: int,
    reqid: int = 1,
    *,
    mode: Mode = Mode.TUNNEL,
    aead: bool = True,
    encap: tuple[int, int] | None = None,
    local_ts: tuple[TrafficSelectorSpec, ...] = ts("10.1.0.0/24"),
    remote_ts: tuple[TrafficSelectorSpec, ...] = ts("10.2.0.0/24"),
    remote: object = REMOTE,
) -> ChildSaEstablished:
    def direction(src: object, dst: object, spi: int) -> SaDirection:
        return SaDirection(
            src=src,  # type: ignore[arg-type]
            dst=dst,  # type: ignore[arg-type]
            spi=spi,
            enc_alg="rfc4106(gcm(aes))" if aead else "cbc(aes)",
            enc_key=bytes(36) if aead else bytes(16),
            icv_bits=128 if aead else 0,
            auth_alg=None if aead else "hmac(sha256)",
            auth_key=b"" if aead else bytes(32),
            auth_trunc_bits=0 if aead else 128,
        )

    return ChildSaEstablished(
        ike_sa_id=1, connection="net", child="net", reqid=reqid, protocol=ProtocolId.ESP,
        mode=mode, inbound=direction(remote, LOCAL, spi_in),
        outbound=direction(LOCAL, remote, spi_out), local_ts=local_ts, remote_ts=remote_ts,
        encap=encap, esn=False, replay_window=32, rekey_time=3600, life_time=3960,
        life_bytes=0, life_packets=0, suite="AES_GCM_16_256",
    )  # fmt: skip


def deleted(event: ChildSaEstablished) -> ChildSaDeleted:
    return ChildSaDeleted(
        event.ike_sa_id, event.connection, event.child, event.reqid, event.protocol,
        event.spi_in, event.spi_out, LOCAL, event.outbound.dst, "test",
    )  # fmt: skip


def test_a_child_of_the_same_reqid_from_a_moved_peer_brings_its_own_policies() -> None:
    """A rekey or reauthentication keeps the reqid; when the peer's address changed (a NAT
    rebinding, RFC 7296 §2.23) or the selectors did, the tunnel policies follow the new child."""
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    moved = ipaddress.ip_address("198.51.100.7")
    first = established(0x1111, 0x2222)
    applier.child_established(first)
    second = established(0x3333, 0x4444, remote=moved, remote_ts=ts("10.2.0.0/24", "10.3.0.0/24"))
    applier.child_established(second)

    def tunnel_ends() -> set[tuple[object, object]]:
        return {(t.src, t.dst) for p in kernel.list_policies() for t in p.templates}

    assert tunnel_ends() == {(LOCAL, moved), (moved, LOCAL)}
    assert len(kernel.list_policies()) == 6  # 3 per selector pair, both pairs the new child's
    applier.child_deleted(deleted(first))
    assert tunnel_ends() == {(LOCAL, moved), (moved, LOCAL)} and len(kernel.list_policies()) == 6
    applier.child_deleted(deleted(second))
    assert kernel.list_policies() == [] and kernel.list_sas() == []


def test_the_policies_follow_the_newest_child_that_still_lives() -> None:
    """Children of one reqid with different shapes (selectors, peer address): the kernel holds
    the policies of the newest one alive; when it goes first, the older one's come back."""
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    moved = ipaddress.ip_address("198.51.100.7")

    def shape() -> set[tuple[object, ...]]:
        return {
            (p.direction, str(p.selector.dst), t.dst)
            for p in kernel.list_policies()
            for t in p.templates
        }

    old = established(0x1111, 0x2222)
    new = established(0x3333, 0x4444, remote=moved, remote_ts=ts("10.3.0.0/24"))
    applier.child_established(old)
    old_shape = shape()
    applier.child_established(new)
    new_shape = shape()
    assert new_shape != old_shape and len(kernel.list_policies()) == 3
    applier.child_deleted(deleted(new))  # the newer one goes first: the old one's policies
    assert shape() == old_shape
    applier.child_established(new)
    rekeyed_old = established(0x5555, 0x6666)  # an old-shape child made after the new one
    applier.child_established(rekeyed_old)
    assert shape() == old_shape
    applier.child_deleted(deleted(old))
    applier.child_deleted(deleted(rekeyed_old))  # the old shape is gone: the new one's return
    assert shape() == new_shape
    applier.child_deleted(deleted(new))
    assert kernel.list_policies() == [] and kernel.list_sas() == [] and not applier.reqids


def test_install_both_sas_and_three_policies_per_selector_pair() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    applier.child_established(established(0x1111, 0x2222))
    sas = {(sa.dst, sa.spi): sa for sa in kernel.list_sas()}
    assert set(sas) == {(LOCAL, 0x1111), (REMOTE, 0x2222)}
    inbound = sas[(LOCAL, 0x1111)]
    assert inbound.reqid == kernel.reqid_base + 1 and inbound.mode is XfrmMode.TUNNEL
    assert inbound.algorithm == "rfc4106(gcm(aes))" and inbound.encap is None
    policies = kernel.list_policies()
    assert sorted(p.direction for p in policies) == [Direction.IN, Direction.OUT, Direction.FWD]
    out = next(p for p in policies if p.direction is Direction.OUT)
    assert (str(out.selector.src), str(out.selector.dst)) == ("10.1.0.0/24", "10.2.0.0/24")
    [template] = out.templates
    assert (template.src, template.dst, template.reqid) == (LOCAL, REMOTE, kernel.reqid_base + 1)


def test_rekeyed_child_with_the_same_reqid_keeps_policies_until_the_last_sa_goes() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    old, new = established(0x1111, 0x2222), established(0x3333, 0x4444)
    applier.child_established(old)
    applier.child_established(new)
    assert len(kernel.list_sas()) == 4 and len(kernel.list_policies()) == 3
    applier.child_deleted(deleted(old))
    assert {sa.spi for sa in kernel.list_sas()} == {0x3333, 0x4444}
    assert len(kernel.list_policies()) == 3
    applier.child_deleted(deleted(new))
    assert kernel.list_sas() == [] and kernel.list_policies() == []


def test_transport_mode_nat_and_non_aead() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    applier.child_established(
        established(
            0x10,
            0x20,
            mode=Mode.TRANSPORT,
            aead=False,
            encap=(4500, 31000),
            local_ts=ts(f"{LOCAL}/32"),
            remote_ts=ts(f"{REMOTE}/32"),
        )
    )
    sas = {sa.spi: sa for sa in kernel.list_sas()}
    assert sas[0x10].encap == (31000, 4500) and sas[0x20].encap == (4500, 31000)
    assert sas[0x10].algorithm == "cbc(aes)+hmac(sha256)"
    policies = kernel.list_policies()
    assert sorted(p.direction for p in policies) == [Direction.IN, Direction.OUT]  # no fwd
    assert all(
        t.src is None and t.mode is XfrmMode.TRANSPORT for p in policies for t in p.templates
    )


def test_a_kernel_failure_leaves_nothing_behind() -> None:
    kernel = InMemoryKernel(esp_supported=False)
    applier = KernelApplier(kernel)
    with pytest.raises(KernelError):
        applier.child_established(established(0x1111, 0x2222))
    assert kernel.list_sas() == [] and kernel.list_policies() == []
    assert applier.sas == {} and applier.reqids == {}


def test_selector_pairs_skip_mixed_families() -> None:
    pairs = list(selector_pairs(ts("10.1.0.0/24", "2001:db8:1::/48"), ts("10.2.0.0/24")))
    assert len(pairs) == 1


def test_trap_policy_is_replaced_by_the_child_and_returns_after_it() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    child = ChildConfig("net", ts("10.1.0.0/24"), ts("10.2.0.0/24"), ())
    conn = ConnectionConfig("net", (LOCAL,), (REMOTE,), None, None, None, (), (child,))  # type: ignore[arg-type]
    reqid = applier.install_trap(0, conn, child)
    assert reqid == kernel.reqid_base + TRAP_BASE and applier.trap_owner(reqid) == "net"
    [trap] = kernel.list_policies()
    assert trap.direction is Direction.OUT and trap.templates[0].reqid == reqid
    event = established(0x1111, 0x2222)
    applier.child_established(event)
    out = [p for p in kernel.list_policies() if p.direction is Direction.OUT]
    # the trapped child takes the trap's reqid: the kernel's larval SA of the Acquire is
    # replaced by the child's SA only when their reqids are equal
    assert [p.templates[0].reqid for p in out] == [reqid]
    assert {sa.reqid for sa in kernel.list_sas()} == {reqid}
    assert out[0].priority < trap.priority  # the child's policy, not the trap's
    applier.child_deleted(deleted(event))
    assert kernel.list_policies() == [trap]
    applier.remove_all()
    assert kernel.list_policies() == []


def test_keylog_names_are_ones_the_decoder_reads_back() -> None:
    for encr, bits, icv in (("AES_GCM_16", 256, 16), ("AES_GCM_8", 128, 8), ("AES_CBC", 192, 0)):
        suite = encr_from_wireshark(ike_encr_name(encr, bits))
        assert suite.key_bits == bits and suite.icv_bytes == icv
    assert ike_encr_name("AES_GCM_16", 256) == "AES-GCM-256 with 16 octet ICV [RFC5282]"
    line = esp_line(established(0xABC, 0xDEF, aead=False).outbound)
    assert line == (
        f'"IPv4","{LOCAL}","{REMOTE}","0x00000def","AES-CBC [RFC3602]","0x{bytes(16).hex()}",'
        f'"HMAC-SHA-256-128 [RFC4868]","0x{bytes(32).hex()}"'
    )


def test_two_reqids_on_the_same_selectors_hand_the_policy_over() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    first, second = established(0x1111, 0x2222, reqid=1), established(0x3333, 0x4444, reqid=2)
    applier.child_established(first)
    applier.child_established(second)

    def out_reqids() -> list[int]:
        return [
            p.templates[0].reqid - kernel.reqid_base
            for p in kernel.list_policies()
            if p.direction is Direction.OUT
        ]

    assert out_reqids() == [2] and len(kernel.list_policies()) == 3
    applier.child_deleted(deleted(second))
    assert out_reqids() == [1] and len(kernel.list_policies()) == 3  # the first one's is back
    applier.child_established(second)
    applier.child_deleted(deleted(first))  # not in the kernel: nothing changes there
    assert out_reqids() == [2]
    applier.child_deleted(deleted(second))
    assert kernel.list_policies() == [] and applier.slots == {}


def test_the_reqid_range_holds_a_gateway_of_100k_distinct_children() -> None:
    """Issue 17: 100,000 IKE SAs with a child each, every child with selectors of its own (a
    road warrior's virtual IP), need as many reqids below the trap block, inside the range a
    restart flushes; and with two workers too."""
    kernel = InMemoryKernel()
    for workers in (1, 2):
        top = (TRAP_BASE - 1) // workers
        assert top * workers >= 200_000
        for index in range(workers):
            applier = KernelApplier(kernel, reqid_stride=workers, reqid_offset=index)
            last = applier.kernel_reqid(top)
            assert kernel.owns_reqid(last), "a child's reqid outside the range a restart flushes"
            assert last < kernel.reqid_base + TRAP_BASE, "a child's reqid among the trap reqids"
    assert kernel.owns_reqid(kernel.reqid_base + TRAP_BASE + 0xFFFF), "traps outside the range"
    assert DEFAULT_MAX_REQID == TRAP_BASE - 1
