"""Remote access between two real daemons on loopback (in-memory kernel): the gateway leases
virtual IPs from its pools, the client's `list-sas` and the gateway's `list-sas`/`list-pools`
show them, and the client's dns_hook runs with the DNS servers on up and down."""

from __future__ import annotations

import json
import stat
import tempfile
from pathlib import Path

from ikev2.service.udp import free_port_pair

from .daemons import MOON, PSK, SUN, Daemon, wait_until

GATEWAY = """
[daemon]
addresses = ["{sun}"]
port = {port}
nat_port = {nat}
control_socket = "{control}"
kernel = "memory"
[pools.rw-v4]
addrs = "10.3.0.0/24"
dns = ["10.2.0.53"]
subnet = ["10.2.0.0/24"]
dns_domain = ["corp.example"]
[pools.rw-v6]
addrs = "fd03::1-fd03::ff"
dns = ["fd02::53"]
[connections.rw]
local_addrs = ["{sun}"]
local_port = {port}
remote_port = {port}
proposals = "aes256gcm16-prfsha256-x25519"
pools = ["rw-v4", "rw-v6"]
[connections.rw.local]
id = "gateway.example"
[connections.rw.remote]
id = "%any"
[connections.rw.children.rw]
local_ts = ["10.2.0.0/24", "fd02::/64"]
esp_proposals = "aes256gcm16"
[secrets.rw]
ids = ["gateway.example"]
secret = "{psk}"
"""

CLIENT = """
[daemon]
addresses = ["{moon}"]
port = {port}
nat_port = {nat}
control_socket = "{control}"
kernel = "memory"
dns_hook = "{hook}"
[connections.rw]
local_addrs = ["{moon}"]
remote_addrs = ["{sun}"]
local_port = {port}
remote_port = {port}
proposals = "aes256gcm16-prfsha256-x25519"
vips = ["0.0.0.0", "::"]
[connections.rw.local]
id = "alice@corp.example"
[connections.rw.remote]
id = "gateway.example"
[connections.rw.children.rw]
remote_ts = ["10.2.0.0/24", "fd02::/64"]
esp_proposals = "aes256gcm16"
[secrets.rw]
ids = ["gateway.example", "alice@corp.example"]
secret = "{psk}"
"""

HOOK = """#!/bin/sh
a="$IKEV2_ACTION|$IKEV2_CONNECTION|$IKEV2_VIPS|$IKEV2_DNS"
echo "$a|$IKEV2_DNS_DOMAINS|$IKEV2_SUBNETS|$IKEV2_INTERFACE" >> "{out}"
"""


async def test_gateway_leases_client_installs_and_hook_gets_dns() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ikev2ra-"))
    port = free_port_pair((MOON, SUN))
    hook, out = workdir / "dns-hook", workdir / "hook.out"
    hook.write_text(HOOK.format(out=out))
    hook.chmod(stat.S_IRWXU)
    values = {"moon": MOON, "sun": SUN, "port": port, "nat": port + 1, "psk": PSK}
    gw_conf, rw_conf = workdir / "gw.toml", workdir / "rw.toml"
    gw_conf.write_text(GATEWAY.format(control=workdir / "gw.sock", **values))
    rw_conf.write_text(CLIENT.format(control=workdir / "rw.sock", hook=hook, **values))
    gateway = Daemon("gw", gw_conf, str(workdir / "gw.sock"), workdir / "gw.log")
    client = Daemon("rw", rw_conf, str(workdir / "rw.sock"), workdir / "rw.log")
    try:
        await gateway.start()
        await client.start()
        code, text, err = await client.cli("up", "rw")
        assert code == 0, err + text
        (sa_rw,) = await client.sas()
        assert sa_rw["local_vips"] == ["10.3.0.1", "fd03::1"]
        assert sa_rw["children"][0]["local_ts"] == ["10.3.0.1/32", "fd03::1/128"]
        (sa_gw,) = await gateway.sas()
        assert sa_gw["remote_vips"] == ["10.3.0.1", "fd03::1"]
        code, words, _ = await client.cli("list-sas")
        assert "local vips: 10.3.0.1 fd03::1" in words
        code, pools_json, err = await gateway.cli("list-pools", "--json")
        assert code == 0, err
        pools = {p["name"]: p for p in json.loads(pools_json)}
        assert pools["rw-v4"]["online"] == 1 and pools["rw-v4"]["size"] == 254
        (lease,) = pools["rw-v4"]["leases"]
        assert lease["address"] == "10.3.0.1" and lease["identity"] == "alice@corp.example"
        assert lease["ike_sas"] == [sa_gw["id"]]
        code, pools_words, _ = await gateway.cli("list-pools")
        assert "rw-v4: 10.3.0.1-10.3.0.254  1/254 online" in pools_words
        assert "10.3.0.1  online  alice@corp.example" in pools_words

        async def hook_lines() -> list[str]:
            return out.read_text().splitlines() if out.exists() else []

        lines = await wait_until(hook_lines)
        assert lines[0] == ("up|rw|10.3.0.1 fd03::1|10.2.0.53 fd02::53|corp.example|10.2.0.0/24|lo")
        code, _, err = await client.cli("down", "rw")
        assert code == 0, err

        async def two_lines() -> list[str]:
            got = await hook_lines()
            return got if len(got) >= 2 else []

        lines = await wait_until(two_lines)
        assert lines[1].startswith("down|rw|10.3.0.1 fd03::1|")

        async def released() -> bool:
            code, text, _ = await gateway.cli("list-pools", "--json")
            return code == 0 and all(p["online"] == 0 for p in json.loads(text))

        assert await wait_until(released)
        # the client's log names the installed and removed addresses
        log = client.log.read_text()
        assert "virtual IP installed" in log and "virtual IP removed" in log
    finally:
        for daemon in (client, gateway):
            if daemon.process is not None and daemon.process.returncode is None:
                await daemon.stop(5)
            daemon.kill()
