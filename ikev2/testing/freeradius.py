"""A real FreeRADIUS (Debian's freeradius 3.2) for the EAP-RADIUS tests: its packaged
configuration copied to a private directory, with our client (NAS) and shared secret, the
users' cleartext passwords (mods-config/files/authorize), an eap module that runs only EAP-MD5
and EAP-MSCHAPv2 (the packaged one also wants TLS certificates) and one virtual server that
listens on one address and port (-i/-p would attach the listener to an empty server). In the
foreground, logging to a file; stopped by its PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

PACKAGED = Path("/etc/freeradius/3.0")
BINARY = "freeradius"
EAP_MODULE = """eap {
\tdefault_eap_type = md5
\ttimer_expire = 60
\tignore_unknown_eap_types = no
\tcisco_accounting_username_bug = no
\tmax_sessions = ${max_requests}
\tmd5 {
\t}
\tmschapv2 {
\t}
}
"""

SITE = """server ikev2 {{
\tlisten {{
\t\ttype = auth
\t\tipaddr = {address}
\t\tport = {port}
\t}}
\tauthorize {{
\t\teap {{
\t\t\tok = return
\t\t}}
\t\tfiles
\t}}
\tauthenticate {{
\t\teap
\t\tAuth-Type MS-CHAP {{
\t\t\tmschap
\t\t}}
\t}}
\tpost-auth {{
\t}}
}}
"""


def available() -> str | None:
    """None when FreeRADIUS can run here, else why not (apt-get install freeradius)."""
    if shutil.which(BINARY) is None or not PACKAGED.is_dir():
        return "FreeRADIUS is not installed (apt-get install freeradius)"
    return None


def free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class FreeRadius:
    def __init__(
        self,
        workdir: Path,
        secret: str,
        users: dict[str, str],
        address: str = "127.0.0.1",
        client: str = "127.0.0.1",
        port: int = 0,
        netns: str | None = None,
    ) -> None:
        self.dir = workdir / "raddb"
        self.secret, self.users = secret, users
        self.address, self.client = address, client
        self.port = port or free_udp_port(address)
        self.netns = netns
        self.log_path = workdir / "freeradius.log"
        self.process: subprocess.Popen[bytes] | None = None

    def configure(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        shutil.copytree(PACKAGED, self.dir, symlinks=True)
        eap = self.dir / "mods-enabled" / "eap"
        eap.unlink(missing_ok=True)
        eap.write_text(EAP_MODULE)
        (self.dir / "clients.conf").write_text(
            f'client ikev2 {{\n\tipaddr = {self.client}\n\tsecret = "{self.secret}"\n'
            "\trequire_message_authenticator = yes\n}\n"
        )
        for site in (self.dir / "sites-enabled").iterdir():
            site.unlink()
        site_text = SITE.format(address=self.address, port=self.port)
        (self.dir / "sites-enabled" / "ikev2").write_text(site_text)
        lines = [
            f'{user}\tCleartext-Password := "{password}"' for user, password in self.users.items()
        ]
        (self.dir / "mods-config" / "files" / "authorize").write_text("\n".join(lines) + "\n")
        # the test peer stays root (no drop to freerad, who cannot enter pytest's 0700 tmp)
        conf = self.dir / "radiusd.conf"
        text = re.sub(r"(?m)^(\s*)(user|group) = freerad$", r"\1# \2 = freerad", conf.read_text())
        text = re.sub(r"(?m)^(\s*)auth = no$", r"\1auth = yes", text)  # "Login OK: [user]" lines
        conf.write_text(text)

    def start(self, timeout: float = 20.0) -> FreeRadius:
        self.configure()
        argv = [BINARY, "-f", "-l", str(self.log_path), "-d", str(self.dir)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(f"freeradius exited: {err[-2000:]}\n{self.log()[-2000:]}")
            if "Ready to process requests" in self.log():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"freeradius not ready in {timeout} s:\n{self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> FreeRadius:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
