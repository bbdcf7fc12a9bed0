"""`ikev2 import-swanctl`: strongSwan's documented examples (fixtures/swanctl, with the test PKI
put where swanctl looks for it) and the swanctl.conf files the interop harness generates, run
through the real CLI; the output must load with our loader and say what it dropped on stderr.
For the harness's files, the imported connection must equal what the harness writes for our
daemon from the same scenario (ikev2.testing.interop.ours_config)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ikev2.config import ServiceConfig, load_config
from ikev2.engine.config import AuthMethodName, ConnectionConfig
from ikev2.engine.identity import identity_to_str
from ikev2.testing.daemon import render_toml
from ikev2.testing.interop import ChildSpec, PpkSpec, Spec, ours_config, swanctl_config
from ikev2.testing.strongswan import render_conf
from ikev2.tools.import_swanctl import import_swanctl
from ikev2.tools.import_swanctl import render_toml as ours_render
from ikev2.tools.swanctl_syntax import SwanctlSyntaxError, parse_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "fixtures" / "swanctl"
PKI = ROOT / "fixtures" / "pki" / "ecdsa"


def swanctl_dir(tmp_path: Path, example: str) -> Path:
    """The example's files plus the test PKI under the documentation's names, as swanctl has
    them in /etc/swanctl."""
    target = tmp_path / example
    shutil.copytree(EXAMPLES / example, target)
    for sub, src, name in (("x509", "moon.crt", "moonCert.pem"),
                           ("x509ca", "ca.crt", "strongswanCert.pem"),
                           ("private", "moon.key", "moonKey.pem")):  # fmt: skip
        (target / sub).mkdir(exist_ok=True)
        shutil.copy(PKI / src, target / sub / name)
    (target / "private" / "moonKey.pem").chmod(0o600)
    return target


def run_import(
    conf: Path, *extra: str
) -> tuple[ServiceConfig, str, subprocess.CompletedProcess[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "ikev2.cli", "import-swanctl", str(conf), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = conf.parent / "ikev2.toml"
    out.write_text(done.stdout)
    return load_config(out), done.stdout, done


def test_net2net_psk_with_an_included_base64_secret(tmp_path: Path) -> None:
    config, _text, done = run_import(swanctl_dir(tmp_path, "net2net") / "swanctl.conf")
    [conn] = config.engine.connections
    assert conn.name == "gw-gw"
    assert [str(a) for a in conn.local_addrs] == ["192.168.0.1"]
    assert [str(a) for a in conn.remote_addrs] == ["192.168.0.2"]
    assert conn.local_auth.method is AuthMethodName.PSK
    assert conn.local_auth.psk == b"moon and sun share this test secret"  # 0s..., included
    assert identity_to_str(conn.local_id) == "moon.strongswan.org"
    assert conn.timers.dpd_delay == 0  # swanctl's default: no DPD
    assert conn.timers.reauth_time == 10800
    [child] = conn.children
    assert child.name == "net-net" and child.rekey_time == 5400
    assert [str(t.network) for t in child.local_ts] == ["10.1.0.0/16"]
    assert [str(t.network) for t in child.remote_ts] == ["10.2.0.0/16"]
    dropped = done.stderr
    for key in ("children.net-net.updown", "children.net-net.rekey_bytes"):
        assert f"connections.gw-gw.{key}" in dropped, dropped
    assert "mobike" not in dropped and conn.mobike is False  # RFC 4555: carried over
    assert dropped.count("not carried over") == 3, dropped


def test_host2host_transport_finds_the_private_key(tmp_path: Path) -> None:
    directory = swanctl_dir(tmp_path, "host2host")
    config, text, done = run_import(directory / "swanctl.conf")
    [conn] = config.engine.connections
    assert conn.local_auth.method is AuthMethodName.PUBKEY
    assert f'key = "{directory / "private" / "moonKey.pem"}"' in text
    assert conn.local_auth.private_key is not None and len(conn.local_auth.certs) == 1
    assert len(conn.remote_auth.trust_anchors) == 1  # cadir = x509ca/
    [child] = conn.children
    assert child.mode.value == "transport"
    assert [str(t.network) for t in child.local_ts] == ["192.168.0.1/32"]  # dynamic
    assert "mobike" not in done.stderr and "updown" in done.stderr
    assert conn.mobike is False  # swanctl's mobike = no, carried over (RFC 4555)


def test_rw_cert_gateway_any_peer(tmp_path: Path) -> None:
    config, _text, done = run_import(swanctl_dir(tmp_path, "rw-cert") / "swanctl.conf")
    [conn] = config.engine.connections
    assert conn.remote_addrs == () and conn.remote_id is None
    assert conn.remote_auth.method is AuthMethodName.PUBKEY
    assert conn.ike_proposals and conn.children[0].name == "net"
    # updown, and the dynamic remote_ts of a peer with no address known before it comes
    assert done.stderr.count("not carried over") == 2, done.stderr
    assert "children.net.remote_ts = dynamic" in done.stderr
    assert [str(t.network) for t in conn.children[0].remote_ts] == ["0.0.0.0/0", "::/0"]


def test_rw_eap_pool_and_users(tmp_path: Path) -> None:
    config, text, done = run_import(swanctl_dir(tmp_path, "rw-eap") / "swanctl.conf")
    [conn] = config.engine.connections
    assert conn.remote_auth.method is AuthMethodName.EAP
    assert conn.send_certreq is False
    assert 'pools = ["rw_pool"]' in text and 'addrs = "10.3.0.0/28"' in text
    assert "[secrets.eap-carol]" in text and "[secrets.eap-dave]" in text
    assert "updown" in done.stderr


def test_no_private_key_and_unsupported_things_are_named(tmp_path: Path) -> None:
    conf = tmp_path / "swanctl.conf"
    conf.write_text("""
connections {
   v1 { version = 1 }
   home : templates.base {
      remote_addrs = vpn.example.org, 198.51.100.7
      local-1 {
         auth = pubkey
         certs = nokey.pem
      }
      local-2 { auth = eap-tls }
      remote {
         auth = pubkey
         cacerts = ca.pem
      }
      children {
         c {
            start_action = trap|start
            mode = pass
         }
      }
   }
}
templates {
   base {
      proposals = aes256gcm16-prfsha384-ecp384
      mobike = no
      send_cert = always
   }
}
""")
    (tmp_path / "x509").mkdir()
    shutil.copy(PKI / "sun.crt", tmp_path / "x509" / "nokey.pem")
    imp = import_swanctl(conf)
    lines = "\n".join(imp.dropped)
    assert "connections.v1: not carried over (IKEv1" in lines
    assert "remote_addrs = vpn.example.org" in lines and "host names" in lines
    assert "local-2: not carried over (one authentication round" in lines
    assert "local-1.key: not carried over (no private key for nokey.pem" in lines
    assert "start_action = trap|start" in lines and "mode = pass" in lines
    assert "templates: not carried over" in lines
    home = imp.toml["connections"]["home"]
    assert home["remote_addrs"] == ["198.51.100.7"]
    assert home["children"]["c"]["start_action"] == "start"
    # `home : templates.base`: the base's settings, defined later in the file, apply too
    assert home["proposals"] == ["aes256gcm16-prfsha384-ecp384"]
    assert home["mobike"] is False and "mobike" not in lines
    assert home["send_cert"] == "always" and "send_cert" not in lines


def test_syntax_includes_quotes_and_errors(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text('secrets { ike-x { secret = "with # and } inside" } }\n')
    tree = parse_settings(
        "include a.conf\nbase { x = 1 }\nsec : base { y = two words  # comment\n}\na.b.c = deep\n",
        tmp_path / "main.conf",
    )
    assert tree["secrets"]["ike-x"]["secret"] == "with # and } inside"
    assert tree["sec"] == {"x": "1", "y": "two words"}
    later = parse_settings("a : b { x = mine }\nb { x = base\n y = base }\n", tmp_path / "m")
    assert later["a"] == {"x": "mine", "y": "base"}
    assert tree["a"]["b"]["c"] == "deep"
    bad_texts = [("conn {", "not closed"), ("}", "without a section"),
                 ("x : nowhere { }", "not defined"), ('k = "open', "not closed")]  # fmt: skip
    for bad, words in bad_texts:
        with pytest.raises(SwanctlSyntaxError, match=words) as exc:
            parse_settings(bad, tmp_path / "bad.conf")
        assert "bad.conf:1:" in str(exc.value)
    loop = tmp_path / "loop.conf"
    loop.write_text("include loop.conf\n")
    with pytest.raises(SwanctlSyntaxError, match="deeper"):
        parse_settings(loop.read_text(), loop)


HARNESS_SPECS = [
    Spec("psk-fqdn"),
    Spec("ecdsa-dn", auth="ecdsa", id_kind="dn", dpd_delay=30, ike_rekey_time=3600),
    Spec("rsa-ip", auth="rsa", id_kind="ip", fragmentation=False),
    Spec(
        "two",
        children=(
            ChildSpec(name="a", rekey_time=600),
            ChildSpec(
                name="b",
                mode="transport",
                ours_proposals=("aes128-sha256",),
                ss_proposals=("aes128-sha256",),
            ),
        ),
    ),
    Spec(
        "ah",
        children=(ChildSpec(proto="ah", ours_proposals=("sha256",), ss_proposals=("sha256",)),),
    ),
    # RFC 8784: connections.X.ppk_id / ppk_required and secrets.ppk* carried over
    Spec("rfc8784", ours_ppk=PpkSpec((("ppk-moon", "5f7a0c31" * 8),), "ppk-moon", required=True)),
]


def _shape(conn: ConnectionConfig) -> dict[str, object]:
    return {
        "addrs": (conn.local_addrs, conn.remote_addrs),
        "ids": (identity_to_str(conn.local_id), conn.remote_id and identity_to_str(conn.remote_id)),
        "auth": (conn.local_auth.method, conn.remote_auth.method, conn.local_auth.psk),
        "certs": (conn.local_auth.certs, conn.remote_auth.trust_anchors),
        "proposals": conn.ike_proposals,
        "timers": (conn.timers.dpd_delay, conn.timers.ike_rekey_time, conn.timers.reauth_time),
        "fragmentation": conn.fragmentation,
        "ppk": (conn.ppk_id, conn.ppk_required, conn.ppks),
        "children": [
            (c.name, c.local_ts, c.remote_ts, c.proposals, c.mode, c.rekey_time)
            for c in conn.children
        ],
    }


def _matrix_specs() -> list[Spec]:
    """Every scenario of the interop matrix that is a module-level list (auth, proposals, IPv6)."""
    path = ROOT / "tests" / "interop" / "test_matrix.py"
    module_spec = importlib.util.spec_from_file_location("_interop_matrix", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    found = [getattr(module, n) for n in ("AUTH_SPECS", "PROPOSAL_SPECS", "IPV6_SPECS")]
    assert all(found), "the interop matrix renamed its scenario lists"
    return [spec for specs in found for spec in specs]


BASE_SPECS = list(HARNESS_SPECS)
HARNESS_SPECS += _matrix_specs()


@pytest.mark.parametrize("spec", HARNESS_SPECS, ids=lambda s: s.name)
def test_harness_swanctl_imports_to_what_the_harness_writes_for_us(
    spec: Spec, tmp_path: Path
) -> None:
    """The harness renders each scenario twice: swanctl.conf for a strongSwan "moon" and TOML
    for our moon. Importing the first must give the second's connection."""
    args = ("10.99.0.1", "10.99.0.2", "10.1.0.0/24", "10.2.0.0/24", True)
    files = swanctl_config(spec, "moon", *args, is_ours_side=True)
    swanctl = tmp_path / "swanctl"
    for sub, paths in (("x509", files.certs), ("x509ca", files.cacerts), ("private", files.keys)):
        (swanctl / sub).mkdir(parents=True)
        for path in paths:
            shutil.copy(path, swanctl / sub / path.name)
            (swanctl / sub / path.name).chmod(0o600)
    (swanctl / "swanctl.conf").write_text(render_conf(files.conf) + "\n")
    conf = swanctl / "swanctl.conf"
    if spec in BASE_SPECS:  # through the CLI, as a user runs it
        imported, _text, done = run_import(conf)
        stderr = done.stderr
    else:  # the matrix's many scenarios in-process: the same code without a Python start each
        imp = import_swanctl(conf)
        (swanctl / "ikev2.toml").write_text(ours_render(imp.toml))
        imported = load_config(swanctl / "ikev2.toml")
        stderr = "\n".join(f"{conf}: {line}" for line in imp.dropped)
    expected_path = tmp_path / "expected.toml"
    expected_path.write_text(render_toml(ours_config(spec, *args, tmp_path / "ours")))
    expected = load_config(expected_path)
    [got] = imported.engine.connections
    [want] = expected.engine.connections
    assert _shape(got) == _shape(want)
    # the harness's strongSwan-only settings are named, nothing else
    dropped = {line.split(": ", 1)[1].split(" = ")[0].rsplit(".", 1)[-1]
               for line in stderr.splitlines()}  # fmt: skip
    assert dropped <= {"unique", "dpd_action", "life_time"}, stderr


def test_render_toml_round_trip() -> None:
    import tomllib

    tree = {"connections": {"a b": {"x": ["1", "2"], "flag": True, "n": 3,
                                    "local": {"id": 'q"uote'}}}}  # fmt: skip
    assert tomllib.loads(ours_render(tree)) == tree


def test_ipcomp_is_carried_over(tmp_path: Path) -> None:
    """swanctl.conf's child `ipcomp` (RFC 3173) means the same here: yes/no become booleans."""
    conf = tmp_path / "swanctl.conf"
    conf.write_text("""
connections {
   gw {
      remote_addrs = 198.51.100.7
      local { auth = psk
              id = moon.example }
      remote { auth = psk
               id = sun.example }
      children {
         squeezed { ipcomp = yes
                    esp_proposals = aes256gcm16 }
         plain { ipcomp = no }
         default { }
      }
   }
}
secrets { ike-gw { id-1 = moon.example
                   id-2 = sun.example
                   secret = "a long enough shared secret" } }
""")
    config, text, done = run_import(conf)
    assert ".ipcomp" not in done.stderr, done.stderr  # nothing dropped about it
    children = {c.name: c.ipcomp for c in config.engine.connections[0].children}
    assert children == {"squeezed": True, "plain": False, "default": False}
    assert "ipcomp = true" in text
