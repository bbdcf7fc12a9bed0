"""Two real daemon processes on loopback: establish, list, delete, reload, terminate.

Each test drives the daemons only through the `ikev2` CLI and signals, as a user would, and
checks both sides' `list-sas --json`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal

from ikev2.service.control import request

from .daemons import MOON, SUN, daemon_pair, side_config, wait_until

HEX16 = re.compile(r"^[0-9a-f]{16}$")
HEX8 = re.compile(r"^[0-9a-f]{8}$")


async def test_up_list_down_between_two_daemons() -> None:
    async with daemon_pair() as pair:
        code, out, err = await pair.moon.cli("up", "net")
        assert code == 0, err
        assert "ESTABLISHED" in out
        [moon] = await pair.moon.sas()
        [sun] = await pair.sun.sas()
        assert (moon["state"], sun["state"]) == ("established", "established")
        assert moon["initiator"] is True and sun["initiator"] is False
        assert moon["local"] == f"{MOON}:{pair.port}" and moon["remote"] == f"{SUN}:{pair.port}"
        assert (moon["local_id"], moon["remote_id"]) == ("moon.example", "sun.example")
        assert (sun["local_id"], sun["remote_id"]) == ("sun.example", "moon.example")
        assert HEX16.match(moon["spi_i"]) and HEX16.match(moon["spi_r"])
        assert (moon["spi_i"], moon["spi_r"]) == (sun["spi_i"], sun["spi_r"])
        assert moon["suite"] == "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE25519"
        [mc] = moon["children"]
        [sc] = sun["children"]
        assert HEX8.match(mc["spi_in"]) and HEX8.match(mc["spi_out"])
        assert (mc["spi_in"], mc["spi_out"]) == (sc["spi_out"], sc["spi_in"])
        assert (mc["local_ts"], mc["remote_ts"]) == (["10.0.1.0/24"], ["10.0.2.0/24"])
        assert (sc["local_ts"], sc["remote_ts"]) == (["10.0.2.0/24"], ["10.0.1.0/24"])
        assert (mc["mode"], mc["protocol"], mc["suite"]) == ("tunnel", "ESP", "AES_GCM_16_256")

        # the in-memory kernel got both SAs and the out/in/fwd policies on each side
        for daemon in (pair.moon, pair.sun):
            stats = request(daemon.control, {"cmd": "stats"})
            assert (stats["kernel"], stats["kernel_sas"], stats["kernel_policies"]) == (
                "memory",
                2,
                3,
            )
        code, out, _ = await pair.moon.cli("list-sas")
        assert code == 0 and "10.0.1.0/24 === 10.0.2.0/24" in out

        code, out, err = await pair.sun.cli("down", str(sun["id"]))
        assert code == 0, err
        assert await pair.sun.sas() == []
        assert await wait_until(lambda: _empty(pair.moon)), "moon still has the IKE SA"
        for daemon in (pair.moon, pair.sun):
            stats = request(daemon.control, {"cmd": "stats"})
            assert (stats["kernel_sas"], stats["kernel_policies"]) == (0, 0)


async def _empty(daemon) -> bool:  # type: ignore[no-untyped-def]
    return await daemon.sas() == []


async def test_uvloop_when_installed_and_plain_asyncio_both_negotiate() -> None:
    """The optional uvloop extra (pip install .[fast]) and plain asyncio interoperate: sun runs
    whichever is installed, moon is forced onto asyncio (IKEV2_NO_UVLOOP)."""
    async with daemon_pair(moon_env={"IKEV2_NO_UVLOOP": "1"}) as pair:
        assert "(asyncio event loop)" in pair.moon.log.read_text()
        uvloop = importlib.util.find_spec("uvloop") and not os.environ.get("IKEV2_NO_UVLOOP")
        sun_loop = "uvloop" if uvloop else "asyncio"
        assert f"({sun_loop} event loop)" in pair.sun.log.read_text()
        code, _out, err = await pair.moon.cli("up", "net")
        assert code == 0, err
        [sa] = await pair.sun.sas()
        assert sa["state"] == "established" and len(sa["children"]) == 1


async def test_up_of_unknown_connection_and_down_of_nothing_fail_clearly() -> None:
    async with daemon_pair() as pair:
        code, _out, err = await pair.moon.cli("up", "nosuch")
        assert code == 1 and "no connection 'nosuch'" in err and "net" in err
        code, _out, err = await pair.moon.cli("down", "net")
        assert code == 1 and "no IKE SA" in err


async def test_up_against_a_silent_peer_fails_after_retransmits() -> None:
    async with daemon_pair() as pair:
        await pair.sun.stop()
        code, _out, err = await pair.moon.cli("up", "net", "--timeout", "3")
        assert code == 1
        assert "not established in time" in err


async def test_rekey_keeps_the_pair_established() -> None:
    async with daemon_pair() as pair:
        assert (await pair.moon.cli("up", "net"))[0] == 0
        [before] = await pair.moon.sas()
        spi = before["children"][0]["spi_in"]
        code, _out, err = await pair.moon.cli("rekey", str(before["id"]), "--child", spi)
        assert code == 0, err

        async def rekeyed() -> bool:
            [sa] = await pair.moon.sas()
            return bool(sa["children"]) and all(c["spi_in"] != spi for c in sa["children"])

        assert await wait_until(rekeyed)
        [sun] = await pair.sun.sas()
        assert [c["spi_out"] for c in sun["children"]] == [
            c["spi_in"] for c in (await pair.moon.sas())[0]["children"]
        ]


async def test_ike_rekey_and_reauthentication_from_the_cli() -> None:
    """`ikev2 rekey ID` rekeys the IKE SA (§1.3.2), `--reauth` reauthenticates it (§2.8.3):
    each time both daemons end with one IKE SA, new SPIs, and the child carried over."""
    async with daemon_pair() as pair:
        assert (await pair.moon.cli("up", "net"))[0] == 0
        [first] = await pair.moon.sas()

        async def replaced(old: dict) -> bool:  # type: ignore[type-arg]
            moon, sun = await pair.moon.sas(), await pair.sun.sas()
            return (
                len(moon) == len(sun) == 1
                and moon[0]["spi_i"] != old["spi_i"]
                and moon[0]["spi_i"] == sun[0]["spi_i"]
                and len(moon[0]["children"]) == len(sun[0]["children"]) == 1
            )

        code, out, err = await pair.moon.cli("rekey", str(first["id"]))
        assert code == 0 and "rekeying started" in out, err
        assert await wait_until(lambda: replaced(first)), await pair.moon.sas()
        [second] = await pair.moon.sas()
        code, out, err = await pair.moon.cli("rekey", str(second["id"]), "--reauth")
        assert code == 0 and "reauthentication started" in out, err
        assert await wait_until(lambda: replaced(second)), await pair.moon.sas()
        [third] = await pair.moon.sas()
        assert third["children"][0]["spi_in"] != second["children"][0]["spi_in"]
        code, _out, err = await pair.moon.cli("rekey", "999")
        assert code == 1 and "no IKE SA 999" in err


async def test_sighup_adds_and_removes_connections_leaving_others_alone() -> None:
    async with daemon_pair(names=("net", "old")) as pair:
        for daemon in (pair.moon,):
            assert (await daemon.cli("up", "net"))[0] == 0
            assert (await daemon.cli("up", "old"))[0] == 0
        before = {sa["connection"]: sa for sa in await pair.moon.sas()}
        assert set(before) == {"net", "old"}

        # moon's file now has "net" (unchanged) and "new" instead of "old"; sun knows all three
        moon_text = side_config("moon", pair.port, pair.moon.control, names=("net", "new"))
        pair.moon.config.write_text(moon_text)
        sun_text = side_config("sun", pair.port, pair.sun.control, names=("net", "old", "new"))
        pair.sun.config.write_text(sun_text)
        code, out, err = await pair.sun.cli("reload")
        assert code == 0 and "added ['new']" in out, (out, err)
        await pair.moon.signal(signal.SIGHUP)

        async def reloaded() -> bool:
            names = {sa["connection"] for sa in await pair.moon.sas()}
            return names == {"net"}

        assert await wait_until(reloaded), await pair.moon.sas()
        [net] = await pair.moon.sas()
        assert net["id"] == before["net"]["id"] and net["spi_i"] == before["net"]["spi_i"]
        # the removed connection's SA was deleted with the peer, too
        assert await wait_until(lambda: _only(pair.sun, {"net"})), await pair.sun.sas()
        code, _out, err = await pair.moon.cli("up", "new")
        assert code == 0, err
        code, _out, err = await pair.moon.cli("up", "old")
        assert code == 1 and "no connection 'old'" in err


async def _only(daemon, names: set[str]) -> bool:  # type: ignore[no-untyped-def]
    return {sa["connection"] for sa in await daemon.sas()} == names


async def test_reload_of_a_broken_file_keeps_the_running_config() -> None:
    async with daemon_pair() as pair:
        pair.moon.config.write_text(pair.moon.config.read_text() + "\n[bogus]\n")
        code, _out, err = await pair.moon.cli("reload")
        assert code == 1 and "bogus: unknown key" in err
        assert (await pair.moon.cli("up", "net"))[0] == 0


async def test_sigterm_deletes_ike_sas_with_the_peer_and_exits_zero() -> None:
    async with daemon_pair() as pair:
        assert (await pair.moon.cli("up", "net"))[0] == 0
        assert len(await pair.sun.sas()) == 1
        assert await pair.moon.stop() == 0
        assert await pair.sun.sas() == []  # moon waited for sun's answer before exiting
        log = pair.moon.log.read_text()
        assert "deleting IKE SAs with their peers" in log and "ike_sas_left=0" in log
        assert await pair.sun.stop() == 0


async def test_control_socket_is_owner_only() -> None:
    import os
    import stat

    async with daemon_pair() as pair:
        mode = stat.S_IMODE(os.stat(pair.moon.control).st_mode)
        assert mode == 0o600
