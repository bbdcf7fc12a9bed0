"""[daemon] tunables with strongSwan's names (config_tunables.py): keep_alive,
fragment_size, retransmit_* (defaults for every connection, a connection's own keys win) and
cookie_secret_lifetime reach the engine's config; out-of-range values are ConfigErrors naming
the key and the fix; keep_alive reaches the driver (0 = none)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ikev2.config import parse_config
from ikev2.errors import ConfigError
from ikev2.service.driver import Driver

CONN = """
[connections.{name}]
remote_addrs = ["192.0.2.2"]
{extra}
[connections.{name}.local]
auth = "psk"
id = "moon.example"
[connections.{name}.remote]
auth = "psk"
id = "sun.example"
"""
SECRET = """
[secrets.s]
ids = ["moon.example", "sun.example"]
secret = "a long enough test secret"
"""


def load(tmp: Path, daemon: str, own: str = "") -> Any:
    text = f"[daemon]\n{daemon}\n" + CONN.format(name="a", extra="")
    text += CONN.format(name="b", extra=own) + SECRET
    return parse_config(text, tmp / "c.toml")


def test_defaults_are_strongswans(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    t = config.daemon.tunables
    assert (t.keep_alive, t.fragment_size) == (20.0, 0)
    a = config.engine.connections[0]
    assert (a.timers.retransmit_timeout, a.timers.retransmit_base) == (4.0, 1.8)
    assert (a.timers.retransmit_tries, a.timers.half_open_timeout) == (5, 30.0)
    assert config.engine.cookie_secret_lifetime == 120.0
    assert t.control_max_clients == 32
    assert t.window_size == config.engine.window_size == 1  # RFC 7296 §2.3: one at a time


def test_daemon_values_reach_every_connection_unless_it_has_its_own(tmp_path: Path) -> None:
    daemon = ('keep_alive = "45s"\nhalf_open_timeout = "1m"\nfragment_size = 1400\n'
              'retransmit_timeout = "2s"\nretransmit_base = 1.5\nretransmit_tries = 3\n'
              'retransmit_limit = "30s"\ncookie_secret_lifetime = "10m"\n'
              "control_max_clients = 4\nwindow_size = 4")  # fmt: skip
    config = load(tmp_path, daemon, own='retransmit_tries = 7\nretransmit_timeout = "1s"')
    assert config.daemon.tunables.keep_alive == 45.0
    assert config.daemon.tunables.control_max_clients == 4
    assert config.engine.window_size == 4
    assert config.engine.cookie_secret_lifetime == 600.0
    a, b = config.engine.connections
    assert (a.timers.retransmit_timeout, a.timers.retransmit_base) == (2.0, 1.5)
    assert (a.timers.retransmit_tries, a.timers.retransmit_limit) == (3, 30.0)
    assert (b.timers.retransmit_timeout, b.timers.retransmit_tries) == (1.0, 7)  # its own
    assert (b.timers.retransmit_base, b.timers.retransmit_limit) == (1.5, 30.0)  # the daemon's
    assert {c.timers.half_open_timeout for c in (a, b)} == {60.0}
    assert {c.fragment_size for c in (a, b)} == {1400}


@pytest.mark.parametrize(
    ("daemon", "words"),
    [
        ('keep_alive = "2h"', ("daemon.keep_alive", "20s")),
        ("fragment_size = 100", ("daemon.fragment_size", "576")),
        ("fragment_size = 70000", ("daemon.fragment_size", "1280")),
        ("retransmit_tries = 50", ("daemon.retransmit_tries", "5")),
        ('cookie_secret_lifetime = "soon"', ("daemon.cookie_secret_lifetime", "duration")),
        ("keepalive = 20", ("daemon.keepalive", "keep_alive")),
        ("control_max_clients = 0", ("daemon.control_max_clients", "32")),
        ("window_size = 0", ("daemon.window_size", ">= 1", "write e.g. 4")),
        ("window_size = 65", ("daemon.window_size", "<= 64", "write e.g. 4")),
        ('window_size = "4"', ("daemon.window_size", "4")),
    ],
)
def test_mistakes_name_the_key_and_the_fix(tmp_path: Path, daemon: str, words: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, daemon)
    assert all(w in str(caught.value) for w in words), str(caught.value)


class _Engine:
    sas: dict[int, object] = {}


def test_keep_alive_zero_sends_none() -> None:
    loop = asyncio.new_event_loop()
    try:
        driver = Driver(_Engine(), kernel=None, transport=None, loop=loop)  # type: ignore[arg-type]
        driver.start_keepalives(0)
        assert driver._keepalive is None
        driver.start_keepalives(20)
        assert driver._keepalive is not None
        driver.stop()
    finally:
        loop.close()
