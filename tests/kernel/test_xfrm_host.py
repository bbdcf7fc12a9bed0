"""XfrmKernel against the host kernel, each test in a fresh network namespace (root needed).

The host kernel has XFRM but neither ESP nor AH (TESTBED §1): policies, SPI allocation, socket
options and events work here; installing an ESP/AH SA must fail as a clear KernelError. Real
SAs and traffic are proven in the QEMU guest (tests/guest).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import subprocess
import time
from ipaddress import ip_address, ip_network

import pytest

from ikev2.constants import IpProto
from ikev2.kernel import (
    DEFAULT_REQID_BASE,
    Acquire,
    Aead,
    Direction,
    Integrity,
    KernelError,
    Mode,
    PolicyAction,
    PolicySpec,
    SaSpec,
    Selector,
    Template,
)
from ikev2.kernel.xfrm import SPI_MAX, SPI_MIN, XfrmKernel
from ikev2.testing.netns import run_in_netns

pytestmark = pytest.mark.root

OURS = DEFAULT_REQID_BASE + 3
V4 = (ip_address("192.0.2.1"), ip_address("192.0.2.2"))
V6 = (ip_address("2001:db8::1"), ip_address("2001:db8::2"))


def policy_set(family: int) -> list[PolicySpec]:
    """in/out/fwd tunnel policies between two subnets plus a transport one with two templates."""
    a, b = V4 if family == 4 else V6
    nets = ("10.1.0.0/24", "10.2.0.0/24") if family == 4 else ("fd00:1::/64", "fd00:2::/64")
    local, remote = ip_network(nets[0]), ip_network(nets[1])
    out = Template(IpProto.ESP, Mode.TUNNEL, OURS, a, b)
    back = Template(IpProto.ESP, Mode.TUNNEL, OURS, b, a)
    return [
        PolicySpec(Selector(local, remote), Direction.OUT, priority=100, templates=(out,)),
        PolicySpec(Selector(remote, local), Direction.IN, priority=100, templates=(back,)),
        PolicySpec(Selector(remote, local), Direction.FWD, priority=100, templates=(back,)),
        PolicySpec(
            Selector.host_to_host(a, b, proto=17),
            Direction.OUT,
            PolicyAction.ALLOW,
            50,
            (
                Template(IpProto.AH, Mode.TRANSPORT, OURS),
                Template(IpProto.ESP, Mode.TRANSPORT, OURS),
            ),
        ),
    ]


def xfrm_on_ipv4_loopback() -> None:
    """IPv4 exempts `lo` from IPsec by default (inetdev_init sets NOXFRM and NOPOLICY on loopback
    devices); switch that off in this namespace so loopback traffic meets our policies."""
    for knob in ("disable_xfrm", "disable_policy"):
        with open(f"/proc/sys/net/ipv4/conf/lo/{knob}", "w") as f:
            f.write("0")


def _ip_xfrm_policy() -> str:
    return subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("family", [4, 6])
def test_policies_added_listed_removed(netns: str, family: int) -> None:
    def body() -> tuple[list[str], list[str], str, list[int], str]:
        k = XfrmKernel(events=False)
        specs = policy_set(family)
        for spec in specs:
            k.add_policy(spec)
        listed = sorted(map(repr, k.list_policies()))
        shown = _ip_xfrm_policy()
        errors = []
        try:
            k.add_policy(specs[0])
        except KernelError as exc:
            errors.append(exc.errno)
        for spec in specs:
            k.delete_policy(spec.selector, spec.direction)
        try:
            k.delete_policy(specs[0].selector, specs[0].direction)
        except KernelError as exc:
            errors.append(exc.errno)
        after = [*sorted(map(repr, k.list_policies())), _ip_xfrm_policy()]
        k.close()
        return listed, sorted(map(repr, specs)), shown, errors, "".join(after)

    listed, expected, shown, errors, after = run_in_netns(netns, body)
    assert listed == expected
    assert shown.count("dir out") == 2 and shown.count("dir in") == 1 and "dir fwd" in shown
    assert shown.count(f"reqid {OURS}") == 5 and "proto ah" in shown
    assert errors == [errno.EEXIST, errno.ENOENT]
    assert after.strip() == ""


def test_allocate_spi_or_documented_fallback(netns: str) -> None:
    def body() -> tuple[int, int, list[tuple[int, int]], list[object]]:
        k = XfrmKernel(events=False)
        spi = k.allocate_spi(IpProto.ESP, V4[1], V4[0], OURS)
        larval = [(s.spi, s.reqid) for s in k.list_sas()]
        if not k.spi_fallbacks:
            k.delete_sa(V4[0], spi, IpProto.ESP)
        left: list[object] = list(k.list_sas())
        k.close()
        return spi, k.spi_fallbacks, larval, left

    spi, fallbacks, larval, left = run_in_netns(netns, body)
    assert SPI_MIN <= spi <= SPI_MAX
    if fallbacks == 0:  # the kernel allocated it and holds a larval SA for it
        assert larval == [(spi, OURS)]
    else:  # documented fallback: a random SPI, nothing installed
        assert fallbacks == 1 and larval == []
    assert left == []


def test_esp_and_ah_sa_on_host_raise_kernel_error(netns: str) -> None:
    def body() -> list[tuple[str, int, str]]:
        k = XfrmKernel(events=False)
        specs = [
            SaSpec(
                *V4,
                0x1001,
                IpProto.ESP,
                Mode.TUNNEL,
                OURS,
                aead=Aead("rfc4106(gcm(aes))", bytes(36), 128),
            ),
            SaSpec(
                *V6,
                0x1002,
                IpProto.AH,
                Mode.TRANSPORT,
                OURS,
                auth=Integrity("hmac(sha256)", bytes(32), 128),
            ),
        ]
        outcomes = []
        for spec in specs:
            try:
                k.add_sa(spec)
                outcomes.append(("installed", 0, ""))
            except KernelError as exc:
                outcomes.append((exc.op, exc.errno, str(exc)))
        assert k.list_sas() == []
        k.close()
        return outcomes

    (esp_op, esp_errno, esp_msg), (ah_op, ah_errno, ah_msg) = run_in_netns(netns, body)
    lacking = {errno.ENOSYS, errno.EPROTONOSUPPORT, errno.ENOENT}
    assert esp_op == "add_sa" and esp_errno in lacking, esp_msg
    assert esp_msg.startswith("add_sa: ") and "ESP" in esp_msg and "rfc4106(gcm(aes))" in esp_msg
    assert "lacks" in esp_msg
    assert ah_op == "add_sa" and ah_errno in lacking and "AH" in ah_msg, ah_msg


@pytest.mark.parametrize(
    ("family", "loopback"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_bypass_socket_escapes_a_block_policy(netns: str, family: int, loopback: str) -> None:
    """A BLOCK policy over all loopback UDP stops a plain socket (EPERM) but not a bypassed one."""

    def body() -> tuple[int, bytes, int]:
        xfrm_on_ipv4_loopback()
        k = XfrmKernel(events=False)
        sel = Selector.host_to_host(ip_address(loopback), ip_address(loopback), proto=17)
        k.add_policy(PolicySpec(sel, Direction.OUT, PolicyAction.BLOCK))
        receiver = socket.socket(family, socket.SOCK_DGRAM)
        receiver.bind((loopback, 0))
        receiver.settimeout(2)
        plain = socket.socket(family, socket.SOCK_DGRAM)
        blocked = 0
        try:
            plain.sendto(b"plain", receiver.getsockname()[:2])
        except OSError as exc:
            blocked = exc.errno or -1
        ike = socket.socket(family, socket.SOCK_DGRAM)
        k.bypass_socket(ike.fileno(), family)
        k.bypass_socket(receiver.fileno(), family)
        ike.sendto(b"ike", receiver.getsockname()[:2])
        got = receiver.recv(10)
        k.enable_udp_encap(ike.fileno())
        encap = ike.getsockopt(socket.IPPROTO_UDP, 100)  # UDP_ENCAP (linux/udp.h)
        for sock in (receiver, plain, ike):
            sock.close()
        k.delete_policy(sel, Direction.OUT)
        k.close()
        return blocked, got, encap

    blocked, got, encap = run_in_netns(netns, body)
    assert blocked == errno.EPERM
    assert got == b"ike"
    assert encap == 2  # UDP_ENCAP_ESPINUDP


def test_bypass_socket_rejects_unknown_family(netns: str) -> None:
    def body() -> int:
        k = XfrmKernel(events=False)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                k.bypass_socket(sock.fileno(), socket.AF_UNIX)
            except KernelError as exc:
                return exc.errno
        return 0

    assert run_in_netns(netns, body) == errno.EAFNOSUPPORT


def test_acquire_event(netns: str) -> None:
    """Traffic meeting an ESP policy without SA makes the kernel multicast XFRM_MSG_ACQUIRE."""

    def body() -> list[Acquire]:
        xfrm_on_ipv4_loopback()
        k = XfrmKernel()
        lo = ip_address("127.0.0.1")
        k.add_policy(
            PolicySpec(
                Selector.host_to_host(lo, lo, proto=17),
                Direction.OUT,
                templates=(Template(IpProto.ESP, Mode.TRANSPORT, OURS),),
            )
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(b"x", ("127.0.0.1", 9))
        time.sleep(0.05)
        events = [e for e in k.read_events() if isinstance(e, Acquire)]
        k.flush_owned()
        k.close()
        return events

    events = run_in_netns(netns, body)
    assert events, "no ACQUIRE received"
    event = events[0]
    assert (event.reqid, event.proto, event.selector.dport, event.selector.proto) == (
        OURS,
        50,
        9,
        17,
    )


def test_flush_owned_after_crash_leaves_zero_of_ours(netns: str) -> None:
    """Adapter 1 installs policies (and larval SAs) in our reqid range and disappears; a NEW
    adapter's flush_owned removes all of them and nothing foreign."""

    def body() -> tuple[tuple[int, int], list[str], int, str]:
        crashed = XfrmKernel()
        for spec in policy_set(4) + policy_set(6):
            crashed.add_policy(spec)
        crashed.allocate_spi(IpProto.ESP, V4[1], V4[0], OURS)
        foreign = PolicySpec(
            Selector.host_to_host(*V4, proto=6),
            Direction.OUT,
            templates=(Template(IpProto.ESP, Mode.TRANSPORT, 42),),
        )
        crashed.add_policy(foreign)
        crashed.close()
        fresh = XfrmKernel()
        removed = fresh.flush_owned()
        left = [repr(p) for p in fresh.list_policies()]
        assert left == [repr(foreign)]
        fresh.delete_policy(foreign.selector, foreign.direction)
        sas = len(fresh.list_sas())
        fresh.close()
        return removed, left, sas, _ip_xfrm_policy()

    removed, left, sas, shown = run_in_netns(netns, body)
    spis = removed[0]
    assert removed[1] == 8 and spis in (0, 1)  # 1 when the kernel allocated (larval SA)
    assert len(left) == 1 and sas == 0 and shown.strip() == ""
