"""IKE fragmentation in the engine (RFC 7383): a large IKE_AUTH goes out as SKF fragments,
is reassembled, and forged or stray fragments never block the valid message."""

from __future__ import annotations

from dataclasses import replace

from ikev2.engine.config import AuthMethodName, Credentials
from ikev2.engine.credentials import load_certificate, load_private_key
from ikev2.engine.events import ChildSaEstablished, Datagram, IkeSaEstablished
from ikev2.engine.identity import parse_identity
from ikev2.wire import SkfPayload, decode_message

from .pairing import PKI, Pair, Side, cert_connections

RSA = PKI / "rsa4096"


def long_chain_pair(**changes: object) -> Pair:
    """moon proves itself with RSA-4096 leaf + two intermediates (three CERT payloads)."""
    conn_i, conn_r = cert_connections("ecdsa")
    chain = tuple(
        load_certificate((RSA / f"{n}.crt").read_bytes()) for n in ("moon", "int2", "int1")
    )
    creds = Credentials(
        AuthMethodName.PUBKEY,
        certs=chain,
        private_key=load_private_key((RSA / "moon.key").read_bytes()),
        trust_anchors=conn_i.remote_auth.trust_anchors,
    )
    root = load_certificate((RSA / "root.crt").read_bytes())
    conn_i = replace(
        conn_i, local_id=parse_identity("moon.ikev2.test"), local_auth=creds, **changes
    )
    conn_r = replace(
        conn_r, remote_auth=Credentials(AuthMethodName.PUBKEY, trust_anchors=(root,)), **changes
    )
    return Pair(conn_i, conn_r)


def skf_sent(pair: Pair) -> list[Datagram]:
    return [d for d in pair.seen if isinstance(decode_message(d.data).payloads[-1], SkfPayload)]


def recording(pair: Pair) -> None:
    pair.seen = []  # type: ignore[attr-defined]

    def tap(side: Side, d: Datagram) -> Datagram:
        pair.seen.append(d)  # type: ignore[attr-defined]
        return d

    pair.tamper = tap


def test_three_certificate_rsa4096_chain_travels_in_fragments() -> None:
    pair = long_chain_pair()
    recording(pair)
    pair.initiate()
    pair.run(until=1)
    assert len(pair.i.of(IkeSaEstablished)) == 1 and len(pair.r.of(IkeSaEstablished)) == 1
    assert len(pair.i.of(ChildSaEstablished)) == 1
    fragments = skf_sent(pair)
    assert len(fragments) >= 4  # ~5 KB of certificates and signature
    assert max(len(d.data) for d in pair.seen) <= 1252  # RFC 7383 default for IPv4 on 500
    numbers = [decode_message(d.data).payloads[-1] for d in fragments]
    assert {p.total_fragments for p in numbers} == {len(fragments)}  # type: ignore[attr-defined]


def test_without_fragmentation_the_message_is_one_large_datagram() -> None:
    pair = long_chain_pair(fragmentation=False)
    recording(pair)
    pair.initiate()
    pair.run(until=1)
    assert len(pair.i.of(IkeSaEstablished)) == 1
    assert not skf_sent(pair) and max(len(d.data) for d in pair.seen) > 4000


def test_forged_and_duplicate_fragments_do_not_block_the_message() -> None:
    pair = long_chain_pair()
    pair.seen = []  # type: ignore[attr-defined]

    def forge(side: Side, d: Datagram) -> Datagram:
        message = decode_message(d.data)
        if side is pair.i and isinstance(message.payloads[-1], SkfPayload):
            bad = bytearray(d.data)
            bad[-1] ^= 0x01  # the ICV: must be dropped before it is kept
            for junk in (bytes(bad), d.data):  # a forged copy and a duplicate arrive first
                pair.r.events += pair.r.engine.receive_datagram(junk, d.local, d.remote, pair.now)
        return d

    pair.tamper = forge
    pair.initiate()
    pair.run(until=1)
    assert len(pair.r.of(IkeSaEstablished)) == 1 and len(pair.i.of(IkeSaEstablished)) == 1
