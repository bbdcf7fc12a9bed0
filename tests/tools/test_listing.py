"""`ikev2 check-config`, `list-conns` and `list-certs` as a user runs them: the real CLI process on
real files, exit codes, text and --json."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "fixtures" / "config" / "example.toml"
PKI = ROOT / "fixtures" / "pki" / "ecdsa"


def ikev2(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ikev2.cli", *args], capture_output=True, text=True, check=False
    )


def pubkey_config(tmp_path: Path) -> Path:
    key = tmp_path / "moon.key"
    key.write_bytes((PKI / "moon.key").read_bytes())
    key.chmod(0o600)
    path = tmp_path / "certs.toml"
    path.write_text(f"""
[connections.rw]
local_addrs = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["aes128-sha256-ecp256"]
[connections.rw.local]
auth = "pubkey"
id = "moon.ikev2.test"
certs = ["{PKI / "moon.crt"}"]
key = "moon.key"
[connections.rw.remote]
auth = "pubkey"
cacerts = ["{PKI / "ca.crt"}"]
[connections.rw.children.web]
local_ts = ["10.1.0.0/24[tcp/443]"]
remote_ts = ["dynamic"]
start_action = "trap"
[connections.backup]
local_addrs = ["192.0.2.1"]
[connections.backup.local]
auth = "pubkey"
certs = ["{PKI / "moon.crt"}"]
key = "moon.key"
id = "moon.ikev2.test"
[connections.backup.remote]
auth = "pubkey"
cacerts = ["{PKI / "ca.crt"}"]
""")
    return path


def test_check_config_accepts_the_example_and_names_file_key_and_fix(tmp_path: Path) -> None:
    good = ikev2("check-config", str(EXAMPLE))
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == f"{EXAMPLE}: OK (1 connections, 1 children)"
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("dpd_delay", "dpd_dealy"))
    done = ikev2("check-config", str(bad))
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert str(bad) in line and "connections.net.dpd_dealy" in line
    assert "did you mean dpd_delay?" in line
    missing = ikev2("check-config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_check_config_never_shows_a_secret(tmp_path: Path) -> None:
    bad = tmp_path / "short.toml"
    bad.write_text(EXAMPLE.read_text().replace(
        'secret = "demo only: replace this with 32+ random characters"', 'secret = "tiny"'
    ))  # fmt: skip
    done = ikev2("check-config", str(bad))
    assert done.returncode == 1 and "secrets.moon-sun.secret" in done.stderr
    assert "tiny" not in done.stderr


def test_list_conns_text_and_json() -> None:
    done = ikev2("list-conns", "--config", str(EXAMPLE), "--json")
    assert done.returncode == 0, done.stderr
    [conn] = json.loads(done.stdout)
    assert conn["name"] == "net"
    assert (conn["local_addrs"], conn["remote_addrs"]) == (["10.99.0.1"], ["10.99.0.2"])
    assert (conn["local_id"], conn["remote_id"]) == ("moon.example", "sun.example")
    assert conn["proposals"] == ["aes256gcm16-prfsha256-x25519", "aes128-sha256-ecp256"]
    assert (conn["local_auth"], conn["dpd_delay"], conn["rekey_time"]) == ("psk", 30.0, 14400.0)
    [child] = conn["children"]
    assert (child["local_ts"], child["remote_ts"]) == (["10.1.0.0/24"], ["10.2.0.0/24"])
    assert child["proposals"] == ["aes256gcm16", "aes128-sha256"]
    assert (child["mode"], child["start_action"], child["life_time"]) == ("tunnel", "none", 3960)
    assert "demo only" not in done.stdout  # the PSK
    text = ikev2("list-conns", "--config", str(EXAMPLE))
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].startswith("net: IKEv2, 10.99.0.1...10.99.0.2")
    assert "    local:  10.1.0.0/24" in text.stdout and "demo only" not in text.stdout


def test_list_conns_selectors_and_start_actions(tmp_path: Path) -> None:
    done = ikev2("list-conns", "--config", str(pubkey_config(tmp_path)), "--json")
    assert done.returncode == 0, done.stderr
    rw, backup = json.loads(done.stdout)
    assert (rw["local_auth"], rw["remote_auth"], rw["remote_id"]) == ("pubkey", "pubkey", "%any")
    [web] = rw["children"]
    assert web["local_ts"] == ["10.1.0.0/24[tcp/443]"] and web["remote_ts"] == ["192.0.2.2/32"]
    assert web["start_action"] == "trap"
    assert backup["remote_addrs"] == ["%any"] and backup["children"] == []
    assert (rw["pools"], rw["vips"]) == ([], [])


def test_list_conns_shows_pools_and_vips(tmp_path: Path) -> None:
    path = tmp_path / "ra.toml"
    path.write_text("""
[pools.office]
addrs = "10.3.0.0/24"
[connections.gw]
local_addrs = ["192.0.2.1"]
pools = ["office"]
[connections.gw.local]
id = "gw.example"
[connections.gw.children.rw]
local_ts = ["10.2.0.0/24"]
[connections.client]
local_addrs = ["192.0.2.9"]
remote_addrs = ["192.0.2.1"]
vips = ["0.0.0.0"]
[connections.client.local]
id = "alice.example"
[secrets.s]
secret = "a long enough test secret"
""")
    done = ikev2("list-conns", "--config", str(path), "--json")
    assert done.returncode == 0, done.stderr
    gw, client = json.loads(done.stdout)
    assert gw["pools"] == ["office"] and client["vips"] == ["0.0.0.0"]
    assert gw["children"][0]["remote_ts"] == ["10.3.0.0/24"]  # dynamic: the pool
    text = ikev2("list-conns", "--config", str(path)).stdout
    assert "  pools: office" in text and "  vips: 0.0.0.0" in text


def test_list_certs_once_each_with_users(tmp_path: Path) -> None:
    done = ikev2("list-certs", "--config", str(pubkey_config(tmp_path)), "--json")
    assert done.returncode == 0, done.stderr
    certs = {c["subject"]: c for c in json.loads(done.stdout)}
    assert len(certs) == 2
    moon_pem = (PKI / "moon.crt").read_bytes()
    moon_der = x509.load_pem_x509_certificate(moon_pem).public_bytes(Encoding.DER)
    [moon] = [c for c in certs.values() if not c["ca"]]
    [ca] = [c for c in certs.values() if c["ca"]]
    assert moon["sha256"] == hashlib.sha256(moon_der).hexdigest()
    assert moon["used_by"] == ["rw local", "backup local"]
    assert ca["used_by"] == ["rw trust", "backup trust"]
    assert moon["issuer"] == ca["subject"] and moon["key"].startswith("ECDSA")
    assert moon["valid_now"] is True and moon["days_left"] > 0
    text = ikev2("list-certs", "--config", str(pubkey_config(tmp_path)))
    assert text.returncode == 0 and f"sha256:   {moon['sha256']}" in text.stdout
    psk_only = ikev2("list-certs", "--config", str(EXAMPLE))
    assert psk_only.returncode == 0 and psk_only.stdout.strip() == "no certificates"
