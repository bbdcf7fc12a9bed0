"""Two engines back to back: IKE_SA_INIT + IKE_AUTH + the first child (RFC 7296 §1.2)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from ikev2.constants import NotifyType, ProtocolId
from ikev2.engine.config import AuthMethodName, Credentials, Mode
from ikev2.engine.credentials import load_certificate
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished, IkeSaFailed
from ikev2.engine.identity import parse_identity

from .pairing import PKI, PSK, Pair, cert_connections, pki_credentials, psk_connections


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


@pytest.mark.parametrize("chain", ["ecdsa", "rsa", "ed25519"])
@pytest.mark.parametrize("id_kind", ["fqdn", "ip", "dn"])
def test_certificate_handshake(chain: str, id_kind: str) -> None:
    pair = Pair(*cert_connections(chain, id_kind=id_kind))
    pair.initiate()
    pair.run(until=1)
    (ei,) = pair.i.of(IkeSaEstablished)
    (er,) = pair.r.of(IkeSaEstablished)
    expected = {"fqdn": ("moon", "sun"), "ip": ("192.0.2.1", "192.0.2.2"), "dn": ("moon", "sun")}
    assert expected[id_kind][0] in er.remote_id and expected[id_kind][1] in ei.remote_id
    assert_child_pair(pair)


def test_rsa_pss_leaf_under_a_three_level_chain_is_refused_without_intermediates() -> None:
    # moon's chain needs int1/int2, which we do not send: the responder cannot build the path
    conn_i, conn_r = cert_connections("ecdsa")
    creds = pki_credentials("rsa4096", "moon", ca="ecdsa")
    anchor = load_certificate((PKI / "rsa4096" / "root.crt").read_bytes())
    conn_i = replace(conn_i, local_id=parse_identity("moon.ikev2.test"), local_auth=creds)
    conn_r = replace(
        conn_r,
        remote_auth=Credentials(AuthMethodName.PUBKEY, trust_anchors=(anchor,)),
    )
    pair = Pair(conn_i, conn_r)
    pair.initiate()
    pair.run(until=1)
    (failed,) = pair.r.of(IkeSaFailed)
    assert failed.notify is NotifyType.AUTHENTICATION_FAILED and "certificate" in failed.reason


def test_untrusted_certificate_fails_with_authentication_failed() -> None:
    pair = Pair(*cert_connections("ecdsa", chain_i="untrusted"))
    pair.initiate()
    pair.run(until=1)
    (fr,) = pair.r.of(IkeSaFailed)
    (fi,) = pair.i.of(IkeSaFailed)
    assert fr.notify is NotifyType.AUTHENTICATION_FAILED and "certificate" in fr.reason
    assert fi.notify is NotifyType.AUTHENTICATION_FAILED
    assert not pair.i.engine.sas and not pair.r.engine.sas


def test_ipv6_handshake() -> None:
    conn_i, conn_r = psk_connections(
        addr_i=ipaddress.ip_address("2001:db8::1"),
        addr_r=ipaddress.ip_address("2001:db8::2"),
        net_i="fd00:1::/64",
        net_r="fd00:2::/64",
    )
    pair = Pair(conn_i, conn_r)
    pair.initiate()
    pair.run(until=1)
    ci, _ = assert_child_pair(pair)
    assert ci.outbound.dst == ipaddress.ip_address("2001:db8::2")
    assert str(ci.remote_ts[0].network) == "fd00:2::/64"


def test_views_for_list_sas_and_key_export_keep_secrets_out_of_repr() -> None:
    pair = Pair(*psk_connections())
    sa_id = pair.initiate()
    pair.run(until=1)
    (view,) = pair.i.engine.list_sas()
    assert view.state == "established" and view.remote_id == "sun.example"
    (child,) = view.children
    assert child.local_ts == ("10.1.0.0/24",) and child.remote_ts == ("10.2.0.0/24",)
    assert child.suite == "AES_GCM_16_256"
    exported = pair.i.engine.export_keys(sa_id)
    assert exported is not None and exported.encr == "AES_GCM_16" and exported.integ is None
    (r_sa,) = pair.r.engine.sas.values()
    assert r_sa.keys is not None and exported.sk_ei == r_sa.keys.sk_ei
    for secret in (exported.sk_ei, exported.sk_er):
        assert secret.hex() not in repr(exported)
    (event,) = pair.i.of(ChildSaEstablished)
    assert event.outbound.enc_key.hex() not in repr(event)
    assert PSK.decode() not in repr(pair.i.engine.config)
