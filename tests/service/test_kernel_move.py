"""IkeSaMoved -> the kernel: child SAs and policies moved in place (MOBIKE, RFC 4555 §3.5; a NAT
rebinding, RFC 7296 §2.23), on the in-memory kernel, and the XFRM encoding of the carried
replay state. Real ESP SAs moving under traffic are the guest's business (no ESP on the host).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from ikev2.constants import IpProto
from ikev2.engine.events import ChildSaEstablished
from ikev2.kernel import Direction, KernelError
from ikev2.kernel import xfrm_codec as codec
from ikev2.kernel import xfrm_schemas as s
from ikev2.kernel.memory import InMemoryKernel
from ikev2.kernel.netlink import pack_attrs, parse_attrs
from ikev2.service.kernel_apply import KernelApplier, sa_spec

from .test_kernel_apply import LOCAL, REMOTE, deleted, established

NEW_LOCAL = ipaddress.ip_address("198.51.100.7")


def move_local(
    event: ChildSaEstablished, local: object, encap: object = None
) -> ChildSaEstablished:
    return replace(
        event,
        inbound=replace(event.inbound, dst=local),
        outbound=replace(event.outbound, src=local),
        encap=encap,  # type: ignore[arg-type]
    )


def tunnel_ends(kernel: InMemoryKernel) -> set[tuple[object, object, Direction]]:
    return {(t.src, t.dst, p.direction) for p in kernel.policies.values() for t in p.templates}


def test_moved_child_keeps_spis_counters_and_gets_new_policies() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    old = established(0x1111, 0x2222)
    applier.child_established(old)
    kernel.add_traffic(LOCAL, 0x1111, IpProto.ESP, 100)
    policies_before = len(kernel.policies)
    new = move_local(old, NEW_LOCAL)
    applier.child_moved(old, new)
    keys = {(dst, spi) for dst, spi, _p, _m in kernel.sas}
    assert keys == {(NEW_LOCAL, 0x1111), (REMOTE, 0x2222)}  # inbound SA now to the new address
    assert kernel.get_sa_counters(NEW_LOCAL, 0x1111, IpProto.ESP).packets == 1
    assert kernel.sas[(REMOTE, 0x2222, IpProto.ESP, None)].src == NEW_LOCAL
    assert len(kernel.policies) == policies_before  # replaced in place, none left behind
    assert tunnel_ends(kernel) == {
        (NEW_LOCAL, REMOTE, Direction.OUT),
        (REMOTE, NEW_LOCAL, Direction.IN),
        (REMOTE, NEW_LOCAL, Direction.FWD),
    }
    calls = [c[0] for c in kernel.calls]
    assert calls.count("move_sa") == 2 and "delete_policy" not in calls
    # a later delete names the new addresses: everything goes
    gone = replace(deleted(new), local=NEW_LOCAL)
    applier.child_deleted(gone)
    assert not kernel.sas and not kernel.policies


def test_nat_rebinding_moves_only_the_encapsulation() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    old = established(0x1111, 0x2222, encap=(4500, 40000))
    applier.child_established(old)
    policies = dict(kernel.policies)
    new = replace(old, encap=(4500, 40001))
    applier.child_moved(old, new)
    encaps = {spec.encap for sa in kernel.sas.values() if (spec := sa.spec) is not None}
    assert encaps == {(4500, 40001), (40001, 4500)}  # outbound, inbound
    assert kernel.policies == policies  # same tunnel endpoints: the policies stay
    assert [c[0] for c in kernel.calls].count("update_policy") == 3  # only the first install


def test_a_rekeyed_sibling_of_the_same_reqid_keeps_the_selectors_covered() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    old = established(0x1111, 0x2222)
    sibling = established(0x3333, 0x4444)  # the same reqid, e.g. a rekey not yet deleted
    applier.child_established(old)
    applier.child_established(sibling)
    applier.child_moved(old, move_local(old, NEW_LOCAL))
    assert (NEW_LOCAL, REMOTE, Direction.OUT) in tunnel_ends(kernel)
    applier.child_deleted(deleted(sibling))
    assert (NEW_LOCAL, REMOTE, Direction.OUT) in tunnel_ends(kernel)
    assert len(kernel.sas) == 2


def test_a_child_the_kernel_never_took_is_not_moved() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    old = established(0x1111, 0x2222)
    applier.child_moved(old, move_local(old, NEW_LOCAL))
    assert not kernel.sas and not kernel.policies


def test_move_of_a_missing_sa_is_esrch() -> None:
    kernel = InMemoryKernel()
    spec = sa_spec(established(0x1111, 0x2222), established(0x1111, 0x2222).inbound, 7, True)
    with pytest.raises(KernelError) as err:
        kernel.move_sa(LOCAL, spec)
    assert err.value.errno == 3  # ESRCH


def test_carried_replay_state_replaces_the_fresh_one() -> None:
    """NEWSA of a moved SA carries the old SA's replay state and lifetime use from GETSA."""
    event = established(0x1111, 0x2222)
    spec = replace(sa_spec(event, event.inbound, 9, True), esn=True, replay_window=64)
    esn = s.xfrm_replay_state_esn.build(
        dict(bmp_len=2, oseq=77, seq=55, oseq_hi=0, seq_hi=0, replay_window=64)
    ) + bytes(8)
    head = s.nl_align(codec.size_of("xfrm_usersa_info"))
    # a GETSA reply: the SA's struct, its counters as the kernel reached them, other attributes
    reply = codec.encode_sa(spec)[:head] + pack_attrs(
        [(s.Xfrma.REPLAY_ESN_VAL, esn), (s.Xfrma.LTIME_VAL, bytes(32)), (s.Xfrma.MARK, bytes(8))]
    )
    carried = codec.sa_state_attrs(reply, "test")
    assert {k for k, _ in carried} == {s.Xfrma.REPLAY_ESN_VAL, s.Xfrma.LTIME_VAL}
    body = codec.encode_sa(spec, carried)
    out = parse_attrs(body[head:], "test")
    parsed = s.xfrm_replay_state_esn.parse(out[s.Xfrma.REPLAY_ESN_VAL])
    assert (parsed.oseq, parsed.seq) == (77, 55)
    assert s.Xfrma.ALG_AEAD in out and s.Xfrma.LTIME_VAL in out
