"""Which IPsec kernel the daemon uses: the running kernel's XFRM when it can do ESP, else memory.

`auto` probes once: open NETLINK_XFRM (needs CAP_NET_ADMIN), then add and delete one ESP SA with
AES-GCM between two TEST-NET-1 addresses (RFC 5737), in our own reqid range so a crash between
the two calls is cleaned up by flush_owned(). A kernel without esp4 / the AEAD answers ENOSYS or
EPROTONOSUPPORT (TESTBED.md §1): then the in-memory kernel records what would have been installed,
and the daemon says so plainly in its log.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

from ..constants import IpProto
from ..kernel import Aead, Kernel, KernelError, SaSpec
from ..kernel import Mode as XfrmMode
from ..kernel.memory import InMemoryKernel

PROBE_SRC = ipaddress.IPv4Address("192.0.2.201")
PROBE_DST = ipaddress.IPv4Address("192.0.2.202")


@dataclass(frozen=True)
class KernelChoice:
    kernel: Kernel
    name: str  # "xfrm" | "memory"
    reason: str


def probe_esp(kernel: Kernel) -> str | None:
    """None when the kernel installs an ESP SA; otherwise why not."""
    spec = SaSpec(
        src=PROBE_SRC,
        dst=PROBE_DST,
        spi=0xC0000000 | secrets.randbelow(0x0FFFFFFF),
        proto=IpProto.ESP,
        mode=XfrmMode.TUNNEL,
        reqid=kernel.reqid_base + kernel.reqid_count - 1,
        aead=Aead("rfc4106(gcm(aes))", secrets.token_bytes(36), 128),
    )
    try:
        kernel.add_sa(spec)
    except KernelError as exc:
        return str(exc)
    try:
        kernel.delete_sa(spec.dst, spec.spi, spec.proto)
    except KernelError as exc:
        return f"probe SA could not be removed: {exc}"
    return None


def choose_kernel(kind: str) -> KernelChoice:
    """`memory`, `xfrm` (KernelError/OSError if impossible) or `auto` (xfrm if ESP works)."""
    if kind == "memory":
        return KernelChoice(InMemoryKernel(), "memory", "asked for by configuration")
    from ..kernel.xfrm import XfrmKernel

    try:
        xfrm = XfrmKernel()
    except OSError as exc:
        if kind == "xfrm":
            raise
        return KernelChoice(
            InMemoryKernel(), "memory", f"NETLINK_XFRM unavailable ({exc.strerror or exc})"
        )
    if kind == "xfrm":
        return KernelChoice(xfrm, "xfrm", "asked for by configuration")
    problem = probe_esp(xfrm)
    if problem is None:
        return KernelChoice(xfrm, "xfrm", "the kernel installed a probe ESP SA")
    xfrm.close()
    return KernelChoice(InMemoryKernel(), "memory", f"the kernel cannot do ESP: {problem}")
