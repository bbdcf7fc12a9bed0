"""The construct declarations against the kernel UAPI layout, and codec round trips.

The sizes and offsets below were measured on this machine (x86_64, gcc 12.2.0) by compiling a
throwaway C program that prints sizeof() / offsetof() of the structs in /usr/include/linux/xfrm.h
and linux/netlink.h (linux-libc-dev 6.1.187). A wrong padding or field width changes them.
"""

from __future__ import annotations

import errno
import socket
from ipaddress import ip_address, ip_network

import pytest

from ikev2.constants import IpProto
from ikev2.kernel import (
    Aead,
    Cipher,
    Direction,
    Integrity,
    KernelError,
    Lifetime,
    Mark,
    Mode,
    PolicyAction,
    PolicySpec,
    SaSpec,
    Selector,
    Template,
)
from ikev2.kernel import xfrm_codec as codec
from ikev2.kernel import xfrm_schemas as s
from ikev2.kernel.netlink import parse_attrs, split_messages

GCC_SIZEOF = {
    "nlmsghdr": 16,
    "nlmsgerr": 20,
    "xfrm_selector": 56,
    "xfrm_id": 24,
    "xfrm_lifetime_cfg": 64,
    "xfrm_lifetime_cur": 32,
    "xfrm_stats": 12,
    "xfrm_usersa_info": 224,
    "xfrm_usersa_id": 24,
    "xfrm_userspi_info": 232,
    "xfrm_userpolicy_info": 168,
    "xfrm_userpolicy_id": 64,
    "xfrm_user_tmpl": 64,
    "xfrm_algo": 68,
    "xfrm_algo_auth": 72,
    "xfrm_algo_aead": 72,
    "xfrm_encap_tmpl": 24,
    "xfrm_replay_state_esn": 24,
    "xfrm_mark": 8,
    "xfrm_userpolicy_type": 6,
    "xfrm_user_acquire": 280,
    "xfrm_user_expire": 232,
    "xfrm_user_mapping": 64,
}

# (struct, field path, offsetof measured with gcc)
GCC_OFFSETOF = [
    ("xfrm_usersa_info", ("lft",), 96),
    ("xfrm_usersa_info", ("curlft",), 160),
    ("xfrm_usersa_info", ("stats",), 192),
    ("xfrm_usersa_info", ("reqid",), 208),
    ("xfrm_usersa_info", ("family",), 212),
    ("xfrm_usersa_info", ("mode",), 214),
    ("xfrm_usersa_info", ("replay_window",), 215),
    ("xfrm_usersa_info", ("flags",), 216),
    ("xfrm_userpolicy_info", ("priority",), 152),
    ("xfrm_userpolicy_info", ("dir",), 160),
    ("xfrm_userpolicy_info", ("share",), 163),
    ("xfrm_user_tmpl", ("family",), 24),
    ("xfrm_user_tmpl", ("saddr",), 28),
    ("xfrm_user_tmpl", ("reqid",), 44),
    ("xfrm_user_tmpl", ("mode",), 48),
    ("xfrm_user_tmpl", ("aalgos",), 52),
    ("xfrm_user_tmpl", ("calgos",), 60),
    ("xfrm_user_acquire", ("policy",), 96),
    ("xfrm_user_acquire", ("seq",), 276),
    ("xfrm_user_expire", ("hard",), 224),
    ("xfrm_user_mapping", ("reqid",), 24),
    ("xfrm_user_mapping", ("new_saddr",), 44),
    ("xfrm_user_mapping", ("new_sport",), 62),
    ("xfrm_userspi_info", ("min",), 224),
    ("xfrm_userpolicy_id", ("dir",), 60),
    ("xfrm_selector", ("family",), 40),
    ("xfrm_selector", ("ifindex",), 48),
    ("xfrm_usersa_id", ("proto",), 22),
]


@pytest.mark.parametrize("name", sorted(GCC_SIZEOF))
def test_struct_size_matches_kernel_header(name: str) -> None:
    construct, declared = s.STRUCTS[name]
    assert construct.sizeof() == declared == GCC_SIZEOF[name]


def _zeros(construct: object) -> object:
    """A Container of all-zero fields, obtained by parsing zero bytes."""
    return construct.parse(bytes(construct.sizeof()))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "path", "offset"), GCC_OFFSETOF)
def test_field_offset_matches_kernel_header(name: str, path: tuple[str, ...], offset: int) -> None:
    construct = s.STRUCTS[name][0]
    value = _zeros(construct)
    holder = value
    for part in path[:-1]:
        holder = holder[part]  # type: ignore[index]
    field = path[-1]
    current = holder[field]  # type: ignore[index]
    if isinstance(current, bytes):
        holder[field] = b"\xff" + current[1:]  # type: ignore[index]
    elif isinstance(current, int):  # the widest all-ones value the field takes: its first byte
        for ones in (2**64 - 1, 2**32 - 1, 2**16 - 1, 2**8 - 1, 2**15 - 1):  # is non-zero in
            holder[field] = ones  # type: ignore[index]  # either byte order
            try:
                construct.build(value)
                break
            except Exception:
                continue
    else:  # a nested struct: poking the byte at `offset` must change that field
        raw = bytearray(construct.build(value))
        raw[offset] = 0xFF
        assert construct.parse(bytes(raw))[field] != current
        return
    raw = construct.build(value)
    assert next(i for i, byte in enumerate(raw) if byte) == offset


def test_native_and_network_byte_order() -> None:
    sa_id = s.xfrm_usersa_id.build(dict(daddr=bytes(16), spi=0x01020304, family=2, proto=50))
    assert sa_id[16:20] == b"\x01\x02\x03\x04"  # __be32 spi
    assert sa_id[20:22] == (2).to_bytes(2, "little")  # __u16 family, native (x86_64)


SPEC = SaSpec(
    src=ip_address("10.0.0.1"),
    dst=ip_address("10.0.0.2"),
    spi=0xC0FFEE01,
    proto=IpProto.ESP,
    mode=Mode.TUNNEL,
    reqid=0x1E0001,
    enc=Cipher("cbc(aes)", bytes(range(32))),
    auth=Integrity("hmac(sha256)", bytes(range(32, 64)), 128),
    esn=True,
    replay_window=128,
    encap=(4500, 4500),
    lifetime=Lifetime(soft_seconds=3000, hard_seconds=3600, hard_bytes=10**9),
    mark=Mark(0x42, 0xFF),
    if_id=7,
)


def test_sa_encoding_round_trip() -> None:
    body = codec.encode_sa(SPEC)
    info = s.xfrm_usersa_info.parse(body[:224])
    assert (info.id.spi, info.id.proto, info.reqid, info.mode) == (0xC0FFEE01, 50, 0x1E0001, 1)
    assert info.flags == s.XFRM_STATE_ESN | s.XFRM_STATE_AF_UNSPEC and info.replay_window == 0
    assert info.lft.hard_add_expires_seconds == 3600 and info.lft.hard_byte_limit == 10**9
    assert info.lft.soft_packet_limit == s.XFRM_INF
    attrs = parse_attrs(body[224:], "test")
    assert attrs[s.Xfrma.ALG_CRYPT][68:] == bytes(range(32))
    assert attrs[s.Xfrma.ALG_AUTH_TRUNC][72:] == bytes(range(32, 64))
    esn = s.xfrm_replay_state_esn.parse(attrs[s.Xfrma.REPLAY_ESN_VAL][:24])
    assert (esn.bmp_len, esn.replay_window) == (4, 128)
    assert len(attrs[s.Xfrma.REPLAY_ESN_VAL]) == 24 + 16
    parsed = codec.parse_sa(body, "test")
    assert (parsed.src, parsed.dst, parsed.spi, parsed.proto) == (SPEC.src, SPEC.dst, SPEC.spi, 50)
    assert parsed.algorithm == "cbc(aes)+hmac(sha256)" == SPEC.algorithm
    assert (parsed.encap, parsed.mark, parsed.if_id) == ((4500, 4500), Mark(0x42, 0xFF), 7)


@pytest.mark.parametrize(
    ("mode", "selector", "sel_family", "af_unspec"),
    [
        # tunnel, no selector: any inner family (6-in-4, 4-in-6, both in one child)
        (Mode.TUNNEL, None, socket.AF_UNSPEC, True),
        (Mode.TRANSPORT, None, socket.AF_INET6, False),
        (
            Mode.TUNNEL,
            Selector(ip_network("10.1.0.0/24"), ip_network("10.2.0.0/24")),
            socket.AF_INET,
            False,
        ),
    ],
)
def test_sa_selector_family(
    mode: Mode, selector: Selector | None, sel_family: int, af_unspec: bool
) -> None:
    """A tunnel SA over IPv6 must not carry an IPv6 "any" selector: the kernel would drop the
    IPv4 packets it decapsulates (XfrmInStateMismatch) and never pick it for IPv4 output."""
    spec = SaSpec(
        ip_address("fd00:99::1"),
        ip_address("fd00:99::2"),
        0x1000,
        IpProto.ESP,
        mode,
        1,
        aead=Aead("rfc4106(gcm(aes))", bytes(36), 128),
        selector=selector,
    )
    info = s.xfrm_usersa_info.parse(codec.encode_sa(spec)[:224])
    assert info.family == socket.AF_INET6 and info.sel.family == sel_family
    assert bool(info.flags & s.XFRM_STATE_AF_UNSPEC) == af_unspec


def test_aead_sa_key_length_in_bits() -> None:
    spec = SaSpec(
        ip_address("fd00::1"),
        ip_address("fd00::2"),
        0x1000,
        IpProto.ESP,
        Mode.TRANSPORT,
        1,
        aead=Aead("rfc4106(gcm(aes))", bytes(36), 128),
    )
    attrs = parse_attrs(codec.encode_sa(spec)[224:], "test")
    head = s.xfrm_algo_aead.parse(attrs[s.Xfrma.ALG_AEAD][:72])
    assert (head.key_len_bits, head.icv_len_bits) == (288, 128)
    assert head.name.rstrip(b"\0") == b"rfc4106(gcm(aes))"
    assert "key" not in repr(spec.aead).split("name=")[0] and "\\x00" not in repr(spec)


@pytest.mark.parametrize(
    "policy",
    [
        PolicySpec(
            Selector(ip_network("10.1.0.0/16"), ip_network("10.2.0.0/24"), 6, 0, 443),
            Direction.FWD,
            PolicyAction.ALLOW,
            1000,
            (Template(IpProto.ESP, Mode.TUNNEL, 5, ip_address("1.2.3.4"), ip_address("5.6.7.8")),),
            Mark(1, 0xF),
            9,
        ),
        PolicySpec(
            Selector(ip_network("fd00:1::/64"), ip_network("fd00:2::/64")),
            Direction.IN,
            templates=(
                Template(IpProto.AH, Mode.TRANSPORT, 6),
                Template(IpProto.ESP, Mode.TRANSPORT, 6),
            ),
        ),
        PolicySpec(
            Selector(ip_network("0.0.0.0/0"), ip_network("0.0.0.0/0")),
            Direction.OUT,
            PolicyAction.BLOCK,
        ),
    ],
)
def test_policy_round_trip(policy: PolicySpec) -> None:
    assert codec.parse_policy(codec.encode_policy(policy), "test") == policy


def test_socket_policies_are_not_listed() -> None:
    body = bytearray(codec.encode_socket_bypass(socket.AF_INET, Direction.OUT))
    body[160] = 3 + 1  # the kernel reports socket policies as XFRM_POLICY_MAX + dir
    assert codec.parse_policy(bytes(body), "test") is None


def test_expire_and_mapping_events_parse() -> None:
    state = codec.usersa_info_fields(SPEC)
    expire = s.xfrm_user_expire.build(dict(state=state, hard=1))
    event = codec.EVENT_PARSERS[s.XfrmMsg.EXPIRE](expire, "test")
    assert (event.spi, event.dst, event.hard, event.reqid) == (SPEC.spi, SPEC.dst, True, 0x1E0001)  # type: ignore[union-attr]
    mapping = s.xfrm_user_mapping.build(
        dict(
            id=dict(daddr=codec.pack_addr(SPEC.dst), spi=SPEC.spi, family=2, proto=50),
            reqid=3,
            old_saddr=codec.pack_addr(ip_address("192.0.2.1")),
            new_saddr=codec.pack_addr(ip_address("192.0.2.9")),
            old_sport=4500,
            new_sport=61000,
        )
    )
    m = codec.parse_mapping(mapping, "test")
    assert (m.new_src, m.new_sport, m.old_sport) == (ip_address("192.0.2.9"), 61000, 4500)


def test_truncated_messages_raise_kernel_error() -> None:
    with pytest.raises(KernelError) as info:
        codec.parse_sa(bytes(100), "list_sas")
    assert info.value.errno == errno.EPROTO and info.value.op == "list_sas"
    header = s.nlmsghdr.build(dict(length=400, type=16, flags=0, seq=1, pid=0))
    with pytest.raises(KernelError, match="overruns"):
        list(split_messages(header + bytes(20), "dump"))
    with pytest.raises(KernelError, match="attribute length"):
        parse_attrs(s.rtattr.build(dict(length=200, type=1)) + b"abcd", "x")


def test_kernel_error_names_operation_and_errno() -> None:
    error = KernelError("add_sa", errno.ENOSYS, "ESP rfc4106(gcm(aes))")
    assert str(error).startswith("add_sa: ENOSYS (Function not implemented): ESP")
    assert (error.op, error.errno) == ("add_sa", 38)


def test_spec_validation() -> None:
    a, b = ip_address("10.0.0.1"), ip_address("10.0.0.2")
    with pytest.raises(ValueError, match="AH"):
        SaSpec(a, b, 1, IpProto.AH, Mode.TUNNEL, 1, enc=Cipher("cbc(aes)", bytes(16)))
    with pytest.raises(ValueError, match="families"):
        SaSpec(a, ip_address("::1"), 1, IpProto.ESP, Mode.TUNNEL, 1, enc=Cipher("x", b""))
    with pytest.raises(ValueError, match="tunnel-mode template"):
        Template(IpProto.ESP, Mode.TUNNEL, 1)


@pytest.mark.parametrize("tcp, kind", [(False, s.UDP_ENCAP_ESPINUDP), (True, s.TCP_ENCAP_ESPINTCP)])
def test_encap_type_follows_the_transport(tcp: bool, kind: int) -> None:
    """RFC 3948 UDP encapsulation is type 2; ESP in a TCP stream (RFC 9329, espintcp) type 7,
    with the TCP connection's ports."""
    spec = SaSpec(
        src=ip_address("192.0.2.1"), dst=ip_address("192.0.2.2"), spi=0x1234, proto=IpProto.ESP,
        mode=Mode.TUNNEL, reqid=1, aead=Aead("rfc4106(gcm(aes))", bytes(36), 128),
        encap=(43210, 4500), encap_tcp=tcp,
    )  # fmt: skip
    attrs = dict(codec.sa_attrs(spec))
    tmpl = s.xfrm_encap_tmpl.parse(attrs[s.Xfrma.ENCAP])
    assert (tmpl.type, tmpl.sport, tmpl.dport) == (kind, 43210, 4500)
