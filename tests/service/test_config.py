"""The TOML loader: what a good file becomes, and one clear line for each kind of mistake.

The mistakes are also tried through the CLI, as a new user would meet them:
`ikev2 daemon --config bad.toml` exits non-zero with one line naming the file, the key and the fix.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ikev2.config import load_config, parse_config
from ikev2.constants import EncrId, IdType, IpProto, ProtocolId
from ikev2.engine.config import AuthMethodName, Mode, SendCert
from ikev2.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "fixtures" / "config" / "example.toml"
PKI = REPO / "fixtures" / "pki" / "ecdsa"

GOOD = """
[daemon]
addresses = ["127.0.0.1"]
port = 15500
kernel = "memory"

[connections.net]
local_addrs = ["192.0.2.1"]
remote_addrs = "192.0.2.2"
proposals = "aes256gcm16-prfsha256-x25519, aes128-sha256-modp2048"
dpd_delay = "45s"
rekey_time = "2h"
retransmit_limit = "1m"
[connections.net.local]
id = "moon.example"
[connections.net.remote]
id = "sun.example"
[connections.net.children.web]
local_ts = ["dynamic[tcp/443]"]
remote_ts = ["10.2.0.0/16", "2001:db8::/32"]
esp_proposals = ["aes128gcm16"]
mode = "transport"
start_action = "start"
rekey_time = 1800
[connections.net.children.all]
ah_proposals = "sha256"

[secrets.other]
ids = ["other.example"]
secret = "not this one"
[secrets.ours]
ids = ["sun.example", "moon.example"]
secret = "the right secret"
"""


def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_file_becomes_the_engine_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD, "good.toml"))
    assert config.daemon.addresses == (ipaddress.ip_address("127.0.0.1"),)
    assert (config.daemon.port, config.daemon.nat_port, config.daemon.kernel) == (
        15500, 4500, "memory"
    )  # fmt: skip
    [conn] = config.engine.connections
    assert conn.remote_addrs == (ipaddress.ip_address("192.0.2.2"),)
    assert [p.encr for p in conn.ike_proposals] == [
        ((EncrId.AES_GCM_16, 256),),
        ((EncrId.AES_CBC, 128),),
    ]
    assert conn.timers.dpd_delay == 45 and conn.timers.ike_rekey_time == 7200
    assert conn.timers.ike_life_time == pytest.approx(7920)
    assert conn.timers.retransmit_limit == 60 and conn.timers.retransmit_delay(9) == 60
    assert conn.local_id.id_type is IdType.FQDN and conn.local_id.data == b"moon.example"
    assert conn.local_auth.method is AuthMethodName.PSK
    assert conn.local_auth.psk == conn.remote_auth.psk == b"the right secret"
    web, everything = conn.children
    assert web.mode is Mode.TRANSPORT and web.rekey_time == 1800
    assert web.life_time == pytest.approx(1980)
    [lts] = web.local_ts
    assert (str(lts.network), lts.ip_protocol, lts.start_port, lts.end_port) == (
        "192.0.2.1/32", IpProto.TCP, 443, 443
    )  # fmt: skip
    assert [str(t.network) for t in web.remote_ts] == ["10.2.0.0/16", "2001:db8::/32"]
    assert everything.proposals[0].protocol is ProtocolId.AH
    assert [str(t.network) for t in everything.local_ts] == ["192.0.2.1/32"]  # default dynamic
    assert config.connections_to_start() == ["net"]
    assert config.engine.cookie_threshold == 30
    assert conn.send_cert is SendCert.IFASKED  # strongSwan's default
    always = GOOD.replace('dpd_delay = "45s"', 'dpd_delay = "45s"\nsend_cert = "always"')
    [conn] = load_config(write(tmp_path, always, "always.toml")).engine.connections
    assert conn.send_cert is SendCert.ALWAYS


def test_the_bundled_examples_load() -> None:
    for name in ("example.toml", "example-peer.toml"):
        config = load_config(EXAMPLE.parent / name)
        assert config.engine.connections[0].children[0].name == "net"


def test_pubkey_credentials_from_files(tmp_path: Path) -> None:
    key = tmp_path / "moon.key"
    key.write_bytes((PKI / "moon.key").read_bytes())
    key.chmod(0o600)
    text = f"""
[connections.c]
local_addrs = ["192.0.2.1"]
[connections.c.local]
auth = "pubkey"
id = "moon.ikev2.test"
certs = ["{PKI / "moon.crt"}"]
key = "moon.key"
[connections.c.remote]
auth = "pubkey"
cacerts = ["{PKI / "ca.crt"}"]
"""
    [conn] = load_config(write(tmp_path, text, "c.toml")).engine.connections
    assert conn.local_auth.method is AuthMethodName.PUBKEY
    assert len(conn.local_auth.certs) == 1 and conn.local_auth.private_key is not None
    assert len(conn.remote_auth.trust_anchors) == 1 and conn.remote_id is None


# one line per mistake: (what, TOML, the key it must name, words of the problem/fix)
MISTAKES = [
    ("unknown key", GOOD.replace("dpd_delay", "dpd_dealy"),
     "connections.net.dpd_dealy", "unknown key (fix: did you mean dpd_delay?)"),
    ("bad proposal", GOOD.replace("aes256gcm16-prf", "aes256gmc16-prf"),
     "connections.net.proposals", "did you mean aes256gcm16"),
    ("bad ESP proposal", GOOD.replace('["aes128gcm16"]', '["aes128-sha257"]'),
     "connections.net.children.web.esp_proposals", "sha257"),
    ("bad duration", GOOD.replace('"45s"', '"45 seconds"'),
     "connections.net.dpd_delay", "not a duration"),
    ("bad address", GOOD.replace('"192.0.2.2"', '"sun"'),
     "connections.net.remote_addrs", "not an IP address"),
    ("bad mode", GOOD.replace('"transport"', '"tunel"'),
     "connections.net.children.web.mode", "use one of tunnel, transport"),
    ("bad send_cert", GOOD.replace('dpd_delay = "45s"', 'dpd_delay = "45s"\nsend_cert = "yes"'),
     "connections.net.send_cert", "use one of ifasked, always, never"),
    ("no matching secret", GOOD.replace('"sun.example", "moon.example"', '"x.example"'),
     "connections.net.local.auth", "[secrets.NAME]"),
    ("unknown daemon key", GOOD.replace("port = 15500", "prot = 15500"),
     "daemon.prot", "did you mean port?"),
    ("TOML syntax", GOOD.replace("[daemon]", "[daemon"), "(syntax)", "correct the TOML"),
    ("wrong type", GOOD.replace("port = 15500", 'port = "x"'), "daemon.port", "wrong type"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "key", "words"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_names_file_key_and_fix(
    tmp_path: Path, what: str, text: str, key: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message and "(fix: " in message and "\n" not in message


def run_daemon_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ikev2.cli", "daemon", "--config", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def assert_one_clear_line(result: subprocess.CompletedProcess[str], path: Path, key: str) -> str:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ikev2: config error: {path}: {key}: "), lines[0]
    assert "(fix: " in lines[0]
    return lines[0]


def test_cli_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("esp_proposals", "esp_proposal"))
    line = assert_one_clear_line(
        run_daemon_cli(path), path, "connections.net.children.web.esp_proposal"
    )
    assert "did you mean esp_proposals?" in line


def test_cli_bad_proposal_string(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("aes256gcm16-prf", "aes256gmc16-prf"))
    line = assert_one_clear_line(run_daemon_cli(path), path, "connections.net.proposals")
    assert "'aes256gmc16'" in line and "did you mean aes256gcm16" in line


def test_cli_missing_key_file(tmp_path: Path) -> None:
    text = f"""
[connections.c]
local_addrs = ["192.0.2.1"]
[connections.c.local]
auth = "pubkey"
certs = ["{PKI / "moon.crt"}"]
key = "missing.key"
[connections.c.remote]
auth = "pubkey"
cacerts = ["{PKI / "ca.crt"}"]
"""
    path = write(tmp_path, text)
    line = assert_one_clear_line(run_daemon_cli(path), path, "connections.c.local.key")
    assert "missing.key" in line and "does not exist" in line


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_cli_group_or_world_readable_psk_file(tmp_path: Path, mode: int) -> None:
    psk = tmp_path / "psk.txt"
    psk.write_text("a secret in a file\n")
    psk.chmod(mode)
    path = write(tmp_path, GOOD.replace('secret = "the right secret"', 'secret_file = "psk.txt"'))
    line = assert_one_clear_line(run_daemon_cli(path), path, "secrets.ours.secret_file")
    assert f"mode {mode:04o}" in line and f"chmod 600 {psk}" in line


def test_a_private_psk_file_is_accepted(tmp_path: Path) -> None:
    psk = tmp_path / "psk.txt"
    psk.write_text("a secret in a file\n")
    os.chmod(psk, 0o600)
    path = write(tmp_path, GOOD.replace('secret = "the right secret"', 'secret_file = "psk.txt"'))
    [conn] = load_config(path).engine.connections
    assert conn.local_auth.psk == b"a secret in a file"


def test_cli_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert_one_clear_line(run_daemon_cli(path), path, "(file)")


def test_parse_config_resolves_relative_paths_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    psk = tmp_path / "sub" / "psk.txt"
    psk.write_text("relative")
    psk.chmod(0o600)
    text = GOOD.replace('secret = "the right secret"', 'secret_file = "psk.txt"')
    config = parse_config(text, tmp_path / "sub" / "x.toml")
    assert config.engine.connections[0].local_auth.psk == b"relative"


SECRET_VALUE = "s3cr3t-never-shown"


@pytest.mark.parametrize(
    "replacement",
    [
        f'secret = ["{SECRET_VALUE}"]',
        f'secret = {{ value = "{SECRET_VALUE}" }}',
        "secret = 73570157",  # a numeric secret is still a secret
    ],
    ids=["array", "table", "integer"],
)
def test_a_secret_of_the_wrong_type_is_named_but_never_shown(
    tmp_path: Path, replacement: str
) -> None:
    path = write(tmp_path, GOOD.replace('secret = "the right secret"', replacement))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: secrets.ours.secret: "), message
    assert "wrong type" in message and "expected string" in message
    assert SECRET_VALUE not in message and "73570157" not in message
    assert "the right secret" not in message


def test_cli_does_not_echo_a_secret_of_the_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('"the right secret"', f'["{SECRET_VALUE}"]'))
    result = run_daemon_cli(path)
    line = assert_one_clear_line(result, path, "secrets.ours.secret")
    assert "expected string" in line
    assert SECRET_VALUE not in result.stderr + result.stdout


def test_a_secrets_value_that_is_not_a_table_is_not_shown(tmp_path: Path) -> None:
    text = GOOD.split("[secrets.other]")[0].replace(
        "[daemon]", f'secrets = "{SECRET_VALUE}"\n[daemon]'
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: secrets: ")
    assert SECRET_VALUE not in str(info.value)


def test_other_wrong_types_still_show_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("port = 15500", 'port = "x"'))
    with pytest.raises(ConfigError, match=r"'x' has the wrong type \(string, expected integer\)"):
        load_config(path)


# one row per out-of-range value: (what, old text, new text, key, words); each was accepted before
CONN = "connections.net"
CHILD = "connections.net.children.web"
RANGES = [
    ("negative duration", 'rekey_time = "2h"', "rekey_time = -5", f"{CONN}.rekey_time",
     "must be a finite number of seconds >= 0 and <= 315360000, got -5"),
    ("nan duration", 'dpd_delay = "45s"', "dpd_delay = nan", f"{CONN}.dpd_delay", "got nan"),
    ("inf duration", 'dpd_delay = "45s"', "dpd_delay = inf", f"{CONN}.dpd_delay", "got inf"),
    ("huge duration", 'rekey_time = "2h"', 'rekey_time = "99999d"', f"{CONN}.rekey_time",
     "got '99999d'"),
    ("negative child rekey", "rekey_time = 1800", "rekey_time = -1", f"{CHILD}.rekey_time",
     ">= 0"),
    ("inf child life", "rekey_time = 1800", "rekey_time = 1800\nlife_time = inf",
     f"{CHILD}.life_time", "got inf"),
    ("negative over_time", 'rekey_time = "2h"', "rekey_time = 7200\nover_time = -1.5",
     f"{CONN}.over_time", "got -1.5"),
    ("zero retransmit timeout", 'rekey_time = "2h"', "retransmit_timeout = 0",
     f"{CONN}.retransmit_timeout", ">= 0.1"),
    ("retransmit base 1", 'rekey_time = "2h"', "retransmit_base = 1",
     f"{CONN}.retransmit_base", "must be a finite number > 1 and <= 10, got 1"),
    ("retransmit base below 1", 'rekey_time = "2h"', "retransmit_base = 0.5",
     f"{CONN}.retransmit_base", "got 0.5"),
    ("huge retransmit base", 'rekey_time = "2h"', "retransmit_base = 1e200",
     f"{CONN}.retransmit_base", "<= 10"),
    ("nan retransmit base", 'rekey_time = "2h"', "retransmit_base = nan",
     f"{CONN}.retransmit_base", "got nan"),
    ("negative tries", 'rekey_time = "2h"', "retransmit_tries = -1",
     f"{CONN}.retransmit_tries", "must be a finite whole number >= 0 and <= 20, got -1"),
    ("too many tries", 'rekey_time = "2h"', "retransmit_tries = 1208",
     f"{CONN}.retransmit_tries", "got 1208"),
    ("negative life_bytes", "rekey_time = 1800", "rekey_time = 1800\nlife_bytes = -1",
     f"{CHILD}.life_bytes", "got -1"),
    ("negative life_packets", "rekey_time = 1800", "rekey_time = 1800\nlife_packets = -7",
     f"{CHILD}.life_packets", "got -7"),
    ("negative replay window", "rekey_time = 1800", "rekey_time = 1800\nreplay_window = -32",
     f"{CHILD}.replay_window", "got -32"),
    ("huge replay window", "rekey_time = 1800", "rekey_time = 1800\nreplay_window = 99999999",
     f"{CHILD}.replay_window", "<= 32768"),
    ("ipcomp maybe", "rekey_time = 1800", 'rekey_time = 1800\nipcomp = "maybe"',
     f"{CHILD}.ipcomp", "'maybe' is neither yes nor no"),
    ("ipcomp number", "rekey_time = 1800", "rekey_time = 1800\nipcomp = 1",
     f"{CHILD}.ipcomp", "wrong type"),
    ("negative max_half_open", "port = 15500", "port = 15500\nmax_half_open = -1",
     "daemon.max_half_open", "got -1"),
    ("negative cookie_threshold", "port = 15500", "port = 15500\ncookie_threshold = -3",
     "daemon.cookie_threshold", "got -3"),
    ("TS protocol over 255", '"dynamic[tcp/443]"', '"dynamic[300/443]"',
     f"{CHILD}.local_ts", "protocol 300 is out of range"),
    ("TS port over 65535", '"dynamic[tcp/443]"', '"dynamic[tcp/70000]"',
     f"{CHILD}.local_ts", "out of order or range"),
    ("1-character PSK", '"the right secret"', '"x"', "secrets.ours.secret",
     "shorter than 8 bytes"),
    ("7-character PSK", '"the right secret"', '"1234567"', "secrets.ours.secret",
     "use 20 or more random characters"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "old", "new", "key", "words"), RANGES, ids=[r[0] for r in RANGES])
def test_each_out_of_range_value_names_file_key_range_and_fix(
    tmp_path: Path, what: str, old: str, new: str, key: str, words: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message and "(fix: " in message and "\n" not in message


def test_a_short_psk_file_is_refused_and_not_shown(tmp_path: Path) -> None:
    secret = tmp_path / "psk.txt"
    secret.write_text("abc12\n")
    secret.chmod(0o600)
    path = write(tmp_path, GOOD.replace('secret = "the right secret"', 'secret_file = "psk.txt"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: secrets.ours.secret_file: ")
    assert "abc12" not in str(info.value)


@pytest.mark.parametrize(
    ("new", "check"),
    [
        ("retransmit_base = 10\nretransmit_tries = 20\nretransmit_timeout = 0.1",
         lambda c: c.timers.retransmit_tries == 20 and c.timers.retransmit_base == 10),
        ("rekey_time = 0\nreauth_time = 0\ndpd_delay = 0",
         lambda c: c.timers.ike_rekey_time == 0 and c.timers.dpd_delay == 0),
    ],
)  # fmt: skip
def test_the_edges_of_each_range_are_accepted(tmp_path: Path, new: str, check: Any) -> None:
    text = GOOD.replace('rekey_time = "2h"', new, 1).replace('dpd_delay = "45s"\n', "", 1)
    [conn] = load_config(write(tmp_path, text, "edge.toml")).engine.connections
    assert check(conn)


def test_a_short_psk_through_the_cli_is_one_line_without_the_secret(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('"the right secret"', '"s3cr"'))
    result = run_daemon_cli(path)
    assert_one_clear_line(result, path, "secrets.ours.secret")
    assert "s3cr" not in result.stderr + result.stdout


def test_block_threshold_reaches_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text("[daemon]\nblock_threshold = 2\n")
    assert load_config(path).engine.block_threshold == 2
    path.write_text("[daemon]\nblock_threshold = -1\n")
    with pytest.raises(ConfigError, match=r"daemon\.block_threshold"):
        load_config(path)


def test_drop_log_limits_reach_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text('[daemon]\ndrop_log_lines = 3\ndrop_log_interval = "1m"\n')
    engine = load_config(path).engine
    assert (engine.drop_log_lines, engine.drop_log_interval) == (3, 60.0)
    for bad in ("drop_log_lines = -1", "drop_log_interval = 0", 'drop_log_interval = "2d"'):
        path.write_text(f"[daemon]\n{bad}\n")
        with pytest.raises(ConfigError, match=rf"daemon\.{bad.split()[0]}"):
            load_config(path)


@pytest.mark.parametrize(
    ("line", "wanted"),
    [("ipcomp = true", True), ('ipcomp = "yes"', True), ('ipcomp = "No"', False),
     ("ipcomp = false", False), ("", False)],
)  # fmt: skip
def test_child_ipcomp(tmp_path: Path, line: str, wanted: bool) -> None:
    """RFC 3173: a TOML boolean, or swanctl.conf's yes / no; off unless asked for."""
    text = GOOD.replace("rekey_time = 1800", f"rekey_time = 1800\n{line}")
    config = load_config(write(tmp_path, text, "good.toml"))
    web = next(c for c in config.engine.connections[0].children if c.name == "web")
    other = next(c for c in config.engine.connections[0].children if c.name == "all")
    assert web.ipcomp is wanted and other.ipcomp is False
