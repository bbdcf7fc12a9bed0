"""Route-based VPNs in the service: swanctl's mark_in/mark_out and if_id_in/if_id_out on a
child's SAs and policies (kernel_apply.py), %unique and %unique-dir, the xfrm interface made per
child (kernel/links.py), and the config keys (config_xfrm.py). On the in-memory kernel, which
keys SAs by (dst, spi, proto, mark) and policies by (selector, direction, mark, if_id) as XFRM
does; tests/kernel/test_xfrm_ids_host.py does the same against the host's XFRM."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ikev2.config import parse_config
from ikev2.engine.config import UNIQUE, UNIQUE_DIR, XfrmIds
from ikev2.errors import ConfigError
from ikev2.kernel import Direction, Mark
from ikev2.kernel.links import MemoryLinks, newlink_xfrm
from ikev2.kernel.memory import InMemoryKernel
from ikev2.kernel.xfrm_codec import encode_sa, parse_sa
from ikev2.service.kernel_apply import UNIQUE_DIR_OUT, KernelApplier, resolve_ids, sa_spec

from .test_kernel_apply import LOCAL, REMOTE, deleted, established

ROUTED = XfrmIds(mark_in=(0x10, 0xFF), mark_out=(0x20, 0xFF), if_id_in=42, if_id_out=43)


def installed(kernel: InMemoryKernel) -> tuple[dict[object, object], dict[Direction, object]]:
    sas = {sa.dst: (sa.mark, sa.if_id) for sa in kernel.list_sas()}
    policies = {p.direction: (p.mark, p.if_id) for p in kernel.list_policies()}
    return sas, policies


def test_marks_and_if_ids_on_both_sas_and_every_policy() -> None:
    kernel, links = InMemoryKernel(), MemoryLinks()
    applier = KernelApplier(kernel, links=links)
    event = replace(established(0x1111, 0x2222), xfrm_ids=ROUTED)
    applier.child_established(event)
    sas, policies = installed(kernel)
    inbound, outbound = (Mark(0x10, 0xFF), 42), (Mark(0x20, 0xFF), 43)
    assert sas == {LOCAL: inbound, REMOTE: outbound}
    assert policies == {Direction.OUT: outbound, Direction.IN: inbound, Direction.FWD: inbound}
    assert links.interfaces == {}  # no xfrm_interface named
    applier.child_deleted(deleted(event))  # the marked SAs are found by their marks
    assert kernel.list_sas() == [] and kernel.list_policies() == []


def test_same_selectors_different_if_ids_coexist() -> None:
    """Two route-based children with equal selectors (0.0.0.0/0 both ways, as routing daemons
    use) but different interface IDs: the kernel holds both sets of policies."""
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    a = replace(established(0x1111, 0x2222, reqid=1), xfrm_ids=XfrmIds(if_id_in=1, if_id_out=1))
    b = replace(established(0x3333, 0x4444, reqid=2), xfrm_ids=XfrmIds(if_id_in=2, if_id_out=2))
    applier.child_established(a)
    applier.child_established(b)
    assert sorted(p.if_id for p in kernel.list_policies()) == [1, 1, 1, 2, 2, 2]
    applier.child_deleted(deleted(a))
    assert sorted(p.if_id for p in kernel.list_policies()) == [2, 2, 2]


def test_unique_values_follow_the_kernel_reqid_and_survive_a_rekey() -> None:
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    ids = XfrmIds(mark_in=(UNIQUE, 0xFFFF_FFFF), mark_out=(UNIQUE_DIR, 0xFFFF_FFFF),
                  if_id_in=UNIQUE_DIR, if_id_out=UNIQUE_DIR)  # fmt: skip
    first = replace(established(0x1111, 0x2222, reqid=7), xfrm_ids=ids)
    applier.child_established(first)
    reqid = applier.kernel_reqid(7)
    expected = {
        LOCAL: (Mark(reqid), reqid),
        REMOTE: (Mark(reqid | UNIQUE_DIR_OUT), reqid | UNIQUE_DIR_OUT),
    }
    assert installed(kernel)[0] == expected
    rekeyed = replace(established(0x3333, 0x4444, reqid=7), xfrm_ids=ids)  # same reqid
    applier.child_established(rekeyed)
    applier.child_deleted(deleted(first))
    assert installed(kernel)[0] == expected
    assert {p.if_id for p in kernel.list_policies()} == {reqid, reqid | UNIQUE_DIR_OUT}
    assert resolve_ids(XfrmIds(if_id_in=UNIQUE, if_id_out=UNIQUE), 9).if_id_out == 9


def test_an_xfrm_interface_per_child_made_once_and_removed_at_the_end() -> None:
    kernel, links = InMemoryKernel(), MemoryLinks()
    applier = KernelApplier(kernel, links=links)
    ids = XfrmIds(if_id_in=42, if_id_out=42, interface="ipsec42")
    event = replace(established(0x1111, 0x2222), xfrm_ids=ids)
    applier.child_established(event)
    applier.child_established(replace(established(0x3333, 0x4444), xfrm_ids=ids))  # a rekey
    assert links.interfaces == {"ipsec42": 42} and links.created == ["ipsec42"]
    applier.remove_all()
    assert links.interfaces == {} and kernel.list_sas() == []


def test_an_existing_interface_is_used_not_removed() -> None:
    links = MemoryLinks()
    links.interfaces["ipsec0"] = 42  # the operator's
    applier = KernelApplier(InMemoryKernel(), links=links)
    ids = XfrmIds(if_id_in=42, if_id_out=42, interface="ipsec0")
    applier.child_established(replace(established(0x1111, 0x2222), xfrm_ids=ids))
    applier.remove_all()
    assert links.interfaces == {"ipsec0": 42}


def test_rtm_newlink_body() -> None:
    """ifinfomsg (16 bytes, IFF_UP set and changed), IFLA_IFNAME, IFLA_LINKINFO { kind "xfrm",
    data { IFLA_XFRM_IF_ID } } as `ip link add NAME type xfrm if_id N` sends."""
    body = newlink_xfrm("ipsec9", 9)
    u16, u32 = (lambda v: v.to_bytes(2, "little")), (lambda v: v.to_bytes(4, "little"))
    ifinfomsg = bytes(8) + u32(1) + u32(1)  # family, type, index 0; flags, change = IFF_UP
    ifname = u16(11) + u16(3) + b"ipsec9\0" + b"\0"  # IFLA_IFNAME, padded to 4
    data = u16(12) + u16(0x8002) + u16(8) + u16(2) + u32(9)  # IFLA_INFO_DATA { IFLA_XFRM_IF_ID }
    info = u16(24) + u16(0x8012) + u16(8) + u16(1) + b"xfrm" + data  # IFLA_LINKINFO (nested)
    assert body == ifinfomsg + ifname + info


# --------------------------------------------------------------------------- config


def config(tmp: Path, child_extra: str) -> str:
    return f"""
[connections.gw]
remote_addrs = ["192.0.2.2"]
[connections.gw.local]
auth = "psk"
id = "moon.example"
[connections.gw.remote]
auth = "psk"
id = "sun.example"
[connections.gw.children.net]
local_ts = ["0.0.0.0/0"]
remote_ts = ["0.0.0.0/0"]
{child_extra}
[secrets.s]
ids = ["moon.example", "sun.example"]
secret = "a long enough test secret"
"""


def test_config_keys(tmp_path: Path) -> None:
    text = config(tmp_path, 'if_id_in = 42\nif_id_out = "0x2a"\nmark_in = "0x10/0xff"\n'
                  'mark_out = "%unique"\nxfrm_interface = "ipsec0"')  # fmt: skip
    child = parse_config(text, tmp_path / "c.toml").engine.connections[0].children[0]
    assert child.xfrm_ids == XfrmIds((0x10, 0xFF), (UNIQUE, 0xFFFF_FFFF), 42, 42, "ipsec0")
    text = config(tmp_path, 'if_id_in = "%unique-dir"\nif_id_out = "%unique-dir"')
    child = parse_config(text, tmp_path / "c.toml").engine.connections[0].children[0]
    assert (child.xfrm_ids.if_id_in, child.xfrm_ids.if_id_out) == (UNIQUE_DIR, UNIQUE_DIR)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('if_id_in = "forty"', ("if_id_in", "not a number")),
        ("if_id_out = 0", ("if_id_out", "0 means no interface ID")),
        ("if_id_out = 4294967296", ("if_id_out", "outside")),
        ('mark_in = "0x100/0xff"', ("mark_in", "outside mask")),
        ('mark_out = "1/%unique"', ("mark_out", "mask cannot be %unique")),
        ('xfrm_interface = "ipsec0"', ("xfrm_interface", "fixed if_id both ways")),
        ('xfrm_interface = "a/b"\nif_id_in = 1\nif_id_out = 1', ("xfrm_interface", "not an")),
        ('if_id_in = 1\nif_id_out = 2\nxfrm_interface = "x0"', ("xfrm_interface", "both ways")),
        (
            'if_id_in = "%unique"\nif_id_out = "%unique"\nxfrm_interface = "x0"',
            ("xfrm_interface", "fixed if_id"),
        ),
    ],
)
def test_config_errors(tmp_path: Path, extra: str, words: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(tmp_path, extra), tmp_path / "c.toml")
    assert all(w in str(caught.value) for w in words), str(caught.value)


def test_the_sa_messages_carry_xfrma_mark_and_if_id() -> None:
    """The XFRM_MSG_NEWSA bodies for both directions, decoded as the kernel's dump would be:
    the inbound SA has the _in values, the outbound SA the _out ones."""
    event = replace(established(0x1111, 0x2222), xfrm_ids=ROUTED)
    ids = resolve_ids(ROUTED, 5)
    inbound = parse_sa(encode_sa(sa_spec(event, event.inbound, 5, True, ids)), "test")
    outbound = parse_sa(encode_sa(sa_spec(event, event.outbound, 5, False, ids)), "test")
    assert (inbound.spi, inbound.mark, inbound.if_id) == (0x1111, Mark(0x10, 0xFF), 42)
    assert (outbound.spi, outbound.mark, outbound.if_id) == (0x2222, Mark(0x20, 0xFF), 43)
