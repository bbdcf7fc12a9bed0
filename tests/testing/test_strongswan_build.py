"""The strongSwan 6 build (ikev2.testing.strongswan_build) and its preflight, without building:
the cache key, the tarball checks, the lock, the quiet log, and the one-line preflight."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ikev2.testing import preflight, strongswan, strongswan_build


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty .cache/strongswan6 of our own."""
    monkeypatch.setattr(strongswan_build, "CACHE", tmp_path / "strongswan6")
    monkeypatch.setattr(strongswan, "_PREFLIGHT_DONE", set())
    return tmp_path / "strongswan6"


def fake_install(root: Path) -> None:
    """What a finished `make install` leaves that the harness needs, and the stamp."""
    for path in (strongswan_build.charon(root), strongswan_build.swanctl(root)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    plugins = strongswan_build.plugin_dir(root)
    plugins.mkdir(parents=True, exist_ok=True)
    for name in strongswan_build.PLUGINS:
        (plugins / f"libstrongswan-{name}.so").touch()
    strongswan_build.stamp(root).write_text("{}\n")


def test_prefix_is_keyed_by_the_tarball_sha256(cache: Path) -> None:
    root = strongswan_build.prefix()
    assert root == cache / strongswan_build.SHA256[:16] / "prefix"
    assert strongswan_build.charon(root) == root / "libexec" / "ipsec" / "charon"
    assert strongswan_build.swanctl(root) == root / "sbin" / "swanctl"
    assert {"ml", "kdf", "kernel-netlink", "openssl"} <= set(strongswan_build.PLUGINS)


def test_the_harness_runs_the_build_programs() -> None:
    """STRONGSWAN6 points into the build prefix, loads ml and kdf, never Debian's /usr."""
    six = strongswan.STRONGSWAN6
    assert six.charon == strongswan_build.charon() and six.swanctl == strongswan_build.swanctl()
    assert not str(six.plugin_dir).startswith("/usr")
    conf = strongswan.Charon("ns", Path("/nonexistent/x"), install=six).strongswan_conf()
    load = next(ln for ln in conf.splitlines() if ln.strip().startswith("load =") and " ml " in ln)
    assert " kdf " in load and "kernel-libipsec kernel-netlink" in load
    assert strongswan.Charon("ns", Path("/nonexistent/y")).install is strongswan.DEBIAN


def test_missing_strongswan6_is_one_line_saying_what_to_run(cache: Path) -> None:
    line = strongswan.missing6()
    assert line is not None and "\n" not in line
    assert "strongSwan 6.0.6 is not built" in line and ".ci/strongswan6.sh" in line
    assert preflight.missing({"sw6"}) == [line]  # not a line per absent program or plugin
    with pytest.raises(strongswan.CharonError) as caught:
        strongswan.preflight(install=strongswan.STRONGSWAN6)
    assert str(caught.value) == line


def test_half_built_install_is_not_installed(cache: Path) -> None:
    root = strongswan_build.prefix()
    fake_install(root)
    assert strongswan.missing6() is None
    (strongswan_build.plugin_dir(root) / "libstrongswan-ml.so").unlink()
    line = strongswan.missing6()
    assert line is not None and "libstrongswan-ml.so missing" in line
    fake_install(root)
    strongswan_build.stamp(root).unlink()  # make install was interrupted: no stamp
    assert strongswan.missing6() is not None


def test_ensure_refuses_a_missing_or_different_tarball(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(strongswan_build.TARBALL_ENV, str(tmp_path / "nope.tar.gz"))
    with pytest.raises(strongswan_build.BuildError, match=r"not found.*IKEV2_STRONGSWAN6_TARBALL"):
        strongswan_build.ensure()
    other = tmp_path / "other.tar.gz"
    other.write_bytes(b"not strongSwan")
    monkeypatch.setenv(strongswan_build.TARBALL_ENV, str(other))
    with pytest.raises(strongswan_build.BuildError, match=r"sha256 .* expected 4f4950b7"):
        strongswan_build.ensure()
    assert not strongswan_build.prefix().exists()


def test_ensure_is_idempotent_and_two_builders_build_once(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src.tar.gz"
    source.write_bytes(b"pretend release source")
    monkeypatch.setenv(strongswan_build.TARBALL_ENV, str(source))
    monkeypatch.setattr(strongswan_build, "SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    builds: list[Path] = []

    def slow_build(src: Path, root: Path, jobs: int) -> None:
        builds.append(root)
        time.sleep(0.3)  # the other thread reaches the lock meanwhile
        fake_install(root)

    monkeypatch.setattr(strongswan_build, "_build", slow_build)
    roots: list[Path] = []
    threads = [
        threading.Thread(target=lambda: roots.append(strongswan_build.ensure())) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(builds) == 1 and roots == [builds[0]] * 2
    # a finished install is not even hashed again: the tarball may be gone
    source.unlink()
    assert strongswan_build.ensure() == builds[0] and len(builds) == 1


def test_a_failing_step_shows_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("earlier steps\n")
    with pytest.raises(strongswan_build.BuildError) as caught:
        strongswan_build._step(["sh", "-c", "echo configure: error: no gperf; exit 3"],
                               tmp_path, log, "configure")  # fmt: skip
    text = str(caught.value)
    assert "configure exited 3" in text and "configure: error: no gperf" in text
    assert str(log) in text


def test_main_is_silent_when_built(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_install(strongswan_build.prefix())
    assert strongswan_build.main() == 0
    assert capsys.readouterr() == ("", "")


def test_build_runs_autogen_configure_make_install_and_drops_the_sources(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in source tree whose autogen/configure/make only record what they were given:
    the steps run in order with the private prefix, the stamp records them, src/ is gone."""
    tree = tmp_path / "t" / f"strongswan-{strongswan_build.VERSION}"
    tree.mkdir(parents=True)
    plugins = " ".join(f"libstrongswan-{n}.so" for n in strongswan_build.PLUGINS)
    (tree / "autogen.sh").write_text(
        "#!/bin/sh\necho autogen >> steps\n"
        'printf \'#!/bin/sh\\necho configure "$*" >> steps\\n'
        'for a; do case $a in --prefix=*) echo "P=${a#--prefix=}" > Makefile.inc;; esac; done\\n\''
        " > configure\nchmod +x configure\n"
    )
    (tree / "autogen.sh").chmod(0o755)
    (tree / "Makefile").write_text(
        "include Makefile.inc\nall:\n\techo make >> steps\ninstall:\n"
        "\tmkdir -p $(P)/libexec/ipsec $(P)/sbin $(P)/lib/ipsec/plugins\n"
        "\ttouch $(P)/libexec/ipsec/charon $(P)/sbin/swanctl\n"
        f"\tcd $(P)/lib/ipsec/plugins && touch {plugins}\n"
        "\tcp steps $(P)/steps\n"
    )
    source = tmp_path / "src.tar.gz"
    subprocess.run(["tar", "-czf", str(source), "-C", str(tree.parent), tree.name], check=True)
    monkeypatch.setenv(strongswan_build.TARBALL_ENV, str(source))
    monkeypatch.setattr(strongswan_build, "SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    root = strongswan_build.ensure(jobs=1)
    assert root == strongswan_build.prefix() and strongswan.missing6() is None
    steps = (root / "steps").read_text().splitlines()
    assert steps[0] == "autogen" and steps[2] == "make"
    assert steps[1].startswith(f"configure --prefix={root} --sysconfdir={root}/etc ")
    assert "--enable-ml" in steps[1] and "--enable-kdf" in steps[1]
    record = json.loads(strongswan_build.stamp(root).read_text())
    assert record["sha256"] == strongswan_build.SHA256 and record["prefix"] == str(root)
    assert list(record["steps"]) == ["unpack", "autogen", "configure", "make", "make install"]
    assert not (root.parent / "src").exists()
    assert "=== make install" in (root.parent / "build.log").read_text()
