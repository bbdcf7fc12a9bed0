"""Post-quantum preshared keys (RFC 8784) against strongSwan 6.0.6, both roles.

strongSwan's swanctl.conf: connections.<conn>.ppk_id / ppk_required and secrets.ppk<suffix>
{ id, secret }; ours the same names in TOML (ikev2/config_ppk.py).

- `sw6_ppk_used`: both ends hold the PPK (required, and optional: then NO_PPK_AUTH rides along
  unused): strongSwan logs "using PPK", lists the IKE SA with the `ppk` condition, we list
  `"ppk": true`; the child keys (from the PPK's SK_d) equal strongSwan's, and strongSwan's
  SK_d/SK_pi/SK_pr after the PPK equal crypto.ppk.mix_ppk of its own keys before it.
- `sw6_ppk_required_mismatch`: one end requires a PPK, the other has none: no IKE SA, and the
  refusing side says why (§3: the initiator aborts without USE_PPK, a responder answers
  AUTHENTICATION_FAILED).
- `sw6_ppk_optional_fallback`: both optional but the responder lacks the initiator's PPK_ID: it
  verifies NO_PPK_AUTH and both go on without a PPK, keys equal.
- `sw6_ppk_ike_rekey`: the PPK IKE SA rekeyed with x25519 + ML-KEM-768 (one IKE_FOLLOWUP_KE,
  RFC 9370 §2.2.4): the new IKE SA's keys (from the PPK's SK_d, RFC 7296 §2.18) equal
  strongSwan's, the child moves over, and both still list the IKE SA as PPK.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.constants import PrfId
from ikev2.crypto.keymat import IkeKeys as OurIkeKeys
from ikev2.crypto.ppk import mix_ppk
from ikev2.testing import interop, strongswan
from ikev2.testing.gates import need
from ikev2.testing.interop import ROLES, Peers, PpkSpec, Spec
from ikev2.testing.keycompare import compare_ike
from ikev2.testing.strongswan import STRONGSWAN6, IkeKeys
from ikev2.testing.strongswan_log import log_dumps
from ikev2.testing.topology import Topology

pytestmark = [pytest.mark.interop, pytest.mark.sw6]

HYBRID = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
MOON = ("ppk-moon", "5f7a0c31" * 8)  # PPK_ID, 32 bytes hex
OTHER = ("ppk-other", "a5c3e1f0" * 8)


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


def ppk_spec(name: str, ours: PpkSpec | None, ss: PpkSpec | None) -> Spec:
    return Spec(name, ours_ike=(HYBRID,), ss_ike=(HYBRID,), ours_ppk=ours, ss_ppk=ss)


def ppk_derivation(log: str) -> dict[str, bytes]:
    """strongSwan's SK_d, SK_pi, SK_pr after "derive keys using PPK" (keymat_v2, ike level 4)."""
    out: dict[str, bytes] = {}
    after = False
    for dump in log_dumps(log):
        if dump.label.startswith("derive keys using PPK"):
            after, out = True, {}
        elif after and dump.label in ("Sk_d secret", "Sk_pi secret", "Sk_pr secret"):
            out[dump.label.split()[0].lower()] = dump.data
            after = len(out) < 3
    return out


def as_ours(keys: IkeKeys) -> OurIkeKeys:
    return OurIkeKeys(keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er,
                      keys.sk_pi, keys.sk_pr)  # fmt: skip


@pytest.mark.parametrize("policy", ["required", "optional"])
@pytest.mark.parametrize("role", ROLES)
def test_sw6_ppk_used(role: str, policy: str, pair: Topology, peers: Any) -> None:
    required = policy == "required"
    side = PpkSpec((MOON,), ppk_id=MOON[0], required=required)
    p = peers(ppk_spec(f"sw6-ppk-{policy}", side, side), pair, role)
    p.establish()
    log = p.ss.log()
    assert "using PPK for PPK_ID 'ppk-moon'" in log, p.logs()
    mine, theirs = p.ike_pair()
    assert mine["ppk"] is True and theirs.raw.get("ppk") == "yes", (mine, theirs.raw)
    # NO_PPK_AUTH from the initiator exactly when its PPK is optional (RFC 8784 §3)
    initiator_sent = r"generating IKE_AUTH request 2 \[[^\]]*N\(NO_PPK\)"
    parsed = r"parsed IKE_AUTH request 2 \[[^\]]*N\(NO_PPK\)"
    pattern = parsed if role == interop.OURS_INITIATOR else initiator_sent
    assert bool(re.search(pattern, log)) == (not required), p.ss.tail()
    p.check_children(expected=1)  # the child's KEYMAT came from the PPK's SK_d on both sides
    derivations = p.ss.ike_keys()
    assert compare_ike(p.ours.key_log(), derivations[-1], theirs.spi_i, theirs.spi_r) == []
    # strongSwan's keys after the PPK are RFC 8784 §3's prf+(PPK, SK_x') of its last
    # derivation before it (after the IKE_INTERMEDIATE key update)
    mixed = mix_ppk(PrfId.HMAC_SHA2_256, bytes.fromhex(MOON[1]), as_ours(derivations[-1]))
    logged = ppk_derivation(log)
    assert logged == {"sk_d": mixed.sk_d, "sk_pi": mixed.sk_pi, "sk_pr": mixed.sk_pr}


MISMATCH = {
    # one end requires the PPK, the other has none configured
    "ours-requires": (PpkSpec((MOON,), ppk_id=MOON[0], required=True), None),
    "ss-requires": (None, PpkSpec((MOON,), ppk_id=MOON[0], required=True)),
}
# what the refusing side logs, by (row, role)
OURS_I, OURS_R = interop.OURS_INITIATOR, interop.OURS_RESPONDER
NO_SUPPORT = "PPK required but peer does not support PPK"  # strongSwan's ike_auth.c
REFUSALS = {
    ("ours-requires", OURS_I): ("ours", "PPK required but the responder sent no USE_PPK"),
    ("ours-requires", OURS_R): ("ours", "PPK required but the initiator sent no USE_PPK"),
    ("ss-requires", OURS_I): ("ss", NO_SUPPORT),
    ("ss-requires", OURS_R): ("ss", NO_SUPPORT),
}


@pytest.mark.parametrize("row", list(MISMATCH))
@pytest.mark.parametrize("role", ROLES)
def test_sw6_ppk_required_mismatch(role: str, row: str, pair: Topology, peers: Any) -> None:
    ours, ss = MISMATCH[row]
    p = peers(ppk_spec(f"sw6-ppk-{row}", ours, ss), pair, role)
    p.initiate_expecting_failure()
    who, text = REFUSALS[(row, role)]
    log = p.ours.log() if who == "ours" else p.ss.log()
    assert text in log, p.logs()
    refused_in_auth = (row, role) in (("ours-requires", OURS_R), ("ss-requires", OURS_I))
    if refused_in_auth:  # the responder's answer to IKE_AUTH (RFC 8784 §3, RFC 7296 §2.21.2)
        assert re.search(r"IKE_AUTH response \d+ \[ N\(AUTH_FAILED\) \]", p.ss.log()), p.ss.tail()
        p.nothing_left()
        return
    # the initiator aborted after IKE_SA_INIT: no IKE_AUTH at all; the responder's half-open
    # IKE SA is left to its half-open timeout (RFC 7296 §2.6), never established
    assert not re.search(r"(generating|parsed) IKE_AUTH", p.ss.log()), p.ss.tail()
    p.ss.wait_for(lambda sas: not [s for s in sas if s.state == "ESTABLISHED"], timeout=10)
    ours = p.ours.list_sas()
    assert all(sa["state"] != "established" and not sa["children"] for sa in ours), ours


@pytest.mark.parametrize("role", ROLES)
def test_sw6_ppk_optional_fallback(role: str, pair: Topology, peers: Any) -> None:
    ours = PpkSpec((MOON,), ppk_id=MOON[0])
    # strongSwan holds only another PPK; as responder it names no ppk_id (else it refuses a
    # PPK_ID other than its own outright), as initiator it sends ppk-other
    ss_id = OTHER[0] if role == interop.OURS_RESPONDER else None
    p = peers(ppk_spec("sw6-ppk-fallback", ours, PpkSpec((OTHER,), ppk_id=ss_id)), pair, role)
    p.establish()
    mine, theirs = p.ike_pair()
    assert mine["ppk"] is False and "ppk" not in theirs.raw, (mine, theirs.raw)
    log = p.ss.log()
    assert "using PPK" not in log
    if role == interop.OURS_INITIATOR:
        assert "no PPK for 'ppk-moon' found, ignored because PPK is not required" in log
        assert "no PPK available, using NO_PPK_AUTH notify" in log
    else:
        assert "using NO_PPK_AUTH" in p.ours.log(), p.ours.tail()
    p.check_children(expected=1)
    derivations = p.ss.ike_keys()
    assert compare_ike(p.ours.key_log(), derivations[-1], theirs.spi_i, theirs.spi_r) == []


@pytest.mark.parametrize("role", ROLES)
def test_sw6_ppk_ike_rekey(role: str, pair: Topology, peers: Any) -> None:
    side = PpkSpec((MOON,), ppk_id=MOON[0], required=True)
    p = peers(ppk_spec("sw6-ppk-rekey", side, side), pair, role)
    p.establish()
    mine, _ = p.ike_pair()
    old = (mine["spi_i"], mine["spi_r"])
    (child,) = mine["children"]
    if role == interop.OURS_INITIATOR:
        done = p.ours.cli("rekey", str(mine["id"]))
        assert done.ok, done.output
    else:
        result = p.ss.rekey(ike=p.spec.name)
        assert result.ok, f"{result.output}\n{p.logs()}"
    p.ours.wait_for(lambda sas: len(sas) == 1 and (sas[0]["spi_i"], sas[0]["spi_r"]) != old
                    and sas[0]["state"].upper() == "ESTABLISHED", timeout=15)  # fmt: skip
    p.ss.wait_for(lambda sas: len(sas) == 1 and (sas[0].spi_i, sas[0].spi_r) != old, timeout=15)
    mine, theirs = p.ike_pair()
    assert mine["ppk"] is True and theirs.raw.get("dh-group") == "CURVE_25519", theirs.raw
    assert theirs.raw.get("ake1") == "ML_KEM_768", theirs.raw
    followups = r"(?:generating|parsed) IKE_FOLLOWUP_KE request (\d+) \[ KE N\(ADD_KE\)"
    assert len(set(re.findall(followups, p.ss.log()))) == 1, p.ss.tail()
    derivations = p.ss.ike_keys()
    assert compare_ike(p.ours.key_log(), derivations[-1], theirs.spi_i, theirs.spi_r) == []
    assert [c["spi_in"] for c in mine["children"]] == [child["spi_in"]]  # moved, not rekeyed
    p.check_children(expected=1)
