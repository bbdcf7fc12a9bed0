"""Secrets scan: two real daemons at debug level, one logging JSON and one console text (then the
other way round), run PSK, certificate and EAP-MSCHAPv2 IKE SAs through a child rekey and an IKE
rekey each, with `--key-log` on for both, so every key the daemons derived is known. Then every
log line, every `list-sas` answer (JSON and text), `list-conns --json` and the reprs of the loaded
config objects are searched for the PSK, the EAP password (and its NT hash, RFC 2759 §8.3), the
certificates' private keys and every exported IKE and ESP key, in hex (both cases) and base64
(standard and URL-safe), whole and as a leading fragment: 0 hits.

The key log itself is checked too: it holds the keys and nothing else secret (no PSK, no password).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ikev2.config import load_config
from ikev2.engine.eap.mschapv2 import nt_password_hash
from ikev2.service.udp import free_port_pair
from ikev2.testing.daemon import render_toml

from .daemons import MOON, SUN, Daemon, wait_until

PKI = Path(__file__).resolve().parents[2] / "fixtures" / "pki" / "ecdsa"
PSK = "secrets-scan PSK 4b9e01d7c3a2f68e"
EAP_PASSWORD = "carol's scan password 7e21c0"
PROPOSALS = "aes256gcm16-prfsha256-x25519"
METHODS = ("psk", "cert", "eap")


def _side(
    me: str, peer: str, local: dict[str, Any], remote: dict[str, Any], n: int, moon: bool
) -> dict[str, Any]:
    nets = (f"10.{n}.1.0/24", f"10.{n}.2.0/24")
    lts, rts = nets if moon else nets[::-1]
    return {
        "local_addrs": [me],
        "remote_addrs": [peer],
        "proposals": PROPOSALS,
        "dpd_delay": "30s",
        "local": local,
        "remote": remote,
        "children": {
            "c": {"local_ts": [lts], "remote_ts": [rts], "esp_proposals": ["aes256gcm16"]}
        },
    }


def configs(workdir: Path, port: int) -> dict[str, dict[str, Any]]:
    """moon initiates all three; sun answers with its certificate for "cert" and "eap"."""
    ca = str(workdir / "ca.crt")

    def cert(name: str) -> dict[str, Any]:
        return {
            "auth": "pubkey",
            "id": f"{name}.ikev2.test",
            "certs": [str(workdir / f"{name}.crt")],
            "key": str(workdir / f"{name}.key"),
        }

    def trust(name: str) -> dict[str, Any]:
        return {"auth": "pubkey", "id": f"{name}.ikev2.test", "cacerts": [ca]}

    moon_conns = {
        "psk": _side(MOON, SUN, {"auth": "psk", "id": "moon.example"},
                     {"auth": "psk", "id": "sun.example"}, 0, True),
        "cert": _side(MOON, SUN, cert("moon"), trust("sun"), 1, True),
        "eap": _side(MOON, SUN, {"auth": "eap-mschapv2", "id": "carol@ikev2.test",
                                 "eap_id": "carol"}, trust("sun"), 2, True),
    }  # fmt: skip
    sun_conns = {
        "psk": _side(SUN, MOON, {"auth": "psk", "id": "sun.example"},
                     {"auth": "psk", "id": "moon.example"}, 0, False),
        "cert": _side(SUN, MOON, cert("sun"), trust("moon"), 1, False),
        "eap": _side(SUN, MOON, cert("sun"), {"auth": "eap-mschapv2", "id": "carol@ikev2.test",
                                              "eap_id": "%any"}, 2, False),
    }  # fmt: skip
    secrets = {
        "moon-sun": {"ids": ["moon.example", "sun.example"], "secret": PSK},
        "eap-carol": {"ids": ["carol"], "secret": EAP_PASSWORD},
    }
    out = {}
    for side, me, conns in (("moon", MOON, moon_conns), ("sun", SUN, sun_conns)):
        daemon = {
            "addresses": [me],
            "port": port,
            "nat_port": port + 1,
            "control_socket": str(workdir / f"{side}.sock"),
            "kernel": "memory",
        }
        for conn in conns.values():
            conn["local_port"] = conn["remote_port"] = port
        out[side] = {"daemon": daemon, "connections": conns, "secrets": secrets}
    return out


@asynccontextmanager
async def scan_pair(moon_format: str, sun_format: str) -> AsyncIterator[dict[str, Daemon]]:
    workdir = Path(tempfile.mkdtemp(prefix="ikev2s-"))
    for name in ("ca.crt", "moon.crt", "sun.crt", "moon.key", "sun.key"):
        shutil.copy(PKI / name, workdir / name)
        (workdir / name).chmod(0o600)
    port = free_port_pair((MOON, SUN))
    daemons = {}
    for side, tree in configs(workdir, port).items():
        fmt = moon_format if side == "moon" else sun_format
        config = workdir / f"{side}.toml"
        config.write_text(render_toml(tree))
        args = ("--log-format", fmt, "--log-level", "debug",
                "--key-log", str(workdir / f"{side}.keys"))  # fmt: skip
        daemons[side] = Daemon(side, config, str(workdir / f"{side}.sock"),
                               workdir / f"{side}.log", args)  # fmt: skip
    try:
        await daemons["sun"].start()
        await daemons["moon"].start()
        yield daemons
    finally:
        for daemon in daemons.values():
            if daemon.process is not None and daemon.process.returncode is None:
                await daemon.stop(5)
            daemon.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def spellings(secret: bytes) -> set[str]:
    """The ways a secret could appear in text: hex both cases, base64 and URL-safe base64, whole
    and the first 12 octets (a truncated or wrapped dump), and the text itself if it is text."""
    out = set()
    for part in {secret, secret[:12]}:
        out |= {part.hex(), part.hex().upper(), base64.b64encode(part).decode(),
                base64.urlsafe_b64encode(part).decode().rstrip("=")}  # fmt: skip
        out.add(base64.b64encode(part).decode().rstrip("="))
    with suppress(UnicodeDecodeError):
        out.add(secret.decode())
    return {s for s in out if len(s) >= 12}


def exported_keys(key_log: Path) -> tuple[list[bytes], list[bytes], int, int]:
    """(IKE keys, ESP keys, IKE lines, ESP lines) of one daemon's key log (keylog.py formats)."""
    ike_lines = key_log.read_text().splitlines()
    esp_lines = Path(f"{key_log}.esp_sa").read_text().splitlines()
    ike = []
    for line in ike_lines:
        fields = line.split(",")
        ike += [bytes.fromhex(f) for f in (fields[2], fields[3], fields[5], fields[6]) if f]
    esp = []
    for line in esp_lines:
        fields = [f.strip('"') for f in line.split(",")]
        esp += [bytes.fromhex(f[2:]) for f in (fields[5], fields[7]) if len(f) > 2]
    return ike, esp, len(ike_lines), len(esp_lines)


def private_scalars(paths: Iterable[Path]) -> list[bytes]:
    out = []
    for path in paths:
        key = load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        size = (key.curve.key_size + 7) // 8
        out.append(key.private_numbers().private_value.to_bytes(size, "big"))
    return out


async def exercise(moon: Daemon, sun: Daemon, name: str) -> list[str]:
    """up, child rekey, IKE rekey, down for one connection; returns every list-sas output."""
    outputs = []
    code, _out, err = await moon.cli("up", name)
    assert code == 0, f"{name}: {err}\n{moon.log.read_text()[-3000:]}"

    async def current() -> dict[str, Any]:
        [sa] = [s for s in await moon.sas() if s["connection"] == name]
        return sa

    first = await current()
    spi = first["children"][0]["spi_in"]
    code, _out, err = await moon.cli("rekey", str(first["id"]), "--child", spi)
    assert code == 0, err

    async def child_rekeyed() -> bool:
        sa = await current()
        return len(sa["children"]) == 1 and sa["children"][0]["spi_in"] != spi

    assert await wait_until(child_rekeyed), await moon.sas()
    second = await current()
    code, _out, err = await moon.cli("rekey", str(second["id"]))
    assert code == 0, err

    async def ike_rekeyed() -> bool:
        sas = [s for s in await moon.sas() if s["connection"] == name]
        theirs = [s for s in await sun.sas() if s["connection"] == name]
        return (
            len(sas) == len(theirs) == 1
            and sas[0]["spi_i"] != second["spi_i"]
            and sas[0]["spi_i"] == theirs[0]["spi_i"]
        )

    assert await wait_until(ike_rekeyed), await moon.sas()
    for daemon in (moon, sun):
        for args in (("list-sas", "--json"), ("list-sas",)):
            code, out, err = await daemon.cli(*args)
            assert code == 0, err
            outputs.append(out + err)
    code, _out, err = await moon.cli("down", name)
    assert code == 0, err
    return outputs


@pytest.mark.parametrize(("moon_format", "sun_format"), [("json", "console"), ("console", "json")])
async def test_no_secret_in_any_log_line_listing_or_repr(moon_format: str, sun_format: str) -> None:
    async with scan_pair(moon_format, sun_format) as daemons:
        moon, sun = daemons["moon"], daemons["sun"]
        workdir = moon.config.parent
        texts: dict[str, str] = {}
        for name in METHODS:
            for index, out in enumerate(await exercise(moon, sun, name)):
                texts[f"{name} listing {index}"] = out
        for daemon in (moon, sun):
            listed = subprocess.run(
                [sys.executable, "-m", "ikev2.cli", "list-conns", "--json", "--config",
                 str(daemon.config)], capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert listed.returncode == 0, listed.stderr
            texts[f"{daemon.name} list-conns"] = listed.stdout + listed.stderr
            config = load_config(daemon.config)
            texts[f"{daemon.name} config repr"] = repr(config) + str(config)
            for conn in config.engine.connections:
                texts[f"{daemon.name} {conn.name} repr"] = repr(conn) + repr(conn.local_auth)
        for daemon in (moon, sun):
            assert await daemon.stop() == 0
        for daemon in (moon, sun):
            texts[f"{daemon.name} log"] = daemon.log.read_text()

        keys: list[bytes] = []
        for side in ("moon", "sun"):
            ike, esp, ike_lines, esp_lines = exported_keys(workdir / f"{side}.keys")
            # per connection: the first IKE SA and its rekeyed successor; two child SAs (first,
            # rekeyed), each with an outbound and an inbound line
            assert (ike_lines, esp_lines) == (2 * len(METHODS), 4 * len(METHODS)), side
            assert all(len(k) >= 16 for k in ike + esp)
            keys += ike + esp
            key_text = (workdir / f"{side}.keys").read_text()
            key_text += Path(f"{workdir / side}.keys.esp_sa").read_text()
            for secret in (PSK, EAP_PASSWORD, PSK.encode().hex()):
                assert secret not in key_text
            # the scanner's positive control: it finds every exported key where it is
            assert all(any(s in key_text for s in spellings(k)) for k in ike + esp)
        assert len(set(keys)) == len(keys) // 2  # each side exported the same keys, none twice

    # the console format really is console text and the JSON format JSON, both at debug level
    for side, fmt in (("moon", moon_format), ("sun", sun_format)):
        lines = texts[f"{side} log"].splitlines()
        json_lines = [line for line in lines if line.startswith("{")]
        if fmt == "json":
            assert any(json.loads(line).get("level") == "debug" for line in json_lines)
        else:
            assert not json_lines and any("[debug    ]" in line for line in lines)
        assert len(lines) >= 40, (side, len(lines))

    wanted = {"PSK": PSK.encode(), "EAP password": EAP_PASSWORD.encode(),
              "NT hash": nt_password_hash(EAP_PASSWORD.encode())}  # fmt: skip
    for index, scalar in enumerate(private_scalars(PKI / f"{n}.key" for n in ("moon", "sun"))):
        wanted[f"private key {index}"] = scalar
    for index, key in enumerate(keys):
        wanted[f"exported key {index}"] = key
    hits = [
        (secret_name, spelling, where)
        for secret_name, secret in wanted.items()
        for spelling in spellings(secret)
        for where, text in texts.items()
        if spelling in text
    ]
    assert hits == [], hits
    print(f"scanned {sum(len(t) for t in texts.values())} characters of {len(texts)} texts "
          f"for {len(wanted)} secrets: 0 hits", file=sys.stderr)  # fmt: skip
