"""Network namespaces for interop tests: two peers on a veth, or two peers behind a masquerading
NAT namespace, plus nftables rules that drop IKE packets on demand.

Every namespace gets a unique name (prefix + random suffix) and is deleted in `close()`;
deleting a namespace also removes its interfaces and nftables tables. Nothing here touches
the host's own namespace except creating and deleting the named namespaces.

Two-peer layout (`Topology.pair()`):

    left (10.99.0.1/24, veth)  <--->  right (10.99.0.2/24, veth)

`Topology.pair(family=6)`: the same with IPv6 outer addresses (no DAD, usable at once):

    left (fd00:99::1/64, veth)  <--->  right (fd00:99::2/64, veth)

NAT layout (`Topology.nat()`), the left peer is behind the NAT:

    left 10.98.1.2/24 --- 10.98.1.1 [nat] 10.98.2.1 --- 10.98.2.2/24 right
    nat: ip_forward=1, nftables masquerade of 10.98.1.0/24 leaving towards right;
    right has no route to 10.98.1.0/24, so only masqueraded packets get an answer.
"""

from __future__ import annotations

import shlex
import subprocess
import uuid
from dataclasses import dataclass, field

DROP_TABLE = "ikev2drop"
# Topology.pair(): (left, right, prefix length) per outer address family
PAIR_ADDRS = {4: ("10.99.0.1", "10.99.0.2", 24), 6: ("fd00:99::1", "fd00:99::2", 64)}


class TopologyError(RuntimeError):
    """A command building the topology failed; the message has the command and its stderr."""


def sh(*argv: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if check and done.returncode != 0:
        raise TopologyError(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def nsexec(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *argv, check=check)


def nft(ns: str, script: str) -> None:
    """Apply an nftables script inside namespace `ns`."""
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        raise TopologyError(f"nft in {ns} failed: {done.stderr.strip()}\n{script}")


@dataclass
class Peer:
    ns: str
    addr: str  # the address the peer's IKE daemon binds to
    dev: str
    gateway: str | None = None


@dataclass
class Topology:
    left: Peer
    right: Peer
    nat_ns: str | None = None
    namespaces: list[str] = field(default_factory=list)

    # --- construction ----------------------------------------------------------------------

    @staticmethod
    def _new_ns(prefix: str, role: str, made: list[str]) -> str:
        name = f"{prefix}-{role}-{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", name)
        made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    @staticmethod
    def _veth(ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
        sh("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b,
           "netns", ns_b)  # fmt: skip

    @staticmethod
    def _addr(ns: str, dev: str, cidr: str) -> None:
        # IPv6: nodad, or the address stays "tentative" (unbindable) for a second or two
        extra = ("nodad",) if ":" in cidr else ()
        sh("ip", "-n", ns, "addr", "add", cidr, "dev", dev, *extra)
        sh("ip", "-n", ns, "link", "set", dev, "up")

    @classmethod
    def pair(cls, prefix: str = "iop", family: int = 4) -> Topology:
        """Two namespaces on a veth; family 4 (10.99.0.1/.2) or 6 (fd00:99::1/::2)."""
        if family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, not {family!r}")
        left_addr, right_addr, plen = PAIR_ADDRS[family]
        made: list[str] = []
        try:
            left = cls._new_ns(prefix, "l", made)
            right = cls._new_ns(prefix, "r", made)
            cls._veth(left, "vl", right, "vr")
            cls._addr(left, "vl", f"{left_addr}/{plen}")
            cls._addr(right, "vr", f"{right_addr}/{plen}")
        except BaseException:
            for ns in made:
                sh("ip", "netns", "del", ns, check=False)
            raise
        return cls(Peer(left, left_addr, "vl"), Peer(right, right_addr, "vr"), None, made)

    @property
    def family(self) -> int:
        """4 or 6: the outer (IKE and ESP) address family."""
        return 6 if ":" in self.left.addr else 4

    @classmethod
    def nat(cls, prefix: str = "iopn") -> Topology:
        made: list[str] = []
        try:
            left = cls._new_ns(prefix, "l", made)
            mid = cls._new_ns(prefix, "n", made)
            right = cls._new_ns(prefix, "r", made)
            cls._veth(left, "vl", mid, "nl")
            cls._veth(mid, "nr", right, "vr")
            cls._addr(left, "vl", "10.98.1.2/24")
            cls._addr(mid, "nl", "10.98.1.1/24")
            cls._addr(mid, "nr", "10.98.2.1/24")
            cls._addr(right, "vr", "10.98.2.2/24")
            sh("ip", "-n", left, "route", "add", "default", "via", "10.98.1.1")
            nsexec(mid, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            nft(
                mid,
                "table ip ikev2nat {\n"
                "  chain post { type nat hook postrouting priority srcnat; policy accept;\n"
                '    ip saddr 10.98.1.0/24 oifname "nr" counter masquerade\n'
                "  }\n"
                "}\n",
            )
        except BaseException:
            for ns in made:
                sh("ip", "netns", "del", ns, check=False)
            raise
        return cls(
            Peer(left, "10.98.1.2", "vl", gateway="10.98.1.1"),
            Peer(right, "10.98.2.2", "vr"),
            mid,
            made,
        )

    # --- helpers -----------------------------------------------------------------------------

    @property
    def public_left(self) -> str:
        """The address the right peer sees for the left one (the NAT's outside address)."""
        return "10.98.2.1" if self.nat_ns else self.left.addr

    def add_lo_address(self, ns: str, cidr: str) -> None:
        """An address on lo (kernel-libipsec needs a local address inside its selectors)."""
        extra = ("nodad",) if ":" in cidr else ()
        sh("ip", "-n", ns, "addr", "add", cidr, "dev", "lo", *extra)

    def nat_masquerade_hits(self) -> int:
        """Packets the NAT's masquerade rule has rewritten so far."""
        if self.nat_ns is None:
            raise TopologyError("not a NAT topology")
        out = nsexec(self.nat_ns, "nft", "list", "table", "ip", "ikev2nat").stdout
        for line in out.splitlines():
            if "masquerade" in line and "packets" in line:
                return int(line.split("packets")[1].split()[0])
        return 0

    def drop_udp(
        self, ns: str, ports: tuple[int, ...] = (500, 4500), direction: str = "input"
    ) -> None:
        """Drop (and count) UDP to `ports` entering (input) or leaving (output) netns `ns`."""
        ports_set = ", ".join(str(p) for p in ports)
        nft(
            ns,
            f"table inet {DROP_TABLE} {{\n"
            f"  chain {direction} {{ type filter hook {direction} priority filter; policy accept;\n"
            f"    udp dport {{ {ports_set} }} counter drop\n"
            "  }\n"
            "}\n",
        )

    def dropped(self, ns: str) -> int:
        """Packets dropped so far by drop_udp's rules in `ns` (0 when no rule is in place)."""
        done = nsexec(ns, "nft", "list", "table", "inet", DROP_TABLE, check=False)
        total = 0
        for line in done.stdout.splitlines():
            if "drop" in line and "packets" in line:
                total += int(line.split("packets")[1].split()[0])
        return total

    def stop_dropping(self, ns: str) -> None:
        nsexec(ns, "nft", "delete", "table", "inet", DROP_TABLE, check=False)

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
