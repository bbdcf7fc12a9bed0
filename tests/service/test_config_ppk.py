"""The RFC 8784 keys (config_ppk.py): [secrets.ppk*] PPKs, connections' ppk_id/ppk_required,
with the PSK checks (secret files not readable by others, secrets never in error texts)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ikev2.config import parse_config
from ikev2.errors import ConfigError

PPK_HEX = "5f7a" * 16  # 32 bytes
BASE = """
[connections.net]
remote_addrs = ["192.0.2.2"]
{conn}
[connections.net.local]
id = "moon.example"
{local}
[connections.net.remote]
id = "sun.example"
{remote}
[secrets.ike]
ids = ["moon.example", "sun.example"]
secret = "a long enough test secret"
{secrets}
"""
PPK_SECTION = '[secrets.ppk-moon]\nid = "ppk-moon"\nsecret = "{secret}"\n'


def config(conn: str = "", secrets: str = "", local: str = "", remote: str = "",
           path: Path | None = None):  # type: ignore[no-untyped-def]  # fmt: skip
    text = BASE.format(conn=conn, secrets=secrets, local=local, remote=remote)
    return parse_config(text, path or Path("/etc/ikev2/ppk.toml"))


def the_conn(conn: str = "", secrets: str = "", **kw: object):  # type: ignore[no-untyped-def]
    (c,) = config(conn, secrets, **kw).engine.connections  # type: ignore[arg-type]
    return c


def test_ppk_id_and_required_with_hex_secret() -> None:
    conn = the_conn('ppk_id = "ppk-moon"\nppk_required = true',
                    PPK_SECTION.format(secret="0x" + PPK_HEX))  # fmt: skip
    assert conn.ppk_id == b"ppk-moon" and conn.ppk_required
    assert conn.ppks == ((b"ppk-moon", bytes.fromhex(PPK_HEX)),)
    # the PSK is still the [secrets.ike] one: a ppk section is never taken for a PSK
    assert conn.local_auth.psk == b"a long enough test secret"


def test_base64_and_text_secrets_and_several_ids() -> None:
    raw = bytes(range(40))
    b64 = "0s" + base64.b64encode(raw).decode()
    text = "[secrets.ppk-a]\nids = ['a', 'b']\nsecret = '" + b64 + "'\n"
    text += "[secrets.ppk-c]\nid = 'c'\nsecret = '" + "x" * 32 + "'\n"
    conn = the_conn("", text)
    # no ppk_id: as responder any PPK of the file may be named (strongSwan's behaviour)
    assert conn.ppk_id is None and not conn.ppk_required
    assert conn.ppks == ((b"a", raw), (b"b", raw), (b"c", b"x" * 32))


def test_no_ppk_keys_means_no_ppk() -> None:
    conn = the_conn()
    assert conn.ppk_id is None and not conn.ppk_required and conn.ppks == ()


@pytest.mark.parametrize(
    ("conn", "secrets", "key", "words"),
    [
        ('ppk_id = "ppk-moon"', "", "connections.net.ppk_id", "no [secrets.ppk*] entry"),
        ("ppk_required = true", "", "connections.net.ppk_required", "is required"),
        ('ppk_id = ""', "", "connections.net.ppk_id", "is empty"),
        ("", PPK_SECTION.format(secret="0x" + PPK_HEX[:-4]), "secrets.ppk-moon.secret",
         "shorter than 32 bytes"),
        ("", PPK_SECTION.format(secret="0xzz" + PPK_HEX), "secrets.ppk-moon.secret", "not valid"),
        ("", "[secrets.ppk-x]\nsecret = '0x" + PPK_HEX + "'\n", "secrets.ppk-x.id", "PPK_ID"),
        ("", "[secrets.ppk-x]\nid = 'x'\n", "secrets.ppk-x.secret", "no secret"),
        ("", "[secrets.ppk-x]\nid = 'x'\nsecret = '0x" + PPK_HEX + "'\nfoo = 1\n",
         "secrets.ppk-x.foo", "unknown key"),
        ("", PPK_SECTION.format(secret="0x" + PPK_HEX)
         + "[secrets.ppk-2]\nid = 'ppk-moon'\nsecret = '0x" + PPK_HEX + "'\n",
         "secrets.ppk-2.id", "twice"),
    ],
)  # fmt: skip
def test_mistakes_name_the_key_and_never_the_secret(
    conn: str, secrets: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        the_conn(conn, secrets)
    text = str(info.value)
    assert key in text and words in text, text
    assert PPK_HEX[:16] not in text and "zz" + PPK_HEX[:8] not in text


def test_ppk_with_eap_is_refused() -> None:
    secrets = PPK_SECTION.format(secret="0x" + PPK_HEX)
    secrets += "[secrets.eap-moon]\nids = ['moon']\nsecret = 'a long eap password'\n"
    with pytest.raises(ConfigError, match="not supported"):
        the_conn('ppk_id = "ppk-moon"', secrets, remote='auth = "eap-md5"')


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "ppk.key"
    key.write_text("0x" + PPK_HEX + "\n")
    key.chmod(0o644)
    secrets = "[secrets.ppk-moon]\nid = 'ppk-moon'\nsecret_file = 'ppk.key'\n"
    with pytest.raises(ConfigError, match="readable by others"):
        the_conn('ppk_id = "ppk-moon"', secrets, path=tmp_path / "c.toml")
    key.chmod(0o600)
    conn = the_conn('ppk_id = "ppk-moon"', secrets, path=tmp_path / "c.toml")
    assert conn.ppks == ((b"ppk-moon", bytes.fromhex(PPK_HEX)),)


def test_repr_holds_no_ppk() -> None:
    conn = the_conn('ppk_id = "ppk-moon"', PPK_SECTION.format(secret="0x" + PPK_HEX))
    text = repr(conn)
    assert "ppk-moon" in text
    assert PPK_HEX[:16] not in text and repr(bytes.fromhex(PPK_HEX))[:20] not in text
