"""Network namespaces for tests: enter one from Python (setns(2) through libc; os.setns only
arrived in Python 3.12) and run a function inside a fresh one in a forked child."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import subprocess
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

CLONE_NEWNET = 0x40000000  # linux/sched.h
_libc = ctypes.CDLL(None, use_errno=True)

T = TypeVar("T")


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) for the calling thread."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block in netns `ns` (a name under /run/netns); sockets made there stay there.
    Only for single-threaded code: setns applies to the calling thread."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        setns(target)
        yield
    finally:
        setns(home)
        os.close(target)
        os.close(home)


@contextlib.contextmanager
def fresh_netns(prefix: str = "ikev2t") -> Iterator[str]:
    """A new named network namespace with lo up, deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


class ChildFailed(AssertionError):
    """The function run in the namespace raised; carries its formatted traceback."""


def run_in_netns(ns: str, func: Callable[[], T], timeout: float = 60.0) -> T:
    """Fork, setns the child into `ns`, run func there and hand its (picklable) result back.
    An exception in the child becomes ChildFailed in the parent, with the child's traceback."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        os.close(read_end)
        status = 0
        try:
            with open(f"/run/netns/{ns}", "rb") as f:
                setns(f.fileno())
            payload = pickle.dumps(("ok", func()))
        except BaseException:
            payload = pickle.dumps(("error", traceback.format_exc()))
            status = 1
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    if not data:
        raise ChildFailed(f"the child in netns {ns} died without a result")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise ChildFailed(f"in netns {ns}:\n{value}")
    return value  # type: ignore[no-any-return]
