"""RFC 5685 redirects between three of our daemons over real UDP on loopback: the client "moon"
(127.0.0.1), gateway A (127.0.0.2) and gateway B (127.0.0.3), in-memory kernels. The client
follows a redirect in IKE_SA_INIT, in IKE_AUTH, and on an established IKE SA (`ikev2 redirect
ID --to ADDR` on A's control socket)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ikev2.service.udp import free_port_pair

from .daemons import MOON, SUN, Daemon, side_config, wait_until

GW_B = "127.0.0.3"


@dataclass
class Three:
    moon: Daemon
    a: Daemon
    b: Daemon
    port: int


@contextlib.asynccontextmanager
async def three_daemons(redirect_a: str = "", a_args: tuple[str, ...] = ()) -> AsyncIterator[Three]:
    """moon initiates `net` to A; A (with `redirect_a` keys in its connection) and B are
    gateways of the same identity and PSK."""
    workdir = Path(tempfile.mkdtemp(prefix="ikev2r-"))
    port = free_port_pair((MOON, SUN, GW_B))
    texts = {
        "moon": side_config("moon", port, str(workdir / "moon.sock")),
        "a": side_config("sun", port, str(workdir / "a.sock")).replace(
            'dpd_delay = "30s"\n', f'dpd_delay = "30s"\n{redirect_a}\n'
        ),
        "b": side_config("sun", port, str(workdir / "b.sock")).replace(SUN, GW_B),
    }
    daemons = {}
    for name, text in texts.items():
        config = workdir / f"{name}.toml"
        config.write_text(text)
        args = a_args if name == "a" else ()
        daemons[name] = Daemon(
            name, config, str(workdir / f"{name}.sock"), workdir / f"{name}.log", args
        )
    try:
        for name in ("b", "a", "moon"):
            await daemons[name].start()
        yield Three(daemons["moon"], daemons["a"], daemons["b"], port)
    finally:
        for daemon in daemons.values():
            if daemon.process is not None and daemon.process.returncode is None:
                with contextlib.suppress(Exception):
                    await daemon.stop(5)
            daemon.kill()
            if daemon._log_file is not None:
                daemon._log_file.close()


async def _at_b_only(three: Three) -> bool:
    moon, a, b = await three.moon.sas(), await three.a.sas(), await three.b.sas()
    return (
        [s["remote"] for s in moon] == [f"{GW_B}:{three.port}"]
        and [s["state"] for s in moon] == ["established"]
        and len(moon[0]["children"]) == 1
        and a == []
        and [s["state"] for s in b] == ["established"]
    )


async def test_redirect_in_ike_sa_init() -> None:
    async with three_daemons(f'redirect_to = ["{GW_B}"]') as three:
        code, out, err = await three.moon.cli("up", "net")
        assert code == 0, err + three.moon.log.read_text()
        assert GW_B in out  # the same IKE SA, now at B
        assert await wait_until(lambda: _at_b_only(three)), three.moon.log.read_text()
        assert "redirected" in three.moon.log.read_text()
        assert "IKE_SA_INIT redirected" in three.a.log.read_text()


async def test_redirect_in_ike_auth() -> None:
    """`up` answers for the IKE SA at B: it waits for the redirected IKE SA's successor."""
    async with three_daemons(f'redirect_to = ["{GW_B}"]\nredirect_on = "auth"') as three:
        code, out, err = await three.moon.cli("up", "net")
        assert code == 0, err + three.moon.log.read_text()
        assert GW_B in out, out + three.moon.log.read_text()
        assert await wait_until(lambda: _at_b_only(three)), three.a.log.read_text()


@pytest.mark.parametrize("workers", [1, 2])
async def test_redirect_of_an_established_sa_from_the_cli(workers: int) -> None:
    """With workers = 2 on A the supervisor hands the command to the IKE SA's owner."""
    async with three_daemons(a_args=("--workers", str(workers))) as three:
        code, _, err = await three.moon.cli("up", "net")
        assert code == 0, err
        [at_a] = await three.a.sas()
        assert at_a["children"]
        code, out, err = await three.a.cli("redirect", str(at_a["id"]), "--to", GW_B)
        assert code == 0, err
        assert f"redirected to {GW_B}" in out
        assert await wait_until(lambda: _at_b_only(three)), three.moon.log.read_text()
        [at_b] = await three.b.sas()
        assert at_b["children"][0]["local_ts"] == at_a["children"][0]["local_ts"]
        # the command refuses what it cannot do, with one clear line
        code, _, err = await three.a.cli("redirect", "999", "--to", GW_B)
        assert code != 0 and "no established IKE SA 999" in err
        code, _, err = await three.b.cli("redirect", str(at_b["id"]), "--to", "not a host!")
        assert code != 0 and "neither an IP address nor a host name" in err
