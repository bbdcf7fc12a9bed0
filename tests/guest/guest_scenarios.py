"""Runs INSIDE the QEMU guest (a kernel with ESP): real IPsec between two namespaces through our
adapter, ikev2.kernel.xfrm. One JSON file per scenario goes to the results share; the host-side
test_guest_esp.py asserts each check. Usage: python guest_scenarios.py RESULTS_DIR

Topology per scenario: namespaces A and B joined by veth va <-> vb (10.0.0.1/2, fd00::1/2).
SPIs come from allocate_spi on the receiving side (so the inbound SA is installed with update_sa
over the larval SA, the order the daemon uses); traffic is ping; an AF_PACKET socket on va sees
what is on the wire.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when run by path

from ikev2.constants import IpProto
from ikev2.kernel import (
    DEFAULT_REQID_BASE,
    Acquire,
    Aead,
    Cipher,
    Direction,
    Expire,
    Integrity,
    Lifetime,
    Mode,
    PolicySpec,
    SaSpec,
    Selector,
    Template,
)
from ikev2.kernel.xfrm import XfrmKernel
from ikev2.testing.netns import inside

ADDR = {4: ("10.0.0.1", "10.0.0.2"), 6: ("fd00::1", "fd00::2")}
REQID = DEFAULT_REQID_BASE + 7
ETH_P_ALL = 0x0003
NAT_T_PORT = 4500


def test_key(seed: int, length: int) -> bytes:
    """A fixed, recognisable test key (never a real one)."""
    return bytes((seed * 17 + i) % 256 for i in range(length))


TRANSFORMS: dict[str, Callable[[int], dict[str, Any]]] = {
    "aes256gcm": lambda seed: {"aead": Aead("rfc4106(gcm(aes))", test_key(seed, 36), 128)},
    "chacha20poly1305": lambda seed: {
        "aead": Aead("rfc7539esp(chacha20,poly1305)", test_key(seed, 36), 128)
    },
    "aes256cbc-sha256": lambda seed: {
        "enc": Cipher("cbc(aes)", test_key(seed, 32)),
        "auth": Integrity("hmac(sha256)", test_key(seed + 1, 32), 128),
    },
    "sha256": lambda seed: {"auth": Integrity("hmac(sha256)", test_key(seed, 32), 128)},
}


@dataclass(frozen=True)
class EspScenario:
    name: str
    family: int
    proto: IpProto
    mode: Mode
    transform: str
    wire: str  # what the sniffer must see carrying the pings: esp | ah | udp4500
    encap: bool = False
    esn: bool = False


ESP_SCENARIOS = (
    EspScenario("esp-aes256gcm-tunnel-ipv4", 4, IpProto.ESP, Mode.TUNNEL, "aes256gcm", "esp"),
    EspScenario(
        "esp-chacha20poly1305-transport-ipv6",
        6,
        IpProto.ESP,
        Mode.TRANSPORT,
        "chacha20poly1305",
        "esp",
    ),
    EspScenario(
        "esp-aes256cbc-sha256-tunnel-ipv6-esn",
        6,
        IpProto.ESP,
        Mode.TUNNEL,
        "aes256cbc-sha256",
        "esp",
        esn=True,
    ),
    EspScenario(
        "esp-aes256cbc-sha256-transport-ipv4",
        4,
        IpProto.ESP,
        Mode.TRANSPORT,
        "aes256cbc-sha256",
        "esp",
    ),
    EspScenario("ah-sha256-transport-ipv4", 4, IpProto.AH, Mode.TRANSPORT, "sha256", "ah"),
    EspScenario("ah-sha256-tunnel-ipv6", 6, IpProto.AH, Mode.TUNNEL, "sha256", "ah"),
    EspScenario(
        "esp-udpencap-aes256gcm-tunnel-ipv4",
        4,
        IpProto.ESP,
        Mode.TUNNEL,
        "aes256gcm",
        "udp4500",
        encap=True,
    ),
)
OTHER_SCENARIOS = ("events-acquire-expire", "crash-then-flush-owned")
SCENARIO_NAMES = tuple(s.name for s in ESP_SCENARIOS) + OTHER_SCENARIOS


# --- namespaces --------------------------------------------------------------------------------


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def make_topology() -> None:
    for ns in ("A", "B"):
        run("ip", "netns", "add", ns)
    run("ip", "link", "add", "va", "netns", "A", "type", "veth", "peer", "name", "vb", "netns", "B")
    for ns, dev, idx in (("A", "va", 0), ("B", "vb", 1)):
        run("ip", "-n", ns, "addr", "add", f"{ADDR[4][idx]}/24", "dev", dev)
        run("ip", "-n", ns, "addr", "add", f"{ADDR[6][idx]}/64", "dev", dev, "nodad")
        run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
    # static neighbours: no cleartext IPv6 neighbour discovery inside the host-to-host selectors
    macs: dict[str, str] = {}
    for ns, dev in (("A", "va"), ("B", "vb")):
        out = run("ip", "-n", ns, "-o", "link", "show", dev).stdout
        macs[ns] = out.split("link/ether ")[1].split()[0]
    for ns, dev, peer, idx in (("A", "va", "B", 1), ("B", "vb", "A", 0)):
        run(
            "ip",
            "-n",
            ns,
            "-6",
            "neigh",
            "replace",
            ADDR[6][idx],
            "lladdr",
            macs[peer],
            "dev",
            dev,
            "nud",
            "permanent",
        )


def drop_topology() -> None:
    for ns in ("A", "B"):
        run("ip", "netns", "del", ns, check=False)


# --- wire observation --------------------------------------------------------------------------


def classify(frame: bytes) -> str:
    """What an Ethernet frame carries at the outer IP level."""
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0800:
        proto, l4 = frame[23], 14 + (frame[14] & 0x0F) * 4
    elif ethertype == 0x86DD:
        proto, l4 = frame[20], 54
    else:
        return "other"
    if proto in (50, 51):
        return {50: "esp", 51: "ah"}[proto]
    if proto == 17 and len(frame) >= l4 + 12:
        dport = int.from_bytes(frame[l4 + 2 : l4 + 4], "big")
        if dport == NAT_T_PORT:
            return "udp4500" if frame[l4 + 8 : l4 + 12] != bytes(4) else "udp4500-ike"
        if dport == 500:
            return "udp500"
        return "cleartext-udp"
    if (proto, frame[l4 : l4 + 1]) in ((1, b"\x08"), (1, b"\x00"), (58, b"\x80"), (58, b"\x81")):
        return "cleartext-echo"
    return "other"


PACKET_OUTGOING = 4  # sockaddr_ll.sll_pkttype of a frame this host sent (linux/if_packet.h)


class Sniffer:
    """AF_PACKET on va (in A) and vb (in B), counting frames each side SENDS, by outer protocol:
    every frame on the veth is counted once. (Received frames are skipped: after tunnel-mode
    decapsulation the kernel re-injects the inner packet on the same device, where a packet
    socket would see it as cleartext.)"""

    def __init__(self) -> None:
        self.socks = []
        for ns, dev in (("A", "va"), ("B", "vb")):
            with inside(ns):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind((dev, 0))
            sock.setblocking(False)
            self.socks.append(sock)

    def drain(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for sock in self.socks:
            while True:
                try:
                    frame, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    counts[classify(frame)] += 1
        return counts

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def ping(family: int, dst: str, count: int = 3) -> bool:
    done = run(
        "ip",
        "netns",
        "exec",
        "A",
        "ping",
        f"-{family}",
        "-c",
        str(count),
        "-i",
        "0.2",
        "-W",
        "2",
        dst,
        check=False,
    )
    return done.returncode == 0


# --- the ESP / AH scenarios --------------------------------------------------------------------


def sa_pair(sc: EspScenario, ka: XfrmKernel, kb: XfrmKernel) -> dict[str, Any]:
    """Allocate both inbound SPIs at their receivers, install the four SA halves."""
    a, b = (ip_address(x) for x in ADDR[sc.family])
    encap = (NAT_T_PORT, NAT_T_PORT) if sc.encap else None
    spi_ab = kb.allocate_spi(sc.proto, a, b, REQID)
    spi_ba = ka.allocate_spi(sc.proto, b, a, REQID)
    common = dict(
        proto=sc.proto,
        mode=sc.mode,
        reqid=REQID,
        encap=encap,
        esn=sc.esn,
        replay_window=128 if sc.esn else 32,
    )
    ab = SaSpec(src=a, dst=b, spi=spi_ab, **common, **TRANSFORMS[sc.transform](1))
    ba = SaSpec(src=b, dst=a, spi=spi_ba, **common, **TRANSFORMS[sc.transform](2))
    ka.add_sa(ab)
    kb.update_sa(ab)
    kb.add_sa(ba)
    ka.update_sa(ba)
    return {"a": a, "b": b, "spi_ab": spi_ab, "spi_ba": spi_ba}


def policies(
    sc: EspScenario, local: IPv4Address | IPv6Address, remote: IPv4Address | IPv6Address
) -> list[PolicySpec]:
    def tmpl(src: Any, dst: Any) -> Template:
        if sc.mode == Mode.TUNNEL:
            return Template(sc.proto, sc.mode, REQID, src, dst)
        return Template(sc.proto, sc.mode, REQID)

    out_sel = Selector.host_to_host(local, remote)
    in_sel = Selector.host_to_host(remote, local)
    specs = [
        PolicySpec(out_sel, Direction.OUT, templates=(tmpl(local, remote),)),
        PolicySpec(in_sel, Direction.IN, templates=(tmpl(remote, local),)),
    ]
    if sc.mode == Mode.TUNNEL:
        specs.append(PolicySpec(in_sel, Direction.FWD, templates=(tmpl(remote, local),)))
    return specs


def udp_socket(family: int, addr: str, port: int) -> socket.socket:
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    sock = socket.socket(af, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    return sock


def bypass_check(sc: EspScenario, ka: XfrmKernel, kb: XfrmKernel) -> dict[str, Any]:
    """IKE-style sockets with per-socket bypass send cleartext UDP/500 through the policies;
    a socket without bypass has its datagram protected (ESP/AH on the wire). The receiver of
    the protected datagram is not bypassed: a bypass socket refuses tunnel-mode traffic
    (the kernel's inbound check of a template-less policy, __xfrm_policy_check)."""
    a, b = ADDR[sc.family]
    af = socket.AF_INET if sc.family == 4 else socket.AF_INET6
    with inside("A"):
        ike_a = udp_socket(sc.family, a, 500)
        plain_a = udp_socket(sc.family, a, 0)
    with inside("B"):
        ike_b = udp_socket(sc.family, b, 500)
        plain_b = udp_socket(sc.family, b, 501)
    sniffer = Sniffer()
    try:
        ka.bypass_socket(ike_a.fileno(), af)
        kb.bypass_socket(ike_b.fileno(), af)
        ike_a.sendto(b"IKE-bypassed", (b, 500))
        ike_b.settimeout(3)
        got = ike_b.recv(100)
        time.sleep(0.05)
        wire_bypassed = sniffer.drain()
        plain_a.sendto(b"not-bypassed", (b, 501))
        plain_b.settimeout(3)
        got_plain = plain_b.recv(100)
        time.sleep(0.05)
        wire_plain = sniffer.drain()
    finally:
        for sock in (ike_a, ike_b, plain_a, plain_b):
            sock.close()
        sniffer.close()
    return {
        "bypassed_delivered": got == b"IKE-bypassed",
        "bypassed_cleartext_udp500": wire_bypassed["udp500"] >= 1,
        "unbypassed_protected": got_plain == b"not-bypassed"
        and wire_plain["udp500"] + wire_plain["cleartext-udp"] == 0
        and wire_plain[sc.wire] >= 1,
        "_wire_bypassed": dict(wire_bypassed),
        "_wire_plain": dict(wire_plain),
    }


def esp_scenario(sc: EspScenario) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    make_topology()
    encap_socks: list[socket.socket] = []
    try:
        with inside("A"):
            ka = XfrmKernel()
        with inside("B"):
            kb = XfrmKernel()
        if sc.encap:  # the NAT-T port: ESP-in-UDP is decapsulated only on an encap socket
            for ns, k, idx in (("A", ka, 0), ("B", kb, 1)):
                with inside(ns):
                    sock = udp_socket(sc.family, ADDR[sc.family][idx], NAT_T_PORT)
                k.enable_udp_encap(sock.fileno())
                k.bypass_socket(sock.fileno(), sock.family)
                encap_socks.append(sock)
        sas = sa_pair(sc, ka, kb)
        a, b = sas["a"], sas["b"]
        pol_a, pol_b = policies(sc, a, b), policies(sc, b, a)
        for k, pols in ((ka, pol_a), (kb, pol_b)):
            for p in pols:
                k.add_policy(p)
        checks["policies_listed"] = sorted(map(repr, ka.list_policies())) == sorted(
            map(repr, pol_a)
        ) and sorted(map(repr, kb.list_policies())) == sorted(map(repr, pol_b))
        sniffer = Sniffer()
        checks["ping"] = ping(sc.family, str(b))
        wire = sniffer.drain()
        sniffer.close()
        checks[f"wire_{sc.wire}"] = wire[sc.wire] >= 6  # 3 requests + 3 replies
        checks["no_cleartext_echo"] = wire["cleartext-echo"] == 0
        out_a = ka.get_sa_counters(b, sas["spi_ab"], sc.proto)
        in_b = kb.get_sa_counters(b, sas["spi_ab"], sc.proto)
        in_a = ka.get_sa_counters(a, sas["spi_ba"], sc.proto)
        checks["counters_moved"] = all(c.packets >= 3 for c in (out_a, in_b, in_a))
        listed = {(s.spi, s.algorithm, s.encap) for s in ka.list_sas()}
        expect_alg = SaSpec(a, b, 1, sc.proto, sc.mode, 1, **TRANSFORMS[sc.transform](0)).algorithm
        enc = (NAT_T_PORT, NAT_T_PORT) if sc.encap else None
        checks["sas_listed"] = listed == {
            (sas["spi_ab"], expect_alg, enc),
            (sas["spi_ba"], expect_alg, enc),
        }
        checks.update(bypass_check(sc, ka, kb))
        xfrm_state = run("ip", "-n", "A", "-s", "xfrm", "state").stdout
        if sc.esn:  # iproute2 prints the state flags; ESN needs XFRM_STATE_ESN + REPLAY_ESN_VAL
            checks["esn_in_kernel"] = xfrm_state.count("esn") >= 2 and "replay_window 128" in (
                xfrm_state
            )
        # teardown through the adapter, then the kernel must hold nothing
        for sock in encap_socks:
            sock.close()
        for k, pols in ((ka, pol_a), (kb, pol_b)):
            for p in pols:
                k.delete_policy(p.selector, p.direction)
        for k in (ka, kb):
            k.delete_sa(b, sas["spi_ab"], sc.proto)
            k.delete_sa(a, sas["spi_ba"], sc.proto)
        checks["zero_after_teardown"] = all(
            not k.list_sas() and not k.list_policies() for k in (ka, kb)
        ) and all(
            run("ip", "-n", ns, "xfrm", what).stdout.strip() == ""
            for ns in ("A", "B")
            for what in ("state", "policy")
        )
        checks["_counters"] = {"out_a": asdict(out_a), "in_b": asdict(in_b), "in_a": asdict(in_a)}
        checks["_wire"] = dict(wire)
        checks["_ip_s_xfrm_state_A"] = xfrm_state
        ka.close()
        kb.close()
    finally:
        for sock in encap_socks:
            sock.close()
        drop_topology()
    return checks


# --- kernel events and crash recovery ----------------------------------------------------------


def events_scenario() -> dict[str, Any]:
    """ACQUIRE when traffic meets a policy without SA; soft then hard EXPIRE of a short SA."""
    checks: dict[str, Any] = {}
    make_topology()
    try:
        a, b = (ip_address(x) for x in ADDR[4])
        with inside("A"):
            ka = XfrmKernel()
        ka.add_policy(
            PolicySpec(
                Selector.host_to_host(a, b),
                Direction.OUT,
                templates=(Template(IpProto.ESP, Mode.TRANSPORT, REQID),),
            )
        )
        with inside("A"):
            trigger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # the kernel may drop it while the SA is larval
            trigger.sendto(b"acquire me", (str(b), 9))
        trigger.close()
        time.sleep(0.1)
        acquires = [e for e in ka.read_events() if isinstance(e, Acquire)]
        flow = Selector.host_to_host(a, b, proto=17)
        checks["acquire"] = any(
            (e.reqid, e.src, e.dst, e.proto) == (REQID, a, b, IpProto.ESP)
            # the flow's selector (__xfrm_init_tempsel): our datagram's addresses and port
            and (e.selector.src, e.selector.dst, e.selector.proto) == (flow.src, flow.dst, 17)
            and e.selector.dport == 9
            for e in acquires
        )
        checks["_acquires"] = [repr(e) for e in acquires]
        spec = SaSpec(
            a,
            b,
            0x4242,
            IpProto.ESP,
            Mode.TRANSPORT,
            REQID,
            lifetime=Lifetime(soft_seconds=1, hard_seconds=2),
            **TRANSFORMS["aes256gcm"](3),
        )
        ka.add_sa(spec)
        seen: list[Expire] = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and not any(e.hard for e in seen):
            time.sleep(0.2)
            seen += [e for e in ka.read_events() if isinstance(e, Expire)]
        checks["expire_soft_then_hard"] = [e.hard for e in seen if e.spi == 0x4242] == [False, True]
        checks["_expires"] = [repr(e) for e in seen]
        ka.delete_policy(Selector.host_to_host(a, b), Direction.OUT)
        checks["zero_after_teardown"] = not ka.list_sas() and not ka.list_policies()
        ka.close()
    finally:
        drop_topology()
    return checks


def crash_scenario() -> dict[str, Any]:
    """An adapter installs SAs/policies and vanishes; a NEW adapter's flush_owned removes exactly
    ours (reqid range) and leaves a foreign SA and policy alone."""
    checks: dict[str, Any] = {}
    make_topology()
    try:
        a, b = (ip_address(x) for x in ADDR[4])
        with inside("A"):
            crashed = XfrmKernel()
        sc = ESP_SCENARIOS[0]
        for spi, reqid in ((0x1001, REQID), (0x1002, REQID + 1), (0x1003, 7)):
            crashed.add_sa(
                SaSpec(a, b, spi, IpProto.ESP, Mode.TUNNEL, reqid, **TRANSFORMS["aes256gcm"](4))
            )
        crashed.allocate_spi(IpProto.ESP, b, a, REQID)  # a larval SA of ours too
        for pol in policies(sc, a, b):
            crashed.add_policy(pol)
        foreign = PolicySpec(
            Selector.host_to_host(a, b, proto=6),
            Direction.OUT,
            templates=(Template(IpProto.ESP, Mode.TRANSPORT, 7),),
        )
        crashed.add_policy(foreign)
        crashed.close()  # the "crash": nothing cleaned up
        with inside("A"):
            fresh = XfrmKernel()
        removed = fresh.flush_owned()
        checks["flush_counts"] = removed == (3, 3)
        left_sas = [(s.spi, s.reqid) for s in fresh.list_sas()]
        checks["only_foreign_left"] = left_sas == [(0x1003, 7)] and fresh.list_policies() == [
            foreign
        ]
        checks["second_flush_is_noop"] = fresh.flush_owned() == (0, 0)
        fresh.delete_sa(b, 0x1003, IpProto.ESP)
        fresh.delete_policy(foreign.selector, foreign.direction)
        checks["zero_after_teardown"] = not fresh.list_sas() and not fresh.list_policies()
        checks["_removed"] = list(removed)
        fresh.close()
    finally:
        drop_topology()
    return checks


def main(results: Path) -> int:
    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (sc.name, lambda sc=sc: esp_scenario(sc)) for sc in ESP_SCENARIOS
    ]
    jobs += [("events-acquire-expire", events_scenario), ("crash-then-flush-owned", crash_scenario)]
    failed = 0
    for name, job in jobs:
        start = time.monotonic()
        record: dict[str, Any] = {"name": name}
        try:
            record["checks"] = job()
        except Exception:
            record["error"] = traceback.format_exc()
            failed += 1
        record["seconds"] = round(time.monotonic() - start, 2)
        (results / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
        print(name, record["seconds"], "error" if "error" in record else "ok", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
