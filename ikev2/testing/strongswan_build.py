"""strongSwan 6 built from its release source as a second test peer (ML-KEM, RFC 9370, RFC 9242).

Debian 12 ships strongSwan 5.9.8, which has no IKE_INTERMEDIATE key exchanges and no ML-KEM.
The 6.0.6 source (a `git archive` of the upstream tag, /work/shared/vendor/README.md) is built
once per checkout and installed to a private prefix under `.cache/strongswan6/<sha256[:16]>/`,
keyed by the tarball's sha256, so Debian's 5.9.8 in /usr stays untouched. The configure line is
the one tried on this machine (`CONFIGURE`); the build deps come from `.ci/bootstrap.sh`.

`ensure()` is idempotent (a finished install is recognised by its stamp and the programs and
plugins it must contain), quiet (autogen/configure/make output goes to `build.log` in the cache,
its tail shown on failure) and safe when two processes run it at once (an flock on the cache's
lock file: the second waits and then finds the first one's install). The sources are unpacked
under the cache and deleted after `make install`. `.ci/strongswan6.sh` and `.ci/test.sh` call it
(`python -m ikev2.testing.strongswan_build`); the harness (`strongswan.StrongSwan6`) only reads
`prefix()`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

VERSION = "6.0.6"
# the sha256 /work/shared/vendor/README.md gives for the release source; the cache key
SHA256 = "4f4950b7895717962b94440e3b1d747e56618954171f78f58898a41543f116ea"
TARBALL_ENV = "IKEV2_STRONGSWAN6_TARBALL"
DEFAULT_TARBALL = Path("/work/shared/vendor") / f"strongswan-{VERSION}.tar.gz"
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "strongswan6"
BUILD_COMMAND = ".ci/strongswan6.sh"

# What the harness loads from the prefix (strongswan.STRONGSWAN6): `ml` is strongSwan's own
# ML-KEM (SHAKE and SHA-3 from openssl, which also gives every classic method); charon refuses
# to start without a kernel interface, so kernel-netlink is loaded even for IKE-only runs. A
# build that lacks one of them is not finished, whatever its stamp says.
CHARON_PLUGINS = "random nonce x509 constraints pubkey pkcs1 pkcs8 pem openssl ml kdf"
TAIL_PLUGINS = "kernel-netlink socket-default vici"
SWANCTL_PLUGINS = "pem pkcs1 pkcs8 x509 pubkey openssl random nonce"
PLUGINS = tuple(
    dict.fromkeys(f"{CHARON_PLUGINS} kernel-libipsec {TAIL_PLUGINS} {SWANCTL_PLUGINS}".split())
)
CONFIGURE_FLAGS = (
    "--disable-defaults",
    "--enable-charon",
    "--enable-swanctl",
    "--enable-vici",
    "--enable-ikev2",
    "--enable-openssl",
    "--enable-ml",
    "--enable-nonce",
    "--enable-random",
    "--enable-kdf",
    "--enable-pem",
    "--enable-pkcs1",
    "--enable-pkcs8",
    "--enable-x509",
    "--enable-pubkey",
    "--enable-socket-default",
    "--enable-kernel-netlink",
    "--enable-kernel-libipsec",
    "--enable-libipsec",
    "--enable-eap-identity",
    "--enable-eap-mschapv2",
    "--enable-eap-md5",
    "--enable-eap-tls",
    "--enable-attr",
    "--enable-constraints",
    "--enable-revocation",
    "--enable-curve25519",
    "--enable-hmac",
    "--enable-sha2",
    "--enable-aes",
    "--enable-gcm",
    "--enable-drbg",
    "--enable-updown",
    "--enable-md4",
    "--enable-des",
    "--enable-save-keys",
    "--enable-load-tester",
    "--enable-silent-rules",
)


class BuildError(RuntimeError):
    """The tarball is missing or not the expected one, or a build step failed (the message
    names the step and carries the tail of the build log)."""


def cache_dir(sha256: str | None = None) -> Path:
    return CACHE / (sha256 or SHA256)[:16]


def prefix(sha256: str | None = None) -> Path:
    """Where this version is (or will be) installed: charon at libexec/ipsec/charon, swanctl
    at sbin/swanctl, plugins under lib/ipsec/plugins."""
    return cache_dir(sha256) / "prefix"


def charon(root: Path | None = None) -> Path:
    return (root or prefix()) / "libexec" / "ipsec" / "charon"


def swanctl(root: Path | None = None) -> Path:
    return (root or prefix()) / "sbin" / "swanctl"


def plugin_dir(root: Path | None = None) -> Path:
    return (root or prefix()) / "lib" / "ipsec" / "plugins"


def stamp(root: Path | None = None) -> Path:
    return (root or prefix()).parent / "installed.json"


def tarball() -> Path:
    """The release source: $IKEV2_STRONGSWAN6_TARBALL, else the shared vendor directory."""
    return Path(os.environ.get(TARBALL_ENV) or DEFAULT_TARBALL)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_pieces(root: Path | None = None, plugins: Sequence[str] = ()) -> list[str]:
    """What an install at `root` lacks: the stamp, charon, swanctl, any of `plugins`."""
    root = root or prefix()
    out = [str(p) for p in (stamp(root), charon(root), swanctl(root)) if not p.exists()]
    for name in plugins:
        path = plugin_dir(root) / f"libstrongswan-{name}.so"
        if not path.exists():
            out.append(str(path))
    return out


def installed(root: Path | None = None, plugins: Sequence[str] = ()) -> bool:
    return not missing_pieces(root, plugins)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # a second builder waits here, then sees the install
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _step(argv: list[str], cwd: Path, log: Path, what: str) -> None:
    with log.open("a") as out:
        out.write(f"\n=== {what}: {' '.join(argv)} (in {cwd})\n")
        out.flush()
        done = subprocess.run(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            check=False,
        )  # fmt: skip
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise BuildError(
            f"strongSwan {VERSION} {what} exited {done.returncode} (log: {log}):\n{tail}"
        )


def ensure(plugins: Sequence[str] = (), jobs: int | None = None) -> Path:
    """The install prefix of strongSwan 6, built first when it is not there yet."""
    plugins = tuple(plugins) or PLUGINS
    root = prefix()
    if installed(root, plugins):
        return root
    source = tarball()
    if not source.is_file():
        raise BuildError(
            f"strongSwan {VERSION} source {source} not found "
            f"(set {TARBALL_ENV} to the strongswan-{VERSION}.tar.gz release source)"
        )
    got = sha256_of(source)
    if got != SHA256:
        raise BuildError(f"{source}: sha256 {got}, expected {SHA256} (strongSwan {VERSION})")
    with _locked(CACHE / ".lock"):
        if installed(root, plugins):  # another process built it while we waited
            return root
        _build(source, root, jobs or os.cpu_count() or 1)
    missing = missing_pieces(root, plugins)
    if missing:
        raise BuildError(f"strongSwan {VERSION} installed without: {', '.join(missing)}")
    return root


def _build(source: Path, root: Path, jobs: int) -> None:
    work = root.parent
    src_parent = work / "src"
    log = work / "build.log"
    for old in (src_parent, root):
        shutil.rmtree(old, ignore_errors=True)
    stamp(root).unlink(missing_ok=True)
    src_parent.mkdir(parents=True)
    log.write_text(f"strongSwan {VERSION} from {source} (sha256 {SHA256}) into {root}\n")
    started = time.monotonic()
    # tar(1), not tarfile: extraction filters need Python 3.11.4, Debian 12 has 3.11.2
    _step(["tar", "-xzf", str(source), "--no-same-owner"], src_parent, log, "unpack")
    times = {"unpack": round(time.monotonic() - started, 1)}
    (src,) = [p for p in src_parent.iterdir() if p.is_dir()]
    configure = ["./configure", f"--prefix={root}", f"--sysconfdir={root}/etc", *CONFIGURE_FLAGS]
    for what, argv in (
        ("autogen", ["./autogen.sh"]),
        ("configure", configure),
        ("make", ["make", f"-j{jobs}"]),
        ("make install", ["make", "install"]),
    ):
        t0 = time.monotonic()
        _step(argv, src, log, what)
        times[what] = round(time.monotonic() - t0, 1)
    shutil.rmtree(src_parent)
    record = {
        "version": VERSION,
        "sha256": SHA256,
        "prefix": str(root),
        "seconds": round(time.monotonic() - started, 1),
        "steps": times,
        "built": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    stamp(root).write_text(json.dumps(record, indent=1) + "\n")


def main(argv: Sequence[str] = ()) -> int:
    """Build when needed; one line on stderr when it builds, the log's tail when it fails."""
    root = prefix()
    if installed(root, PLUGINS):
        return 0
    print(
        f"strongswan6: building strongSwan {VERSION} into {root} "
        f"(2 to 8 minutes on 2 cores, depending on load; log: {cache_dir() / 'build.log'})",
        file=sys.stderr,
    )
    try:
        ensure()
    except BuildError as exc:
        print(f"strongswan6: {exc}", file=sys.stderr)
        return 1
    seconds = json.loads(stamp(root).read_text()).get("seconds", "?")
    print(f"strongswan6: built in {seconds} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
