"""EAP-TLS (RFC 5216): the two halves against each other on OpenSSL memory BIOs, RFC 5216 §3.1
fragmentation (L/M flags, acknowledgements), the MSK, and refused certificates."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from cryptography import x509

from ikev2.engine.credentials import load_certificate, load_private_key
from ikev2.engine.eap.base import Outcome
from ikev2.engine.eap.tls import FLAG_L, FLAG_M, FLAG_S, FRAGMENT, TlsPeer, TlsServer

PKI = Path(__file__).resolve().parents[3] / "fixtures" / "pki"


def chain(name: str, who: str) -> tuple[tuple[bytes, ...], object]:
    base = PKI / name
    certs = [load_certificate((base / f"{who}.crt").read_bytes())]
    if name == "rsa4096":
        certs += [load_certificate((base / f"{n}.crt").read_bytes()) for n in ("int2", "int1")]
    return tuple(certs), load_private_key((base / f"{who}.key").read_bytes())


def converse(server: TlsServer, peer: TlsPeer) -> tuple[list[bytes], list[bytes], Outcome]:
    """(server packets, peer packets, the server's verdict)."""
    to_peer, to_server = [server.start(1)], []
    for n in range(40):
        step = peer.process(n, to_peer[-1])
        if step.data is None:
            return to_peer, to_server, Outcome.FAILURE
        to_server.append(step.data)
        verdict = server.process(n, step.data)
        if verdict.outcome is not Outcome.CONTINUE:
            return to_peer, to_server, verdict.outcome
        assert verdict.data is not None
        to_peer.append(verdict.data)
    raise AssertionError("no end")


def test_handshake_both_certificates_checked_and_the_same_msk() -> None:
    seen: list[str] = []

    def check(leaf: x509.Certificate, others: list[x509.Certificate]) -> str | None:
        seen.append(leaf.subject.rfc4514_string())
        return None

    server = TlsServer(b"moon", *chain("ecdsa", "sun"), check)  # type: ignore[misc]
    peer = TlsPeer(*chain("ecdsa", "moon"), check)  # type: ignore[misc]
    to_peer, to_server, verdict = converse(server, peer)
    assert verdict is Outcome.SUCCESS
    assert to_peer[0] == bytes([FLAG_S])  # §3.2: EAP-TLS Start
    assert to_server[-1] == b"\x00"  # §2.1.1: the peer's final empty Response
    assert any("sun.ikev2.test" in s for s in seen) and any("moon.ikev2.test" in s for s in seen)
    msk = server.msk()
    assert msk is not None and len(msk) == 64 and msk == peer.msk()


def test_large_chains_are_fragmented_and_acknowledged() -> None:
    server = TlsServer(b"moon", *chain("rsa", "sun"), lambda leaf, others: None)  # type: ignore[misc]
    peer = TlsPeer(*chain("rsa4096", "moon"), lambda leaf, others: None)  # type: ignore[misc]
    to_peer, to_server, verdict = converse(server, peer)
    assert verdict is Outcome.SUCCESS and server.msk() == peer.msk()
    first = next(p for p in to_peer if p[0] & FLAG_M)
    assert first[0] & FLAG_L  # the first fragment carries the whole length
    (total,) = struct.unpack_from("!I", first, 1)
    assert total > FRAGMENT and len(first) == 1 + 4 + FRAGMENT
    assert to_server.count(b"\x00") >= 2  # acknowledgements of the server's fragments
    assert any(p[0] & FLAG_M for p in to_server)  # and the peer's chain was fragmented too


def test_a_refused_certificate_fails_the_server() -> None:
    server = TlsServer(b"moon", *chain("ecdsa", "sun"), lambda leaf, others: "untrusted")  # type: ignore[misc]
    peer = TlsPeer(*chain("ecdsa", "moon"), lambda leaf, others: None)  # type: ignore[misc]
    *_, verdict = converse(server, peer)
    assert verdict is Outcome.FAILURE
    assert server.msk() is None


def test_the_peer_refuses_the_servers_certificate() -> None:
    server = TlsServer(b"moon", *chain("ecdsa", "sun"), lambda leaf, others: None)  # type: ignore[misc]
    peer = TlsPeer(*chain("ecdsa", "moon"), lambda leaf, others: "not the gateway")  # type: ignore[misc]
    request = server.start(1)
    for n in range(10):
        step = peer.process(n, request)
        if step.outcome is Outcome.FAILURE:
            assert "not the gateway" in step.reason
            return
        assert step.data is not None
        request = server.process(n, step.data).data or b""
    raise AssertionError("peer never refused")


@pytest.mark.parametrize("seed", range(30))
def test_garbage_never_raises(seed: int) -> None:
    r = random.Random(seed)
    server = TlsServer(b"moon", *chain("ecdsa", "sun"), lambda leaf, others: None)  # type: ignore[misc]
    server.start(1)
    peer = TlsPeer(*chain("ecdsa", "moon"), lambda leaf, others: None)  # type: ignore[misc]
    for _ in range(3):
        data = bytes([r.choice([0, FLAG_S, FLAG_L, FLAG_M, 0xE0])]) + r.randbytes(r.randrange(60))
        assert server.process(1, data).outcome in (Outcome.CONTINUE, Outcome.FAILURE)
        assert peer.process(1, data).outcome in (Outcome.CONTINUE, Outcome.FAILURE)
