"""strongSwan 6.0.6 as a test peer (issue 15): built from source into .cache
(ikev2.testing.strongswan_build, `.ci/strongswan6.sh`) and run by the same harness as Debian's
5.9.8 (strongswan.STRONGSWAN6): strongSwan with kernel-libipsec, ours with the in-memory kernel,
every child's SPIs and keys and the IKE SA's keys compared with strongSwan's log.

- `sw6_classic`: our daemon against strongSwan 6 with the classic proposal (x25519, PSK),
  both roles.
- `sw6_harness_hybrid`: strongSwan 6 against strongSwan 6 with
  aes256gcm16-prfsha256-x25519-ke1_mlkem768: the harness itself runs the post-quantum hybrid
  (IKE_INTERMEDIATE, RFC 9242, carrying the ML-KEM-768 share as ADDKE1, RFC 9370).
- `sw6_harness_hybrid_to_debian_598`: 6.0.6 offering hybrid-then-classic to Debian's 5.9.8.
- `sw6_hybrid`: ours against strongSwan 6, both roles: x25519+mlkem768 and
  ecp256+mlkem768+mlkem1024 (one and two IKE_INTERMEDIATE exchanges, the ML-KEM shares in IKE
  fragments), ML-KEM-768 alone in IKE_SA_INIT, and the fallback to the classic suite when only
  one side offers the hybrid (as a second proposal, or as an optional ADDKE1 with `ke1_none`).
  Child keys are compared as in the 5.9.8 matrix, and the IKE keys must equal strongSwan's
  last derivation (after every additional key exchange, RFC 9370 §2.2.2).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import interop, strongswan
from ikev2.testing.gates import need
from ikev2.testing.interop import ROLES, Peers, Spec
from ikev2.testing.keycompare import compare_ike
from ikev2.testing.strongswan import STRONGSWAN6, Charon
from ikev2.testing.topology import Topology

pytestmark = [pytest.mark.interop, pytest.mark.sw6]

CLASSIC = "aes256gcm16-prfsha256-x25519"
HYBRID = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"


@pytest.fixture(autouse=True)
def sw6_gate() -> None:
    need(strongswan.missing6() is None, strongswan.missing6() or "")


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Any]:
    made: list[Peers] = []

    def make(spec: Spec, topo: Topology, role: str) -> Peers:
        p = Peers(spec, topo, role, tmp_path / f"run{len(made)}", install=STRONGSWAN6)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.stop()


def selected_ike(charon: Charon) -> str:
    """The last IKE proposal charon logged as selected, e.g. AES_GCM_16_256/.../CURVE_25519."""
    lines = [ln for ln in charon.log().splitlines() if "selected proposal: IKE:" in ln]
    assert lines, f"charon logged no selected IKE proposal:\n{charon.tail()}"
    return lines[-1].split("selected proposal: IKE:", 1)[1].strip()


def assert_strongswan6(charon: Charon) -> None:
    """The charon that ran is the 6.0.6 build, not Debian's 5.9.8."""
    assert re.search(r"Starting IKE charon daemon \(strongSwan 6\.0\.6\b", charon.log()), (
        charon.tail()
    )


@pytest.mark.parametrize("role", ROLES)
def test_sw6_classic(role: str, pair: Topology, peers: Any) -> None:
    spec = Spec("sw6-classic", ours_ike=(CLASSIC,), ss_ike=(CLASSIC,))
    p = peers(spec, pair, role)
    p.establish()
    assert_strongswan6(p.ss)
    assert selected_ike(p.ss) == "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519"
    assert "IKE_INTERMEDIATE" not in p.ss.log()  # classic: IKE_SA_INIT's KE is all there is
    _, theirs = p.ike_pair()
    assert theirs.raw.get("dh-group") == "CURVE_25519" and "ake1" not in theirs.raw
    p.check_children(expected=1)


# --- the harness itself: strongSwan 6 <-> strongSwan 6, hybrid ---------------------------------

HYBRID2 = "aes256gcm16-prfsha256-ecp256-ke1_mlkem768-ke2_mlkem1024"
MLKEM_ONLY = "aes256gcm16-prfsha256-mlkem768"
OPTIONAL = "aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke1_none"


@dataclass(frozen=True)
class HarnessRow:
    name: str
    proposal: str
    suite: str  # what both charons log as the selected IKE proposal
    methods: tuple[str, ...]  # how swanctl lists the key exchanges: dh-group, ake1...


HARNESS_HYBRIDS = [
    HarnessRow(
        "x25519-mlkem768",
        HYBRID,
        "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519/KE1_ML_KEM_768",
        ("CURVE_25519", "ML_KEM_768"),
    ),
    HarnessRow(
        "ecp256-mlkem768-mlkem1024",
        HYBRID2,
        "AES_GCM_16_256/PRF_HMAC_SHA2_256/ECP_256/KE1_ML_KEM_768/KE2_ML_KEM_1024",
        ("ECP_256", "ML_KEM_768", "ML_KEM_1024"),
    ),
]


def start_pair(
    spec: Spec, topo: Topology, tmp: Path, made: list[Charon],
    moon_install: strongswan.Install = STRONGSWAN6,
    sun_install: strongswan.Install = STRONGSWAN6,
) -> tuple[Charon, Charon]:  # fmt: skip
    """moon (left, initiator) and sun (right, responder), both strongSwan (6 by default)."""
    moon = Charon(topo.left.ns, tmp / "moon", install=moon_install)
    sun = Charon(topo.right.ns, tmp / "sun", install=sun_install)
    made += [moon, sun]
    for charon, who, local, remote, lnet, rnet, init in (
        (moon, "moon", topo.left.addr, topo.right.addr, interop.LEFT_NET, interop.RIGHT_NET, True),
        (sun, "sun", topo.right.addr, topo.public_left, interop.RIGHT_NET, interop.LEFT_NET, False),
    ):
        files = interop.swanctl_config(
            spec, who, local, remote, lnet, rnet, init, is_ours_side=(who == "moon")
        )
        charon.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)
        charon.start()
        charon.load()
    return moon, sun


def ke_listing(sa: strongswan.IkeSaInfo) -> tuple[str, ...]:
    """The key exchanges swanctl lists for an IKE SA: dh-group, then ake1..ake7 present."""
    names = ["dh-group", *(f"ake{i}" for i in range(1, 8))]
    return tuple(str(sa.raw[n]) for n in names if n in sa.raw)


@pytest.mark.parametrize("row", HARNESS_HYBRIDS, ids=lambda r: r.name)
def test_sw6_harness_hybrid(
    row: HarnessRow, pair: Topology, tmp_path: Path, charons: list[Charon]
) -> None:
    methods = row.methods
    spec = Spec("sw6-hybrid", ours_ike=(row.proposal,), ss_ike=(row.proposal,))
    moon, sun = start_pair(spec, pair, tmp_path, charons)
    result = moon.initiate(child="net")
    assert result.ok, f"{result.output}\n{sun.tail()}"
    assert_strongswan6(moon)
    assert_strongswan6(sun)
    (m_sa,) = moon.list_sas()
    (s_sa,) = sun.list_sas()
    assert m_sa.state == s_sa.state == "ESTABLISHED"
    assert (m_sa.spi_i, m_sa.spi_r) == (s_sa.spi_i, s_sa.spi_r)
    assert ke_listing(m_sa) == ke_listing(s_sa) == methods
    assert selected_ike(moon) == selected_ike(sun) == row.suite
    # one IKE_INTERMEDIATE per additional key exchange after IKE_SA_INIT (RFC 9370 §2.2.1),
    # each ML-KEM share in 2 IKE fragments (RFC 7383; the message exceeds 1280 bytes)
    addkes = len(methods) - 1
    requests = re.findall(r"generating IKE_INTERMEDIATE request (\d+) \[ KE \]", moon.log())
    assert requests == [str(n) for n in range(1, addkes + 1)], requests
    splits = re.findall(r"splitting IKE message \((\d+) bytes\) into (\d+) fragments", moon.log())
    assert len(splits) == addkes and all(int(n) >= 2 for _, n in splits), splits
    assert re.findall(r"parsed IKE_INTERMEDIATE response (\d+) \[ KE \]", moon.log()) == requests
    # both derived the same keys: the IKE SA's final ones (one derivation in IKE_SA_INIT and one
    # after each additional key exchange, RFC 9370 §2.2.2) and the child's
    m_ike, s_ike = moon.ike_keys(), sun.ike_keys()
    assert len(m_ike) == len(s_ike) == 1 + addkes, (len(m_ike), len(s_ike))
    assert m_ike[-1].sk_d == s_ike[-1].sk_d and m_ike[-1].sk_ei == s_ike[-1].sk_ei
    assert m_ike[-1].sk_pr == s_ike[-1].sk_pr
    assert len({k.sk_d for k in m_ike}) == 1 + addkes  # every key update changed SK_d
    (m_keys,) = moon.child_keys()
    (s_keys,) = sun.child_keys()
    assert m_keys.by_spi(True) == s_keys.by_spi(False)
    (m_child,) = m_sa.installed_children
    (s_child,) = s_sa.installed_children
    assert (m_child.spi_in, m_child.spi_out) == (s_child.spi_out, s_child.spi_in)
    moon.terminate(ike=spec.name)
    sun.wait_for(lambda sas: not sas, timeout=5)


def test_sw6_harness_hybrid_to_debian_598(
    pair: Topology, tmp_path: Path, charons: list[Charon]
) -> None:
    """strongSwan 6 offering the hybrid first, then the classic proposal, to Debian's 5.9.8
    (which has no RFC 9370): 5.9.8 skips the proposal with the ADDKE transform and takes the
    classic one, so 5.9.8 is a ready peer without RFC 9370 for fallback rows."""
    spec = Spec("sw6-to-598", ours_ike=(HYBRID, CLASSIC), ss_ike=(CLASSIC,))
    moon, sun = start_pair(spec, pair, tmp_path, charons, sun_install=strongswan.DEBIAN)
    result = moon.initiate(child="net")
    assert result.ok, f"{result.output}\n{sun.tail()}"
    assert_strongswan6(moon)
    assert "Starting IKE charon daemon (strongSwan 5.9.8" in sun.log()
    (m_sa,) = moon.list_sas()
    (s_sa,) = sun.list_sas()
    assert m_sa.state == s_sa.state == "ESTABLISHED"
    assert ke_listing(m_sa) == ke_listing(s_sa) == ("CURVE_25519",)
    assert selected_ike(moon) == selected_ike(sun) == "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519"
    assert "IKE_INTERMEDIATE" not in moon.log() + sun.log()
    (m_ike,) = moon.ike_keys()
    (s_ike,) = sun.ike_keys()
    assert (m_ike.sk_d, m_ike.sk_ei, m_ike.sk_pr) == (s_ike.sk_d, s_ike.sk_ei, s_ike.sk_pr)


# --- ours vs strongSwan 6: the hybrid (RFC 9370 over RFC 9242) and the fallback ----------------


@dataclass(frozen=True)
class Row:
    name: str
    ours: tuple[str, ...]  # our IKE proposals
    ss: tuple[str, ...]  # strongSwan's
    suite: str  # what strongSwan must log as selected
    xfail: Mapping[str, str] = field(default_factory=dict)  # role -> known engine gap

    @property
    def intermediates(self) -> int:
        """IKE_INTERMEDIATE exchanges expected: one per additional key exchange chosen."""
        return sum(part.startswith("KE") for part in self.suite.split("/"))

    @property
    def methods(self) -> tuple[str, ...]:
        """How swanctl lists the chosen key exchanges (dh-group, ake1, ...)."""
        return tuple(m.split("_", 1)[1] if m.startswith("KE") else m
                     for m in self.suite.split("/")[2:])  # fmt: skip


CLASSIC_SUITE = "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519"
HYBRID_ROWS = [
    Row("x25519-mlkem768", (HYBRID,), (HYBRID,), f"{CLASSIC_SUITE}/KE1_ML_KEM_768"),
    Row(
        "ecp256-mlkem768-mlkem1024",
        (HYBRID2,),
        (HYBRID2,),
        "AES_GCM_16_256/PRF_HMAC_SHA2_256/ECP_256/KE1_ML_KEM_768/KE2_ML_KEM_1024",
    ),
    # ML-KEM-768 as the only key exchange, in IKE_SA_INIT itself (the KEM path of issue 15's
    # first bug: a responder must encapsulate, not decapsulate)
    Row(
        "mlkem768-in-ike-sa-init",
        (MLKEM_ONLY,),
        (MLKEM_ONLY,),
        "AES_GCM_16_256/PRF_HMAC_SHA2_256/ML_KEM_768",
    ),
    # fallback: one side offers the hybrid first and the classic proposal second (our default
    # shape), the other knows only the classic one; both must agree on the classic suite with
    # no IKE_INTERMEDIATE at all (no ADDKE negotiated, RFC 9370 §2.2.1)
    Row("fallback-ss-offers-hybrid", (CLASSIC,), (HYBRID, CLASSIC), CLASSIC_SUITE),
    Row("fallback-ours-offers-hybrid", (HYBRID, CLASSIC), (CLASSIC,), CLASSIC_SUITE),
    # one proposal whose ADDKE1 is optional (ke1_none, RFC 9370 §2.2.1) against a classic-only
    # peer: NONE is chosen, no IKE_INTERMEDIATE
    Row("optional-addke-ss", (CLASSIC,), (OPTIONAL,), CLASSIC_SUITE),
    # strongSwan 6 as responder picks NONE by omitting ADDKE1 from its answer (its proposal.c
    # does so on purpose): the omission reads as NONE (engine/proposals.py check_selected)
    Row("optional-addke-ours", (OPTIONAL,), (CLASSIC,), CLASSIC_SUITE),
]


def _hybrid_params() -> list[Any]:
    out = []
    for row in HYBRID_ROWS:
        for role in ROLES:
            reason = row.xfail.get(role)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(row, role, marks=marks, id=f"{row.name}-{role}"))
    return out


@pytest.mark.parametrize(("row", "role"), _hybrid_params())
def test_sw6_hybrid(row: Row, role: str, pair: Topology, peers: Any) -> None:
    p = peers(Spec(row.name, ours_ike=row.ours, ss_ike=row.ss), pair, role)
    p.establish()
    assert_strongswan6(p.ss)
    assert selected_ike(p.ss) == row.suite
    _, theirs = p.ike_pair()
    assert ke_listing(theirs) == row.methods
    # one IKE_INTERMEDIATE request (its KE, or the fragments of it) per additional key exchange
    requests = re.findall(
        r"(?:generating|parsed) IKE_INTERMEDIATE request (\d+) \[ (?:KE|EF)", p.ss.log()
    )
    assert sorted(set(requests)) == [str(n) for n in range(1, row.intermediates + 1)], requests
    p.check_children(expected=1)
    # the IKE SA's keys are those of strongSwan's LAST derivation, after every ADDKE's key
    # update (RFC 9370 §2.2.2), not an earlier one
    derivations = p.ss.ike_keys()
    assert len(derivations) == 1 + row.intermediates, len(derivations)
    last = compare_ike(p.ours.key_log(), derivations[-1], theirs.spi_i, theirs.spi_r)
    assert last == [], last


# --- rekeying with additional key exchanges: IKE_FOLLOWUP_KE (RFC 9370 §2.2.4) ----------------
# The rekeying side is `role`'s, as in the 5.9.8 matrix (tests/interop/test_matrix.py):
# ours-initiator: our daemon rekeys (and initiates the IKE_FOLLOWUP_KE), ours-responder:
# strongSwan does, so our engine runs each follow-up exchange once in each role.

PFS_CHILD = "aes256gcm16-x25519-ke1_mlkem768"


def _followups(charon: Charon) -> list[str]:
    """strongSwan's whole IKE_FOLLOWUP_KE requests (generated or parsed, reassembled from
    IKE fragments: RFC 7383, an ML-KEM-768 share exceeds 1280 bytes), by message ID."""
    pattern = r"(?:generating|parsed) IKE_FOLLOWUP_KE request (\d+) \[ KE N\(ADD_KE\)"
    return re.findall(pattern, charon.log())


def _rekeyed(p: Peers, role: str, *, ike: bool) -> tuple[str, ...]:
    """`role`'s rekeying side rekeys the IKE SA (ike=True) or the one child; waits until both
    sides hold just the new one. Returns the old SPIs (IKE: spi_i, spi_r; child: spi_in)."""
    mine, _ = p.ike_pair()
    (old_child,) = mine["children"]
    old = (mine["spi_i"], mine["spi_r"]) if ike else (old_child["spi_in"],)
    if role == interop.OURS_INITIATOR:
        args = ("rekey", str(mine["id"])) if ike else ("rekey", str(mine["id"]), "--child", old[0])
        done = p.ours.cli(*args)
        assert done.ok, done.output
    else:
        result = p.ss.rekey(ike=p.spec.name) if ike else p.ss.rekey(child="net")
        assert result.ok, f"{result.output}\n{p.logs()}"
    if ike:
        p.ours.wait_for(lambda sas: len(sas) == 1 and (sas[0]["spi_i"], sas[0]["spi_r"]) != old
                        and sas[0]["state"].upper() == "ESTABLISHED", timeout=15)  # fmt: skip
        p.ss.wait_for(lambda sas: len(sas) == 1, timeout=15)
    else:
        p.ours.wait_for(lambda sas: bool(sas) and [c["spi_in"] for c in sas[0]["children"]]
                        not in ([], list(old)), timeout=15)  # fmt: skip
        p.ss.wait_for(lambda sas: len(sas[0].installed_children) == 1, timeout=15)
    return old


@pytest.mark.parametrize("role", ROLES)
def test_sw6_child_rekey_pfs_followup(role: str, pair: Topology, peers: Any) -> None:
    """A child rekeyed with PFS x25519 + ADDKE1 ML-KEM-768: CREATE_CHILD_SA carries the X25519
    share, one IKE_FOLLOWUP_KE the ML-KEM-768 one (RFC 9370 §2.2.4); both sides derive the
    same KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1)) (§2.2.4) and the IKE SA stays."""
    child = interop.ChildSpec(ours_proposals=(PFS_CHILD,), ss_proposals=(PFS_CHILD,))
    spec = Spec("sw6-child-pfs", ours_ike=(HYBRID,), ss_ike=(HYBRID,), children=(child,))
    p = peers(spec, pair, role)
    p.establish()
    assert_strongswan6(p.ss)
    assert _followups(p.ss) == []  # the IKE_AUTH child has no key exchange (RFC 7296 §1.2)
    (old_in,) = _rekeyed(p, role, ike=False)
    ((mine, _),) = p.check_children(expected=1)  # new SPIs, keys equal strongSwan's
    assert mine["spi_in"] != old_in
    assert len(_followups(p.ss)) == 1, p.ss.tail()
    assert re.search(
        r"selected proposal: ESP:AES_GCM_16_256/CURVE_25519/NO_EXT_SEQ/KE1_ML_KEM_768", p.ss.log()
    ), p.ss.tail()
    (sa,) = p.ss.list_sas()
    (installed,) = sa.installed_children
    assert installed.raw.get("dh-group") == "CURVE_25519", installed.raw
    assert installed.raw.get("ake1") == "ML_KEM_768", installed.raw


@pytest.mark.parametrize("role", ROLES)
def test_sw6_ike_rekey_hybrid_followup(role: str, pair: Topology, peers: Any) -> None:
    """The IKE SA of x25519+ML-KEM-768 rekeyed: CREATE_CHILD_SA with the X25519 share, then
    one IKE_FOLLOWUP_KE with ML-KEM-768 (RFC 9370 §2.2.4); the new SA's keys are
    SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1)) on both sides, the child moves over."""
    p = peers(Spec("sw6-ike-rekey", ours_ike=(HYBRID,), ss_ike=(HYBRID,)), pair, role)
    p.establish()
    assert_strongswan6(p.ss)
    before = len(p.ss.ike_keys())
    old = _rekeyed(p, role, ike=True)
    mine, theirs = p.ike_pair()
    assert (mine["spi_i"], mine["spi_r"]) != old
    assert ke_listing(theirs) == ("CURVE_25519", "ML_KEM_768"), theirs.raw
    assert len(_followups(p.ss)) == 1, p.ss.tail()
    # strongSwan derives the new SA's keys once, after the follow-up key exchange, and ours
    # equal that derivation (the one before it was the old SA's)
    derivations = p.ss.ike_keys()
    assert len(derivations) == before + 1, (before, len(derivations))
    last = compare_ike(p.ours.key_log(), derivations[-1], theirs.spi_i, theirs.spi_r)
    assert last == [], last
    p.check_children(expected=1)  # the child moved to the new IKE SA, keys unchanged
