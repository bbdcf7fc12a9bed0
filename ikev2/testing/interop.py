"""One description of an interop scenario, rendered for both peers: strongSwan (swanctl.conf)
and our daemon (TOML). The same description can also be rendered as strongSwan on both sides,
which is how the harness tests itself.

Identity: our side is always "moon", strongSwan "sun" (fixtures/pki certificates). Position: the
initiator sits on the LEFT of the topology (behind the NAT in NAT topologies), the responder on
the RIGHT; the left's inner network is 10.1.0.0/24, the right's 10.2.0.0/24 (Spec.nets changes
them, e.g. to the IPv6 LEFT_NET6/RIGHT_NET6; a comma-separated value is a list of selectors).
The outer address family is the topology's (Topology.pair(family=6)).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509

from .daemon import OurDaemon
from .keycompare import compare_child, compare_ike
from .strongswan import DEBIAN, Charon, ChildSaInfo, ConfValue, IkeSaInfo, Install
from .topology import Topology

REPO = Path(__file__).resolve().parents[2]
PKI = REPO / "fixtures" / "pki"
LEFT_NET, RIGHT_NET = "10.1.0.0/24", "10.2.0.0/24"
LEFT_NET6, RIGHT_NET6 = "fd00:10::/64", "fd00:20::/64"
OURS_INITIATOR, OURS_RESPONDER = "ours-initiator", "ours-responder"
ROLES = (OURS_INITIATOR, OURS_RESPONDER)
PSK = "interop-psk-0123456789abcdef"
# the OU each chain's certificates carry (fixtures/pki/make_pki.py)
CHAIN_OU = {
    "ecdsa": "ECDSA",
    "rsa": "RSA",
    "ed25519": "Ed25519",
    "rsa4096": "RSA-4096",
    "untrusted": "Untrusted",
}
IP_ID = {"moon": "192.0.2.1", "sun": "192.0.2.2"}
IP6_ID = {"moon": "2001:db8::1", "sun": "2001:db8::2"}


@dataclass(frozen=True)
class Chain:
    """What one side authenticates with: its cert + key and the intermediates it sends."""

    cert: Path
    key: Path
    intermediates: tuple[Path, ...] = ()

    @property
    def ou(self) -> str:
        return CHAIN_OU[self.cert.parent.name]


def chain(name: str, who: str) -> Chain:
    base = PKI / name
    if name == "rsa4096":
        return Chain(
            base / f"{who}.crt", base / f"{who}.key", (base / "int2.crt", base / "int1.crt")
        )
    return Chain(base / f"{who}.crt", base / f"{who}.key")


def ca_of(name: str) -> Path:
    return PKI / name / ("root.crt" if name == "rsa4096" else "ca.crt")


@dataclass(frozen=True)
class ChildSpec:
    name: str = "net"
    mode: str = "tunnel"
    proto: str = "esp"  # esp | ah
    ours_proposals: tuple[str, ...] = ("aes256gcm16",)
    ss_proposals: tuple[str, ...] = ("aes256gcm16",)
    # selectors as (local, remote) from the initiator's (left's) point of view, per side;
    # None: the left/right networks
    ours_ts: tuple[str, str] | None = None
    ss_ts: tuple[str, str] | None = None
    rekey_time: int = 0
    ipcomp: bool = False  # RFC 3173, on both sides (swanctl's ipcomp = yes, ours ipcomp = true)


@dataclass(frozen=True)
class PpkSpec:
    """One side's RFC 8784 setup: the PPKs it holds as (PPK_ID, hex), the connection's ppk_id
    (None: none named, so as responder it takes any PPK it holds) and ppk_required."""

    keys: tuple[tuple[str, str], ...]
    ppk_id: str | None = None
    required: bool = False


@dataclass(frozen=True)
class Spec:
    name: str
    auth: str = "psk"  # psk | ecdsa | rsa | ed25519 | rsa4096 (moon) ...
    sun_auth: str | None = None  # strongSwan's chain when it differs from moon's
    id_kind: str = "fqdn"  # fqdn | ip | ip6 | dn
    # our side uses our default proposals (post-quantum hybrid first, issue 15) unless a row pins
    # them: against 5.9.8 the fallback to a classic proposal is real in every such row
    ours_ike: tuple[str, ...] = ("default",)
    ss_ike: tuple[str, ...] = ("aes256gcm16-prfsha256-x25519",)
    children: tuple[ChildSpec, ...] = (ChildSpec(),)
    ours_psk: str = PSK
    ss_psk: str = PSK
    ss_trusts: str | None = None  # which CA strongSwan trusts for moon (default: moon's own)
    dpd_delay: int = 0
    fragmentation: bool = True
    fragment_size: int = 0  # 0: default
    ike_rekey_time: int = 0
    ours_reauth_time: int = 0  # our reauth_time (RFC 7296 §2.8.3); 0 = off
    # our retransmission schedule: (timeout seconds, base, tries); None = the defaults
    ours_retransmit: tuple[float, float, int] | None = None
    extra_ss: dict[str, ConfValue] = field(default_factory=dict)
    # the inner networks (left, right); "a,b" is a list of selectors (e.g. mixed families)
    nets: tuple[str, str] = (LEFT_NET, RIGHT_NET)
    ours_wildcard: bool = False  # our daemon listens on its defaults (0.0.0.0 and ::, PKTINFO)
    ours_ppk: PpkSpec | None = None  # post-quantum preshared keys (RFC 8784) per side
    ss_ppk: PpkSpec | None = None

    def with_(self, **changes: Any) -> Spec:
        return replace(self, **changes)

    # --- identities ---------------------------------------------------------------------------

    def chain_name(self, who: str) -> str:
        if who == "sun" and self.sun_auth:
            return self.sun_auth
        if self.auth == "rsa4096" and who == "sun":
            return "rsa"
        return self.auth

    def identity(self, who: str) -> str:
        if self.id_kind == "ip":
            return IP_ID[who]
        if self.id_kind == "ip6":
            return IP6_ID[who]
        if self.id_kind == "dn":
            ou = CHAIN_OU.get(self.chain_name(who), "PSK")
            return f"C=CH, O=ikev2 test, OU={ou}, CN={who}.ikev2.test"
        return f"{who}.ikev2.test"

    def ca_for(self, who: str) -> Path:
        """The CA the OTHER side must trust to accept `who`."""
        if who == "moon" and self.ss_trusts:
            return ca_of(self.ss_trusts)
        return ca_of(self.chain_name(who))


def positions(
    topo: Topology, ours_initiates: bool, nets: tuple[str, str] = (LEFT_NET, RIGHT_NET)
) -> dict[str, Any]:
    """Addresses and inner networks of ours and strongSwan for a role."""
    left_remote = topo.right.addr
    right_remote = topo.public_left
    left_net, right_net = nets
    if ours_initiates:
        return {
            "ours_ns": topo.left.ns, "ours_addr": topo.left.addr, "ours_peer": left_remote,
            "ss_ns": topo.right.ns, "ss_addr": topo.right.addr, "ss_peer": right_remote,
            "ours_net": left_net, "ss_net": right_net,
        }  # fmt: skip
    return {
        "ours_ns": topo.right.ns, "ours_addr": topo.right.addr, "ours_peer": right_remote,
        "ss_ns": topo.left.ns, "ss_addr": topo.left.addr, "ss_peer": left_remote,
        "ours_net": right_net, "ss_net": left_net,
    }  # fmt: skip


def _ts(
    child: ChildSpec, which: str, is_left: bool, local_net: str, remote_net: str
) -> tuple[str, str]:
    """(local, remote) selectors for the side `which` (ours/ss); `is_left`: that side is the
    initiator on the left, so the left-view override applies unswapped."""
    override = child.ours_ts if which == "ours" else child.ss_ts
    if child.mode == "transport" and override is None:
        return ("dynamic", "dynamic")
    if override is None:
        return (local_net, remote_net)
    return override if is_left else (override[1], override[0])


@dataclass(frozen=True)
class SwanctlFiles:
    conf: dict[str, ConfValue]
    certs: tuple[Path, ...]
    cacerts: tuple[Path, ...]
    keys: tuple[Path, ...]


def swanctl_config(
    spec: Spec, who: str, local_addr: str, remote_addr: str, local_net: str, remote_net: str,
    initiator: bool, is_ours_side: bool = False,
) -> SwanctlFiles:  # fmt: skip
    """swanctl.conf for `who` (sun: strongSwan's own side; moon: strongSwan standing in for our
    daemon in the harness self-test)."""
    other = "moon" if who == "sun" else "sun"
    which = "ours" if is_ours_side else "ss"
    ike = spec.ours_ike if is_ours_side else spec.ss_ike
    psk = spec.ours_psk if is_ours_side else spec.ss_psk
    children: dict[str, ConfValue] = {}
    for child in spec.children:
        proposals = child.ours_proposals if is_ours_side else child.ss_proposals
        lts, rts = _ts(child, which, initiator, local_net, remote_net)
        entry: dict[str, ConfValue] = {
            "local_ts": lts,
            "remote_ts": rts,
            "mode": child.mode,
            f"{child.proto}_proposals": list(proposals),
            "rekey_time": f"{child.rekey_time}s" if child.rekey_time else "0",
            "life_time": "0",
            "start_action": "none",
            "dpd_action": "clear",
        }
        if child.ipcomp:
            entry["ipcomp"] = "yes"
        children[child.name] = entry
    local: dict[str, ConfValue] = {"id": spec.identity(who)}
    remote: dict[str, ConfValue] = {"id": spec.identity(other)}
    certs: list[Path] = []
    cacerts: list[Path] = []
    keys: list[Path] = []
    if spec.auth == "psk":
        local["auth"] = remote["auth"] = "psk"
    else:
        mine = chain(spec.chain_name(who), who)
        local.update(auth="pubkey", certs=mine.cert.name)
        remote["auth"] = "pubkey"
        certs += [mine.cert, *mine.intermediates]
        keys.append(mine.key)
        ca = spec.ca_for(other) if who == "sun" else ca_of(spec.chain_name("sun"))
        cacerts.append(ca)
        remote["cacerts"] = ca.name
    conn: dict[str, ConfValue] = {
        "version": 2,
        "local_addrs": local_addr,
        "remote_addrs": remote_addr,
        "proposals": list(ike),
        "rekey_time": f"{spec.ike_rekey_time}s" if spec.ike_rekey_time else "0",
        "reauth_time": "0",
        "unique": "never",
        "fragmentation": "yes" if spec.fragmentation else "no",
        "dpd_delay": f"{spec.dpd_delay}s" if spec.dpd_delay else "0",
        "local": local,
        "remote": remote,
        "children": children,
    }
    conf: dict[str, ConfValue] = {"connections": {spec.name: conn}}
    secrets: dict[str, ConfValue] = {}
    if spec.auth == "psk":
        secrets["ike-1"] = {"id-1": spec.identity(who), "id-2": spec.identity(other), "secret": psk}
    ppk = spec.ours_ppk if is_ours_side else spec.ss_ppk
    if ppk is not None:  # swanctl.conf: connections.<conn>.ppk_id/ppk_required, secrets.ppk*
        if ppk.ppk_id is not None:
            conn["ppk_id"] = ppk.ppk_id
        conn["ppk_required"] = ppk.required
        for n, (ppk_id, value) in enumerate(ppk.keys, 1):
            secrets[f"ppk-{n}"] = {"id-1": ppk_id, "secret": "0x" + value}
    if secrets:
        conf["secrets"] = secrets
    return SwanctlFiles(conf, tuple(certs), tuple(cacerts), tuple(keys))


def ours_config(
    spec: Spec, local_addr: str, remote_addr: str, local_net: str, remote_net: str,
    initiator: bool, files_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    """Our daemon's TOML tree for moon (paths to credentials are absolute)."""
    children: dict[str, Any] = {}
    for child in spec.children:
        lts, rts = _ts(child, "ours", initiator, local_net, remote_net)
        entry: dict[str, Any] = {
            "local_ts": lts.split(","),
            "remote_ts": rts.split(","),
            "mode": child.mode,
            f"{child.proto}_proposals": list(child.ours_proposals),
            "start_action": "none",
        }
        if lts == "dynamic":
            entry["local_ts"] = ["dynamic"]
        if rts == "dynamic":
            entry["remote_ts"] = ["dynamic"]
        if child.rekey_time:
            entry["rekey_time"] = f"{child.rekey_time}s"
        else:
            entry["rekey_time"] = "0s"
        if child.ipcomp:
            entry["ipcomp"] = True
        children[child.name] = entry
    local: dict[str, Any] = {"id": spec.identity("moon")}
    remote: dict[str, Any] = {"id": spec.identity("sun")}
    if spec.auth == "psk":
        local["auth"] = remote["auth"] = "psk"
    else:
        mine = chain(spec.chain_name("moon"), "moon")
        files_dir.mkdir(parents=True, exist_ok=True)
        key = files_dir / "moon.key"  # the loader refuses group/world-readable key files
        key.write_bytes(mine.key.read_bytes())
        key.chmod(0o600)
        local.update(
            auth="pubkey",
            certs=[str(mine.cert), *(str(p) for p in mine.intermediates)],
            key=str(key),
        )
        remote.update(auth="pubkey", cacerts=[str(ca_of(spec.chain_name("sun")))])
    conn: dict[str, Any] = {
        "local_addrs": [local_addr],
        "remote_addrs": [remote_addr],
        "proposals": list(spec.ours_ike),
        "fragmentation": spec.fragmentation,
        "dpd_delay": f"{spec.dpd_delay}s",
        "rekey_time": f"{spec.ike_rekey_time}s",
        **({"reauth_time": f"{spec.ours_reauth_time}s"} if spec.ours_reauth_time else {}),
        **(
            {
                "retransmit_timeout": spec.ours_retransmit[0],
                "retransmit_base": spec.ours_retransmit[1],
                "retransmit_tries": spec.ours_retransmit[2],
            }
            if spec.ours_retransmit
            else {}
        ),
        "local": local,
        "remote": remote,
        "children": children,
    }
    daemon: dict[str, Any] = {"port": 500, "nat_port": 4500}
    if not spec.ours_wildcard:
        daemon["addresses"] = [local_addr]
    tree: dict[str, Any] = {
        "daemon": daemon,
        "connections": {spec.name: conn},
    }
    secrets: dict[str, Any] = {}
    if spec.auth == "psk":
        secrets[spec.name] = {
            "ids": [spec.identity("moon"), spec.identity("sun")],
            "secret": spec.ours_psk,
        }
    if spec.ours_ppk is not None:  # RFC 8784, config_ppk.py
        if spec.ours_ppk.ppk_id is not None:
            conn["ppk_id"] = spec.ours_ppk.ppk_id
        conn["ppk_required"] = spec.ours_ppk.required
        for n, (ppk_id, value) in enumerate(spec.ours_ppk.keys, 1):
            secrets[f"ppk-{n}"] = {"id": ppk_id, "secret": "0x" + value}
    if secrets:
        tree["secrets"] = secrets
    return tree


def child_names(spec: Spec) -> Sequence[str]:
    return [c.name for c in spec.children]


# --- one scenario run: strongSwan and our daemon ----------------------------------------------


class Peers:
    """strongSwan and our daemon set up from one Spec on a topology, for one role."""

    def __init__(self, spec: Spec, topo: Topology, role: str, workdir: Path,
                 ss_extra: dict[str, ConfValue] | None = None,
                 real_kernel: bool = False, install: Install = DEBIAN) -> None:  # fmt: skip
        """real_kernel: both sides install XFRM SAs (strongSwan kernel-netlink, ours --kernel
        xfrm; the QEMU guest); otherwise strongSwan uses libipsec and ours the memory kernel.
        install: which strongSwan (strongswan.DEBIAN 5.9.8, or STRONGSWAN6 from .cache)."""
        self.spec = spec
        self.topo = topo
        self.role = role
        self.ours_initiates = role == OURS_INITIATOR
        self.real_kernel = real_kernel
        pos = positions(topo, self.ours_initiates, spec.nets)
        self.pos = pos
        extra = dict(spec.extra_ss)
        extra.update(ss_extra or {})
        self.ss = Charon(
            pos["ss_ns"], workdir / "strongswan", extra=extra,
            kernel="netlink" if real_kernel else "libipsec", install=install,
        )  # fmt: skip
        self.ours = OurDaemon(
            pos["ours_ns"], workdir / "ours", "xfrm" if real_kernel else "memory",
            use_cli=not real_kernel,
        )  # fmt: skip
        files = swanctl_config(
            spec, "sun", pos["ss_addr"], pos["ss_peer"], pos["ss_net"], pos["ours_net"],
            initiator=not self.ours_initiates,
        )  # fmt: skip
        self.ss.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)
        self.ours.configure(
            ours_config(
                spec, pos["ours_addr"], pos["ours_peer"], pos["ours_net"], pos["ss_net"],
                self.ours_initiates, workdir / "ours",
            )
        )  # fmt: skip

    def start(self) -> Peers:
        # a cold Python start under TCG (the guest, first scenario) takes 20 s and more
        timeout = 90.0 if self.real_kernel else 20.0
        self.ss.start(timeout=timeout)
        self.ss.load()
        self.ours.start(timeout=timeout)
        return self

    def stop(self) -> None:
        self.ours.stop()
        self.ss.stop()

    def __enter__(self) -> Peers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- actions --------------------------------------------------------------------------------

    def establish(self, child: str | None = None, timeout: int = 20) -> str:
        """The initiator brings the connection up; returns the initiating tool's output.
        Raises AssertionError with both logs when it fails."""
        child = child or self.spec.children[0].name
        if self.ours_initiates:
            done = self.ours.up(self.spec.name, timeout=timeout)
            ok, output = done.ok, done.output
        else:
            result = self.ss.initiate(child=child, timeout=timeout)
            ok, output = result.ok, result.output
        if not ok:
            raise AssertionError(f"{self.role}: establishing failed:\n{output}\n{self.logs()}")
        return output

    def initiate_expecting_failure(self, timeout: int = 10) -> str:
        """The initiator tries; returns its output (the caller asserts the failure)."""
        if self.ours_initiates:
            done = self.ours.up(self.spec.name, timeout=timeout)
            assert not done.ok, f"ours: up succeeded but should have failed:\n{done.output}"
            return done.output
        result = self.ss.initiate(child=self.spec.children[0].name, timeout=timeout)
        assert not result.ok, f"strongSwan: initiate succeeded but should fail:\n{result.output}"
        return result.output

    def logs(self) -> str:
        return (
            f"--- strongSwan ({self.ss.ns}) ---\n{self.ss.tail(40)}\n"
            f"--- ours ({self.ours.ns}) ---\n{self.ours.tail(40)}"
        )

    # --- checks ---------------------------------------------------------------------------------

    def ike_pair(self) -> tuple[dict[str, Any], IkeSaInfo]:
        """Our one established IKE SA and strongSwan's, after checking they are the same SA."""
        ours = [sa for sa in self.ours.list_sas() if str(sa.get("state")).upper() == "ESTABLISHED"]
        theirs = [sa for sa in self.ss.list_sas() if sa.state == "ESTABLISHED"]
        assert len(ours) == 1 and len(theirs) == 1, f"IKE SAs: ours {ours}, theirs {theirs}"
        mine, other = ours[0], theirs[0]
        assert (mine["spi_i"].lower(), mine["spi_r"].lower()) == (other.spi_i, other.spi_r)
        assert bool(mine["initiator"]) == self.ours_initiates != other.initiator
        ids = (mine["local_id"], other.remote_id, mine["remote_id"], other.local_id)
        want = (self.spec.identity("moon"),) * 2 + (self.spec.identity("sun"),) * 2
        assert all(same_id(got, exp) for got, exp in zip(ids, want, strict=True)), (
            f"IDs (ours local, theirs remote, ours remote, theirs local): {ids}, want {want}"
        )
        return mine, other

    def check_children(
        self, expected: int | None = None
    ) -> list[tuple[dict[str, Any], ChildSaInfo]]:
        """Every child we list has a strongSwan twin with mirrored SPIs and equal keys."""
        mine, other = self.ike_pair()
        theirs = {c.spi_in: c for c in other.installed_children}
        pairs = []
        ss_keys = {k.spi_in: k for k in self.ss.child_keys()}
        key_log = self.ours.key_log()
        ss_initiated_children = self._ss_initiated_spis()
        for child in mine["children"]:
            spi_out = child["spi_out"].lower().rjust(8, "0")
            spi_in = child["spi_in"].lower().rjust(8, "0")
            twin = theirs.get(spi_out)
            assert twin is not None, f"no strongSwan child with spi_in {spi_out}: {other}"
            assert twin.spi_out == spi_in, (child, twin)
            assert tuple(child["local_ts"]) == twin.remote_ts, (child, twin)
            assert tuple(child["remote_ts"]) == twin.local_ts, (child, twin)
            assert child["mode"].lower() == twin.mode.lower(), (child, twin)
            assert child["protocol"].lower() == twin.protocol.lower(), (child, twin)
            keys = ss_keys.get(twin.spi_in)
            assert keys is not None, f"strongSwan logged no keys for child {twin.spi_in}"
            problems = compare_child(
                key_log, keys, they_initiated=twin.spi_in in ss_initiated_children
            )
            assert problems == [], problems
            pairs.append((child, twin))
        if expected is not None:
            assert len(pairs) == expected == len(other.installed_children), (pairs, other)
        # a rekeyed IKE SA's keys are logged under the old SA's tag, so look at every derivation
        # strongSwan logged; ours are looked up by this SA's SPIs, so only its keys can match
        logged = self.ss.ike_keys()
        assert logged, "strongSwan logged no IKE keys"
        results = [compare_ike(key_log, k, other.spi_i, other.spi_r) for k in logged]
        assert [] in results, f"no strongSwan IKE key derivation equals ours: {results[-1]}"
        return pairs

    def _ss_initiated_spis(self) -> set[str]:
        """Inbound SPIs of children whose creating exchange strongSwan initiated (its log:
        "establishing CHILD_SA" before IKE_AUTH / CREATE_CHILD_SA requests it generates)."""
        out: set[str] = set()
        initiating = False
        for line in self.ss.log().splitlines():
            if (
                "generating IKE_AUTH request" in line
                or "generating CREATE_CHILD_SA request" in line
            ):
                initiating = True
            elif "parsed IKE_AUTH request" in line or "parsed CREATE_CHILD_SA request" in line:
                initiating = False
            m = _ESTABLISHED_SPI.search(line)
            if m and initiating:
                out.add(m.group(1))
        return out

    def nothing_left(self, timeout: float = 10.0) -> None:
        """No IKE SA and no child on either side (after a failure or a delete)."""
        self.ss.wait_for(lambda sas: all(not sa.installed_children for sa in sas)
                         and not [s for s in sas if s.state == "ESTABLISHED"], timeout)  # fmt: skip
        self.ours.wait_for(lambda sas: not sas, timeout)


def same_id(text: str, expected: str) -> bool:
    """ID text equality, where a DN may come back as "asn1dn:#<DER hex>" (our list-sas prints a
    DN that way when its string types differ from what our parser would encode, e.g. the
    PrintableStrings strongSwan uses): then the RDNs must match in order."""
    if text == expected:
        return True
    if not text.startswith("asn1dn:#"):
        return False
    try:
        name = x509.Name.from_bytes(bytes.fromhex(text.removeprefix("asn1dn:#")))
    except ValueError:
        return False
    got = [(a.oid.dotted_string, str(a.value)) for a in name]
    short = {"C": "2.5.4.6", "O": "2.5.4.10", "OU": "2.5.4.11", "CN": "2.5.4.3"}
    want = []
    for part in expected.split(", "):
        key, _, value = part.partition("=")
        want.append((short.get(key, key), value))
    return got == want


_ESTABLISHED_SPI = re.compile(r"CHILD_SA \S+ established with SPIs ([0-9a-f]{8})_i")
