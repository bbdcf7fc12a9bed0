"""The preflight names each missing piece and the Debian package that provides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikev2.testing import preflight, strongswan


def _plugin_dir(tmp_path: Path, absent: set[str]) -> Path:
    for name in strongswan.harness_plugins():
        if name not in absent:
            (tmp_path / f"libstrongswan-{name}.so").touch()
    return tmp_path


def test_missing_openssl_plugin_is_one_line_naming_its_package(tmp_path: Path) -> None:
    lines = strongswan.missing_plugins(_plugin_dir(tmp_path, {"openssl"}))
    assert lines == [
        f"strongSwan plugin 'openssl' missing ({tmp_path}/libstrongswan-openssl.so): "
        "apt-get install libstrongswan-standard-plugins"
    ]


def test_complete_plugin_dir_passes(tmp_path: Path) -> None:
    assert strongswan.missing_plugins(_plugin_dir(tmp_path, set())) == []


def test_charon_refuses_to_start_without_a_plugin(tmp_path: Path) -> None:
    plugins = _plugin_dir(tmp_path, {"kernel-libipsec", "kdf"})
    with pytest.raises(strongswan.CharonError) as caught:
        strongswan.preflight(plugins)
    text = str(caught.value)
    assert "'kernel-libipsec' missing" in text and "libcharon-extra-plugins" in text
    assert "'kdf' missing" in text and "apt-get install libstrongswan" in text
    assert len(text.splitlines()) == 2 + (strongswan.available() is not None)


def test_every_harness_plugin_has_a_package() -> None:
    assert set(strongswan.harness_plugins()) <= set(strongswan.PLUGIN_PACKAGES)


def test_suite_preflight_names_packages_by_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preflight.shutil, "which", lambda name: None)
    monkeypatch.setattr(preflight.Requirement, "present", lambda self: False)
    guest = preflight.missing({"guest"}, tmp_path)
    assert "qemu-system-x86_64 missing: apt-get install qemu-system-x86" in guest
    assert "/bin/busybox missing: apt-get install busybox-static" in guest
    assert not any("strongswan" in line for line in guest)
    interop = preflight.missing({"interop"}, tmp_path)
    assert f"{strongswan.CHARON} missing: apt-get install strongswan-charon" in interop
    assert not any("qemu" in line for line in interop)


def test_suite_preflight_passes_on_this_machine_when_it_applies() -> None:
    """Where the gated tests run (root or CI), everything they use is installed: the bootstrap
    installs what the preflight checks (the two lists must not drift apart)."""
    if not preflight.applies():
        pytest.skip("not root and not CI: the gated tests skip visibly instead")
    assert preflight.missing({"root", "guest", "interop"}) == []
