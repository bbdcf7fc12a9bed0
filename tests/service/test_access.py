"""Who may talk to the daemon and who may change what it reads.

- The control socket is root-only by default: a process that drops to `nobody` (os.setuid in a
  child) is refused (EACCES) by the 0700 directory the daemon creates and, in a directory anyone
  may enter, by the socket's own mode 0600. The positive control: once the socket is made 0666
  the same child connects and is answered, so the refusals came from the modes alone.
- Files: the config file is refused when group or others may write it (it names the dns_hook
  program the daemon runs as root, the trust anchors and inline PSKs); secret and private key
  files when anyone else may read or write them (test_config.py has the readable PSK modes).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ikev2.config import load_config
from ikev2.errors import ConfigError
from ikev2.service.udp import free_port_pair

from .daemons import MOON, SUN, Daemon, side_config
from .test_config import GOOD, PKI, assert_one_clear_line, run_daemon_cli, write

NOBODY = 65534
# the child drops root first, then connects and sends one request; prints the errno or the answer
PROBE = """
import json, os, socket, sys
os.setgroups([]); os.setgid({uid}); os.setuid({uid})
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({{"errno": exc.errno}})); sys.exit(0)
sock.sendall(b'{{"cmd": "list-sas"}}\\n')
print(json.dumps({{"answer": json.loads(sock.makefile().readline())}}))
"""


def probe_as(uid: int, path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(uid=uid), str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
async def test_a_non_root_user_is_refused_by_the_control_socket() -> None:
    base = Path(tempfile.mkdtemp(prefix="ikev2a-"))
    base.chmod(0o755)  # anyone may enter: only what the daemon creates keeps others out
    control = base / "run" / "control.sock"  # the daemon creates run/ (as /run/ikev2)
    config = base / "sun.toml"
    config.write_text(side_config("sun", free_port_pair((MOON, SUN)), str(control)))
    daemon = Daemon("sun", config, str(control), base / "sun.log")
    try:
        await daemon.start()
        assert stat.S_IMODE(control.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(control.stat().st_mode) == 0o600
        assert control.stat().st_uid == 0
        assert probe_as(0, control) == {"answer": {"ok": True, "sas": []}}  # root is served
        assert probe_as(NOBODY, control) == {"errno": 13}  # EACCES at the 0700 directory
        control.parent.chmod(0o755)
        assert probe_as(NOBODY, control) == {"errno": 13}  # EACCES at the 0600 socket
        control.chmod(0o666)  # positive control: the modes were all that refused nobody
        assert probe_as(NOBODY, control) == {"answer": {"ok": True, "sas": []}}
    finally:
        if daemon.process is not None:
            await daemon.stop()


@pytest.mark.parametrize("mode", [0o666, 0o646, 0o664, 0o620])
def test_a_config_file_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, GOOD)
    path.chmod(mode)
    line = assert_one_clear_line(run_daemon_cli(path), path, "(file)")
    assert f"writable by group or others (mode {mode:04o})" in line
    assert f"chmod go-w {path}" in line


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o400])
def test_a_config_file_only_we_may_write_is_accepted(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, GOOD)
    path.chmod(mode)
    assert load_config(path).engine.connections


@pytest.mark.parametrize("mode", [0o602, 0o620, 0o601])
def test_a_psk_file_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    psk = tmp_path / "psk.txt"
    psk.write_text("a secret in a file\n")
    psk.chmod(mode)
    path = write(tmp_path, GOOD.replace('secret = "the right secret"', 'secret_file = "psk.txt"'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    how = "writable" if mode & 0o022 else "usable"
    assert f"is {how} by others (mode {mode:04o})" in str(caught.value)
    assert caught.value.key == "secrets.ours.secret_file"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o602])
def test_a_private_key_file_others_may_use_is_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "moon.key"
    key.write_bytes((PKI / "moon.key").read_bytes())
    key.chmod(mode)
    text = f"""
[connections.c]
local_addrs = ["192.0.2.1"]
[connections.c.local]
auth = "pubkey"
id = "moon.ikev2.test"
certs = ["{PKI / "moon.crt"}"]
key = "moon.key"
[connections.c.remote]
auth = "pubkey"
cacerts = ["{PKI / "ca.crt"}"]
"""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text, "c.toml"))
    assert caught.value.key == "connections.c.local.key"
    assert f"(mode {mode:04o})" in str(caught.value) and f"chmod 600 {key}" in str(caught.value)
