"""The remote-access keys (config_pools.py): [pools.NAME], connections' pools/vips, the daemon's
vip_interface/dns_hook, and one clear line (file, key, fix) for each mistake."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from ikev2.config import load_config, parse_config
from ikev2.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "config"
ip = ipaddress.ip_address

GATEWAY = """
[pools.v4]
addrs = "{addrs}"
dns = ["10.2.0.53", "fd02::53"]
subnet = ["10.2.0.0/24"]
dns_domain = ["corp.example"]
grace = {grace}
[pools.v6]
addrs = "fd03::/120"
[connections.rw]
pools = {pools}
[connections.rw.local]
id = "gw.example"
[connections.rw.remote]
id = "%any"
[connections.rw.children.rw]
local_ts = ["10.2.0.0/24"]
[secrets.rw]
ids = ["gw.example"]
secret = "a long enough test secret"
"""


def gateway(addrs: str = "10.3.0.0/24", pools: str = '["v4", "v6"]', grace: str = '"5m"') -> str:
    return GATEWAY.format(addrs=addrs, pools=pools, grace=grace)


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_config(text, Path("/etc/ikev2/ra.toml"))


def test_the_fixtures_load() -> None:
    gw = load_config(FIXTURES / "remote-access-gateway.toml")
    client = load_config(FIXTURES / "remote-access-client.toml")
    (rw,) = gw.engine.connections
    assert rw.pools == ("rw-v4", "rw-v6")
    assert [p.name for p in gw.engine.pools] == ["rw-v4", "rw-v6"]
    (road,) = client.engine.connections
    assert road.vips == (ip("0.0.0.0"), ip("::"))
    assert [str(t.network) for t in road.children[0].local_ts] == ["0.0.0.0/0", "::/0"]
    assert client.daemon.vip_interface == "lo" and client.daemon.dns_hook == ""


def test_a_gateway_file_becomes_pools_and_dynamic_means_the_pools() -> None:
    config = parse(gateway())
    v4, v6 = config.engine.pools
    assert (v4.first, v4.last, v4.grace) == (ip("10.3.0.1"), ip("10.3.0.254"), 300.0)
    assert v4.dns == (ip("10.2.0.53"), ip("fd02::53")) and v4.dns_domains == ("corp.example",)
    assert (v6.first, v6.last) == (ip("fd03::1"), ip("fd03::ff"))
    (conn,) = config.engine.connections
    assert [str(t.network) for t in conn.children[0].remote_ts] == ["10.3.0.0/24", "fd03::/120"]


def test_a_range_pool_is_inclusive() -> None:
    (v4, _) = parse(gateway(addrs="10.3.0.10-10.3.0.20")).engine.pools
    assert (v4.first, v4.last, v4.size) == (ip("10.3.0.10"), ip("10.3.0.20"), 11)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (gateway(addrs="10.3.0.300/24"), "pools.v4.addrs", "not a subnet or range"),
        (gateway(addrs="10.3.0.9-10.3.0.1"), "pools.v4.addrs", "ends before it starts"),
        (gateway(addrs="10.3.0.1-fd00::1"), "pools.v4.addrs", "mixes IPv4 and IPv6"),
        (gateway(pools='["v4", "v7"]'), "connections.rw.pools", "unknown pool 'v7'"),
        (gateway(grace="-1"), "pools.v4.grace", "must be a finite number of seconds"),
        (gateway().replace("addrs =", "adrs ="), "pools.v4.adrs", "did you mean addrs"),
        (gateway() + "[daemon]\nworkers = 2\n", "daemon.workers", "one process"),
        (gateway() + '[daemon]\ndns_hook = "hook.sh"\n', "daemon.dns_hook", "absolute path"),
        (
            gateway().replace('pools = ["v4", "v6"]', 'vips = ["0.0.0.0", "10.3.0.7"]'),
            "connections.rw.vips",
            "two addresses of one family",
        ),
        (
            gateway().replace('pools = ["v4", "v6"]', 'vips = ["any"]'),
            "connections.rw.vips",
            "'any' is not an IP address",
        ),
    ],
)
def test_mistakes_name_the_file_the_key_and_the_fix(text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith(f"/etc/ikev2/ra.toml: {key}: ")
    assert words in message and "(fix: " in message
