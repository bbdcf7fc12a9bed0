"""Site-to-site behaviour a strongSwan user relies on, against strongSwan 5.9.8 on the host
(issue 14): INITIAL_CONTACT and `unique`, and the certificate chain a CERTREQ asks for.

- initial_contact: strongSwan initiates, is killed (no Delete reaches us) and restarted; the
  fresh charon has no IKE SA with us, so its IKE_AUTH carries INITIAL_CONTACT, and our old IKE
  SA and its child must go (any `unique` but never), leaving exactly the new pair.
- certreq_chain: we hold the whole RSA-4096 chain, root included (a user's bundle); strongSwan
  sends a CERTREQ for the CA it trusts, and must receive the chain up to it and nothing more:
  int2 and int1 for the root, int2 alone for int1; never the root.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing.interop import (
    OURS_INITIATOR,
    OURS_RESPONDER,
    PKI,
    ROLES,
    Peers,
    Spec,
    SwanctlFiles,
    chain,
    ours_config,
    swanctl_config,
)
from ikev2.testing.topology import Topology

pytestmark = pytest.mark.interop

PeersFactory = Callable[..., Peers]
RSA4096 = PKI / "rsa4096"


def ours_tree(p: Peers, tmp: Path) -> dict[str, Any]:
    pos = p.pos
    return ours_config(
        p.spec, pos["ours_addr"], pos["ours_peer"], pos["ours_net"], pos["ss_net"],
        p.ours_initiates, tmp,
    )  # fmt: skip


def ss_files(p: Peers) -> SwanctlFiles:
    pos = p.pos
    return swanctl_config(
        p.spec, "sun", pos["ss_addr"], pos["ss_peer"], pos["ss_net"], pos["ours_net"],
        initiator=not p.ours_initiates,
    )  # fmt: skip


def spis(sa: dict[str, Any]) -> tuple[str, str]:
    return str(sa["spi_i"]).lower(), str(sa["spi_r"]).lower()


# --- INITIAL_CONTACT and unique ------------------------------------------------------------------


@pytest.mark.parametrize("role", [OURS_RESPONDER])
@pytest.mark.parametrize("unique", ["no", "replace", "never"])
def test_initial_contact(
    unique: str, role: str, pair: Topology, peers: PeersFactory, tmp_path: Path
) -> None:
    p = peers(Spec("s2s"), pair, role)
    tree = ours_tree(p, tmp_path / "ours-files")
    tree["connections"]["s2s"]["unique"] = unique
    p.ours.configure(tree)
    files = ss_files(p)  # the harness runs strongSwan with unique = never: no INITIAL_CONTACT
    files.conf["connections"]["s2s"]["unique"] = "no"  # type: ignore[index]
    p.ss.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)
    p.start()
    p.establish()
    old, _ = p.ike_pair()
    p.ss.kill()  # a crash: our IKE SA stays, strongSwan forgets it
    p.ss.start()
    p.ss.load()
    p.establish()
    assert p.ss.sent("IKE_AUTH request", "INIT_CONTACT"), "strongSwan sent no INITIAL_CONTACT"
    new = next(sa for sa in p.ss.list_sas() if sa.state == "ESTABLISHED")
    if unique == "never":  # INITIAL_CONTACT ignored: both stay
        ours = p.ours.wait_for(lambda sas: len(sas) == 2, 10)
        assert spis(old) in {spis(sa) for sa in ours}
        return
    p.ours.wait_for(lambda sas: len(sas) == 1, 10)
    mine, _ = p.ike_pair()  # exactly one on each side, the same SA
    assert spis(mine) == (new.spi_i, new.spi_r) != spis(old)
    p.check_children(expected=1)
    assert re.search(r"INITIAL_CONTACT", p.ours.log()), "our log does not say why"


@pytest.mark.parametrize("unique", ["replace", "no"])
def test_unique_of_strongswan_against_our_second_ike_sa(
    unique: str, pair: Topology, peers: PeersFactory, tmp_path: Path
) -> None:
    """The ours-initiator side of `unique`: our `up` of an established connection starts a
    second IKE SA of the same identities, without INITIAL_CONTACT (we still hold one with that
    peer). strongSwan with unique = replace deletes the old one (its Delete reaches us: one
    pair left, the new one); with unique = no both stay, on both sides."""
    p = peers(Spec("s2s"), pair, OURS_INITIATOR)
    files = ss_files(p)
    files.conf["connections"]["s2s"]["unique"] = unique  # type: ignore[index]
    p.ss.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)
    p.start()
    p.establish()
    old, _ = p.ike_pair()
    p.establish()
    contacts = re.findall(r"parsed IKE_AUTH request \d+ \[.*\bN\(INIT_CONTACT\)", p.ss.log())
    assert len(contacts) == 1, "the second IKE SA carried INITIAL_CONTACT too"  # the first did
    if unique == "no":
        theirs = p.ss.wait_for(lambda sas: len(sas) == 2, 10)
        ours = p.ours.wait_for(lambda sas: len(sas) == 2, 10)
        assert {spis(sa) for sa in ours} == {(sa.spi_i, sa.spi_r) for sa in theirs}
        return
    p.ss.wait_for(lambda sas: len(sas) == 1, 10)
    p.ours.wait_for(lambda sas: len(sas) == 1, 10)
    mine, theirs = p.ike_pair()
    assert spis(mine) == (theirs.spi_i, theirs.spi_r) != spis(old)
    p.check_children(expected=1)


def test_our_initial_contact_after_a_crash_replaces_strongswans_old_ike_sa(
    pair: Topology, peers: PeersFactory, tmp_path: Path
) -> None:
    """We initiate, are killed -9 (no Delete) and restarted: the fresh daemon holds no IKE SA
    with strongSwan, so its IKE_AUTH carries INITIAL_CONTACT, and strongSwan (unique = no, its
    default) drops the IKE SA and child it still had with us."""
    p = peers(Spec("s2s"), pair, OURS_INITIATOR)
    files = ss_files(p)
    files.conf["connections"]["s2s"]["unique"] = "no"  # type: ignore[index]
    p.ss.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)
    p.start()
    p.establish()
    _, old = p.ike_pair()
    p.ours.kill()
    p.ours.start()
    p.establish()
    assert p.ss.received("IKE_AUTH request", "INIT_CONTACT"), "we sent no INITIAL_CONTACT"
    p.ss.wait_for(lambda sas: len(sas) == 1, 10)
    mine, theirs = p.ike_pair()
    assert (theirs.spi_i, theirs.spi_r) != (old.spi_i, old.spi_r)
    assert spis(mine) == (theirs.spi_i, theirs.spi_r)
    p.check_children(expected=1)


# --- CERTREQ -------------------------------------------------------------------------------------

CHAIN_UP_TO = {
    "root": ["int2", "int1"],  # the chain up to the root, without it
    "int1": ["int2"],
}
ISSUER_CN = {
    "int2": "ikev2 test RSA-4096 Intermediate CA 2",
    "int1": "ikev2 test RSA-4096 Intermediate CA 1",
    "root": "ikev2 test RSA-4096 Root CA",
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("ss_trusts", ["root", "int1"])
def test_certreq_chain(
    ss_trusts: str, role: str, pair: Topology, peers: PeersFactory, tmp_path: Path
) -> None:
    spec = Spec("certreq", auth="rsa4096")
    p = peers(spec, pair, role)
    tree = ours_tree(p, tmp_path / "ours-files")
    moon = chain("rsa4096", "moon")
    everything = [moon.cert, *moon.intermediates, RSA4096 / "root.crt"]
    tree["connections"]["certreq"]["local"]["certs"] = [str(c) for c in everything]
    p.ours.configure(tree)
    files = ss_files(p)
    # strongSwan 5.9.8 ends every trust path at a self-signed CA ("no issuer certificate found"
    # for int1 alone), so with int1 it holds the root too: its CERTREQ names both, and we stop
    # at the first one up our chain
    anchors = [RSA4096 / f"{name}.crt" for name in dict.fromkeys((ss_trusts, "root"))]
    remote = files.conf["connections"]["certreq"]["remote"]  # type: ignore[index]
    remote["cacerts"] = [a.name for a in anchors]  # type: ignore[index]
    p.ss.configure(files.conf, certs=files.certs, cacerts=anchors, keys=files.keys)
    p.start()
    p.establish()
    log = p.ss.log()
    assert re.search(rf'sending cert request for ".*CN={re.escape(ISSUER_CN[ss_trusts])}"', log)
    received = re.findall(r'received issuer cert ".*?CN=([^,"]+)', log)
    assert received == [ISSUER_CN[n] for n in CHAIN_UP_TO[ss_trusts]], received
    assert re.search(r'received end entity cert ".*CN=moon\.ikev2\.test', log)
    p.check_children(expected=1)
