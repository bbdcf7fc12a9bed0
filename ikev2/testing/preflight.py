"""The suite's preflight: every outside program, file and plugin the tests use, checked once.

A missing package used to show up as a hundred identical failures deep in the run (a strongSwan
plugin nobody installed failed every interop row). `missing(groups)` returns one line per absent
piece, naming the Debian package that provides it; tests/conftest.py calls it after collection
for the marker groups (root, guest, interop, sw6) that the selected tests need and stops the run
at once when anything is missing. `.ci/bootstrap.sh` installs all of these packages; strongSwan 6
(group sw6) is built from source by `.ci/strongswan6.sh`, and its absence is one line saying so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import strongswan


@dataclass(frozen=True)
class Requirement:
    what: str  # a program on PATH (no slash) or an absolute path
    package: str  # the Debian package that provides it
    groups: frozenset[str]  # the marker groups that use it

    def present(self) -> bool:
        if self.what.startswith("/"):
            return Path(self.what).exists()
        return shutil.which(self.what) is not None


def _req(what: str, package: str, *groups: str) -> Requirement:
    return Requirement(what, package, frozenset(groups))


# What each marker group runs (root: namespaces and XFRM on the host; guest: the QEMU guest;
# interop: strongSwan on the host or in the guest).
REQUIREMENTS = (
    _req("ip", "iproute2", "root", "guest", "interop"),
    _req("tc", "iproute2", "guest"),  # netem in the guest (tests/interop/guest_impair.py)
    _req("nft", "nftables", "root", "interop"),
    _req("tcpdump", "tcpdump", "guest", "interop"),
    _req("ping", "iputils-ping", "guest", "interop"),
    _req("qemu-system-x86_64", "qemu-system-x86", "guest"),
    _req("/usr/share/qemu/qboot.rom", "qemu-system-data", "guest"),
    _req("/bin/busybox", "busybox-static", "guest"),
    _req("modprobe", "kmod", "guest"),
    _req("depmod", "kmod", "guest"),
    _req("dpkg-deb", "dpkg", "guest"),
    _req("apt-get", "apt", "guest"),
    _req("/dev/net/tun", "(the kernel's tun device: modprobe tun)", "interop"),
    _req(str(strongswan.CHARON), "strongswan-charon", "interop"),
    _req(str(strongswan.SWANCTL), "strongswan-swanctl", "interop"),
    _req("freeradius", "freeradius", "root", "interop"),  # EAP-RADIUS (RFC 3579)
)


def missing(groups: Iterable[str], plugin_dir: Path = strongswan.PLUGIN_DIR) -> list[str]:
    """One line per missing piece the given marker groups need, each naming its package."""
    wanted = set(groups)
    lines = [
        f"{req.what} missing: apt-get install {req.package}"
        for req in REQUIREMENTS
        if req.groups & wanted and not req.present()
    ]
    if "interop" in wanted and Path(strongswan.CHARON).exists():
        lines += strongswan.missing_plugins(plugin_dir)
    if "sw6" in wanted:
        lines += [line for line in (strongswan.missing6(),) if line]
    return lines


def applies() -> bool:
    """The preflight stops the run only where the gated tests would run: as root, or in CI
    (where a missing requirement fails those tests anyway, ikev2.testing.gates)."""
    return os.geteuid() == 0 or bool(os.environ.get("CI"))
