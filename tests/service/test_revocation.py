"""Revocation in the daemon: remote.revocation / remote.crls in the config, CRLs fetched over
HTTP from a server the test starts on loopback (python -m http.server), OCSP from a real
responder (`openssl ocsp -port`), both through two daemon processes driven by the CLI.

moon checks sun's certificate with revocation = strict; sun's certificate names the CRL
distribution point and/or the OCSP responder. A revoked sun: `up` fails with
AUTHENTICATION_FAILED and neither daemon holds an SA or a kernel state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.x509 import ocsp

from ikev2.config import parse_config
from ikev2.engine.config import RevocationPolicy
from ikev2.engine.revocation import RevocationFetch
from ikev2.errors import ConfigError
from ikev2.service.control import request
from ikev2.service.revocation import http_fetch
from ikev2.service.udp import free_port_pair
from ikev2.testing.revocation_pki import (
    Issued,
    make_ca,
    make_crl,
    make_leaf,
    ocsp_answer,
    openssl_index,
)

from .daemons import MOON, SUN, Daemon, wait_until


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def process(args: list[str], log: Path, ready: str | None = None) -> Iterator[subprocess.Popen]:  # type: ignore[type-arg]
    """A helper server the test started; killed by its PID at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def wait_listening(port: int, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[tuple[int, Path]]:
    port, log = free_tcp_port(), directory.parent / "http.log"
    args = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
            "--directory", str(directory)]  # fmt: skip
    with process(args, log):
        wait_listening(port)
        yield port, log


def daemon_config(side: str, port: int, work: Path, extra_remote: str = "") -> str:
    me, peer = (MOON, SUN) if side == "moon" else (SUN, MOON)
    ids = ("moon.ikev2.test", "sun.ikev2.test")
    local_id, remote_id = ids if side == "moon" else ids[::-1]
    nets = ("10.0.1.0/24", "10.0.2.0/24") if side == "moon" else ("10.0.2.0/24", "10.0.1.0/24")
    return f"""
[daemon]
addresses = ["{me}"]
port = {port}
nat_port = {port + 1}
control_socket = "{work / f"{side}.sock"}"
kernel = "memory"
[connections.net]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
local_port = {port}
remote_port = {port}
proposals = "aes256gcm16-prfsha256-x25519"
[connections.net.local]
auth = "pubkey"
id = "{local_id}"
certs = ["{side}.crt"]
key = "{side}.key"
[connections.net.remote]
auth = "pubkey"
id = "{remote_id}"
cacerts = ["ca.crt"]
{extra_remote}
[connections.net.children.net]
local_ts = ["{nets[0]}"]
remote_ts = ["{nets[1]}"]
esp_proposals = ["aes256gcm16"]
"""


async def run_pair(work: Path, moon: Issued, sun: Issued, ca: Issued, moon_remote: str) -> dict:  # type: ignore[type-arg]
    """Start sun and moon, `up net` on moon; the CLI result and both sides' SAs and states."""
    port = free_port_pair((MOON, SUN))
    for name, who in (("moon", moon), ("sun", sun)):
        (work / f"{name}.crt").write_bytes(who.pem())
        (work / f"{name}.key").write_bytes(who.key_pem())
        os.chmod(work / f"{name}.key", 0o600)
    (work / "ca.crt").write_bytes(ca.pem())
    daemons = {}
    for name in ("sun", "moon"):
        config = work / f"{name}.toml"
        config.write_text(daemon_config(name, port, work, moon_remote if name == "moon" else ""))
        daemons[name] = Daemon(name, config, str(work / f"{name}.sock"), work / f"{name}.log")
    try:
        for daemon in daemons.values():
            await daemon.start()
        code, out, err = await daemons["moon"].cli("up", "net", timeout=60)
        moon_sas = await daemons["moon"].sas()
        sun_sas = await wait_until(lambda: _settled(daemons["sun"]), timeout=10)
        states = [request(d.control, {"cmd": "stats"})["kernel_sas"] for d in daemons.values()]
        return {"code": code, "out": out + err, "moon": moon_sas, "sun": sun_sas,
                "kernel_sas": states, "log": (work / "moon.log").read_text()}  # fmt: skip
    finally:
        for daemon in daemons.values():
            with contextlib.suppress(Exception):
                await daemon.stop(5)
            daemon.kill()


async def _settled(daemon: Daemon) -> list:  # type: ignore[type-arg]
    sas = await daemon.sas()
    return sas if all(sa["state"] == "established" for sa in sas) else []


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ikev2rv-"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


# --------------------------------------------------------------------------- daemons


@pytest.mark.parametrize("revoked", [False, True])
async def test_crl_distribution_point_over_http(work: Path, revoked: bool) -> None:
    ca = make_ca()
    served = work / "www"
    served.mkdir()
    with http_server(served) as (http_port, http_log):
        uri = f"http://127.0.0.1:{http_port}/ca.crl"
        moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test", crl_uri=uri)
        (served / "ca.crl").write_bytes(make_crl(ca, (sun.cert,) if revoked else ()))
        result = await run_pair(work, moon, sun, ca, 'revocation = "strict"')
        gets = http_log.read_text().count("GET /ca.crl")
    assert gets == 1  # one fetch, by moon
    assert "revocation fetched" in result["log"]
    if revoked:
        assert result["code"] != 0 and "certificate revoked" in result["out"], result["out"]
        assert result["moon"] == [] and result["sun"] == []
        assert result["kernel_sas"] == [0, 0]
    else:
        assert result["code"] == 0, result["out"]
        assert [sa["state"] for sa in result["moon"]] == ["established"]
        assert result["kernel_sas"] == [2, 2]


@pytest.mark.parametrize("revoked", [False, True])
async def test_ocsp_responder(work: Path, revoked: bool) -> None:
    ca = make_ca()
    port = free_tcp_port()
    moon = make_leaf(ca, "moon.ikev2.test")
    sun = make_leaf(ca, "sun.ikev2.test", ocsp_uri=f"http://127.0.0.1:{port}/")
    # the responder must listen where the certificate says: start it on that port
    with ocsp_responder_on(work, ca, [(moon, False), (sun, revoked)], port):
        result = await run_pair(work, moon, sun, ca, 'revocation = "strict"')
    if revoked:
        assert result["code"] != 0 and "certificate revoked" in result["out"], result["out"]
        assert result["moon"] == [] and result["sun"] == [] and result["kernel_sas"] == [0, 0]
    else:
        assert result["code"] == 0, result["out"]
        assert result["kernel_sas"] == [2, 2]


@contextlib.contextmanager
def ocsp_responder_on(
    work: Path, ca: Issued, entries: list[tuple[Issued, bool]], port: int
) -> Iterator[int]:
    (work / "ca.pem").write_bytes(ca.pem())
    (work / "ca.key").write_bytes(ca.key_pem())
    openssl_index(work / "index.txt", [(e.cert, revoked) for e, revoked in entries])
    args = ["openssl", "ocsp", "-index", str(work / "index.txt"), "-port", str(port),
            "-rsigner", str(work / "ca.pem"), "-rkey", str(work / "ca.key"),
            "-CA", str(work / "ca.pem"), "-nmin", "60", "-timeout", "5"]  # fmt: skip
    log = work / "ocsp.log"
    with process(args, log):
        # not a probe connection: the responder serves one client at a time and would wait
        # for that one's request
        for _ in range(200):
            if "waiting for OCSP client connections" in log.read_text(errors="replace"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"openssl ocsp did not start: {log.read_text()}")
        yield port


async def test_unreachable_crl_server_ifuri_fails_relaxed_passes(work: Path) -> None:
    ca = make_ca()
    uri = f"http://127.0.0.1:{free_tcp_port()}/ca.crl"  # nothing listens there
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test", crl_uri=uri)
    result = await run_pair(work, moon, sun, ca, 'revocation = "ifuri"')
    assert result["code"] != 0 and "(ifuri)" in result["out"], result["out"]
    assert "revocation fetch failed" in result["log"]
    result = await run_pair(work, moon, sun, ca, 'revocation = "relaxed"')
    assert result["code"] == 0, result["out"]


async def test_crl_file_from_the_config(work: Path) -> None:
    ca = make_ca()
    moon, sun = make_leaf(ca, "moon.ikev2.test"), make_leaf(ca, "sun.ikev2.test")
    (work / "crls").mkdir()
    (work / "crls" / "ca.crl").write_bytes(make_crl(ca, (sun.cert,)))
    result = await run_pair(work, moon, sun, ca, 'crls = ["crls"]')
    assert result["code"] != 0 and "certificate revoked" in result["out"], result["out"]
    assert result["kernel_sas"] == [0, 0]


# --------------------------------------------------------------------------- the fetcher alone


async def test_http_fetch_of_an_ocsp_answer_from_openssl(work: Path) -> None:
    """The OCSP request we POST is one openssl answers, for the certificate asked about."""
    ca = make_ca()
    leaf = make_leaf(ca, "sun.ikev2.test")
    port = free_tcp_port()
    with ocsp_responder_on(work, ca, [(leaf, True)], port):
        request_ = RevocationFetch(1, "ocsp", f"http://127.0.0.1:{port}/", leaf.der, ca.der)
        data = await asyncio.get_running_loop().run_in_executor(None, http_fetch, request_)
    assert data is not None
    answer = ocsp.load_der_ocsp_response(data)
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.serial_number == leaf.cert.serial_number
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert ocsp_answer(leaf.cert, ca, ocsp.OCSPCertStatus.GOOD)  # the helper agrees on the ID


# --------------------------------------------------------------------------- config


def _config(tmp: Path, remote_extra: str) -> str:
    ca = make_ca()
    me = make_leaf(ca, "moon.ikev2.test")
    (tmp / "moon.crt").write_bytes(me.pem())
    (tmp / "moon.key").write_bytes(me.key_pem())
    os.chmod(tmp / "moon.key", 0o600)
    (tmp / "ca.crt").write_bytes(ca.pem())
    (tmp / "crls").mkdir(exist_ok=True)
    (tmp / "crls" / "a.crl").write_bytes(make_crl(ca, ()))
    (tmp / "b.pem").write_bytes(b"not a crl")
    return daemon_config("moon", 5000, tmp, remote_extra)


def test_config_revocation_and_crls(tmp_path: Path) -> None:
    text = _config(tmp_path, 'revocation = "ifuri"\ncrls = ["crls"]')
    conn = parse_config(text, tmp_path / "c.toml").engine.connections[0]
    assert conn.remote_auth.revocation is RevocationPolicy.IFURI
    assert len(conn.remote_auth.crls) == 1
    default = parse_config(_config(tmp_path, ""), tmp_path / "c.toml").engine.connections[0]
    assert default.remote_auth.revocation is RevocationPolicy.RELAXED
    assert default.remote_auth.crls == ()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('revocation = "sometimes"', ("remote.revocation", "strict, ifuri, relaxed")),
        ('crls = ["b.pem"]', ("remote.crls", "b.pem is not a CRL")),
        ('crls = ["missing.crl"]', ("remote.crls", "does not exist")),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, extra: str, words: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(tmp_path, extra), tmp_path / "c.toml")
    message = str(caught.value)
    assert all(w in message for w in words), message
