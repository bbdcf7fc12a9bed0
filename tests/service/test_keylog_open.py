"""--key-log refuses a file someone else could read or planted: a symlink, a group/other
readable file, a file of another owner; a new file is created 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ikev2.errors import ConfigError
from ikev2.service.keylog import KeyLog


def test_a_new_key_log_is_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    old_umask = os.umask(0)
    try:
        log = KeyLog(str(path))
    finally:
        os.umask(old_umask)
    log.close()
    for created in (path, Path(str(path) + ".esp_sa")):
        assert stat.S_IMODE(created.stat().st_mode) == 0o600


def test_an_existing_private_file_is_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("old\n")
    path.chmod(0o600)
    log = KeyLog(str(path))
    log._ike.write("new\n")
    log.close()
    assert path.read_text() == "old\nnew\n"


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "keys"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link") as caught:
        KeyLog(str(link))
    assert str(link) in str(caught.value)
    assert not target.exists()


def test_a_symlinked_esp_file_is_refused_and_nothing_leaks(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    path = tmp_path / "keys"
    Path(str(path) + ".esp_sa").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        KeyLog(str(path))
    assert not target.exists()


def test_a_world_readable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="0644") as caught:
        KeyLog(str(path))
    assert str(path) in str(caught.value) and "chmod 600" in str(caught.value)
    assert path.read_text() == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_a_file_of_another_owner_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("")
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by uid 65534") as caught:
        KeyLog(str(path))
    assert str(path) in str(caught.value)
    assert path.read_text() == ""


def test_a_hard_link_is_refused(tmp_path: Path) -> None:
    original = tmp_path / "original"
    original.write_text("")
    original.chmod(0o600)
    path = tmp_path / "keys"
    os.link(original, path)
    with pytest.raises(ConfigError, match="hard links"):
        KeyLog(str(path))
