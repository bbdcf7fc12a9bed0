"""CERTREQ (RFC 7296 §3.7) decides which certificates we send (§3.6): the chain up to, and
without, the CA the peer asked for; every intermediate (never a self-signed root) when it asked
for none we chain to, or sent no CERTREQ, as strongSwan's build_trustchain does. Both roles:
the initiator reads the CERTREQ of IKE_SA_INIT's answer, the responder that of IKE_AUTH.

moon holds the rsa4096 chain root -> int1 -> int2 -> moon (all four in its `certs`); sun holds
an ECDSA certificate and trusts one CA of moon's chain. What crossed the link is read with the
sender's keys."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ikev2.constants import ExchangeType
from ikev2.engine.config import AuthMethodName, ConnectionConfig, Credentials, SendCert
from ikev2.engine.credentials import (
    certreq_authority_hash,
    load_certificate,
    load_private_key,
    split_certreq_hashes,
)
from ikev2.engine.events import Datagram, IkeSaEstablished, IkeSaFailed
from ikev2.engine.identity import parse_identity
from ikev2.engine.tasks.ike_init import certreq_payloads
from ikev2.wire import CertPayload, CertReqPayload, SkPayload, decode_message, decode_payloads

from .pairing import PKI, Pair, Side, psk_connections

MOON_CHAIN = ("moon", "int2", "int1", "root")


def cert(path: str) -> bytes:
    return load_certificate((PKI / path).read_bytes())


def moon_and_sun(
    sun_trusts: str,
    *,
    moon_initiates: bool,
    sun_certreq: bool = True,
    moon_send_cert: SendCert = SendCert.IFASKED,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """(initiator, responder) configs of moon and sun, sun trusting rsa4096/<name> (or a
    path under fixtures/pki) for each name of `sun_trusts` ("a+b")."""
    first, second = psk_connections()
    moon_conn, sun_conn = (first, second) if moon_initiates else (second, first)
    moon_creds = Credentials(
        AuthMethodName.PUBKEY,
        certs=tuple(cert(f"rsa4096/{n}.crt") for n in MOON_CHAIN),
        private_key=load_private_key((PKI / "rsa4096/moon.key").read_bytes()),
    )
    sun_creds = Credentials(
        AuthMethodName.PUBKEY,
        certs=(cert("ecdsa/sun.crt"),),
        private_key=load_private_key((PKI / "ecdsa/sun.key").read_bytes()),
    )
    moon_id, sun_id = parse_identity("moon.ikev2.test"), parse_identity("sun.ikev2.test")
    moon = replace(
        moon_conn,
        local_id=moon_id,
        remote_id=sun_id,
        local_auth=moon_creds,
        remote_auth=Credentials(AuthMethodName.PUBKEY, trust_anchors=(cert("ecdsa/ca.crt"),)),
        fragmentation=False,  # one SK payload per message: the tap reads it whole
        send_cert=moon_send_cert,
    )
    anchors = tuple(
        cert(name if "/" in name else f"rsa4096/{name}.crt") for name in sun_trusts.split("+")
    )
    sun = replace(
        sun_conn,
        local_id=sun_id,
        remote_id=moon_id,
        local_auth=sun_creds,
        remote_auth=Credentials(AuthMethodName.PUBKEY, trust_anchors=anchors),
        fragmentation=False,
        send_certreq=sun_certreq,
    )
    return (moon, sun) if moon_initiates else (sun, moon)


class CertTap:
    """The CERT payloads each side sent in IKE_AUTH, and the CERTREQs it sent anywhere."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.certs: dict[str, list[bytes]] = {"i": [], "r": []}
        self.certreqs: dict[str, list[bytes]] = {"i": [], "r": []}
        pair.tamper = self._observe

    def _observe(self, sender: Side, d: Datagram) -> Datagram:
        name = "i" if sender is self.pair.i else "r"
        message = decode_message(d.data)
        payloads = message.payloads
        if message.header.exchange == ExchangeType.IKE_AUTH:
            sas = [s for s in sender.engine.sas.values() if s.spi_i == message.header.spi_i]
            if not sas:  # the answer of an IKE SA that failed and is gone: no CERT in it
                return d
            (sa,) = sas
            sk = payloads[-1]
            assert isinstance(sk, SkPayload) and sa.sk_out is not None
            aad = d.data[: len(d.data) - len(sk.body)]
            plain = sa.sk_out.unprotect(aad, sk.body)
            payloads = decode_payloads(sk.inner_next_payload, plain, len(aad))
        self.certs[name] += [p.data for p in payloads if isinstance(p, CertPayload)]
        self.certreqs[name] += [p.data for p in payloads if isinstance(p, CertReqPayload)]
        return d


def run(initiator: ConnectionConfig, responder: ConnectionConfig, *, up: bool = True) -> CertTap:
    pair = Pair(initiator, responder)
    tap = CertTap(pair)
    pair.initiate()
    pair.run(until=2)
    established = bool(pair.i.of(IkeSaEstablished) and pair.r.of(IkeSaEstablished))
    assert established is up, "authentication failed" if up else "authentication passed"
    return tap


def names(ders: list[bytes]) -> list[str]:
    by_der = {cert(f"rsa4096/{n}.crt"): n for n in MOON_CHAIN}
    return [by_der.get(d, "other") for d in ders]


@pytest.mark.parametrize("moon_initiates", [True, False], ids=["moon-initiator", "moon-responder"])
@pytest.mark.parametrize(
    ("sun_trusts", "sent"),
    [
        ("int2", ["moon"]),  # it holds int2: the end entity is enough
        ("int1", ["moon", "int2"]),
        ("root", ["moon", "int2", "int1"]),  # the chain up to the root, not the root
        # CAs we do not chain to (moon's certificate is pinned): all intermediates
        ("ecdsa/ca.crt+moon", ["moon", "int2", "int1"]),
    ],
)
def test_the_chain_stops_below_the_ca_the_peer_asked_for(
    moon_initiates: bool, sun_trusts: str, sent: list[str]
) -> None:
    initiator, responder = moon_and_sun(sun_trusts, moon_initiates=moon_initiates)
    tap = run(initiator, responder)
    moon, sun = ("i", "r") if moon_initiates else ("r", "i")
    assert tap.certreqs[sun], "sun sent no CERTREQ"
    assert names(tap.certs[moon]) == sent


@pytest.mark.parametrize("moon_initiates", [True, False], ids=["moon-initiator", "moon-responder"])
def test_send_cert_always_without_a_certreq_every_intermediate_but_no_root(
    moon_initiates: bool,
) -> None:
    initiator, responder = moon_and_sun(
        "int1", moon_initiates=moon_initiates, sun_certreq=False, moon_send_cert=SendCert.ALWAYS
    )
    tap = run(initiator, responder)
    moon, sun = ("i", "r") if moon_initiates else ("r", "i")
    assert tap.certreqs[sun] == []
    assert names(tap.certs[moon]) == ["moon", "int2", "int1"]


@pytest.mark.parametrize("moon_initiates", [True, False], ids=["moon-initiator", "moon-responder"])
def test_send_cert_ifasked_sends_nothing_without_a_certreq_to_a_peer_that_pinned_it(
    moon_initiates: bool,
) -> None:
    """strongSwan's default: no CERTREQ, no CERT; sun holds moon's certificate and uses it."""
    assert ConnectionConfig.__dataclass_fields__["send_cert"].default is SendCert.IFASKED
    initiator, responder = moon_and_sun("moon", moon_initiates=moon_initiates, sun_certreq=False)
    tap = run(initiator, responder)
    moon, sun = ("i", "r") if moon_initiates else ("r", "i")
    assert tap.certreqs[sun] == []
    assert tap.certs[moon] == []
    assert names(tap.certs[sun]) == ["other"]  # moon's CERTREQ asked sun for its own


@pytest.mark.parametrize("moon_initiates", [True, False], ids=["moon-initiator", "moon-responder"])
def test_no_cert_and_none_pinned_fails_authentication(moon_initiates: bool) -> None:
    initiator, responder = moon_and_sun("int1", moon_initiates=moon_initiates, sun_certreq=False)
    pair = Pair(initiator, responder)
    tap = CertTap(pair)
    pair.initiate()
    pair.run(until=2)
    moon, sun = (pair.i, pair.r) if moon_initiates else (pair.r, pair.i)
    assert tap.certs["i" if moon is pair.i else "r"] == []
    assert not sun.of(IkeSaEstablished)
    assert any("none is pinned" in e.reason for e in sun.of(IkeSaFailed))


@pytest.mark.parametrize("moon_initiates", [True, False], ids=["moon-initiator", "moon-responder"])
def test_send_cert_never_sends_nothing_even_when_asked(moon_initiates: bool) -> None:
    initiator, responder = moon_and_sun(
        "int1+moon", moon_initiates=moon_initiates, moon_send_cert=SendCert.NEVER
    )
    tap = run(initiator, responder)
    moon, sun = ("i", "r") if moon_initiates else ("r", "i")
    assert tap.certreqs[sun], "sun sent no CERTREQ"
    assert tap.certs[moon] == []


def test_the_peer_that_asked_for_an_intermediate_still_verifies() -> None:
    """Sending less must not cost the authentication: sun trusts only int2 and gets moon alone."""
    initiator, responder = moon_and_sun("int2", moon_initiates=True)
    tap = run(initiator, responder)
    assert names(tap.certs["i"]) == ["moon"]
    assert names(tap.certs["r"]) == ["other"]  # sun's one certificate (its CA asked by moon)


def test_a_responder_asks_for_the_cas_of_every_connection_the_addresses_match() -> None:
    """IKE_SA_INIT comes before IDi says which connection it is: the CERTREQ names the CAs of
    all of them (a PSK connection contributes none), each once, so that a peer with
    send_cert = ifasked sends its chain whichever it turns out to be."""
    _, sun = moon_and_sun("int1+root", moon_initiates=True)
    psk, _ = psk_connections()
    twin = replace(sun, remote_auth=Credentials(AuthMethodName.PUBKEY, trust_anchors=(
        cert("rsa4096/root.crt"), cert("ecdsa/ca.crt"))))  # fmt: skip
    [payload] = certreq_payloads(psk, sun, twin)
    assert isinstance(payload, CertReqPayload)
    wanted = [certreq_authority_hash(cert(p)) for p in
              ("rsa4096/int1.crt", "rsa4096/root.crt", "ecdsa/ca.crt")]  # fmt: skip
    assert split_certreq_hashes(payload.data) == tuple(wanted)
    assert certreq_payloads(psk) == []
    assert certreq_payloads(replace(sun, send_certreq=False)) == []
