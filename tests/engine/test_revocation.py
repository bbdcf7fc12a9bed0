"""Revocation (engine/revocation.py, tasks/revocation_wait.py): CRLs from files and fetched,
OCSP answers, strongSwan's strict / ifuri / relaxed, both roles.

moon initiates to sun; each checks the other's certificate. A revoked certificate ends IKE_AUTH
with AUTHENTICATION_FAILED (RFC 7296 §2.21.2) and no child on either side. Fetches are answered
by the test as the service would (Engine.revocation_fetched), counted per URI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography.x509 import ocsp

from ikev2.constants import NotifyType
from ikev2.engine.config import AuthMethodName, Credentials, RevocationPolicy
from ikev2.engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
)
from ikev2.engine.identity import parse_identity
from ikev2.engine.revocation import RevocationFetch
from ikev2.testing.revocation_pki import Issued, make_ca, make_crl, make_leaf, ocsp_answer

from .pairing import FIXED_NOW, Pair, Side, psk_connections

CRL_URI = "http://192.0.2.80/ca.crl"
OCSP_URI = "http://192.0.2.80/ocsp"
GOOD, REVOKED = ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca()


def pair(
    ca: Issued,
    moon: Issued,
    sun: Issued,
    *,
    policy_i: RevocationPolicy = RevocationPolicy.RELAXED,
    policy_r: RevocationPolicy = RevocationPolicy.RELAXED,
    crls_i: tuple[bytes, ...] = (),
    crls_r: tuple[bytes, ...] = (),
    fetching: bool = False,
    sun_chain: tuple[Issued, ...] = (),
) -> Pair:
    conn_i, conn_r = psk_connections()
    moon_id, sun_id = parse_identity("moon.ikev2.test"), parse_identity("sun.ikev2.test")

    def own(who: Issued, chain: tuple[Issued, ...] = ()) -> Credentials:
        certs = (who.der, *(c.der for c in chain))
        return Credentials(AuthMethodName.PUBKEY, certs=certs, private_key=who.key)

    def peer(policy: RevocationPolicy, crls: tuple[bytes, ...]) -> Credentials:
        return Credentials(
            AuthMethodName.PUBKEY, trust_anchors=(ca.der,), revocation=policy, crls=crls
        )

    conn_i = replace(conn_i, local_id=moon_id, remote_id=sun_id, local_auth=own(moon),
                     remote_auth=peer(policy_i, crls_i), fragmentation=False)  # fmt: skip
    conn_r = replace(conn_r, local_id=sun_id, remote_id=moon_id, local_auth=own(sun, sun_chain),
                     remote_auth=peer(policy_r, crls_r), fragmentation=False)  # fmt: skip
    p = Pair(conn_i, conn_r)
    p.i.engine.revocation.fetching = p.r.engine.revocation.fetching = fetching
    return p


class Fetcher:
    """The service's part: answer each RevocationFetch from `answers` (uri -> bytes | None,
    or a callable of the request), counting requests per URI and side."""

    def __init__(
        self, answers: dict[str, bytes | Callable[[RevocationFetch], bytes | None] | None]
    ) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []
        self.seen = {"i": 0, "r": 0}

    def run(self, p: Pair, until: float = 120.0) -> None:
        for _ in range(20_000):
            for name, side in (("i", p.i), ("r", p.r)):
                self._answer(p, name, side)
            p._collect()
            timers = [t for t in (p.i.engine.get_timer(), p.r.engine.get_timer()) if t]
            if not p.in_flight and (not timers or min(timers) > until):
                return
            if not p.step():
                return
        raise AssertionError("pair did not settle")

    def run_after(self, p: Pair) -> None:
        p.initiate()
        self.run(p)

    def _answer(self, p: Pair, name: str, side: Side) -> None:
        while self.seen[name] < len(side.events):
            event = side.events[self.seen[name]]
            self.seen[name] += 1
            if isinstance(event, RevocationFetch):
                self.asked.append((name, event.uri))
                answer = self.answers.get(event.uri)
                data = answer(event) if callable(answer) else answer
                side.events += side.engine.revocation_fetched(event, data, p.now)


def outcome(p: Pair) -> tuple[bool, bool, list[NotifyType | None]]:
    """(both IKE SAs up, any child installed, the failure notifies)."""
    up = bool(p.i.of(IkeSaEstablished)) and bool(p.r.of(IkeSaEstablished))
    children = bool(p.i.of(ChildSaEstablished) or p.r.of(ChildSaEstablished))
    fails = [e.notify for e in p.i.of(IkeSaFailed) + p.r.of(IkeSaFailed)]
    return up, children, fails


def assert_auth_failed(p: Pair, side: str, reason: str) -> None:
    """`side` refused the peer: it installed nothing. A responder refused by the initiator
    (§2.21.2: told in an INFORMATIONAL) had installed its child and deletes it again."""
    checker, other = (p.i, p.r) if side == "i" else (p.r, p.i)
    assert not checker.of(IkeSaEstablished) and not checker.of(ChildSaEstablished)
    assert len(other.of(ChildSaEstablished)) == len(other.of(ChildSaDeleted))
    assert not any(sa.children for sa in other.engine.sas.values())
    assert NotifyType.AUTHENTICATION_FAILED in outcome(p)[2] or other.of(IkeSaDeleted)
    failed = checker.of(IkeSaFailed)
    assert failed and reason in failed[0].reason, failed
    assert failed[0].notify is NotifyType.AUTHENTICATION_FAILED


# --------------------------------------------------------------------------- CRL files


def test_unrevoked_with_a_crl_file_both_roles(ca: Issued) -> None:
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test")
    crl = make_crl(ca, ())
    p = pair(ca, moon, sun, policy_i=RevocationPolicy.STRICT, policy_r=RevocationPolicy.STRICT,
             crls_i=(crl,), crls_r=(crl,))  # fmt: skip
    p.initiate()
    p.run()
    up, children, _ = outcome(p)
    assert up and children


@pytest.mark.parametrize("revoked", ["sun", "moon"])
def test_revoked_by_crl_file_fails_auth(ca: Issued, revoked: str) -> None:
    """The responder's certificate revoked: the initiator refuses it; the initiator's: the
    responder answers AUTHENTICATION_FAILED. Relaxed: a known revocation fails every policy."""
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test")
    crl = make_crl(ca, ((sun if revoked == "sun" else moon).cert,))
    p = pair(ca, moon, sun, crls_i=(crl,), crls_r=(crl,))
    p.initiate()
    p.run()
    assert_auth_failed(p, "i" if revoked == "sun" else "r", "certificate revoked")


def test_crl_of_another_signer_or_stale_is_not_used(ca: Issued) -> None:
    """A CRL not signed by the issuer, or past its nextUpdate (RFC 5280 §6.3.3), says nothing:
    it cannot revoke (relaxed passes) and cannot vouch (strict fails)."""
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test")
    forged = make_crl(ca, (sun.cert,), signer=make_ca("Other CA"))
    stale = make_crl(ca, (sun.cert,), next_update=FIXED_NOW.replace(year=2026))
    p = pair(ca, moon, sun, crls_i=(forged, stale))
    p.initiate()
    p.run()
    assert outcome(p)[0]
    p = pair(ca, moon, sun, crls_i=(forged, stale), policy_i=RevocationPolicy.STRICT)
    p.initiate()
    p.run()
    assert_auth_failed(p, "i", "revocation status unknown (strict)")


# --------------------------------------------------------------------------- policies


@pytest.mark.parametrize(
    ("policy", "with_uri", "passes"),
    [
        (RevocationPolicy.RELAXED, False, True),
        (RevocationPolicy.RELAXED, True, True),
        (RevocationPolicy.IFURI, False, True),
        (RevocationPolicy.IFURI, True, False),
        (RevocationPolicy.STRICT, False, False),
        (RevocationPolicy.STRICT, True, False),
    ],
)
def test_policies_without_status(
    ca: Issued, policy: RevocationPolicy, with_uri: bool, passes: bool
) -> None:
    """No status could be had (the fetch failed): strict fails always, ifuri only when the
    certificate names a URI, relaxed never."""
    moon = make_leaf(ca, "moon.ikev2.test")
    sun = make_leaf(ca, "sun.ikev2.test", crl_uri=CRL_URI if with_uri else None)
    p = pair(ca, moon, sun, policy_i=policy, fetching=True)
    fetcher = Fetcher({CRL_URI: None})
    p.initiate()
    fetcher.run(p)
    assert fetcher.asked == ([("i", CRL_URI)] if with_uri else [])
    if passes:
        assert outcome(p)[:2] == (True, True)
    else:
        assert_auth_failed(p, "i", f"({policy.value})")


# --------------------------------------------------------------------------- fetched CRLs


@pytest.mark.parametrize("revoked", [False, True])
def test_fetched_crl_initiator_checks_responder(ca: Issued, revoked: bool) -> None:
    """The initiator holds sun's IKE_AUTH answer, asks once, and on the answer resends its
    request (sun replays its answer): no retransmit timeout is waited for."""
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test", crl_uri=CRL_URI)
    crl = make_crl(ca, (sun.cert,) if revoked else ())
    p = pair(ca, moon, sun, policy_i=RevocationPolicy.STRICT, fetching=True)
    fetcher = Fetcher({CRL_URI: crl})
    p.initiate()
    fetcher.run(p, until=1.0)  # all before the first retransmit (4 s)
    assert fetcher.asked == [("i", CRL_URI)]
    if revoked:
        assert_auth_failed(p, "i", "certificate revoked")
    else:
        assert outcome(p)[:2] == (True, True)


@pytest.mark.parametrize("revoked", [False, True])
def test_fetched_crl_responder_checks_initiator(ca: Issued, revoked: bool) -> None:
    """The responder holds the IKE_AUTH request until the CRL is in, then answers it at once:
    before the initiator's first retransmission (4 s)."""
    moon, sun = make_leaf(ca, "moon.ikev2.test", crl_uri=CRL_URI), make_leaf(ca, "sun.ikev2.test")
    crl = make_crl(ca, (moon.cert,) if revoked else ())
    p = pair(ca, moon, sun, policy_r=RevocationPolicy.STRICT, fetching=True)
    fetcher = Fetcher({CRL_URI: crl})
    p.initiate()
    fetcher.run(p, until=1.0)
    assert fetcher.asked == [("r", CRL_URI)]
    if revoked:
        assert_auth_failed(p, "r", "certificate revoked")
    else:
        assert outcome(p)[:2] == (True, True)


def test_fetched_crl_is_reused(ca: Issued) -> None:
    """A second IKE SA of the same peer needs no second fetch (the CRL is current)."""
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test", crl_uri=CRL_URI)
    p = pair(ca, moon, sun, policy_i=RevocationPolicy.STRICT, fetching=True)
    fetcher = Fetcher({CRL_URI: make_crl(ca, ())})
    p.initiate()
    fetcher.run(p, until=10)
    p.initiate()
    fetcher.run(p, until=20)
    assert fetcher.asked == [("i", CRL_URI)]
    assert len(p.i.of(IkeSaEstablished)) == 2


def test_a_retransmitted_request_is_held_too_and_answered_once(ca: Issued) -> None:
    """The fetch takes longer than the initiator's first retransmit: the retransmission is
    held as well (no second fetch), and once the CRL is in exactly one answer goes out."""
    moon, sun = make_leaf(ca, "moon.ikev2.test", crl_uri=CRL_URI), make_leaf(ca, "sun.ikev2.test")
    p = pair(ca, moon, sun, policy_r=RevocationPolicy.STRICT, fetching=True)
    p.initiate()
    p.run(until=5.0)  # nobody answers the fetch yet; the initiator retransmitted at 4 s
    [fetch] = p.r.of(RevocationFetch)
    assert not p.r.of(IkeSaEstablished) and p.i.engine.sas
    sent_before = p.delivered
    p.r.events += p.r.engine.revocation_fetched(fetch, make_crl(ca, ()), p.now)
    p.run(until=6.0)
    assert outcome(p)[:2] == (True, True)
    assert len(p.r.of(RevocationFetch)) == 1
    assert p.delivered - sent_before == 1  # one IKE_AUTH answer, nothing retransmitted


def test_unanswered_fetch_times_out_as_unknown(ca: Issued) -> None:
    """A service that never answers: after FETCH_TIMEOUT the status counts as unavailable, and
    the initiator's retransmission is answered with AUTHENTICATION_FAILED (ifuri)."""
    moon, sun = make_leaf(ca, "moon.ikev2.test", crl_uri=CRL_URI), make_leaf(ca, "sun.ikev2.test")
    p = pair(ca, moon, sun, policy_r=RevocationPolicy.IFURI, fetching=True)
    p.initiate()
    p.run(until=120)
    fetches = p.r.of(RevocationFetch)
    assert [f.uri for f in fetches] == [CRL_URI]
    assert_auth_failed(p, "r", "(ifuri)")


def test_garbage_answer_counts_as_failed(ca: Issued) -> None:
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test", crl_uri=CRL_URI)
    p = pair(ca, moon, sun, policy_i=RevocationPolicy.IFURI, fetching=True)
    fetcher = Fetcher({CRL_URI: b"<html>not found</html>"})
    p.initiate()
    fetcher.run(p)
    assert_auth_failed(p, "i", "(ifuri)")


# --------------------------------------------------------------------------- OCSP


@pytest.mark.parametrize("status", [GOOD, REVOKED])
@pytest.mark.parametrize("delegated", [False, True])
def test_ocsp_both_roles(ca: Issued, status: ocsp.OCSPCertStatus, delegated: bool) -> None:
    """Each side's certificate names the OCSP responder; the answers are signed by the CA or a
    responder it delegated to (id-kp-OCSPSigning). Revoked: the first check (the responder's,
    of moon) fails."""
    moon = make_leaf(ca, "moon.ikev2.test", ocsp_uri=OCSP_URI)
    sun = make_leaf(ca, "sun.ikev2.test", ocsp_uri=OCSP_URI)
    responder = make_leaf(ca, "ocsp.ikev2.test", ocsp_signing=True) if delegated else None
    p = pair(ca, moon, sun, policy_i=RevocationPolicy.STRICT, policy_r=RevocationPolicy.STRICT,
             fetching=True)  # fmt: skip

    def answer(request: RevocationFetch) -> bytes:
        cert = moon.cert if request.cert == moon.der else sun.cert
        return ocsp_answer(cert, ca, status, responder=responder)

    fetcher = Fetcher({OCSP_URI: answer})
    p.initiate()
    fetcher.run(p)
    if status == GOOD:
        assert fetcher.asked == [("r", OCSP_URI), ("i", OCSP_URI)]
        assert outcome(p)[:2] == (True, True)
    else:
        assert fetcher.asked == [("r", OCSP_URI)]
        assert_auth_failed(p, "r", "certificate revoked")


def test_ocsp_answer_signed_by_a_stranger_is_ignored(ca: Issued) -> None:
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test", ocsp_uri=OCSP_URI)
    stranger = make_ca("Stranger")
    forged = make_leaf(stranger, "ocsp.ikev2.test", ocsp_signing=True)
    p = pair(ca, moon, sun, policy_i=RevocationPolicy.IFURI, fetching=True)
    fetcher = Fetcher({OCSP_URI: ocsp_answer(sun.cert, ca, REVOKED, responder=forged)})
    p.initiate()
    fetcher.run(p)
    assert_auth_failed(p, "i", "(ifuri)")  # not "revoked": the answer proves nothing


def test_ocsp_answer_about_another_certificate_is_ignored(ca: Issued) -> None:
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test", ocsp_uri=OCSP_URI)
    p = pair(ca, moon, sun, policy_i=RevocationPolicy.STRICT, fetching=True)
    fetcher = Fetcher({OCSP_URI: ocsp_answer(moon.cert, ca, GOOD)})
    p.initiate()
    fetcher.run(p)
    assert_auth_failed(p, "i", "(strict)")


def test_ocsp_good_decides_when_the_crl_fails(ca: Issued) -> None:
    """Both URIs are asked at once; OCSP good decides although the CRL fetch failed."""
    moon = make_leaf(ca, "moon.ikev2.test")
    sun = make_leaf(ca, "sun.ikev2.test", ocsp_uri=OCSP_URI, crl_uri=CRL_URI)
    p = pair(ca, moon, sun, policy_i=RevocationPolicy.STRICT, fetching=True)
    fetcher = Fetcher({OCSP_URI: ocsp_answer(sun.cert, ca, GOOD)})
    fetcher.answers[CRL_URI] = None
    p.initiate()
    fetcher.run(p)
    assert sorted(fetcher.asked) == [("i", CRL_URI), ("i", OCSP_URI)]
    assert outcome(p)[:2] == (True, True)


# --------------------------------------------------------------------------- the whole path


@pytest.mark.parametrize("how", ["file", "fetched"])
def test_a_revoked_intermediate_fails_the_path(ca: Issued, how: str) -> None:
    """sun's certificate is good, but the intermediate CA that issued it is on the root's CRL:
    every certificate below the trust anchor is checked against its issuer (RFC 5280 §6.3)."""
    uri = "http://192.0.2.80/root.crl"
    intermediate = make_ca(
        "Revocation Test Intermediate", ca, crl_uri=uri if how == "fetched" else None
    )
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(intermediate, "sun.ikev2.test")
    root_crl = make_crl(ca, (intermediate.cert,))
    p = pair(ca, moon, sun, crls_i=(root_crl,) if how == "file" else (),
             fetching=how == "fetched", sun_chain=(intermediate,))  # fmt: skip
    fetcher = Fetcher({uri: root_crl})
    p.initiate()
    fetcher.run(p)
    assert_auth_failed(p, "i", "certificate revoked: CN=Revocation Test Intermediate")
    assert fetcher.asked == ([("i", uri)] if how == "fetched" else [])
    # the same chain with the intermediate not revoked comes up
    p = pair(ca, moon, sun, crls_i=(make_crl(ca, ()),), sun_chain=(intermediate,))
    p.initiate()
    p.run()
    assert outcome(p)[:2] == (True, True)


@pytest.mark.parametrize("kind", ["crl", "ocsp"])
def test_mangled_answers_never_raise(ca: Issued, kind: str) -> None:
    """Fetched bytes are network input: truncated or bit-flipped CRLs and OCSP answers count as
    no status (ifuri fails), never as an exception out of the engine."""
    uri = CRL_URI if kind == "crl" else OCSP_URI
    moon = make_leaf(ca, "moon.ikev2.test")
    sun = make_leaf(ca, "sun.ikev2.test", **{f"{kind}_uri": uri})  # type: ignore[arg-type]
    good = make_crl(ca, ()) if kind == "crl" else ocsp_answer(sun.cert, ca, GOOD)
    variants = [good[: len(good) // 2], good[:-1]]
    variants += [
        good[:i] + bytes([good[i] ^ 0x40]) + good[i + 1 :] for i in range(8, len(good), 23)
    ]
    refused = 0
    for mangled in variants:  # the engines are strict: an exception would fail this test
        p = pair(ca, moon, sun, policy_i=RevocationPolicy.IFURI, fetching=True)
        Fetcher({uri: mangled}).run_after(p)
        up, _, fails = outcome(p)
        assert up or NotifyType.AUTHENTICATION_FAILED in fails  # decided, one way or the other
        refused += not up
    # most flips land in the signed bytes or the structure: no status, so ifuri refuses
    assert refused >= len(variants) // 2, (refused, len(variants))
