"""construct declarations of the NETLINK_XFRM structures and constants.

Every layout follows the kernel UAPI header include/uapi/linux/xfrm.h (and linux/netlink.h for the
framing). All integers are native-endian (`Int*un`) except the fields the header types `__be16` /
`__be32` (SPIs and ports), and the C compiler's alignment padding is spelled out with `Padding`.
tests/kernel/test_xfrm_schemas.py checks every size against values measured with gcc 12.2 on
x86_64 from /usr/include/linux/xfrm.h (linux-libc-dev 6.1.187).

Variable-length tails (algorithm keys, ESN bitmaps, template arrays) are not part of these structs:
xfrm.py appends or slices them, so only fixed-size, validated slices reach construct.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from construct import Bytes, Int8un, Int16ub, Int16un, Int32sn, Int32ub, Int32un, Int64un, Padding
from construct import Struct as _Struct

# --- netlink framing (linux/netlink.h) ---------------------------------------------------------

NETLINK_XFRM = 6

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL = 0x200  # for NEW requests
NLM_F_CREATE = 0x400

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3

NLMSG_ALIGNTO = 4
NLA_HDRLEN = 4


def nl_align(length: int) -> int:
    """NLMSG_ALIGN / RTA_ALIGN: round up to a multiple of 4."""
    return (length + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1)


def _struct(*fields: Any) -> Any:
    """A construct Struct; wrapped so mypy sees one typed factory instead of construct's Any."""
    return _Struct(*fields)


# struct nlmsghdr { __u32 nlmsg_len; __u16 nlmsg_type; __u16 nlmsg_flags; __u32 nlmsg_seq;
#                   __u32 nlmsg_pid; };
nlmsghdr = _struct(
    "length" / Int32un,
    "type" / Int16un,
    "flags" / Int16un,
    "seq" / Int32un,
    "pid" / Int32un,
)

# struct nlmsgerr { int error; struct nlmsghdr msg; };
nlmsgerr = _struct("error" / Int32sn, "msg" / nlmsghdr)

# struct rtattr { unsigned short rta_len; unsigned short rta_type; };  (the XFRMA_* carrier)
rtattr = _struct("length" / Int16un, "type" / Int16un)


# --- XFRM message types and attributes ---------------------------------------------------------


class XfrmMsg(IntEnum):
    """enum { XFRM_MSG_BASE = 0x10, ... } in xfrm.h."""

    NEWSA = 0x10
    DELSA = 0x11
    GETSA = 0x12
    NEWPOLICY = 0x13
    DELPOLICY = 0x14
    GETPOLICY = 0x15
    ALLOCSPI = 0x16
    ACQUIRE = 0x17
    EXPIRE = 0x18
    UPDPOLICY = 0x19
    UPDSA = 0x1A
    POLEXPIRE = 0x1B
    FLUSHSA = 0x1C
    FLUSHPOLICY = 0x1D
    MAPPING = 0x26


class Xfrma(IntEnum):
    """enum xfrm_attr_type_t in xfrm.h; the comment names the payload struct."""

    ALG_AUTH = 1  # xfrm_algo (untruncated; we always send ALG_AUTH_TRUNC)
    ALG_CRYPT = 2  # xfrm_algo
    ALG_COMP = 3  # xfrm_algo (no key)
    ENCAP = 4  # xfrm_encap_tmpl
    TMPL = 5  # one or more xfrm_user_tmpl
    LTIME_VAL = 9  # xfrm_lifetime_cur
    REPLAY_VAL = 10  # xfrm_replay_state
    SRCADDR = 13  # xfrm_address_t
    LASTUSED = 15  # __u64
    POLICY_TYPE = 16  # xfrm_userpolicy_type
    ALG_AEAD = 18  # xfrm_algo_aead
    ALG_AUTH_TRUNC = 20  # xfrm_algo_auth
    MARK = 21  # xfrm_mark
    REPLAY_ESN_VAL = 23  # xfrm_replay_state_esn
    SA_EXTRA_FLAGS = 24  # __u32
    IF_ID = 31  # __u32


class XfrmGroup(IntEnum):
    """enum xfrm_nlgroups: multicast groups an event socket joins."""

    ACQUIRE = 1
    EXPIRE = 2
    SA = 3
    POLICY = 4
    MAPPING = 8


XFRM_MODE_TRANSPORT = 0
XFRM_MODE_TUNNEL = 1
XFRM_POLICY_IN, XFRM_POLICY_OUT, XFRM_POLICY_FWD = 0, 1, 2
XFRM_POLICY_ALLOW, XFRM_POLICY_BLOCK = 0, 1
XFRM_POLICY_TYPE_MAIN = 0
XFRM_STATE_ESN = 128  # xfrm_usersa_info.flags
XFRM_STATE_ALIGN4 = 64  # AH over IPv4 padded to 32 bits (RFC 4302 §3.3.3.2.1), as strongSwan
XFRM_STATE_AF_UNSPEC = 32
XFRM_INF = 0xFFFF_FFFF_FFFF_FFFF  # (~(__u64)0): "no limit" in xfrm_lifetime_cfg
XFRM_SHARE_ANY = 0

# linux/in.h, linux/in6.h, linux/udp.h: the per-socket options the adapter sets.
IP_XFRM_POLICY = 17
IPV6_XFRM_POLICY = 35
UDP_ENCAP = 100
UDP_ENCAP_ESPINUDP = 2  # RFC 3948 non-IKE marker framing
TCP_ENCAP_ESPINTCP = 7  # linux/udp.h: ESP in a TCP stream, RFC 9329 (the espintcp ULP)

# --- XFRM structures (xfrm.h) ------------------------------------------------------------------

# typedef union { __be32 a4; __be32 a6[4]; struct in6_addr in6; } xfrm_address_t;
# (16 bytes; an IPv4 address fills the first 4 and the rest is zero)
xfrm_address = Bytes(16)

# struct xfrm_id { xfrm_address_t daddr; __be32 spi; __u8 proto; };  (3 bytes tail padding)
xfrm_id = _struct("daddr" / xfrm_address, "spi" / Int32ub, "proto" / Int8un, Padding(3))

# struct xfrm_selector: addresses, big-endian ports and masks, then family, prefix lengths,
# IP protocol, 1 byte of padding, ifindex and the owning uid.
xfrm_selector = _struct(
    "daddr" / xfrm_address,
    "saddr" / xfrm_address,
    "dport" / Int16ub,
    "dport_mask" / Int16ub,
    "sport" / Int16ub,
    "sport_mask" / Int16ub,
    "family" / Int16un,
    "prefixlen_d" / Int8un,
    "prefixlen_s" / Int8un,
    "proto" / Int8un,
    Padding(3),
    "ifindex" / Int32sn,
    "user" / Int32un,
)

# struct xfrm_lifetime_cfg: eight __u64 limits (XFRM_INF = none).
xfrm_lifetime_cfg = _struct(
    "soft_byte_limit" / Int64un,
    "hard_byte_limit" / Int64un,
    "soft_packet_limit" / Int64un,
    "hard_packet_limit" / Int64un,
    "soft_add_expires_seconds" / Int64un,
    "hard_add_expires_seconds" / Int64un,
    "soft_use_expires_seconds" / Int64un,
    "hard_use_expires_seconds" / Int64un,
)

# struct xfrm_lifetime_cur { __u64 bytes, packets, add_time, use_time; };
xfrm_lifetime_cur = _struct(
    "bytes" / Int64un, "packets" / Int64un, "add_time" / Int64un, "use_time" / Int64un
)

# struct xfrm_stats { __u32 replay_window, replay, integrity_failed; };
xfrm_stats = _struct("replay_window" / Int32un, "replay" / Int32un, "integrity_failed" / Int32un)

# struct xfrm_usersa_info: the SA itself (NEWSA/UPDSA body, dump entries, inside expire/allocspi).
xfrm_usersa_info = _struct(
    "sel" / xfrm_selector,
    "id" / xfrm_id,
    "saddr" / xfrm_address,
    "lft" / xfrm_lifetime_cfg,
    "curlft" / xfrm_lifetime_cur,
    "stats" / xfrm_stats,
    "seq" / Int32un,
    "reqid" / Int32un,
    "family" / Int16un,
    "mode" / Int8un,
    "replay_window" / Int8un,
    "flags" / Int8un,
    Padding(7),  # struct size rounds up to 224 (8-aligned)
)

# struct xfrm_usersa_id { xfrm_address_t daddr; __be32 spi; __u16 family; __u8 proto; };
xfrm_usersa_id = _struct(
    "daddr" / xfrm_address, "spi" / Int32ub, "family" / Int16un, "proto" / Int8un, Padding(1)
)

# struct xfrm_userspi_info { struct xfrm_usersa_info info; __u32 min; __u32 max; };
xfrm_userspi_info = _struct("info" / xfrm_usersa_info, "min" / Int32un, "max" / Int32un)

# struct xfrm_userpolicy_info: selector, lifetimes, priority, index, dir, action, flags, share.
xfrm_userpolicy_info = _struct(
    "sel" / xfrm_selector,
    "lft" / xfrm_lifetime_cfg,
    "curlft" / xfrm_lifetime_cur,
    "priority" / Int32un,
    "index" / Int32un,
    "dir" / Int8un,
    "action" / Int8un,
    "flags" / Int8un,
    "share" / Int8un,
    Padding(4),
)

# struct xfrm_userpolicy_id { struct xfrm_selector sel; __u32 index; __u8 dir; };
xfrm_userpolicy_id = _struct("sel" / xfrm_selector, "index" / Int32un, "dir" / Int8un, Padding(3))

# struct xfrm_user_tmpl: the SA a policy asks for (XFRMA_TMPL, repeated).
xfrm_user_tmpl = _struct(
    "id" / xfrm_id,
    "family" / Int16un,
    Padding(2),
    "saddr" / xfrm_address,
    "reqid" / Int32un,
    "mode" / Int8un,
    "share" / Int8un,
    "optional" / Int8un,
    Padding(1),
    "aalgos" / Int32un,
    "ealgos" / Int32un,
    "calgos" / Int32un,
)

# struct xfrm_algo { char alg_name[64]; unsigned int alg_key_len; char alg_key[]; };
xfrm_algo = _struct("name" / Bytes(64), "key_len_bits" / Int32un)
# struct xfrm_algo_auth { char alg_name[64]; unsigned int alg_key_len, alg_trunc_len; ... };
xfrm_algo_auth = _struct("name" / Bytes(64), "key_len_bits" / Int32un, "trunc_len_bits" / Int32un)
# struct xfrm_algo_aead { char alg_name[64]; unsigned int alg_key_len, alg_icv_len; ... };
xfrm_algo_aead = _struct("name" / Bytes(64), "key_len_bits" / Int32un, "icv_len_bits" / Int32un)

# struct xfrm_encap_tmpl { __u16 encap_type; __be16 encap_sport, encap_dport; (2 pad)
#                          xfrm_address_t encap_oa; };
xfrm_encap_tmpl = _struct(
    "type" / Int16un, "sport" / Int16ub, "dport" / Int16ub, Padding(2), "oa" / xfrm_address
)

# struct xfrm_replay_state_esn { unsigned int bmp_len; __u32 oseq, seq, oseq_hi, seq_hi,
#                                replay_window; __u32 bmp[]; }
xfrm_replay_state_esn = _struct(
    "bmp_len" / Int32un,
    "oseq" / Int32un,
    "seq" / Int32un,
    "oseq_hi" / Int32un,
    "seq_hi" / Int32un,
    "replay_window" / Int32un,
)

# struct xfrm_mark { __u32 v; __u32 m; };
xfrm_mark = _struct("v" / Int32un, "m" / Int32un)

# struct xfrm_userpolicy_type { __u8 type; __u16 reserved1; __u8 reserved2; }  (6 bytes)
xfrm_userpolicy_type = _struct(
    "type" / Int8un, Padding(1), "reserved1" / Int16un, "reserved2" / Int8un, Padding(1)
)

# struct xfrm_user_acquire: the SA template, selector and policy that triggered an acquire.
xfrm_user_acquire = _struct(
    "id" / xfrm_id,
    "saddr" / xfrm_address,
    "sel" / xfrm_selector,
    "policy" / xfrm_userpolicy_info,
    "aalgos" / Int32un,
    "ealgos" / Int32un,
    "calgos" / Int32un,
    "seq" / Int32un,
)

# struct xfrm_user_expire { struct xfrm_usersa_info state; __u8 hard; };
xfrm_user_expire = _struct("state" / xfrm_usersa_info, "hard" / Int8un, Padding(7))

# struct xfrm_user_mapping { struct xfrm_usersa_id id; __u32 reqid; xfrm_address_t old_saddr,
#                            new_saddr; __be16 old_sport, new_sport; };
xfrm_user_mapping = _struct(
    "id" / xfrm_usersa_id,
    "reqid" / Int32un,
    "old_saddr" / xfrm_address,
    "new_saddr" / xfrm_address,
    "old_sport" / Int16ub,
    "new_sport" / Int16ub,
)

# Name -> (construct, sizeof measured with gcc) for the size test and for slicing replies.
STRUCTS: dict[str, tuple[Any, int]] = {
    "nlmsghdr": (nlmsghdr, 16),
    "nlmsgerr": (nlmsgerr, 20),
    "xfrm_selector": (xfrm_selector, 56),
    "xfrm_id": (xfrm_id, 24),
    "xfrm_lifetime_cfg": (xfrm_lifetime_cfg, 64),
    "xfrm_lifetime_cur": (xfrm_lifetime_cur, 32),
    "xfrm_stats": (xfrm_stats, 12),
    "xfrm_usersa_info": (xfrm_usersa_info, 224),
    "xfrm_usersa_id": (xfrm_usersa_id, 24),
    "xfrm_userspi_info": (xfrm_userspi_info, 232),
    "xfrm_userpolicy_info": (xfrm_userpolicy_info, 168),
    "xfrm_userpolicy_id": (xfrm_userpolicy_id, 64),
    "xfrm_user_tmpl": (xfrm_user_tmpl, 64),
    "xfrm_algo": (xfrm_algo, 68),
    "xfrm_algo_auth": (xfrm_algo_auth, 72),
    "xfrm_algo_aead": (xfrm_algo_aead, 72),
    "xfrm_encap_tmpl": (xfrm_encap_tmpl, 24),
    "xfrm_replay_state_esn": (xfrm_replay_state_esn, 24),
    "xfrm_mark": (xfrm_mark, 8),
    "xfrm_userpolicy_type": (xfrm_userpolicy_type, 6),
    "xfrm_user_acquire": (xfrm_user_acquire, 280),
    "xfrm_user_expire": (xfrm_user_expire, 232),
    "xfrm_user_mapping": (xfrm_user_mapping, 64),
}
