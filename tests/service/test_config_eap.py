"""EAP in the TOML file (swanctl.conf names): remote.auth = "eap-mschapv2" on a gateway,
local.auth = "eap-..." and eap_id on a road warrior, users in [secrets.eap*]; the same checks as
PSKs (no group/world-readable secret files, no short secrets) and secrets never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ikev2.config import load_config, parse_config
from ikev2.engine.config import AuthMethodName
from ikev2.engine.eap import EapType
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished
from ikev2.errors import ConfigError

PKI = Path(__file__).resolve().parents[2] / "fixtures" / "pki" / "ecdsa"

GATEWAY = f"""
[connections.rw]
local_addrs = ["192.0.2.2"]
[connections.rw.local]
id = "sun.ikev2.test"
auth = "pubkey"
certs = ["{PKI}/sun.crt"]
key = "sun.key"
[connections.rw.remote]
auth = "eap-mschapv2"
eap_id = "%any"
[connections.rw.children.net]
local_ts = ["10.2.0.0/24"]
remote_ts = ["10.3.0.0/24"]

[secrets.eap-carol]
ids = ["carol"]
secret = "carol's long password"
[secrets.eap-dave]
ids = ["dave", "DOMAIN\\\\dave"]
secret_file = "dave.secret"
[secrets.ike]
secret = "a PSK for some other connection"
"""

CLIENT = f"""
[connections.home]
remote_addrs = ["192.0.2.2"]
[connections.home.local]
id = "carol@ikev2.test"
auth = "eap-md5"
eap_id = "carol"
[connections.home.remote]
id = "sun.ikev2.test"
auth = "pubkey"
cacerts = ["{PKI}/ca.crt"]
[connections.home.children.net]
local_ts = ["10.3.0.7/32"]
remote_ts = ["10.2.0.0/24"]

[secrets.eap-carol]
ids = ["carol"]
secret = "carol's long password"
"""


def write(tmp_path: Path, text: str, name: str = "ikev2.toml") -> Path:
    key = tmp_path / "sun.key"
    key.write_bytes((PKI / "sun.key").read_bytes())
    key.chmod(0o600)
    dave = tmp_path / "dave.secret"
    dave.write_text("dave's long password\n")
    dave.chmod(0o600)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_gateway_users_come_from_the_eap_secrets(tmp_path: Path) -> None:
    [conn] = load_config(write(tmp_path, GATEWAY)).engine.connections
    remote = conn.remote_auth
    assert remote.method is AuthMethodName.EAP and remote.eap_types == (EapType.MSCHAPV2,)
    assert remote.eap_id == b"%any"
    assert remote.eap_user_secret(b"carol") == b"carol's long password"
    assert remote.eap_user_secret(b"DOMAIN\\dave") == b"dave's long password"
    assert remote.eap_user_secret(b"mallory") is None
    assert conn.local_auth.method is AuthMethodName.PUBKEY
    assert "password" not in repr(remote) and "password" not in repr(conn)


def test_gateway_with_plain_eap_offers_mschapv2_then_md5(tmp_path: Path) -> None:
    text = GATEWAY.replace('auth = "eap-mschapv2"', 'auth = "eap"')
    [conn] = load_config(write(tmp_path, text)).engine.connections
    assert conn.remote_auth.eap_types == (EapType.MSCHAPV2, EapType.MD5_CHALLENGE)


def test_client_takes_its_password_by_eap_id(tmp_path: Path) -> None:
    [conn] = load_config(write(tmp_path, CLIENT)).engine.connections
    local = conn.local_auth
    assert local.method is AuthMethodName.EAP and local.eap_types == (EapType.MD5_CHALLENGE,)
    assert local.eap_id == b"carol" and local.eap_secret == b"carol's long password"
    assert "password" not in repr(local)


def test_client_without_eap_id_uses_its_ike_id_and_eap_allows_every_method(
    tmp_path: Path,
) -> None:
    text = CLIENT.replace('eap_id = "carol"\n', "").replace('"eap-md5"', '"eap"')
    text = text.replace('ids = ["carol"]', 'ids = ["carol@ikev2.test"]')
    [conn] = load_config(write(tmp_path, text)).engine.connections
    assert conn.local_auth.eap_id is None
    assert set(conn.local_auth.eap_types) == {EapType.MSCHAPV2, EapType.MD5_CHALLENGE}


@pytest.mark.parametrize(
    ("text", "old", "new", "key", "words"),
    [
        ("client", 'ids = ["carol"]', 'ids = ["someone"]', "local.auth", "no [secrets.eap*]"),
        ("client", '"eap-md5"', '"eap-ttls"', "local.auth", "not allowed"),
        ("client", 'eap_id = "carol"', 'eap_id = "%any"', "local.eap_id", "remote.eap_id"),
        ("client", 'eap_id = "carol"', 'eap_id = ""', "local.eap_id", "empty"),
        ("gateway", 'auth = "pubkey"', 'auth = "eap-mschapv2"', "local.auth", "mutual method"),
        ("gateway", 'ids = ["carol"]', "", "secrets.eap-carol.ids", "names its users"),
        ("gateway", '"eap-mschapv2"\n', '"pubkey"\n', "remote.eap_id", "runs no EAP"),
    ],
)
def test_mistakes_name_the_key(
    tmp_path: Path, text: str, old: str, new: str, key: str, words: str
) -> None:
    source = CLIENT if text == "client" else GATEWAY
    assert old in source
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, source.replace(old, new, 1)))
    message = str(info.value)
    assert key in message and words in message
    assert "long password" not in message


def test_a_readable_eap_secret_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GATEWAY)
    os.chmod(tmp_path / "dave.secret", 0o640)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "readable by others" in str(info.value) and "chmod 600" in str(info.value)
    assert "long password" not in str(info.value)


def test_a_short_eap_secret_is_refused_and_not_shown(tmp_path: Path) -> None:
    text = GATEWAY.replace("carol's long password", "pw12")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "secrets.eap-carol.secret" in str(info.value) and "pw12" not in str(info.value)


def test_eap_secrets_are_not_offered_as_psks(tmp_path: Path) -> None:
    text = GATEWAY.replace('[secrets.ike]\nsecret = "a PSK for some other connection"\n', "")
    text += """
[connections.s2s]
remote_addrs = ["192.0.2.9"]
[connections.s2s.local]
id = "sun.ikev2.test"
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "connections.s2s.local.auth" in str(info.value) and "no [secrets.*]" in str(info.value)


def test_the_bundled_eap_examples_load_and_agree(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "fixtures" / "config"
    key = tmp_path / "gateway.key"
    key.write_bytes((PKI / "moon.key").read_bytes())
    key.chmod(0o600)
    text = (examples / "eap-gateway.toml").read_text().replace("/tmp/gateway.key", str(key))
    gateway_path = examples / "eap-gateway.toml"
    [gateway] = parse_config(text, gateway_path).engine.connections
    [client] = load_config(examples / "eap-client.toml").engine.connections
    assert gateway.remote_auth.eap_types == client.local_auth.eap_types == (EapType.MSCHAPV2,)
    assert gateway.remote_auth.eap_id == b"%any" and client.local_auth.eap_id == b"carol"
    # the client's password is the gateway's for that user, and its CA signed the gateway
    assert gateway.remote_auth.eap_user_secret(b"carol") == client.local_auth.eap_secret
    assert gateway.remote_auth.eap_user_secret(b"CORP\\dave") is not None
    assert client.remote_auth.trust_anchors and gateway.local_auth.certs
    # and they work: two engines back to back establish the IKE SA and the child
    from tests.engine.pairing import Pair

    pair = Pair(client, gateway)
    pair.initiate("rw")
    pair.run(until=1)
    assert len(pair.i.of(IkeSaEstablished)) == 1 and len(pair.r.of(IkeSaEstablished)) == 1
    (child,) = pair.i.of(ChildSaEstablished)
    assert [str(ts.network) for ts in child.local_ts] == ["10.1.0.0/24"]


def test_eap_tls_on_both_ends_and_eap_only(tmp_path: Path) -> None:
    client = CLIENT.replace('auth = "eap-md5"', f'auth = "eap-tls"\ncerts = ["{PKI}/moon.crt"]\n'
                            'key = "sun.key"')  # fmt: skip
    [conn] = load_config(write(tmp_path, client)).engine.connections
    assert conn.local_auth.eap_types == (EapType.TLS,) and conn.local_auth.certs
    assert conn.local_auth.private_key is not None and conn.local_auth.eap_secret is None
    gateway = GATEWAY.replace(
        'auth = "eap-mschapv2"', f'auth = "eap-tls"\ncacerts = ["{PKI}/ca.crt"]'
    )
    [gw] = load_config(write(tmp_path, gateway)).engine.connections
    assert gw.remote_auth.eap_types == (EapType.TLS,) and gw.remote_auth.trust_anchors
    assert gw.local_auth.method is AuthMethodName.PUBKEY
    # RFC 5998: our own side EAP-TLS too, a mutual method: EAP-only, the certificate inside TLS
    only = gateway.replace('auth = "pubkey"', 'auth = "eap-tls"')
    [gw] = load_config(write(tmp_path, only)).engine.connections
    assert gw.local_auth.method is AuthMethodName.EAP and gw.local_auth.certs
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, gateway.replace(f'cacerts = ["{PKI}/ca.crt"]', "")))
    assert "remote.cacerts" in str(info.value) and "eap-tls needs a CA" in str(info.value)


def test_the_bundled_eap_radius_example_loads(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "fixtures" / "config"
    key = tmp_path / "gateway.key"
    key.write_bytes((PKI / "moon.key").read_bytes())
    key.chmod(0o600)
    path = examples / "eap-radius-gateway.toml"
    loaded = parse_config(path.read_text().replace("/tmp/gateway.key", str(key)), path)
    [gateway] = loaded.engine.connections
    assert gateway.remote_auth.eap_radius and not gateway.remote_auth.eap_users
    assert loaded.daemon.radius_server == ("127.0.0.1", 1812)
    assert loaded.radius_secret.startswith(b"demo only")
