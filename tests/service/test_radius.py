"""service/radius.py against a real FreeRADIUS (Debian's freeradius, ikev2.testing.freeradius)
on loopback: our EAP peer (engine/eap) talks EAP-MD5 and EAP-MSCHAPv2 through the RADIUS client
exactly as the gateway relays a road warrior's EAP (RFC 3579); the MSK the server hands us in
MS-MPPE-Recv/Send-Key equals the one the peer derives. Wrong password: Access-Reject with
EAP-Failure; wrong shared secret: no reply verifies, so nothing is believed. Codec checks run
without the server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ikev2.engine.eap import EapCode, EapPacket, EapPeer, EapType, Outcome, parse_packet
from ikev2.service import radius
from ikev2.testing import freeradius
from ikev2.testing.gates import is_root, need

SECRET = "radius-shared-secret-for-tests"
PASSWORD = "carol's long password"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[freeradius.FreeRadius]:
    need(is_root(), "FreeRADIUS drops to its freerad user: needs root")
    need(freeradius.available() is None, freeradius.available() or "")
    with freeradius.FreeRadius(tmp_path, SECRET, {"carol": PASSWORD}) as running:
        yield running


async def converse(
    srv: freeradius.FreeRadius, method: EapType, password: str, secret: str = SECRET
) -> tuple[radius.Answer, EapPeer, int]:
    """Identity Response first (the gateway asked EAP-Identity itself), then relay rounds."""
    client = radius.RadiusClient((srv.address, srv.port), secret.encode(), timeout=1.0)
    await client.open()
    peer = EapPeer(b"carol", password.encode(), (method,), os.urandom)
    eap = EapPacket(EapCode.RESPONSE, 1, EapType.IDENTITY, b"carol").encode()
    rounds = 0
    try:
        while True:
            rounds += 1
            answer = await client.exchange(7, b"carol", eap, "192.0.2.10[500]")
            if answer.verdict is not radius.Verdict.CHALLENGE:
                if answer.eap:
                    peer.process(answer.eap)  # EAP-Success: the peer's MSK is set
                return answer, peer, rounds
            result = peer.process(answer.eap)
            assert result.outcome is not Outcome.FAILURE, result.reason
            assert result.packet is not None
            eap = result.packet
    finally:
        client.close()


@pytest.mark.root
def test_eap_md5_through_freeradius(server: freeradius.FreeRadius) -> None:
    answer, peer, rounds = asyncio.run(converse(server, EapType.MD5_CHALLENGE, PASSWORD))
    assert answer.verdict is radius.Verdict.ACCEPT, answer.reason
    assert parse_packet(answer.eap).code is EapCode.SUCCESS and peer.msk is None
    assert rounds == 2  # Identity -> MD5 Challenge -> Success


@pytest.mark.root
def test_eap_mschapv2_through_freeradius_gives_the_peers_msk(
    server: freeradius.FreeRadius,
) -> None:
    answer, peer, rounds = asyncio.run(converse(server, EapType.MSCHAPV2, PASSWORD))
    assert answer.verdict is radius.Verdict.ACCEPT, f"{answer.reason}\n{server.log()[-3000:]}"
    assert answer.msk is not None and len(answer.msk) == 32  # Recv-Key || Send-Key
    # the peer's MSK is the same two keys and 32 zero octets (RFC 3079 via EAP-MSCHAPv2): as
    # an HMAC key (the AUTH of RFC 7296 §2.16) zero padding changes nothing
    assert peer.msk == answer.msk + bytes(32)
    assert rounds >= 3  # Identity, Nak of MD5, the MSCHAPv2 Challenge/Response, Success


@pytest.mark.root
def test_wrong_password_is_rejected(server: freeradius.FreeRadius) -> None:
    answer, _peer, _ = asyncio.run(converse(server, EapType.MD5_CHALLENGE, "not the password"))
    assert answer.verdict is radius.Verdict.REJECT
    assert parse_packet(answer.eap).code is EapCode.FAILURE


@pytest.mark.root
def test_wrong_shared_secret_believes_nothing(server: freeradius.FreeRadius) -> None:
    answer, _peer, _ = asyncio.run(
        converse(server, EapType.MD5_CHALLENGE, PASSWORD, secret="not the shared secret")
    )
    assert answer.verdict is radius.Verdict.REJECT and answer.reason == "no RADIUS answer"


# --- the codec, no server
def test_request_carries_a_valid_message_authenticator_and_long_eap_is_split() -> None:
    eap = bytes(600)
    attrs = [(radius.USER_NAME, b"carol"), *radius.eap_chunks(eap)]
    packet = radius.access_request(b"s3cret", 9, bytes(range(16)), attrs)
    decoded = radius.decode(packet)
    assert [len(v) for v in decoded.all(radius.EAP_MESSAGE)] == [253, 253, 94]
    mac = decoded.first(radius.MESSAGE_AUTHENTICATOR)
    zeroed = packet[:-16] + bytes(16)
    assert mac == hmac.new(b"s3cret", zeroed, hashlib.md5).digest()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x02\x01\x00\x10" + bytes(12),
        b"\x02\x01\x00\x20" + bytes(16) + b"\x01\x00" + bytes(10),
        b"\x02\x01\x00\x17" + bytes(16) + b"\x01\x05ab",
    ],
)
def test_hostile_packets_raise_radius_error(raw: bytes) -> None:
    with pytest.raises(radius.RadiusError):
        radius.decode(raw)


def test_mppe_key_round_trip_of_rfc2548_encryption() -> None:
    """Encrypt as RFC 2548 §2.4.2 says (written out here), decrypt with ours."""
    secret, request_auth, salt, key = b"s", bytes(range(16)), b"\x80\x01", bytes(range(32))
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    out, previous = b"", request_auth + salt
    for i in range(0, len(plain), 16):
        pad = hashlib.md5(secret + previous).digest()
        block = bytes(a ^ b for a, b in zip(plain[i : i + 16], pad, strict=True))
        out += block
        previous = block
    assert radius.decrypt_mppe_key(secret, request_auth, salt + out) == key
    with pytest.raises(radius.RadiusError):
        radius.decrypt_mppe_key(secret, request_auth, salt + out[:5])


# --- configuration (config_radius.py)
GATEWAY = """
[daemon]
{daemon}
[connections.rw.local]
auth = "psk"
id = "sun.example"
[connections.rw.remote]
auth = "{auth}"
id = "%any"
[secrets.ike]
ids = ["sun.example"]
secret = "a long and hard to guess secret, for tests only"
{radius}
"""
RADIUS_SECRET = '[secrets.radius]\nsecret = "a RADIUS shared secret, long"'


def _load(tmp_path: Path, daemon: str, radius_section: str, auth: str = "eap-radius") -> object:
    from ikev2.config import parse_config

    text = GATEWAY.format(daemon=daemon, radius=radius_section, auth=auth)
    return parse_config(text, tmp_path / "gw.toml")


def test_config_eap_radius_gateway(tmp_path: Path) -> None:
    from ikev2.config import ServiceConfig

    loaded = _load(tmp_path, 'radius_server = "127.0.0.1:18120"', RADIUS_SECRET)
    assert isinstance(loaded, ServiceConfig)
    assert loaded.daemon.radius_server == ("127.0.0.1", 18120)
    assert loaded.radius_secret == b"a RADIUS shared secret, long"
    assert "RADIUS shared" not in repr(loaded)
    assert loaded.engine.connections[0].remote_auth.eap_radius is True
    six = _load(tmp_path, 'radius_server = "[::1]"', RADIUS_SECRET)
    assert isinstance(six, ServiceConfig) and six.daemon.radius_server == ("::1", 1812)


@pytest.mark.parametrize(
    ("daemon", "section", "where"),
    [
        ("", RADIUS_SECRET, "daemon.radius_server"),
        ('radius_server = "127.0.0.1:1812"', "", "secrets"),
        ('radius_server = "radius.example:1812"', RADIUS_SECRET, "daemon.radius_server"),
    ],
)
def test_config_eap_radius_mistakes(tmp_path: Path, daemon: str, section: str, where: str) -> None:
    from ikev2.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _load(tmp_path, daemon, section)
    assert where in str(err.value)
