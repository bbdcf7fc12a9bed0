"""A child process a test harness owns: stopped by PID with SIGTERM (SIGKILL if it lingers),
or killed outright to make a peer vanish without a Delete. Shared by OurDaemon and Charon."""

from __future__ import annotations

import signal
import subprocess
from typing import Self


class ManagedProcess:
    proc: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (by PID), SIGKILL if it lingers; the exit code, or None if never started."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL (by PID): the peer vanishes without a Delete."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
