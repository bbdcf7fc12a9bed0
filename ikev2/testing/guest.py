"""A QEMU guest with a stock Debian kernel that really does ESP, sharing the host's root read-only.

The recipe measured in the testbed notes: the kernel package `linux-image-amd64` depends on is
fetched with `apt-get download` (never installed), unpacked into a cache dir, and its vmlinux is
cut out of vmlinuz (the XZ stream from the magic FD 37 7A 58 5A 00) so QEMU boots it through PVH
with qboot and skips the decompressor (slow under TCG). A small busybox initramfs loads the 9p,
virtio and overlay modules, mounts the host root read-only under a tmpfs overlay, mounts a
read-write results share on /results and switch_roots to /results/guest-init.sh, which loads the
IPsec modules in one `modprobe -a`, runs the caller's command, records its exit code and powers
off. TCG only (`-accel tcg`), no network card (`-nic none`).

Everything expensive is cached under `.cache/guest/<kernel version>/` and rebuilt only when a
piece is missing.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

XZ_MAGIC = bytes.fromhex("FD377A585A00")
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
# One modprobe -a for everything ESP tests need (each on-demand load costs ~0.2 s under TCG).
IPSEC_MODULES = (
    "veth tun xfrm_user xfrm_interface esp4 esp6 ah4 ah6 xfrm4_tunnel xfrm6_tunnel gcm "
    "ghash_clmulni_intel seqiv echainiv chacha20poly1305 authenc authencesn ccm cmac xcbc "
    "sha256_ssse3 sha512_ssse3 ctr cbc aesni_intel"
)
QBOOT = Path("/usr/share/qemu/qboot.rom")
BUSYBOX = Path("/bin/busybox")


class GuestError(RuntimeError):
    """The guest could not be prepared or booted; the message says which step and why."""


@dataclass(frozen=True)
class GuestImage:
    version: str
    root: Path  # the unpacked kernel package (lib/modules/<version>/...)
    vmlinux: Path
    initrd: Path

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules"


@dataclass(frozen=True)
class GuestRun:
    exit_code: int | None  # None: the command never reported (crash, timeout)
    console: str
    wall_seconds: float
    results: Path


def _run(argv: list[str], step: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise GuestError(f"{step}: {argv[0]} is not installed ({exc})") from exc
    if done.returncode != 0:
        raise GuestError(f"{step}: {shlex.join(argv)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def kernel_package() -> str:
    """The versioned package `linux-image-amd64` depends on (the ABI suffix changes)."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"], "resolve kernel package")
    match = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*)", out)
    if match is None:
        raise GuestError(f"resolve kernel package: no linux-image dependency in {out!r}")
    return match.group(1)


def extract_vmlinux(vmlinuz: Path, out: Path) -> None:
    """Decompress the XZ stream inside a bzImage: the uncompressed ELF QEMU enters via PVH."""
    data = vmlinuz.read_bytes()
    start = data.find(XZ_MAGIC)
    if start < 0:
        raise GuestError(f"extract vmlinux: no XZ stream in {vmlinuz}")
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    elf = decompressor.decompress(data[start:])
    if not elf.startswith(b"\x7fELF"):
        raise GuestError(f"extract vmlinux: the XZ stream of {vmlinuz} is not an ELF image")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(elf)
    tmp.rename(out)


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An initramfs archive in the "newc" cpio format (kernel Documentation/.../ramfs-rootfs)."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


INITRAMFS_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /lower /upper /newroot
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /mods/$m || echo "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower
mount -t tmpfs -o size=256m tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot
mkdir -p /newroot/results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /newroot/results
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /bin/sh /results/guest-init.sh
echo "switch_root failed"; poweroff -f
"""


def build_initrd(root: Path, version: str, out: Path) -> None:
    """busybox-static, the boot modules in dependency order, and INITRAMFS_INIT as /init."""
    listing = _run(
        ["modprobe", "-d", str(root), "-S", version, "-a", "--show-depends", *BOOT_MODULES],
        "list boot modules",
    )
    paths: list[str] = []
    for line in listing.splitlines():
        parts = line.split()
        if parts[:1] == ["insmod"] and parts[1] not in paths:
            paths.append(parts[1])
    if not BUSYBOX.exists():
        raise GuestError(f"build initramfs: {BUSYBOX} missing (apt-get install busybox-static)")
    entries: list[tuple[str, int, bytes]] = [
        ("bin", 0o040755, b""),
        ("mods", 0o040755, b""),
        ("bin/busybox", 0o100755, BUSYBOX.read_bytes()),
        ("init", 0o100755, INITRAMFS_INIT.encode()),
    ]
    names = []
    for path in paths:
        name = Path(path).name
        names.append(name)
        entries.append((f"mods/{name}", 0o100644, Path(path).read_bytes()))
    entries.append(("modules.order", 0o100644, "\n".join(names).encode() + b"\n"))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(_cpio_newc(entries), compresslevel=1))
    tmp.rename(out)


def prepare(cache: Path) -> GuestImage:
    """Fetch, unpack and build what is missing under `cache`; return the image to boot."""
    package = kernel_package()
    version = package.removeprefix("linux-image-")
    base = cache / version
    root = base / "root"
    # the initramfs is named after a digest of its /init, so editing the script rebuilds it
    digest = hashlib.sha256(INITRAMFS_INIT.encode() + " ".join(BOOT_MODULES).encode()).hexdigest()
    vmlinux, initrd = base / "vmlinux", base / f"initrd-{digest[:12]}.gz"
    if not (root / "lib" / "modules" / version / "modules.dep").exists():
        base.mkdir(parents=True, exist_ok=True)
        download = base / "download"
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir()
        _run(["apt-get", "download", package], f"apt-get download {package}", cwd=download)
        debs = sorted(download.glob("*.deb"))
        if not debs:
            raise GuestError(f"apt-get download {package}: no .deb appeared")
        shutil.rmtree(root, ignore_errors=True)
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)], "unpack kernel package")
        _run(["depmod", "-b", str(root), version], "depmod")
        shutil.rmtree(download)
    if not vmlinux.exists():
        extract_vmlinux(root / "boot" / f"vmlinuz-{version}", vmlinux)
    if not initrd.exists():
        build_initrd(root, version, initrd)
    return GuestImage(version, root, vmlinux, initrd)


GUEST_INIT = """#!/bin/sh
# PID 1 after switch_root (written by ikev2.testing.guest for this run)
mount -t tmpfs tmpfs /run
# The guest's scratch space is a tmpfs on a directory of its own, made in the overlay: /tmp
# stays the host's (writes private to the guest), so a checkout or virtualenv under /tmp is
# visible; and not under /run, which each charon remounts in its own mount namespace.
mkdir -p {scratch} && mount -t tmpfs -o mode=1777 tmpfs {scratch}
export TMPDIR={scratch}
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
ln -sf /proc/self/fd /dev/fd
mkdir -p /lib/modules && mount --bind {modules} /lib/modules
ip link set lo up
t0=$(cut -d' ' -f1 /proc/uptime)
modprobe -a {ipsec_modules} 2>/results/modprobe.err || echo "modprobe -a: some modules failed"
echo "modules loaded at ${{t0}}..$(cut -d' ' -f1 /proc/uptime) s uptime"
cd {cwd}
# the checkout under test, also for the daemons the command starts (an editable install of
# another checkout, e.g. a git worktree sharing a virtualenv, would otherwise win)
export PYTHONPATH={cwd}
{command} >/results/command.log 2>&1
echo $? > /results/exit-code.tmp && mv /results/exit-code.tmp /results/exit-code
sync
echo o > /proc/sysrq-trigger
while :; do :; done  # power-off is asynchronous; PID 1 must not exit first (that panics)
"""


def boot(
    image: GuestImage,
    command: list[str],
    results: Path,
    cwd: Path,
    timeout: float = 240.0,
    memory_mib: int = 512,
) -> GuestRun:
    """Boot the guest once, run `command` in `cwd` (a host path, seen through the root share),
    and return its exit code, the serial console and the wall time. The guest writes under
    `results` (shared read-write); QEMU is killed by PID if it outlives `timeout`."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise GuestError("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")
    if not QBOOT.exists():
        raise GuestError(f"{QBOOT} missing (part of qemu-system-data)")
    results.mkdir(parents=True, exist_ok=True)
    (results / "exit-code").unlink(missing_ok=True)
    (results / "guest-init.sh").write_text(
        GUEST_INIT.format(
            modules=shlex.quote(str(image.modules)),
            scratch=GUEST_SCRATCH,
            ipsec_modules=IPSEC_MODULES,
            cwd=shlex.quote(str(cwd)),
            command=shlex.join(command),
        )
    )
    argv = [
        qemu,
        *("-accel", "tcg,thread=multi,tb-size=128", "-cpu", "max", "-smp", "2"),
        *("-m", str(memory_mib), "-machine", "pc", "-nographic", "-no-reboot", "-nic", "none"),
        *("-bios", str(QBOOT), "-kernel", str(image.vmlinux), "-initrd", str(image.initrd)),
        *("-append", "console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests"),
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap,id=hr",
        "-virtfs",
        f"local,path={results},mount_tag=results,security_model=none,id=results",
    ]
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        console, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own QEMU, by its PID
        console, _ = proc.communicate()
        console += f"\n[harness] QEMU killed after {timeout:.0f} s".encode()
    wall = time.monotonic() - start
    exit_file = results / "exit-code"
    code = int(exit_file.read_text().strip()) if exit_file.exists() else None
    text = console.decode("utf-8", "replace")
    (results / "console.log").write_text(text)
    return GuestRun(code, text, wall, results)


GUEST_SCRATCH = "/.ikev2-guest-scratch"  # TMPDIR in the guest (a path no checkout uses)
HIDDEN_IN_GUEST = (Path("/run"), Path("/proc"), Path("/sys"), Path("/dev"), Path(GUEST_SCRATCH))


def interpreter() -> Path:
    """The interpreter (and so the virtualenv and installed package) this process runs, as the
    guest sees it through the shared root: whatever venv the tests run from, not <repo>/.venv.
    Paths under the guest's own /run, /proc, /sys or /dev would be hidden there: refused."""
    path = Path(sys.executable)
    resolved = path.resolve()
    for hidden in HIDDEN_IN_GUEST:
        for candidate in (path, resolved, Path(sys.prefix)):
            if candidate.is_relative_to(hidden):
                raise GuestError(
                    f"the interpreter {candidate} lies under {hidden}, which the guest mounts "
                    "afresh: run the tests from a virtualenv elsewhere"
                )
    return path


def default_cache(repo: Path) -> Path:
    return Path(os.environ.get("IKEV2_GUEST_CACHE", repo / ".cache" / "guest"))
