"""Revocation against strongSwan 5.9.8 (issue 14): we check strongSwan's certificate with
revocation = strict, both roles, by CRL (its distribution point on an HTTP server the test starts
in our namespace, python -m http.server) and by OCSP (`openssl ocsp` as the responder named in
its Authority Information Access), good and revoked.

Revoked: IKE_AUTH fails with AUTHENTICATION_FAILED and nothing is left on either side; good: the
tunnel comes up with equal keys. As responder we leave strongSwan's IKE_AUTH unanswered until
the status is in, and answer its retransmission; as initiator we resend our request once it is.
The PKI is made fresh with `cryptography` (ikev2.testing.revocation_pki)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ikev2.testing.interop import ROLES, Peers, Spec, ours_config, swanctl_config
from ikev2.testing.revocation_pki import Issued, make_ca, make_crl, make_leaf, openssl_index
from ikev2.testing.topology import Topology

pytestmark = pytest.mark.interop

HTTP_PORT, OCSP_PORT = 8080, 8081


class Helper:
    """A server started in our namespace by the test; killed by its PID."""

    def __init__(self, ns: str, argv: list[str], log: Path, ready: str | None = None) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip
        for _ in range(200):
            text = log.read_text(errors="replace")
            if (ready or "Serving HTTP") in text:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{argv[0]} did not start: {log.read_text(errors='replace')}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.fixture
def helpers() -> Iterator[list[Helper]]:
    made: list[Helper] = []
    yield made
    for helper in made:
        helper.stop()


def configure(p: Peers, tmp: Path, ca: Issued, moon: Issued, sun: Issued) -> None:
    """Both sides on the fresh PKI; ours checks strongSwan's certificate strictly."""
    pos = p.pos
    ca_file = write(tmp / "rv-ca.crt", ca.pem())
    tree = ours_config(p.spec, pos["ours_addr"], pos["ours_peer"], pos["ours_net"],
                       pos["ss_net"], p.ours_initiates, tmp / "ours-files")  # fmt: skip
    conn = tree["connections"][p.spec.name]
    conn["local"]["certs"] = [str(write(tmp / "rv-moon.crt", moon.pem()))]
    conn["local"]["key"] = str(write(tmp / "rv-moon.key", moon.key_pem(), 0o600))
    conn["remote"]["cacerts"] = [str(ca_file)]
    conn["remote"]["revocation"] = "strict"
    p.ours.configure(tree)
    files = swanctl_config(p.spec, "sun", pos["ss_addr"], pos["ss_peer"], pos["ss_net"],
                           pos["ours_net"], initiator=not p.ours_initiates)  # fmt: skip
    sun_cert = write(tmp / "rv-sun.crt", sun.pem())
    sun_key = write(tmp / "rv-sun.key", sun.key_pem(), 0o600)
    ss_conn = files.conf["connections"][p.spec.name]  # type: ignore[index]
    ss_conn["local"]["certs"] = sun_cert.name  # type: ignore[index]
    ss_conn["remote"]["cacerts"] = ca_file.name  # type: ignore[index]
    p.ss.configure(files.conf, certs=(sun_cert,), cacerts=(ca_file,), keys=(sun_key,))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("revoked", [False, True], ids=["good", "revoked"])
@pytest.mark.parametrize("method", ["crl", "ocsp"])
def test_strongswan_certificate_revocation(
    method: str, revoked: bool, role: str, pair: Topology, tmp_path: Path, helpers: list[Helper]
) -> None:
    p = Peers(Spec("revoke", auth="ecdsa"), pair, role, tmp_path / "run")
    try:
        ca = make_ca()
        moon = make_leaf(ca, "moon.ikev2.test")
        ns = p.pos["ours_ns"]
        if method == "crl":
            sun = make_leaf(ca, "sun.ikev2.test", crl_uri=f"http://127.0.0.1:{HTTP_PORT}/ca.crl")
            served = tmp_path / "www"
            served.mkdir()
            write(served / "ca.crl", make_crl(ca, (sun.cert,) if revoked else ()))
            argv = [sys.executable, "-u", "-m", "http.server", str(HTTP_PORT), "--bind",
                    "127.0.0.1", "--directory", str(served)]  # fmt: skip
            helpers.append(Helper(ns, argv, tmp_path / "http.log"))
        else:
            sun = make_leaf(ca, "sun.ikev2.test", ocsp_uri=f"http://127.0.0.1:{OCSP_PORT}/")
            write(tmp_path / "ocsp-ca.pem", ca.pem())
            write(tmp_path / "ocsp-ca.key", ca.key_pem(), 0o600)
            openssl_index(tmp_path / "index.txt", [(moon.cert, False), (sun.cert, revoked)])
            argv = ["openssl", "ocsp", "-index", str(tmp_path / "index.txt"), "-port",
                    str(OCSP_PORT), "-rsigner", str(tmp_path / "ocsp-ca.pem"), "-rkey",
                    str(tmp_path / "ocsp-ca.key"), "-CA", str(tmp_path / "ocsp-ca.pem"),
                    "-nmin", "60", "-timeout", "5"]  # fmt: skip
            helpers.append(Helper(ns, argv, tmp_path / "ocsp.log", "waiting for OCSP client"))
        configure(p, tmp_path, ca, moon, sun)
        p.start()
        if revoked:
            p.initiate_expecting_failure(timeout=30)
            log = p.ours.log()
            assert "certificate revoked" in log, p.logs()
            ss_log = p.ss.log()  # "N(AUTH_FAILED)" in a parsed message, or the notify's name
            assert "N(AUTH_FAILED)" in ss_log or "AUTHENTICATION_FAILED" in ss_log, p.logs()
            p.nothing_left()
        else:
            p.establish(timeout=30)
            p.check_children(expected=1)
        assert "IKE_AUTH waits for revocation status" in p.ours.log()
        if not p.ours_initiates:  # answered once fetched, not at strongSwan's retransmit (4 s)
            assert "retransmit 1 of request" not in p.ss.log(), p.logs()
        else:  # we resent our IKE_AUTH once the status was in; strongSwan replayed its answer
            assert "received retransmit of request with ID 1" in p.ss.log(), p.logs()
        served_log = helpers[0].log.read_text(errors="replace")
        asked = served_log.count("GET /ca.crl") if method == "crl" else served_log.count("POST")
        assert asked == 1, served_log  # one fetch, then the answer is reused
    finally:
        p.stop()
