"""Our daemon against strongSwan 5.9.8 on the host: the scenario matrix of issue 8.

strongSwan runs with kernel-libipsec (userspace ESP: tunnel mode, ESP, always UDP-encapsulated),
ours with the in-memory kernel. Transport mode and AH cannot be installed by libipsec, so those
rows run in the QEMU guest (test_guest_interop.py) where both sides install real XFRM SAs.

Every scenario runs twice: `ours-initiator` (our daemon starts the exchange under test) and
`ours-responder` (strongSwan starts it). Every negotiated child is checked: our list-sas and
strongSwan's agree on SPIs, selectors, mode and protocol, and our key log equals the keys
strongSwan logged (ikev2.testing.interop.Peers.check_children).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing.interop import (
    LEFT_NET,
    LEFT_NET6,
    OURS_INITIATOR,
    RIGHT_NET,
    RIGHT_NET6,
    ROLES,
    ChildSpec,
    Peers,
    Spec,
)
from ikev2.testing.strongswan import IkeSaInfo
from ikev2.testing.topology import Topology, nft, nsexec

pytestmark = pytest.mark.interop

PeersFactory = Callable[..., Peers]


def roles(**xfail: str) -> list[Any]:
    """ROLES as parameters; xfail={"ours_initiator": reason} marks that role strict-xfail."""
    out = []
    for role in ROLES:
        reason = xfail.get(role.replace("-", "_"))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(role, marks=marks, id=role))
    return out


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[PeersFactory]:
    made: list[Peers] = []

    def make(spec: Spec, topo: Topology, role: str, **kw: Any) -> Peers:
        p = Peers(spec, topo, role, tmp_path / f"run{len(made)}", **kw)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.stop()


def _ids(value: object) -> str:
    return str(getattr(value, "name", value))


# --- authentication and identities ------------------------------------------------------------

# RSA-3072 IKE_AUTH messages exceed strongSwan's 1280-byte fragment size; fragmentation is off
# here (IP fragments instead) so these rows test authentication alone (see test_fragmentation)
AUTH_SPECS = [
    Spec(f"{auth}-{kind}", auth=auth, id_kind=kind, fragmentation=auth != "rsa")
    for auth in ("psk", "ecdsa", "rsa", "ed25519")
    for kind in ("fqdn", "ip", "dn")
]
# how strongSwan logs the method it verified our AUTH payload with
AUTH_METHOD = {
    "psk": "pre-shared key",
    "ecdsa": "ECDSA_WITH_SHA256_DER",
    "rsa": "RSA_EMSA_(PKCS1|PSS)_SHA2_256",
    "ed25519": "ED25519",
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("spec", AUTH_SPECS, ids=_ids)
def test_auth(spec: Spec, role: str, pair: Topology, peers: PeersFactory) -> None:
    p = peers(spec, pair, role)
    p.establish()
    _, theirs = p.ike_pair()
    assert theirs.remote_id == spec.identity("moon")
    method = AUTH_METHOD[spec.auth]
    pattern = rf"authentication of '{re.escape(spec.identity('moon'))}' with {method}\S* successful"
    assert re.search(pattern, p.ss.log()), "strongSwan did not log how it authenticated us"
    p.check_children(expected=1)
    # the CLI contract: `ikev2 list-sas --json` shows what the control socket answers
    assert p.ours.list_sas(via_cli=True) == p.ours.list_sas()


# --- proposals --------------------------------------------------------------------------------


def _prop(name: str, ike: str, esp: str) -> Spec:
    child = ChildSpec(ours_proposals=(esp,), ss_proposals=(esp,))
    return Spec(name, ours_ike=(ike,), ss_ike=(ike,), children=(child,))


PROPOSAL_SPECS = [
    _prop("aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha256-x25519", "aes256gcm16"),
    _prop("aes128-sha256-modp2048", "aes128-sha256-modp2048", "aes128-sha256"),
    _prop("aes256-sha384-ecp384", "aes256-sha384-ecp384", "aes256-sha384"),
    _prop(
        "chacha20poly1305-prfsha512-curve448",
        "chacha20poly1305-prfsha512-curve448",
        "chacha20poly1305",
    ),
    Spec(
        "only-last-matches",
        ours_ike=("aes128-sha256-modp2048", "aes256-sha384-ecp384", "aes256gcm16-prfsha256-x25519"),
        ss_ike=("aes128gcm16-prfsha512-ecp521", "aes256gcm16-prfsha256-x25519"),
        children=(
            ChildSpec(
                ours_proposals=("aes128-sha1", "aes256-sha512", "aes256gcm16"),
                ss_proposals=("chacha20poly1305", "aes256gcm16"),
            ),
        ),
    ),
]
SUITES = {
    "aes256gcm16-prfsha256-x25519": ("AES_GCM_16_256", "CURVE_25519"),
    "aes128-sha256-modp2048": ("AES_CBC_128", "MODP_2048"),
    "aes256-sha384-ecp384": ("AES_CBC_256", "ECP_384"),
    "chacha20poly1305-prfsha512-curve448": ("CHACHA20_POLY1305", "CURVE_448"),
    "only-last-matches": ("AES_GCM_16_256", "CURVE_25519"),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("spec", PROPOSAL_SPECS, ids=_ids)
def test_proposals(spec: Spec, role: str, pair: Topology, peers: PeersFactory) -> None:
    p = peers(spec, pair, role)
    p.establish()
    encr, group = SUITES[spec.name]
    selected = [ln for ln in p.ss.log().splitlines() if "selected proposal: IKE:" in ln]
    assert selected and encr in selected[-1] and group in selected[-1], selected
    p.check_children(expected=1)


# --- children -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_ts_narrowing(role: str, pair: Topology, peers: PeersFactory) -> None:
    """strongSwan is configured (and proposes) 10.1.0.0/16 <-> 10.2.0.0/16; we accept only the
    /24s; both must end with the narrower selectors."""
    wide = ("10.1.0.0/16", "10.2.0.0/16")
    spec = Spec("narrowing", children=(ChildSpec(ss_ts=wide),))
    p = peers(spec, pair, role)
    p.establish()
    ((mine, twin),) = p.check_children(expected=1)
    ours_net = p.pos["ours_net"]
    assert mine["local_ts"] == [ours_net] and list(twin.remote_ts) == [ours_net]
    assert mine["remote_ts"] == [p.pos["ss_net"]]


@pytest.mark.parametrize("role", ROLES)
def test_two_children(role: str, pair: Topology, peers: PeersFactory) -> None:
    """Two children under one IKE SA: the second one needs CREATE_CHILD_SA."""
    # both halves hold an address on lo (libipsec needs a local address inside its selectors)
    lower = ("10.1.0.0/25", "10.2.0.0/25")
    upper = ("10.1.0.128/25", "10.2.0.128/25")
    first = ChildSpec(ours_ts=lower, ss_ts=lower)
    second = ChildSpec(name="net2", ours_ts=upper, ss_ts=upper)
    spec = Spec("two-children", children=(first, second))
    p = peers(spec, pair, role)
    p.establish()
    if role == OURS_INITIATOR:
        # our `up` brings up every child of the connection (the first in IKE_AUTH)
        p.ours.wait_for(lambda sas: bool(sas) and len(sas[0]["children"]) == 2, timeout=10)
    else:
        result = p.ss.initiate(child="net2")
        assert result.ok, result.output
    pairs = p.check_children(expected=2)
    assert {m["name"] for m, _ in pairs} == {"net", "net2"}


# --- IPv6 ----------------------------------------------------------------------------------------

V6 = (LEFT_NET6, RIGHT_NET6)
# the outer family picks the topology: "-in-v4" rows on pair, the others on pair6
# (fd00:99::1 <-> fd00:99::2)
IPV6_SPECS = [
    Spec("v6-in-v6", nets=V6),
    Spec("v4-in-v6", nets=(LEFT_NET, RIGHT_NET)),
    Spec("v6-in-v4", nets=V6),
    # one child with an IPv4 and an IPv6 selector on each side (RFC 7296 §2.9: a TS payload
    # may hold several selectors of different families)
    Spec("mixed-in-v4", nets=(f"{LEFT_NET},{LEFT_NET6}", f"{RIGHT_NET},{RIGHT_NET6}")),
    Spec("mixed-in-v6", nets=(f"{LEFT_NET},{LEFT_NET6}", f"{RIGHT_NET},{RIGHT_NET6}")),
    # strongSwan proposes the /48s, we accept only the /64s: both end with the /64s
    Spec("v6-narrowing", nets=V6, children=(ChildSpec(ss_ts=("fd00:10::/48", "fd00:20::/48")),)),
    # ID_IPV6_ADDR identities (2001:db8::1 ours, 2001:db8::2 strongSwan's)
    Spec("v6-ip6-ids", id_kind="ip6", nets=V6),
    # our daemon on its default wildcard sockets (:: with IPV6_PKTINFO picks the source)
    Spec("v6-wildcard-bind", nets=V6, ours_wildcard=True),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("spec", IPV6_SPECS, ids=_ids)
def test_ipv6(spec: Spec, role: str, request: pytest.FixtureRequest, peers: PeersFactory) -> None:
    """IPv6 outer addresses and/or IPv6 inner selectors, PSK: the IKE SA runs between the
    topology's addresses of that family and the child carries exactly the configured
    selectors on both sides."""
    family = 4 if spec.name.endswith("-in-v4") else 6
    topo: Topology = request.getfixturevalue("pair6" if family == 6 else "pair")
    assert topo.family == family
    p = peers(spec, topo, role)
    p.establish()
    mine, theirs = p.ike_pair()  # also checks both sides' IDs
    assert theirs.local_host == p.pos["ss_addr"] and theirs.remote_host == p.pos["ours_addr"]
    assert _host(mine["local"]) == p.pos["ours_addr"], mine["local"]
    assert _host(mine["remote"]) == p.pos["ss_addr"], mine["remote"]
    # NAT-D hashes over the outer addresses (RFC 7296 §2.23) agree: neither side sees its own
    # address changed (strongSwan with libipsec fakes its source hash to force UDP encapsulation,
    # so the remote side does look NATed to both)
    assert not mine["nat_local"] and not theirs.nat_local, (mine, theirs)
    ((child, twin),) = p.check_children(expected=1)
    esp = p.ours.key_log().esp
    outer = {spi: (k.family, k.src, k.dst) for spi, k in esp.items()}
    family_name = f"IPv{family}"
    assert outer[child["spi_out"].rjust(8, "0")] == (
        family_name,
        p.pos["ours_addr"],
        p.pos["ss_addr"],
    )
    assert outer[child["spi_in"].rjust(8, "0")] == (
        family_name,
        p.pos["ss_addr"],
        p.pos["ours_addr"],
    )
    assert sorted(child["local_ts"]) == sorted(p.pos["ours_net"].split(",")), child
    assert sorted(child["remote_ts"]) == sorted(p.pos["ss_net"].split(",")), child
    assert sorted(twin.local_ts) == sorted(p.pos["ss_net"].split(",")), twin


@pytest.mark.parametrize("role", ROLES)
def test_ipv6_lifecycle(role: str, pair6: Topology, peers: PeersFactory) -> None:
    """Over IPv6 outside and inside, `role`'s rekeying side (ours-initiator: ours,
    ours-responder: strongSwan) rekeys the IKE SA, then the child, then deletes the IKE SA."""
    p = peers(Spec("v6-lifecycle", nets=V6), pair6, role)
    p.establish()
    _rekey_ike(p, role, "v6-lifecycle")
    p.check_children(expected=1)
    child = _rekey_child(p, role)
    assert child["local_ts"] == [p.pos["ours_net"]]
    if role == OURS_INITIATOR:
        done = p.ours.down("v6-lifecycle")
        assert done.ok, done.output
    else:
        assert p.ss.terminate(ike="v6-lifecycle").ok
    p.nothing_left()


def _host(endpoint: str) -> str:
    """The address of our list-sas "addr:port" / "[addr]:port" endpoint."""
    host = endpoint.rsplit(":", 1)[0]
    return host.removeprefix("[").removesuffix("]")


# --- lifecycle -----------------------------------------------------------------------------------


def _one_child(p: Peers) -> tuple[dict[str, Any], IkeSaInfo]:
    mine, theirs = p.ike_pair()
    assert len(mine["children"]) == 1 and len(theirs.installed_children) == 1
    return mine, theirs


def _rekey_child(p: Peers, role: str) -> dict[str, Any]:
    """`role`'s rekeying side rekeys the one child (RFC 7296 §1.3.3); both sides end with one
    child with new SPIs, checked by check_children. Our view of the new child."""
    mine, _ = _one_child(p)
    old_in = mine["children"][0]["spi_in"]
    if role == OURS_INITIATOR:
        done = p.ours.cli("rekey", str(mine["id"]), "--child", old_in)
        assert done.ok, done.output
    else:
        assert p.ss.rekey(child="net").ok
    p.ours.wait_for(lambda sas: bool(sas) and [c["spi_in"] for c in sas[0]["children"]]
                    not in ([], [old_in]), timeout=10)  # fmt: skip
    p.ss.wait_for(lambda sas: len(sas[0].installed_children) == 1, timeout=10)
    ((child, _),) = p.check_children(expected=1)
    assert child["spi_in"] != old_in
    return child


def _rekey_ike(p: Peers, role: str, name: str) -> tuple[str, str]:
    """`role`'s rekeying side (ours-initiator: ours, else strongSwan) rekeys the IKE SA
    (RFC 7296 §1.3.2); waits until both sides hold just the new one. The old SPIs."""
    mine, _ = _one_child(p)
    old = (mine["spi_i"], mine["spi_r"])
    if role == OURS_INITIATOR:
        done = p.ours.cli("rekey", str(mine["id"]))
        assert done.ok, done.output
    else:
        assert p.ss.rekey(ike=name).ok
    p.ours.wait_for(lambda sas: len(sas) == 1 and (sas[0]["spi_i"], sas[0]["spi_r"]) != old
                    and sas[0]["state"].upper() == "ESTABLISHED", timeout=10)  # fmt: skip
    p.ss.wait_for(lambda sas: len(sas) == 1, timeout=10)
    return old


@pytest.mark.parametrize("role", ROLES)
def test_child_rekey(role: str, pair: Topology, peers: PeersFactory) -> None:
    p = peers(Spec("child-rekey"), pair, role)
    p.establish()
    _rekey_child(p, role)


@pytest.mark.parametrize("role", ROLES)
def test_ike_rekey(role: str, pair: Topology, peers: PeersFactory) -> None:
    p = peers(Spec("ike-rekey"), pair, role)
    p.establish()
    old = _rekey_ike(p, role, "ike-rekey")
    mine, _ = p.ike_pair()
    assert (mine["spi_i"], mine["spi_r"]) != old
    p.check_children(expected=1)  # the child moved to the new IKE SA, keys unchanged


@pytest.mark.parametrize("role", ROLES)
def test_ike_reauth(role: str, pair: Topology, peers: PeersFactory) -> None:
    """RFC 7296 §2.8.3: a new IKE SA with full authentication replaces the old one and takes
    its child: ours on reauth_time (make-before-break), strongSwan on `swanctl --rekey --reauth`."""
    ours_first = role == OURS_INITIATOR
    p = peers(Spec("ike-reauth", ours_reauth_time=8 if ours_first else 0), pair, role)
    p.establish()
    mine, _ = _one_child(p)
    old = (mine["spi_i"], mine["spi_r"])
    old_in = mine["children"][0]["spi_in"]
    if not ours_first:
        assert p.ss.rekey(ike="ike-reauth", reauth=True).ok
    p.ours.wait_for(lambda sas: len(sas) == 1 and (sas[0]["spi_i"], sas[0]["spi_r"]) != old
                    and sas[0]["state"].upper() == "ESTABLISHED"
                    and len(sas[0]["children"]) == 1, timeout=20)  # fmt: skip
    p.ss.wait_for(lambda sas: len(sas) == 1 and len(sas[0].installed_children) == 1, timeout=10)
    mine, _ = p.ike_pair()
    assert (mine["spi_i"], mine["spi_r"]) != old
    ((child, _),) = p.check_children(expected=1)
    assert child["spi_in"] != old_in


@pytest.mark.parametrize("role", roles())
def test_rekey_collision(role: str, pair: Topology, peers: PeersFactory) -> None:
    """Both sides start a child rekey at the same moment (RFC 7296 §2.8.1): afterwards exactly
    one new child pair remains on each side, mirrored and with equal keys."""
    p = peers(Spec("collision"), pair, role)
    p.establish()
    mine, _ = _one_child(p)
    old_in = mine["children"][0]["spi_in"]
    results: dict[str, bool] = {}

    def ours_rekey() -> None:
        results["ours"] = p.ours.cli("rekey", str(mine["id"]), "--child", old_in).ok

    def ss_rekey() -> None:
        results["ss"] = p.ss.rekey(child="net").ok

    threads = [threading.Thread(target=f) for f in (ours_rekey, ss_rekey)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == {"ours": True, "ss": True}
    time.sleep(2)  # let both exchanges and the loser's delete finish
    p.ours.wait_for(lambda sas: bool(sas) and len(sas[0]["children"]) == 1
                    and sas[0]["children"][0]["spi_in"] != old_in, timeout=10)  # fmt: skip
    p.ss.wait_for(lambda sas: len(sas[0].installed_children) == 1, timeout=10)
    p.check_children(expected=1)


@pytest.mark.parametrize("role", ROLES)
def test_delete(role: str, pair: Topology, peers: PeersFactory) -> None:
    """`role` deletes: ours-initiator = we send the Delete, ours-responder = strongSwan does."""
    p = peers(Spec("delete"), pair, role)
    p.establish()
    p.check_children(expected=1)
    if role == OURS_INITIATOR:
        done = p.ours.down("delete")
        assert done.ok, done.output
    else:
        assert p.ss.terminate(ike="delete").ok
    p.nothing_left()
    log = p.ss.log()
    if role == OURS_INITIATOR:  # strongSwan got our Delete and answered it
        assert "received DELETE for IKE_SA delete" in log
        assert "generating INFORMATIONAL response" in log
    else:  # we answered strongSwan's Delete
        assert re.search(r"parsed INFORMATIONAL response \d+", log)


@pytest.mark.parametrize("role", ROLES)
def test_dpd_peer_vanishes(role: str, pair: Topology, peers: PeersFactory) -> None:
    """The side that stays alive runs DPD every 2 s; the other is SIGKILLed (no Delete).
    ours-initiator: ours stays alive and must notice; ours-responder: strongSwan must notice."""
    # ours: DPD after 2 s, then 1 s x 1.4^n, 3 tries (~9 s), like the strongSwan side
    p = peers(Spec("dpd", dpd_delay=2, ours_retransmit=(1.0, 1.4, 3)), pair, role)
    p.establish()
    p.check_children(expected=1)
    if role == OURS_INITIATOR:
        p.ss.kill()
        p.ours.wait_for(lambda sas: not sas, timeout=30)
    else:
        p.ours.kill()
        # strongSwan: DPD after 2 s, then retransmit_timeout 1 s x 1.4^n, 3 tries (~9 s)
        p.ss.wait_for(lambda sas: not sas, timeout=30)
        assert "giving up after 3 retransmits" in p.ss.log()


@pytest.mark.parametrize("role", ROLES)
def test_retransmission(role: str, pair: Topology, peers: PeersFactory) -> None:
    """The responder's namespace drops every IKE packet for the first 2.5 s: the initiator must
    retransmit and the SA still comes up (the nftables counter proves the first tries died)."""
    p = peers(Spec("retransmit"), pair, role)
    responder_ns = p.pos["ss_ns"] if role == OURS_INITIATOR else p.pos["ours_ns"]
    pair.drop_udp(responder_ns)
    try:
        timer = threading.Timer(2.5, pair.stop_dropping, (responder_ns,))
        timer.start()
        p.establish(timeout=25)
        timer.join()
    finally:
        pair.stop_dropping(responder_ns)
    assert pair.dropped(responder_ns) == 0  # the table is gone
    p.check_children(expected=1)
    if role != OURS_INITIATOR:
        assert "retransmit 1 of request with message ID 0" in p.ss.log()


# --- NAT-T ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_nat_traversal(role: str, natted: Topology, peers: PeersFactory) -> None:
    """The initiator sits behind a masquerading NAT: both detect it, move to 4500, and the one
    behind the NAT sends keepalives (strongSwan every 2 s; ours every 20 s)."""
    p = peers(Spec("nat-t"), natted, role, ss_extra={"keep_alive": "2s"})
    p.establish()
    assert natted.nat_masquerade_hits() > 0
    mine, theirs = p.ike_pair()
    p.check_children(expected=1)
    if role == OURS_INITIATOR:  # we are behind the NAT
        assert mine["nat_local"] is True
        assert mine["local"].endswith(":4500") and mine["remote"] == "10.98.2.2:4500"
        assert theirs.nat_remote and theirs.remote_host == "10.98.2.1"
        assert theirs.local_port == "4500"
    else:  # strongSwan is behind the NAT
        assert mine["nat_remote"] is True
        assert mine["remote"].startswith("10.98.2.1:") and mine["local"] == "10.98.2.2:4500"
        assert theirs.nat_local and theirs.local_port == "4500"
    before = _keepalives(natted)
    time.sleep(21 if role == OURS_INITIATOR else 5)
    assert _keepalives(natted) > before, "no NAT-T keepalive crossed the NAT"


def _keepalives(topo: Topology) -> int:
    """1-byte 0xFF UDP datagrams to 4500 forwarded by the NAT (RFC 3948 §2.3)."""
    assert topo.nat_ns is not None
    if "ikev2ka" not in nsexec(topo.nat_ns, "nft", "list", "tables").stdout:
        nft(
            topo.nat_ns,
            "table ip ikev2ka {\n  chain countka { type filter hook forward priority filter;\n"
            "    udp dport 4500 udp length 9 @th,64,8 0xff counter\n  }\n}\n",
        )
        return 0
    out = nsexec(topo.nat_ns, "nft", "list", "table", "ip", "ikev2ka").stdout
    m = re.search(r"packets (\d+)", out)
    return int(m.group(1)) if m else 0


# --- fragmentation -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_fragmentation(role: str, pair: Topology, peers: PeersFactory) -> None:
    """We authenticate with the RSA-4096 chain (root -> int1 -> int2 -> moon; we send three
    certificates), strongSwan with RSA-3072; strongSwan fragments at 576 bytes. IKE_AUTH must
    be fragmented in both directions (RFC 7383) and reassembled by both."""
    spec = Spec("frag", auth="rsa4096", extra_ss={"fragment_size": 576})
    p = peers(spec, pair, role)
    p.establish()
    p.check_children(expected=1)
    log = p.ss.log()
    assert re.search(r"splitting IKE message \(\d+ bytes\) into \d+ fragments", log)
    assert re.search(r"received fragment #\d+ of \d+, reassembled fragmented IKE message", log)


# --- failures ------------------------------------------------------------------------------------

FAILURES = {
    "wrong-psk": (
        Spec("wrong-psk", ours_psk="not-the-secret-strongswan-has-0123"),
        "AUTH_FAILED",
        r"AUTHENTICATION_FAILED|authentication failed",
    ),
    "no-common-proposal": (
        Spec(
            "no-proposal",
            ours_ike=("aes128-sha256-modp2048",),
            ss_ike=("aes256gcm16-prfsha384-ecp384",),
        ),
        "NO_PROP",
        r"NO_PROPOSAL_CHOSEN|no (acceptable|matching) proposal",
    ),
    "untrusted-certificate": (
        Spec("untrusted", auth="ecdsa", ss_trusts="untrusted"),
        "AUTH_FAILED",
        r"AUTHENTICATION_FAILED|authentication failed",
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("failure", list(FAILURES))
def test_failure(failure: str, role: str, pair: Topology, peers: PeersFactory) -> None:
    """Both sides report the right error; nothing stays installed on either side."""
    spec, ss_notify, ours_error = FAILURES[failure]
    p = peers(spec, pair, role)
    output = p.initiate_expecting_failure()
    ss_said = p.ss.sent(r"IKE_SA_INIT response", ss_notify) or p.ss.sent(
        "IKE_AUTH response", ss_notify
    )
    ss_heard = p.ss.received("IKE_SA_INIT response", ss_notify) or p.ss.received(
        "IKE_AUTH response", ss_notify
    )
    ss_heard = ss_heard or p.ss.received("INFORMATIONAL request", ss_notify)
    ss_said = ss_said or p.ss.sent("INFORMATIONAL request", ss_notify)
    assert ss_said or ss_heard, f"strongSwan neither sent nor got N({ss_notify}):\n{p.logs()}"
    deadline = time.monotonic() + 5  # strongSwan's INFORMATIONAL may still be on its way
    while True:
        ours_text = (output if role == OURS_INITIATOR else "") + p.ours.log()
        if re.search(ours_error, ours_text, re.IGNORECASE) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert re.search(ours_error, ours_text, re.IGNORECASE), f"ours did not report it:\n{p.logs()}"
    p.nothing_left()
    assert not [c for sa in p.ss.list_sas() for c in sa.children], "strongSwan kept a child"
    events = [e.get("event") for e in p.ours.log_events()]
    # a responder installs its child before the initiator has checked the responder's AUTH;
    # whatever we installed must be gone again
    assert events.count("child SA established") == events.count("child SA deleted"), events
