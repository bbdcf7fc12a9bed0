"""The redirect keys (config_redirect.py, RFC 5685): [daemon] follow_redirects / redirect_limit /
redirect_period for every connection, a connection's redirect_to / redirect_on, and one clear
line (file, key, fix) for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikev2.config import parse_config
from ikev2.engine.config import RedirectConfig
from ikev2.errors import ConfigError

TEXT = """
[daemon]
{daemon}
[connections.gw]
local_addrs = ["192.0.2.1"]
{conn}
[connections.gw.local]
id = "gw.example"
auth = "psk"
[connections.gw.remote]
auth = "psk"
[secrets.gw]
ids = ["gw.example"]
secret = "a long enough test secret"
"""


def load(daemon: str = "", conn: str = "") -> RedirectConfig:
    config = parse_config(TEXT.format(daemon=daemon, conn=conn), Path("/x/redirect.toml"))
    return config.engine.connections[0].redirect


def test_defaults_follow_like_strongswan() -> None:
    assert load() == RedirectConfig(follow=True, limit=5, period=300.0, to=(), on="init")


def test_every_key() -> None:
    redirect = load(
        'follow_redirects = false\nredirect_limit = 3\nredirect_period = "2m"',
        'redirect_to = ["192.0.2.2", "2001:db8::2", "gw2.example.org"]\nredirect_on = "auth"',
    )
    assert redirect == RedirectConfig(
        follow=False,
        limit=3,
        period=120.0,
        to=("192.0.2.2", "2001:db8::2", "gw2.example.org"),
        on="auth",
    )


@pytest.mark.parametrize(
    ("daemon", "conn", "key"),
    [
        ("", 'redirect_to = ["not a host!"]', "connections.gw.redirect_to"),
        ("", 'redirect_on = "established"', "connections.gw.redirect_on"),
        ("redirect_limit = 0", "", "daemon.redirect_limit"),
        ('follow_redirects = "yes"', "", "daemon.follow_redirects"),
        ("redirect_perod = 3", "", "daemon.redirect_perod"),
    ],
)
def test_mistakes_name_the_key(daemon: str, conn: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(daemon, conn)
    assert key in str(caught.value) and "fix:" in str(caught.value)
