"""IKE over TCP (RFC 9329) with real sockets on loopback: service/tcp.py under two drivers in one
event loop (both roles, a dropped connection, hostile streams), and two `ikev2 daemon`
processes configured with `transport` (tcp, and udp-then-tcp falling back when UDP gets no
answer)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

from ikev2.engine import Engine
from ikev2.engine.config import ConnectionConfig, EngineConfig, Timers, Transport
from ikev2.kernel.memory import InMemoryKernel
from ikev2.service.driver import Driver
from ikev2.service.tcp import TcpTransport
from ikev2.service.udp import UdpTransport, free_port_pair
from ikev2.wire.tcp_framing import STREAM_PREFIX, frame_ike
from tests.engine.pairing import psk_connections

from .daemons import MOON, SUN, Daemon, side_config, wait_until

TIMERS = Timers(retransmit_timeout=0.3, retransmit_base=1.5, retransmit_tries=2, dpd_delay=0)


def free_tcp_port(addresses: tuple[str, ...]) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for address in addresses[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free TCP port")


@dataclass
class Side:
    engine: Engine
    kernel: InMemoryKernel
    driver: Driver
    udp: UdpTransport
    tcp: TcpTransport


def make_side(conn: ConnectionConfig, address: str, udp_port: int, tcp_port: int) -> Side:
    loop = asyncio.get_running_loop()
    engine = Engine(EngineConfig((conn,), tcp_port=tcp_port))
    kernel = InMemoryKernel()
    holder: list[Driver] = []
    udp = UdpTransport(
        loop, lambda d, r, lo: holder[0].on_datagram(d, r, lo), lambda: holder[0].flush()
    )
    driver = Driver(engine, kernel, udp, loop)
    holder.append(driver)
    udp.open((ipaddress.ip_address(address),), udp_port, udp_port + 1, kernel)
    tcp = TcpTransport(
        loop, driver.on_tcp_message, driver.flush, driver.on_tcp_change, kernel=kernel
    )
    tcp.listen((ipaddress.ip_address(address),), tcp_port)
    driver.tcp = tcp
    return Side(engine, kernel, driver, udp, tcp)


@contextlib.asynccontextmanager
async def tcp_pair(transport: Transport = Transport.TCP) -> AsyncIterator[tuple[Side, Side]]:
    conn_i, conn_r = psk_connections(
        addr_i=ipaddress.ip_address(MOON), addr_r=ipaddress.ip_address(SUN)
    )
    udp_port = free_port_pair((MOON, SUN))
    tcp_port = free_tcp_port((MOON, SUN))
    conn_i = replace(
        conn_i, transport=transport, timers=TIMERS, local_port=udp_port, remote_port=udp_port
    )
    conn_r = replace(
        conn_r, transport=Transport.TCP, timers=TIMERS, local_port=udp_port, remote_port=udp_port
    )
    moon = make_side(conn_i, MOON, udp_port, tcp_port)
    sun = make_side(conn_r, SUN, udp_port, tcp_port)
    try:
        yield moon, sun
    finally:
        for side in (moon, sun):
            side.driver.stop()
            side.tcp.close()
            side.udp.close()
            side.kernel.close()


async def up(moon: Side) -> dict[str, object]:
    sa_id = moon.driver.initiate("net")
    return await asyncio.wait_for(moon.driver.wait_for({sa_id}, want_up=True), 10)


async def test_ike_over_tcp_both_roles_real_sockets() -> None:
    async with tcp_pair() as (moon, sun):
        result = await up(moon)
        assert result["ok"], result
        (sa_m,) = moon.engine.sas.values()
        (sa_r,) = sun.engine.sas.values()
        assert sa_m.remote == (ipaddress.ip_address(SUN), sun.tcp.port)
        assert sa_r.remote == sa_m.local and sa_m.local[1] != moon.udp.sockets[0].port
        # everything went over the one connection: no UDP datagram either way
        assert all(
            s.stats["rx"] == 0 and s.stats["tx"] == 0 for s in moon.udp.sockets + sun.udp.sockets
        )
        assert moon.tcp.stats["connected"] == 1 and sun.tcp.stats["accepted"] == 1
        # the child SAs carry TCP encapsulation with the connection's ports (RFC 9329 §3.2)
        specs = [c[1] for c in sun.kernel.calls if c[0] in ("add_sa", "update_sa")]
        assert specs and all(s.encap_tcp for s in specs)
        outbound = next(s for s in specs if s.dst == ipaddress.ip_address(MOON))
        assert outbound.encap == (sun.tcp.port, sa_m.local[1])
        assert not (sa_m.nat_local or sa_m.nat_remote or sa_r.nat_local or sa_r.nat_remote)


async def test_dropped_connection_is_reestablished_by_the_initiator() -> None:
    """§6.1: the stream dies; moon (the Originator) connects again from a new port and sun's
    IKE SA follows it; the IKE SA survives with its SPIs."""
    async with tcp_pair() as (moon, sun):
        assert (await up(moon))["ok"]
        (sa_m,) = moon.engine.sas.values()
        (sa_r,) = sun.engine.sas.values()
        spis, first = (sa_m.spi_i, sa_m.spi_r), sa_m.local
        assert sun.tcp.drop(sa_r.local, sa_r.remote)  # sun's side closes; moon sees EOF
        await wait_until(lambda: _async(sa_r.remote != first and sa_r.tcp.connected), 10)
        assert sa_m.local != first and sa_r.remote == sa_m.local
        assert (sa_m.spi_i, sa_m.spi_r) == spis and sa_m.id in moon.engine.sas
        assert moon.tcp.stats["connected"] == 2 and sun.tcp.stats["connected"] == 0
        # ESP in TCP: both kernels' SAs moved to the new connection's ports (same SPIs)
        moves = [c[2] for c in sun.kernel.calls if c[0] == "move_sa"]
        assert len(moves) == 2 and all(m.encap_tcp for m in moves)
        assert {m.encap for m in moves} == {
            (sa_m.local[1], sun.tcp.port),
            (sun.tcp.port, sa_m.local[1]),
        }
        # the IKE SA still works on the new connection: a rekey of its child goes through
        child = sa_m.children[0].spi_in
        moon.driver.rekey(sa_m.id, child)
        await wait_until(lambda: _async(sa_m.children and sa_m.children[0].spi_in != child), 10)
        assert sa_m.children[0].spi_in != child


async def _async(value: object) -> object:
    return value


async def test_udp_then_tcp_falls_back_in_process() -> None:
    """sun has no connection for UDP (its UDP sockets ignore moon: a wrong port), so moon's
    IKE_SA_INIT over UDP goes unanswered and the connection comes up over TCP."""
    async with tcp_pair(Transport.UDP_THEN_TCP) as (moon, sun):
        for s in sun.udp.sockets:  # UDP "blocked": sun never reads its UDP sockets
            asyncio.get_running_loop().remove_reader(s.sock.fileno())
        sa_id = moon.driver.initiate("net")
        waiter = moon.driver.wait_for({sa_id}, want_up=True)
        result = await asyncio.wait_for(waiter, 10)  # the `up` follows the TCP attempt
        assert result["ok"], result
        (sa,) = moon.engine.sas.values()
        assert [s["id"] for s in result["sas"]] == [sa.id] and sa.id != sa_id and sa.children
        assert sa.tcp is not None and sa.remote[1] == sun.tcp.port
        assert moon.udp.sockets[0].stats["tx"] == 1 + TIMERS.retransmit_tries


async def test_hostile_streams_are_closed_and_the_listener_lives_on() -> None:
    """A wrong prefix or a Length of 1 closes the stream (§3, §4); an undecodable IKE message
    in a well-framed stream is dropped by the engine and the stream stays; a real peer still
    gets in afterwards."""
    async with tcp_pair() as (moon, sun):
        port = sun.tcp.port
        for garbage in (b"GET / HTTP/1.1\r\n\r\n", STREAM_PREFIX + b"\x00\x01"):
            reader, writer = await asyncio.open_connection(SUN, port)
            writer.write(garbage)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by sun
            writer.close()
        reader, writer = await asyncio.open_connection(SUN, port)
        writer.write(STREAM_PREFIX + frame_ike(b"not an IKE message"))
        await writer.drain()
        await wait_until(
            lambda: _async(sun.tcp.stats["accepted"] == 3 and len(sun.tcp.streams) == 1), 5
        )
        assert len(sun.tcp.streams) == 1 and sun.engine.sas == {}
        writer.close()
        assert (await up(moon))["ok"]
        assert sun.tcp.stats["closed"] >= 2


def tcp_config(side: str, port: int, tcp_port: int, control: str, transport: str) -> str:
    """side_config with `transport` on the connection, a TCP port, and short retransmits."""
    text = side_config(side, port, control)
    text = text.replace(
        f"nat_port = {port + 1}\n", f"nat_port = {port + 1}\ntcp_port = {tcp_port}\n"
    )
    extra = f'transport = "{transport}"\nretransmit_timeout = "0.3s"\nretransmit_base = 1.5\n'
    extra += "retransmit_tries = 2\n"
    return text.replace('dpd_delay = "30s"\n', 'dpd_delay = "30s"\n' + extra)


@contextlib.asynccontextmanager
async def tcp_daemons(
    moon_transport: str, block_udp: bool = False
) -> AsyncIterator[tuple[Daemon, Daemon]]:
    workdir = Path(tempfile.mkdtemp(prefix="ikev2tcp-"))
    port = free_port_pair((MOON, SUN))
    tcp_port = free_tcp_port((MOON, SUN))
    daemons = []
    for side, transport in (("sun", "tcp"), ("moon", moon_transport)):
        control = str(workdir / f"{side}.sock")
        config = workdir / f"{side}.toml"
        text = tcp_config(side, port, tcp_port, control, transport)
        if block_udp and side == "moon":  # moon's IKE_SA_INIT over UDP lands where nobody reads
            blocked = free_port_pair((SUN,))
            text = text.replace(f"remote_port = {port}\n", f"remote_port = {blocked}\n")
        config.write_text(text)
        daemons.append(Daemon(side, config, control, workdir / f"{side}.log"))
    try:
        for daemon in daemons:
            await daemon.start()
        yield daemons[1], daemons[0]
    finally:
        for daemon in daemons:
            with contextlib.suppress(Exception):
                await daemon.stop(5)
            daemon.kill()


async def test_two_daemons_over_tcp_from_the_config() -> None:
    async with tcp_daemons("tcp") as (moon, sun):
        assert "(TCP)" in sun.log.read_text()  # the ready line names the TCP listener
        code, _, err = await moon.cli("up", "net")
        assert code == 0, err + moon.log.read_text()
        [m] = await moon.sas()
        [s] = await sun.sas()
        assert m["state"] == s["state"] == "established"
        assert s["remote"] == m["local"] and m["children"] and s["children"]
        assert "TCP connected" in moon.log.read_text()


async def test_two_daemons_udp_then_tcp_falls_back() -> None:
    async with tcp_daemons("udp-then-tcp", block_udp=True) as (moon, sun):
        code, out, err = await moon.cli("up", "net")  # UDP unanswered, then TCP: one `up`
        assert code == 0 and "ESTABLISHED" in out, err + moon.log.read_text()
        sas = await _established(moon)
        assert len(sas) == 1 and sas[0]["remote"].endswith(
            ":" + sun.config.read_text().split("tcp_port = ")[1].split()[0]
        )
        [s] = await sun.sas()
        assert s["state"] == "established" and s["remote"] == sas[0]["local"]
        assert "no answer over UDP; trying TCP" in moon.log.read_text()


async def _established(daemon: Daemon) -> list[dict[str, object]]:
    return [sa for sa in await daemon.sas() if sa["state"] == "established"]


async def test_without_espintcp_the_child_is_refused_at_once_and_the_ike_sa_stays() -> None:
    """An XFRM kernel without espintcp (Debian 12's) answers a TCP-encapsulated SA with EINVAL
    only after seconds; once the ULP was refused, the driver refuses the child itself."""
    async with tcp_pair() as (moon, sun):
        moon.tcp.ulp_missing = sun.tcp.ulp_missing = True
        result = await up(moon)
        assert result["ok"], result
        assert any("espintcp" in w for w in result.get("warnings", [])), result
        for side in (moon, sun):
            installs = [c for c in side.kernel.calls if c[0] in ("add_sa", "update_sa")]
            assert not [c for c in installs if c[1].encap_tcp]
        await wait_until(lambda: _async(not moon.engine.sas[result["sas"][0]["id"]].children), 10)
        (sa,) = moon.engine.sas.values()
        assert sa.tcp is not None and sa.keys is not None and not sa.children


async def test_reconnect_is_tried_again_while_the_responder_is_away() -> None:
    """§6.1: the stream drops while sun's listener is gone; moon's reconnects are refused
    until the listener is back, then one gets through and the IKE SA follows it."""
    async with tcp_pair() as (moon, sun):
        assert (await up(moon))["ok"]
        moon.tcp.reconnect_delays = (0.2, 0.5, 1.0, 2.0, 4.0)  # 7.7 s of tries
        (sa_m,) = moon.engine.sas.values()
        (sa_r,) = sun.engine.sas.values()
        first = sa_m.local
        port = sun.tcp.port
        listener = sun.tcp.listeners.pop()
        asyncio.get_running_loop().remove_reader(listener.fileno())
        listener.close()  # sun is unreachable on TCP: connects are refused
        assert sun.tcp.drop(sa_r.local, sa_r.remote)
        await wait_until(lambda: _async(moon.tcp.stats["failed"] >= 2), 5)
        assert sa_m.id in moon.engine.sas and not sa_m.tcp.connected  # type: ignore[union-attr]
        sun.tcp.listen((ipaddress.ip_address(SUN),), port)
        await wait_until(lambda: _async(sa_r.remote != first and sa_r.tcp.connected), 5)
        assert sa_m.local != first and sa_r.remote == sa_m.local
        assert moon.tcp.stats["connected"] == 2
