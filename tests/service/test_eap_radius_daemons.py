"""EAP-RADIUS end to end (RFC 3579, RFC 7296 §2.16): two daemons on loopback and Debian's
freeradius. The gateway ("sun", certificate AUTH, `remote.auth = "eap-radius"`) relays the
road warrior's EAP-MSCHAPv2 ("moon", our client, as a Windows or strongSwan client would run it)
to freeradius, which holds carol's password; the IKE SA and its child come up on the MSK from
MS-MPPE-Recv/Send-Key, and a wrong password ends in AUTHENTICATION_FAILED with nothing up."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from ikev2.service.udp import free_port_pair
from ikev2.testing import freeradius
from ikev2.testing.gates import is_root, need

from .daemons import MOON, SUN, Daemon, wait_until

PKI = Path(__file__).resolve().parents[2] / "fixtures" / "pki" / "ecdsa"
SECRET = "radius shared secret for the daemon test"
PASSWORD = "carol's RADIUS password"


def gateway_toml(port: int, control: str, radius_port: int, key: Path) -> str:
    return f"""
[daemon]
addresses = ["{SUN}"]
port = {port}
nat_port = {port + 1}
control_socket = "{control}"
kernel = "memory"
radius_server = "127.0.0.1:{radius_port}"

[connections.rw]
local_addrs = ["{SUN}"]
local_port = {port}
remote_port = {port}
proposals = ["aes256gcm16-prfsha256-x25519"]
[connections.rw.local]
auth = "pubkey"
id = "sun.ikev2.test"
certs = ["{PKI / "sun.crt"}"]
key = "{key}"
[connections.rw.remote]
auth = "eap-radius"
id = "%any"
[connections.rw.children.rw]
local_ts = ["10.2.0.0/24"]
remote_ts = ["10.1.0.0/24"]
esp_proposals = ["aes256gcm16"]

[secrets.radius]
secret = "{SECRET}"
"""


def client_toml(port: int, control: str, password: str) -> str:
    return f"""
[daemon]
addresses = ["{MOON}"]
port = {port}
nat_port = {port + 1}
control_socket = "{control}"
kernel = "memory"

[connections.rw]
local_addrs = ["{MOON}"]
remote_addrs = ["{SUN}"]
local_port = {port}
remote_port = {port}
proposals = ["aes256gcm16-prfsha256-x25519"]
[connections.rw.local]
auth = "eap-mschapv2"
id = "carol@ikev2.test"
eap_id = "carol"
[connections.rw.remote]
auth = "pubkey"
id = "sun.ikev2.test"
cacerts = ["{PKI / "ca.crt"}"]
[connections.rw.children.rw]
local_ts = ["10.1.0.0/24"]
remote_ts = ["10.2.0.0/24"]
esp_proposals = ["aes256gcm16"]

[secrets.eap-carol]
ids = ["carol"]
secret = "{password}"
"""


@asynccontextmanager
async def setup(password: str) -> AsyncIterator[tuple[Daemon, Daemon, freeradius.FreeRadius]]:
    need(is_root(), "FreeRADIUS runs as root here (its freerad user cannot enter our tmp)")
    need(freeradius.available() is None, freeradius.available() or "")
    workdir = Path(tempfile.mkdtemp(prefix="ikev2r-"))
    radius = freeradius.FreeRadius(workdir, SECRET, {"carol": PASSWORD}, client="127.0.0.0/8")
    port = free_port_pair((MOON, SUN))
    key = workdir / "sun.key"
    shutil.copy(PKI / "sun.key", key)
    key.chmod(0o600)
    sun_conf, moon_conf = workdir / "sun.toml", workdir / "moon.toml"
    radius.start()
    sun_conf.write_text(gateway_toml(port, str(workdir / "sun.sock"), radius.port, key))
    moon_conf.write_text(client_toml(port, str(workdir / "moon.sock"), password))
    sun = Daemon("sun", sun_conf, str(workdir / "sun.sock"), workdir / "sun.log")
    moon = Daemon("moon", moon_conf, str(workdir / "moon.sock"), workdir / "moon.log")
    try:
        await sun.start()
        await moon.start()
        yield moon, sun, radius
    finally:
        for daemon in (moon, sun):
            if daemon.process is not None and daemon.process.returncode is None:
                await daemon.stop(5)
            daemon.kill()
        radius.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.root
async def test_gateway_relays_mschapv2_to_freeradius() -> None:
    async with setup(PASSWORD) as (moon, sun, radius):
        code, _out, err = await moon.cli("up", "rw", "--timeout", "30")
        log = sun.log.read_text(errors="replace")
        assert code == 0, f"{err}\n{log[-3000:]}\n{radius.log()[-2000:]}"
        [mine] = await moon.sas()
        [theirs] = await sun.sas()
        assert mine["state"] == theirs["state"] == "established"
        assert (mine["spi_i"], mine["spi_r"]) == (theirs["spi_i"], theirs["spi_r"])
        assert len(mine["children"]) == len(theirs["children"]) == 1
        assert '"method": "radius"' in log or "method=radius" in log
        assert "Login OK: [carol]" in radius.log()  # the gateway holds no password at all
        assert SECRET not in log and PASSWORD not in log


@pytest.mark.root
async def test_wrong_password_fails_at_the_radius_server() -> None:
    async with setup("not carol's password") as (moon, sun, _radius):
        code, _out, err = await moon.cli("up", "rw", "--timeout", "30")
        assert code != 0 and "EAP-Failure" in err, err
        assert await wait_until(lambda: _empty(sun)), "the gateway kept the IKE SA"
        assert "RADIUS refused" in sun.log.read_text(errors="replace")


async def _empty(daemon: Daemon) -> bool:
    return await daemon.sas() == []
