"""Kernel SA expiry of either direction (RFC 7296 §2.8): the outbound SA of a child that mostly
sends reaches its byte or packet limit first, and a soft expiry of it must rekey the child, a
hard one delete it, exactly as for the inbound SA. Back-to-back engines, each with an in-memory
kernel that sends the Expire events XFRM would."""

from __future__ import annotations

from dataclasses import replace

from ikev2.constants import ProtocolId
from ikev2.engine.events import ChildSaDeleted, ChildSaEstablished
from ikev2.kernel import IpProto

from .kernels import KernelPair, KernelSide
from .pairing import Pair, psk_connections

LIFE_BYTES = 100_000  # the soft limit is 90 % of it (kernel_apply._lifetime)


def byte_limited_pair() -> KernelPair:
    conn_i, conn_r = psk_connections()
    child_i = replace(conn_i.children[0], life_bytes=LIFE_BYTES)
    child_r = replace(conn_r.children[0], life_bytes=LIFE_BYTES)
    pair = KernelPair(
        Pair(replace(conn_i, children=(child_i,)), replace(conn_r, children=(child_r,)))
    )
    pair.pair.initiate()
    pair.run(until=1)
    assert len(pair.pair.i.of(ChildSaEstablished)) == 1
    return pair


def children(side: KernelSide) -> list[tuple[int, int]]:
    return [(c.spi_in, c.spi_out) for sa in side.side.engine.sas.values() for c in sa.children]


def send(side: KernelSide, nbytes: int, packets: int = 1, *, outbound: bool = True) -> None:
    """Traffic through the first child's outbound (or inbound) SA of this side."""
    ((spi_in, spi_out),) = children(side)
    dst = side.side_addr(not outbound)
    for _ in range(packets):
        if (dst, spi_out if outbound else spi_in) not in side.esp_sas():
            return  # the kernel removed it (hard expiry)
        side.kernel.add_traffic(dst, spi_out if outbound else spi_in, IpProto.ESP, nbytes)


def test_soft_expiry_of_the_outbound_sa_rekeys_the_child() -> None:
    pair = byte_limited_pair()
    ((old_in, old_out),) = children(pair.i)
    send(pair.i, 1400, packets=70)  # 98,000 bytes: past the soft limit, short of the hard one
    assert pair.i.expires == 0  # not fed back yet
    pair.run(until=5)
    assert pair.i.expires == 1
    ((new_in, new_out),) = children(pair.i)
    assert {new_in, new_out}.isdisjoint({old_in, old_out})  # rekeyed, not just kept
    assert [(o, i) for i, o in children(pair.r)] == [(new_in, new_out)]
    # make-before-break: the new SAs are in both kernels, the old ones are gone from both
    a_i, a_r = pair.i.side_addr(True), pair.r.side_addr(True)
    assert pair.i.esp_sas() == {(a_i, new_in), (a_r, new_out)}
    assert pair.r.esp_sas() == {(a_r, new_out), (a_i, new_in)}
    assert {e.spi_in for e in pair.pair.i.of(ChildSaDeleted)} == {old_in}


def test_hard_expiry_of_the_outbound_sa_deletes_the_child() -> None:
    pair = byte_limited_pair()
    send(pair.i, 60_000, packets=2)  # one packet past the hard limit: the kernel drops the SA
    pair.run(until=5)
    assert pair.i.expires >= 1
    assert children(pair.i) == [] and children(pair.r) == []
    assert pair.i.esp_sas() == set() and pair.r.esp_sas() == set()
    for side in (pair.pair.i, pair.pair.r):
        assert len(side.of(ChildSaDeleted)) == 1
        assert len(side.of(ChildSaEstablished)) == 1  # hard means gone, no rekey


def test_soft_expiry_of_the_inbound_sa_still_rekeys() -> None:
    pair = byte_limited_pair()
    send(pair.r, 1400, packets=70)  # the responder sends: its outbound is our inbound
    send(pair.i, 1400, packets=70, outbound=False)
    pair.run(until=5)
    assert pair.i.expires == 1 and pair.r.expires == 1
    # both sides asked for a rekey at once: the collision leaves exactly one new child (§2.8.1)
    assert len(children(pair.i)) == 1 and len(children(pair.r)) == 1
    assert [(o, i) for i, o in children(pair.r)] == children(pair.i)
    assert len(pair.pair.i.of(ChildSaEstablished)) >= 2


def test_both_directions_expiring_rekey_once() -> None:
    pair = byte_limited_pair()
    send(pair.i, 1400, packets=70)
    send(pair.i, 1400, packets=70, outbound=False)
    pair.run(until=5)
    assert pair.i.expires == 2
    assert len(pair.pair.i.of(ChildSaEstablished)) == 2  # one rekey, not two
    assert len(children(pair.i)) == 1


def test_the_destination_tells_the_direction() -> None:
    pair = byte_limited_pair()
    engine = pair.pair.i.engine
    ((spi_in, spi_out),) = children(pair.i)
    ours, theirs = pair.i.side_addr(True), pair.i.side_addr(False)
    # an SA with our outbound SPI but our own address as destination is not this child's
    assert engine.kernel_expire(ProtocolId.ESP, spi_out, True, 2.0, ours) == []
    assert engine.kernel_expire(ProtocolId.ESP, spi_in, True, 2.0, theirs) == []
    pair.run(until=5)
    assert children(pair.i) == [(spi_in, spi_out)]
    # the kernel's IP protocol number (50) is understood as well as the IKE protocol ID
    pair.pair.i.events += engine.kernel_expire(IpProto.ESP, spi_out, True, 6.0, theirs)
    pair.run(until=8)
    assert children(pair.i) == [] and children(pair.r) == []
