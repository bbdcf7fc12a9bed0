"""The DoS limits in [daemon] under strongSwan's names: max_packet (charon.max_packet) and
half_open_timeout (charon.half_open_timeout) reach the engine; out-of-range values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikev2.config import load_config
from ikev2.errors import ConfigError

from .test_config import GOOD, write


def with_daemon(lines: str) -> str:
    return GOOD.replace('kernel = "memory"\n', f'kernel = "memory"\n{lines}\n')


def test_defaults_are_strongswans(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.engine.max_packet == 10000
    assert {c.timers.half_open_timeout for c in config.engine.connections} == {30.0}


def test_limits_reach_the_engine_and_every_connection(tmp_path: Path) -> None:
    text = with_daemon('max_packet = 4000\nhalf_open_timeout = "10s"')
    config = load_config(write(tmp_path, text))
    assert config.engine.max_packet == 4000
    assert {c.timers.half_open_timeout for c in config.engine.connections} == {10.0}


@pytest.mark.parametrize(
    ("line", "key"),
    [("max_packet = 100", "max_packet"), ("max_packet = 70000", "max_packet"),
     ('half_open_timeout = "0s"', "half_open_timeout")],
)  # fmt: skip
def test_out_of_range_limits_are_refused(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, with_daemon(line)))
    assert caught.value.key == f"daemon.{key}"
