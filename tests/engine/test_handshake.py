"""Two engines back to back: IKE_SA_INIT + IKE_AUTH + the first child (RFC 7296 §1.2)."""

from __future__ import annotations

import pytest

from ikev2.constants import ProtocolId
from ikev2.engine.config import Mode
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished, IkeSaFailed

from .pairing import Pair, psk_connections


def assert_child_pair(pair: Pair) -> tuple[ChildSaEstablished, ChildSaEstablished]:
    (ci,) = pair.i.of(ChildSaEstablished)
    (cr,) = pair.r.of(ChildSaEstablished)
    # what one side sends, the other receives: same SPI, same keys, same algorithms
    assert ci.outbound.spi == cr.inbound.spi and ci.inbound.spi == cr.outbound.spi
    assert ci.outbound.enc_key == cr.inbound.enc_key
    assert ci.inbound.enc_key == cr.outbound.enc_key
    assert ci.outbound.auth_key == cr.inbound.auth_key
    assert ci.inbound.auth_key == cr.outbound.auth_key
    assert ci.outbound.enc_key != ci.inbound.enc_key or ci.outbound.enc_alg is None
    assert ci.outbound.enc_alg == cr.inbound.enc_alg and ci.mode == cr.mode
    assert ci.local_ts == cr.remote_ts and ci.remote_ts == cr.local_ts
    return ci, cr


def test_psk_handshake_establishes_ike_and_child() -> None:
    pair = Pair(*psk_connections())
    pair.initiate()
    pair.run(until=1)
    (ei,) = pair.i.of(IkeSaEstablished)
    (er,) = pair.r.of(IkeSaEstablished)
    assert ei.spi_i == er.spi_i and ei.spi_r == er.spi_r
    assert ei.remote_id == "sun.example" and er.remote_id == "moon.example"
    ci, _cr = assert_child_pair(pair)
    assert ci.outbound.enc_alg == "rfc4106(gcm(aes))" and len(ci.outbound.enc_key) == 36
    assert ci.encap is None and ci.mode is Mode.TUNNEL
    assert str(ci.local_ts[0].network) == "10.1.0.0/24"
    assert pair.delivered == 4  # two exchanges, no retransmits


@pytest.mark.parametrize(
    ("ike", "esp", "mode", "protocol"),
    [
        ("aes128-sha256-modp2048", "aes128-sha256", Mode.TUNNEL, ProtocolId.ESP),
        ("aes256-sha384-ecp256", "aes256-sha256", Mode.TRANSPORT, ProtocolId.ESP),
        ("chacha20poly1305-prfsha512-x25519", "chacha20poly1305", Mode.TUNNEL, ProtocolId.ESP),
        ("aes256gcm16-prfsha384-ecp384", "sha256", Mode.TRANSPORT, ProtocolId.AH),
    ],
)
def test_suites_modes_and_protocols(ike: str, esp: str, mode: Mode, protocol: ProtocolId) -> None:
    pair = Pair(*psk_connections(ike, esp, mode=mode, protocol=protocol))
    pair.initiate()
    pair.run()
    assert len(pair.i.of(IkeSaEstablished)) == 1
    ci, _cr = assert_child_pair(pair)
    assert ci.mode is mode and ci.protocol is protocol


def test_wrong_psk_fails_on_both_sides_and_leaves_no_state() -> None:
    pair = Pair(*psk_connections(psk_r=b"another secret that does not match"))
    pair.initiate()
    pair.run()
    assert not pair.i.of(IkeSaEstablished) and not pair.r.of(IkeSaEstablished)
    (fr,) = pair.r.of(IkeSaFailed)
    (fi,) = pair.i.of(IkeSaFailed)
    assert fr.notify is not None and fr.notify.name == "AUTHENTICATION_FAILED"
    assert fi.notify is not None and fi.notify.name == "AUTHENTICATION_FAILED"
    assert not pair.i.engine.sas and not pair.r.engine.sas
