"""Our types <-> NETLINK_XFRM message bodies (struct + XFRMA_* attributes), both directions.

The layouts are the construct declarations in xfrm_schemas.py (linux/xfrm.h). Bodies built here
go to NetlinkSocket.request/dump; bodies parsed here come from replies, dumps and multicast
events, after the netlink walk has bounds-checked them.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable, Sequence
from ipaddress import ip_address, ip_network
from typing import Any

from ..constants import IpProto
from . import xfrm_schemas as s
from .netlink import pack_attrs, parse_attrs
from .types import (
    Acquire,
    Direction,
    Expire,
    IPAddress,
    KernelError,
    KernelEvent,
    Lifetime,
    Mapping,
    Mark,
    Mode,
    PolicyAction,
    PolicySpec,
    SaCounters,
    SaInfo,
    SaSpec,
    Selector,
    Template,
)

FAMILY_OF_VERSION: dict[int, int] = {4: socket.AF_INET, 6: socket.AF_INET6}
ADDR_LEN_OF_FAMILY: dict[int, int] = {socket.AF_INET: 4, socket.AF_INET6: 16}
ANY_ALGORITHMS = 0xFFFF_FFFF  # xfrm_user_tmpl.[aec]algos bitmask: accept every algorithm
TMPL_SIZE = s.STRUCTS["xfrm_user_tmpl"][1]


def size_of(name: str) -> int:
    return s.STRUCTS[name][1]


def pack_addr(addr: IPAddress | None) -> bytes:
    """xfrm_address_t: the address in the first 4 or 16 bytes, zero-filled."""
    return addr.packed.ljust(16, b"\0") if addr is not None else bytes(16)


def unpack_addr(raw: bytes, family: int) -> IPAddress:
    if family not in ADDR_LEN_OF_FAMILY:
        raise KernelError("parse", errno.EAFNOSUPPORT, f"address family {family}")
    return ip_address(raw[: ADDR_LEN_OF_FAMILY[family]])


def pack_name(name: str) -> bytes:
    raw = name.encode("ascii")
    if len(raw) >= 64:
        raise ValueError(f"algorithm name {name!r} longer than 63 bytes (xfrm_algo.alg_name)")
    return raw.ljust(64, b"\0")


def unpack_name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


# --- selectors, lifetimes ----------------------------------------------------------------------


def selector_fields(sel: Selector | None, family: int) -> dict[str, Any]:
    """struct xfrm_selector; None is the all-zero "any" selector of the given family."""
    if sel is None:
        zero = bytes(16)
        return dict(
            daddr=zero,
            saddr=zero,
            dport=0,
            dport_mask=0,
            sport=0,
            sport_mask=0,
            family=family,
            prefixlen_d=0,
            prefixlen_s=0,
            proto=0,
            ifindex=0,
            user=0,
        )
    return dict(
        daddr=pack_addr(sel.dst.network_address),
        saddr=pack_addr(sel.src.network_address),
        dport=sel.dport,
        dport_mask=0xFFFF if sel.dport else 0,
        sport=sel.sport,
        sport_mask=0xFFFF if sel.sport else 0,
        family=FAMILY_OF_VERSION[sel.src.version],
        prefixlen_d=sel.dst.prefixlen,
        prefixlen_s=sel.src.prefixlen,
        proto=sel.proto,
        ifindex=0,
        user=0,
    )


def parse_selector(c: Any) -> Selector:
    src = ip_network((unpack_addr(c.saddr, c.family), c.prefixlen_s), strict=False)
    dst = ip_network((unpack_addr(c.daddr, c.family), c.prefixlen_d), strict=False)
    return Selector(
        src, dst, c.proto, c.sport if c.sport_mask else 0, c.dport if c.dport_mask else 0
    )


def lifetime_fields(lt: Lifetime) -> dict[str, int]:
    """struct xfrm_lifetime_cfg: None becomes XFRM_INF. Seconds count from the SA's addition."""

    def lim(value: int | None) -> int:
        return s.XFRM_INF if value is None else value

    return dict(
        soft_byte_limit=lim(lt.soft_bytes),
        hard_byte_limit=lim(lt.hard_bytes),
        soft_packet_limit=lim(lt.soft_packets),
        hard_packet_limit=lim(lt.hard_packets),
        soft_add_expires_seconds=lt.soft_seconds or 0,  # 0 = no time limit here
        hard_add_expires_seconds=lt.hard_seconds or 0,
        soft_use_expires_seconds=0,
        hard_use_expires_seconds=0,
    )


INFINITE_LIFETIME = lifetime_fields(Lifetime())
ZERO_CUR = dict(bytes=0, packets=0, add_time=0, use_time=0)


# --- SAs ---------------------------------------------------------------------------------------


def usersa_info_fields(spec: SaSpec) -> dict[str, Any]:
    """struct xfrm_usersa_info of an SA spec (XFRM_MSG_NEWSA / UPDSA body)."""
    family = FAMILY_OF_VERSION[spec.dst.version]
    use_esn_attr = spec.esn or spec.replay_window > 32
    replay_window = 0 if use_esn_attr or spec.proto == IpProto.COMP else spec.replay_window
    # a tunnel SA without a selector carries any inner family (4-in-6, 6-in-4, a child with
    # selectors of both): an AF_UNSPEC selector, kept so by XFRM_STATE_AF_UNSPEC (else the
    # kernel gives it the outer family and drops other-family packets: XfrmInStateMismatch,
    # XfrmOutNoStates). strongSwan does the same.
    any_family = spec.mode == Mode.TUNNEL and spec.selector is None
    return dict(
        sel=selector_fields(spec.selector, socket.AF_UNSPEC if any_family else family),
        id=dict(daddr=pack_addr(spec.dst), spi=spec.spi, proto=int(spec.proto)),
        saddr=pack_addr(spec.src),
        lft=lifetime_fields(spec.lifetime),
        curlft=ZERO_CUR,
        stats=dict(replay_window=0, replay=0, integrity_failed=0),
        seq=0,
        reqid=spec.reqid,
        family=family,
        mode=int(spec.mode),
        replay_window=replay_window,  # IPComp has no sequence numbers (RFC 3173 §2.1)
        flags=(s.XFRM_STATE_ESN if spec.esn else 0)
        | (s.XFRM_STATE_AF_UNSPEC if any_family else 0)
        | _align4(spec, family),
    )


def _align4(spec: SaSpec, family: int) -> int:
    """RFC 4302 §3.3.3.2.1: in IPv4 the AH header is padded to 32 bits. Linux pads it to 64 bits
    unless ALIGN4 is set, so without it our AH (e.g. 32 octets for HMAC-SHA2-256-128) and
    strongSwan's, which sets it (28 octets), never agree."""
    return s.XFRM_STATE_ALIGN4 if int(spec.proto) == 51 and family == socket.AF_INET else 0


def sa_attrs(spec: SaSpec) -> list[tuple[int, bytes]]:
    """The XFRMA_* attributes of an SA: algorithms with their keys, encap, ESN, mark, if_id."""
    attrs: list[tuple[int, bytes]] = []
    if spec.aead is not None:
        a = spec.aead
        head = dict(name=pack_name(a.name), key_len_bits=len(a.key) * 8, icv_len_bits=a.icv_bits)
        attrs.append((s.Xfrma.ALG_AEAD, s.xfrm_algo_aead.build(head) + a.key))
    if spec.enc is not None:
        e = spec.enc
        head = dict(name=pack_name(e.name), key_len_bits=len(e.key) * 8)
        attrs.append((s.Xfrma.ALG_CRYPT, s.xfrm_algo.build(head) + e.key))
    if spec.auth is not None:
        i = spec.auth
        head = dict(
            name=pack_name(i.name), key_len_bits=len(i.key) * 8, trunc_len_bits=i.trunc_bits
        )
        attrs.append((s.Xfrma.ALG_AUTH_TRUNC, s.xfrm_algo_auth.build(head) + i.key))
    if spec.comp is not None:  # RFC 3173: the algorithm alone, alg_key_len 0
        head = dict(name=pack_name(spec.comp), key_len_bits=0)
        attrs.append((s.Xfrma.ALG_COMP, s.xfrm_algo.build(head)))
    if spec.encap is not None:
        sport, dport = spec.encap
        kind = s.TCP_ENCAP_ESPINTCP if spec.encap_tcp else s.UDP_ENCAP_ESPINUDP
        tmpl = dict(type=kind, sport=sport, dport=dport, oa=bytes(16))
        attrs.append((s.Xfrma.ENCAP, s.xfrm_encap_tmpl.build(tmpl)))
    if (spec.esn or spec.replay_window > 32) and spec.proto != IpProto.COMP:
        # struct xfrm_replay_state_esn followed by its bitmap of bmp_len 32-bit words
        words = (spec.replay_window + 31) // 32
        head = dict(
            bmp_len=words, oseq=0, seq=0, oseq_hi=0, seq_hi=0, replay_window=spec.replay_window
        )
        attrs.append(
            (s.Xfrma.REPLAY_ESN_VAL, s.xfrm_replay_state_esn.build(head) + bytes(4 * words))
        )
    attrs += mark_attrs(spec.mark, spec.if_id)
    return attrs


def mark_attrs(mark: Mark | None, if_id: int | None) -> list[tuple[int, bytes]]:
    attrs: list[tuple[int, bytes]] = []
    if mark is not None:
        attrs.append((s.Xfrma.MARK, s.xfrm_mark.build(dict(v=mark.value, m=mark.mask))))
    if if_id is not None:
        attrs.append((s.Xfrma.IF_ID, if_id.to_bytes(4, sys.byteorder)))  # native __u32
    return attrs


def encode_sa(spec: SaSpec, carried: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """NEWSA/UPDSA body; `carried` attributes (sa_state_attrs of the SA it replaces) take the
    place of the spec's own of the same type."""
    attrs = sa_attrs(spec)
    if carried:
        kinds = {kind for kind, _ in carried}
        attrs = [a for a in attrs if a[0] not in kinds] + list(carried)
    return bytes(s.xfrm_usersa_info.build(usersa_info_fields(spec))) + pack_attrs(attrs)


# what an SA has counted so far: a moved SA goes on from there (sequence numbers, replay window)
STATE_ATTRS = (s.Xfrma.REPLAY_VAL, s.Xfrma.REPLAY_ESN_VAL, s.Xfrma.LTIME_VAL)


def sa_state_attrs(payload: bytes, op: str) -> list[tuple[int, bytes]]:
    """The replay state and lifetime use of a GETSA reply, as attributes for NEWSA."""
    size = _require(payload, "xfrm_usersa_info", op)
    attrs = parse_attrs(payload[s.nl_align(size) :], op)
    return [(kind, attrs[kind]) for kind in STATE_ATTRS if kind in attrs]


def encode_sa_id(dst: IPAddress, spi: int, proto: IpProto, mark: Mark | None) -> bytes:
    """struct xfrm_usersa_id (+ XFRMA_MARK): names one SA for DELSA / GETSA."""
    body = s.xfrm_usersa_id.build(
        dict(daddr=pack_addr(dst), spi=spi, family=FAMILY_OF_VERSION[dst.version], proto=proto)
    )
    return bytes(body) + pack_attrs(mark_attrs(mark, None))


def encode_allocspi(
    src: IPAddress, dst: IPAddress, proto: IpProto, reqid: int, spi_min: int, spi_max: int
) -> bytes:
    """struct xfrm_userspi_info: a larval SA for (dst, proto) and the SPI range to pick from."""
    family = FAMILY_OF_VERSION[dst.version]
    info = dict(
        sel=selector_fields(None, family),
        id=dict(daddr=pack_addr(dst), spi=0, proto=int(proto)),
        saddr=pack_addr(src),
        lft=INFINITE_LIFETIME,
        curlft=ZERO_CUR,
        stats=dict(replay_window=0, replay=0, integrity_failed=0),
        seq=0,
        reqid=reqid,
        family=family,
        mode=0,
        replay_window=0,
        flags=0,
    )
    return bytes(s.xfrm_userspi_info.build(dict(info=info, min=spi_min, max=spi_max)))


def _u32(raw: bytes) -> int:
    return int.from_bytes(raw[:4], sys.byteorder)


def parse_mark(attrs: dict[int, bytes]) -> tuple[Mark | None, int | None]:
    mark = None
    if s.Xfrma.MARK in attrs and len(attrs[s.Xfrma.MARK]) >= 8:
        m = s.xfrm_mark.parse(attrs[s.Xfrma.MARK])
        mark = Mark(m.v, m.m)
    if_id = _u32(attrs[s.Xfrma.IF_ID]) if len(attrs.get(s.Xfrma.IF_ID, b"")) >= 4 else None
    return mark, (if_id or None)


def _require(payload: bytes, struct_name: str, op: str) -> int:
    size = size_of(struct_name)
    if len(payload) < size:
        raise KernelError(op, errno.EPROTO, f"{struct_name} truncated: {len(payload)} < {size}")
    return size


ALGORITHM_ATTRS = (s.Xfrma.ALG_AEAD, s.Xfrma.ALG_CRYPT, s.Xfrma.ALG_AUTH_TRUNC, s.Xfrma.ALG_AUTH,
                   s.Xfrma.ALG_COMP)  # fmt: skip


def parse_sa(payload: bytes, op: str) -> SaInfo:
    """A NEWSA message (GETSA reply, dump entry) to SaInfo; keys are not kept."""
    size = _require(payload, "xfrm_usersa_info", op)
    c = s.xfrm_usersa_info.parse(payload[:size])
    attrs = parse_attrs(payload[s.nl_align(size) :], op)
    if s.Xfrma.ALG_AUTH_TRUNC in attrs:  # the kernel reports the auth algorithm both ways
        attrs.pop(s.Xfrma.ALG_AUTH, None)
    names = [unpack_name(attrs[t][:64]) for t in ALGORITHM_ATTRS if len(attrs.get(t, b"")) >= 64]
    encap = None
    if len(attrs.get(s.Xfrma.ENCAP, b"")) >= size_of("xfrm_encap_tmpl"):
        e = s.xfrm_encap_tmpl.parse(attrs[s.Xfrma.ENCAP][: size_of("xfrm_encap_tmpl")])
        encap = (e.sport, e.dport)
    mark, if_id = parse_mark(attrs)
    cur = c.curlft
    return SaInfo(
        src=unpack_addr(c.saddr, c.family),
        dst=unpack_addr(c.id.daddr, c.family),
        spi=c.id.spi,
        proto=IpProto(c.id.proto),
        mode=Mode(c.mode),
        reqid=c.reqid,
        algorithm="+".join(names),
        encap=encap,
        mark=mark,
        if_id=if_id,
        counters=SaCounters(cur.bytes, cur.packets, cur.add_time, cur.use_time),
    )


# --- policies ----------------------------------------------------------------------------------


def template_fields(t: Template, family: int) -> dict[str, Any]:
    """struct xfrm_user_tmpl; the family is the outer one in tunnel mode."""
    if t.dst is not None:
        family = FAMILY_OF_VERSION[t.dst.version]
    return dict(
        id=dict(daddr=pack_addr(t.dst), spi=t.spi, proto=int(t.proto)),
        family=family,
        saddr=pack_addr(t.src),
        reqid=t.reqid,
        mode=int(t.mode),
        share=s.XFRM_SHARE_ANY,
        optional=1 if t.optional else 0,
        aalgos=ANY_ALGORITHMS,
        ealgos=ANY_ALGORITHMS,
        calgos=ANY_ALGORITHMS,
    )


def encode_policy(spec: PolicySpec) -> bytes:
    """struct xfrm_userpolicy_info + XFRMA_TMPL (the template array) + mark / if_id."""
    family = FAMILY_OF_VERSION[spec.selector.src.version]
    info = dict(
        sel=selector_fields(spec.selector, family),
        lft=INFINITE_LIFETIME,
        curlft=ZERO_CUR,
        priority=spec.priority,
        index=0,
        dir=int(spec.direction),
        action=int(spec.action),
        flags=0,
        share=s.XFRM_SHARE_ANY,
    )
    attrs: list[tuple[int, bytes]] = []
    if spec.templates:
        blob = b"".join(s.xfrm_user_tmpl.build(template_fields(t, family)) for t in spec.templates)
        attrs.append((s.Xfrma.TMPL, blob))
    attrs += mark_attrs(spec.mark, spec.if_id)
    return bytes(s.xfrm_userpolicy_info.build(info)) + pack_attrs(attrs)


def encode_policy_id(
    selector: Selector, direction: Direction, mark: Mark | None, if_id: int | None
) -> bytes:
    """struct xfrm_userpolicy_id (+ mark / if_id): names one policy for DELPOLICY."""
    family = FAMILY_OF_VERSION[selector.src.version]
    body = s.xfrm_userpolicy_id.build(
        dict(sel=selector_fields(selector, family), index=0, dir=int(direction))
    )
    return bytes(body) + pack_attrs(mark_attrs(mark, if_id))


def encode_socket_bypass(family: int, direction: Direction) -> bytes:
    """The IP_XFRM_POLICY value that exempts one socket direction from IPsec: an ALLOW
    xfrm_userpolicy_info without templates (dir IN or OUT only; socket policies have no FWD)."""
    info = dict(
        sel=selector_fields(None, family),
        lft=INFINITE_LIFETIME,
        curlft=ZERO_CUR,
        priority=0,
        index=0,
        dir=int(direction),
        action=s.XFRM_POLICY_ALLOW,
        flags=0,
        share=s.XFRM_SHARE_ANY,
    )
    return bytes(s.xfrm_userpolicy_info.build(info))


def _addr_or_none(raw: bytes, family: int) -> IPAddress | None:
    return None if raw == bytes(16) else unpack_addr(raw, family)


def parse_templates(blob: bytes, op: str) -> tuple[Template, ...]:
    templates = []
    for offset in range(0, len(blob) - TMPL_SIZE + 1, TMPL_SIZE):
        t = s.xfrm_user_tmpl.parse(blob[offset : offset + TMPL_SIZE])
        templates.append(
            Template(
                proto=IpProto(t.id.proto),
                mode=Mode(t.mode),
                reqid=t.reqid,
                src=_addr_or_none(t.saddr, t.family),
                dst=_addr_or_none(t.id.daddr, t.family),
                spi=t.id.spi,
                optional=bool(t.optional),
            )
        )
    return tuple(templates)


def parse_policy(payload: bytes, op: str) -> PolicySpec | None:
    """A NEWPOLICY dump entry; None for a per-socket policy (dir XFRM_POLICY_MAX + in/out)."""
    size = _require(payload, "xfrm_userpolicy_info", op)
    c = s.xfrm_userpolicy_info.parse(payload[:size])
    if c.dir not in (s.XFRM_POLICY_IN, s.XFRM_POLICY_OUT, s.XFRM_POLICY_FWD):
        return None
    attrs = parse_attrs(payload[s.nl_align(size) :], op)
    mark, if_id = parse_mark(attrs)
    return PolicySpec(
        selector=parse_selector(c.sel),
        direction=Direction(c.dir),
        action=PolicyAction(c.action),
        priority=c.priority,
        templates=parse_templates(attrs.get(s.Xfrma.TMPL, b""), op),
        mark=mark,
        if_id=if_id,
    )


# --- multicast events --------------------------------------------------------------------------


def parse_acquire(payload: bytes, op: str) -> Acquire:
    size = _require(payload, "xfrm_user_acquire", op)
    c = s.xfrm_user_acquire.parse(payload[:size])
    attrs = parse_attrs(payload[s.nl_align(size) :], op)
    blob = attrs.get(s.Xfrma.TMPL, b"")
    templates = parse_templates(blob, op)
    # the outer addresses carry no family of their own: it is the first template's
    # (xfrm_user_tmpl.family), which differs from the selector's in 4-in-6 / 6-in-4 tunnels
    family = s.xfrm_user_tmpl.parse(blob[:TMPL_SIZE]).family if templates else c.sel.family
    return Acquire(
        selector=parse_selector(c.sel),
        src=unpack_addr(c.saddr, family),
        dst=unpack_addr(c.id.daddr, family),
        proto=IpProto(c.id.proto),
        reqid=templates[0].reqid if templates else 0,
        policy_index=c.policy.index,
        seq=c.seq,
    )


def parse_expire(payload: bytes, op: str) -> Expire:
    size = _require(payload, "xfrm_user_expire", op)
    c = s.xfrm_user_expire.parse(payload[:size])
    st = c.state
    return Expire(
        src=unpack_addr(st.saddr, st.family),
        dst=unpack_addr(st.id.daddr, st.family),
        spi=st.id.spi,
        proto=IpProto(st.id.proto),
        reqid=st.reqid,
        hard=bool(c.hard),
    )


def parse_mapping(payload: bytes, op: str) -> Mapping:
    size = _require(payload, "xfrm_user_mapping", op)
    c = s.xfrm_user_mapping.parse(payload[:size])
    family = c.id.family
    return Mapping(
        dst=unpack_addr(c.id.daddr, family),
        spi=c.id.spi,
        proto=IpProto(c.id.proto),
        reqid=c.reqid,
        old_src=unpack_addr(c.old_saddr, family),
        old_sport=c.old_sport,
        new_src=unpack_addr(c.new_saddr, family),
        new_sport=c.new_sport,
    )


EVENT_PARSERS: dict[int, Callable[[bytes, str], KernelEvent]] = {
    s.XfrmMsg.ACQUIRE: parse_acquire,
    s.XfrmMsg.EXPIRE: parse_expire,
    s.XfrmMsg.MAPPING: parse_mapping,
}
