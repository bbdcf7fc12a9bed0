"""`[daemon] workers = N`: one responder process per core on the same ports (SO_REUSEPORT).

A real `ikev2 daemon` with workers = 2 on 127.0.0.2 answers many initiators: an in-process
initiator Engine (this test) with one UDP socket per source port on 127.0.0.3, so the kernel's
4-tuple hash spreads the IKE SAs over both workers. Checked through the CLI and signals: all SAs
listed once with daemon-wide ids, SPIs tagged with their worker, a request sent from a port that
hashes onto the other worker still handled by the owner, SIGHUP and SIGTERM reaching every
worker, a crashed worker stopping the daemon, and `workers` config mistakes in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ikev2.constants import IdType, ProtocolId
from ikev2.engine import Engine
from ikev2.engine.config import (
    AuthMethodName,
    ConnectionConfig,
    Credentials,
    EngineConfig,
    Identity,
    Timers,
)
from ikev2.engine.events import IkeSaDeleted, IkeSaEstablished, IkeSaFailed
from ikev2.engine.proposal_strings import parse_proposals
from ikev2.service.control import request
from ikev2.service.handoff import (
    HandOff,
    TaggedSpis,
    datagram_owner,
    make_channels,
    pack_frame,
    peer_worker,
    tag_spi,
    unpack_frame,
)
from ikev2.service.udp import free_port_pair
from ikev2.service.workers import global_id, split_id
from ikev2.testing.sources import psk_initiator, spread_sockets

from .daemons import SUN, Daemon, daemon_pair, wait_until

RESPONDER = "127.0.0.2"
# new IKE SAs go to the worker of the peer's address (handoff.peer_worker): several addresses
INITIATORS = tuple(f"127.0.0.{n}" for n in range(3, 11))
PSK = "workers-test secret 0c5d77e1a9"
SOURCE_PORTS = 16
SAS = 20

RESPONDER_CONFIG = """
[daemon]
addresses = ["{addr}"]
port = {port}
nat_port = {nat_port}
control_socket = "{control}"
kernel = "memory"
cookie_threshold = 100000
workers = {workers}

[connections.{name}]
local_addrs = ["{addr}"]
proposals = "aes256gcm16-prfsha256-x25519"
dpd_delay = 0
[connections.{name}.local]
id = "responder.test"
[connections.{name}.remote]
id = "%any"
[connections.{name}.children.{name}]
local_ts = ["10.2.0.0/16"]
remote_ts = ["10.1.0.0/16"]
esp_proposals = "aes256gcm16"

[secrets.any]
secret = "{psk}"
"""


def responder_text(port: int, control: str, workers: int | str = 2, name: str = "rw") -> str:
    return RESPONDER_CONFIG.format(addr=RESPONDER, port=port, nat_port=port + 1, control=control,
                                   workers=workers, name=name, psk=PSK)  # fmt: skip


class Initiators:
    """One initiator Engine, one connection (and UDP socket) per source port."""

    def __init__(self, responder_port: int, count: int = SOURCE_PORTS) -> None:
        self.loop = asyncio.get_running_loop()
        made = spread_sockets(INITIATORS, count)
        self.sockets = {port: sock for port, (sock, _) in made.items()}
        self.address = {port: address for port, (_, address) in made.items()}
        # one client holding many IKE SAs under one identity: none may carry INITIAL_CONTACT,
        # which would tell the responder to drop the others (RFC 7296 §2.4; engine/unique.py)
        conns = [
            replace(
                psk_initiator(
                    f"c{port}",
                    address,
                    RESPONDER,
                    PSK.encode(),
                    local_id=b"initiator.test",
                    child="rw",
                    local_port=port,
                    remote_port=responder_port,
                    timers=Timers(dpd_delay=0),
                ),
                send_initial_contact=False,
            )
            for port, address in self.address.items()
        ]
        self.engine = Engine(EngineConfig(tuple(conns)))
        self.redirect: dict[int, int] = {}  # send what port A sends from port B instead
        self.established: dict[int, int] = {}  # engine SA id -> source port
        self.deleted: set[int] = set()
        self.failed: set[int] = set()
        for port, sock in self.sockets.items():
            self.loop.add_reader(sock.fileno(), self._readable, port)
        self._ticker = self.loop.create_task(self._tick())

    def _readable(self, port: int) -> None:
        sock = self.sockets[port]
        local = (ipaddress.ip_address(self.address[port]), port)
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                break
            remote = (ipaddress.ip_address(addr[0]), addr[1])
            self._events(self.engine.receive_datagram(data, remote, local, self.loop.time()))
        self._flush()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            self._events(self.engine.handle_timer(self.loop.time()))
            self._flush()

    def _events(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, IkeSaEstablished):
                sa = self.engine.sas[event.ike_sa_id]
                self.established[event.ike_sa_id] = sa.local[1]
            elif isinstance(event, IkeSaDeleted):
                self.deleted.add(event.ike_sa_id)
            elif isinstance(event, IkeSaFailed):
                self.failed.add(event.ike_sa_id)

    def _flush(self) -> None:
        for d in self.engine.datagrams_to_send():
            port = self.redirect.get(d.local[1], d.local[1])
            with contextlib.suppress(BlockingIOError):
                self.sockets[port].sendto(d.data, (str(d.remote[0]), d.remote[1]))

    async def establish(self, count: int) -> list[int]:
        ports = list(self.sockets)
        ids = [self.engine.initiate(f"c{ports[i % len(ports)]}", self.loop.time())
               for i in range(count)]  # fmt: skip
        self._flush()
        for _ in range(400):
            if all(i in self.established or i in self.failed for i in ids):
                break
            await asyncio.sleep(0.025)
        assert all(i in self.established for i in ids), f"failed: {self.failed}"
        return ids

    def terminate(self, sa_id: int) -> None:
        self._events(self.engine.terminate(sa_id, self.loop.time()))
        self._flush()

    def close(self) -> None:
        self._ticker.cancel()
        for sock in self.sockets.values():
            self.loop.remove_reader(sock.fileno())
            sock.close()


@contextlib.asynccontextmanager
async def responder(workers: int | str = 2) -> AsyncIterator[tuple[Daemon, int]]:
    workdir = Path(tempfile.mkdtemp(prefix="ikev2w-"))
    port = free_port_pair((RESPONDER,))
    control = str(workdir / "r.sock")
    config = workdir / "r.toml"
    config.write_text(responder_text(port, control, workers))
    daemon = Daemon("responder", config, control, workdir / "r.log")
    await daemon.start()
    try:
        yield daemon, port
    finally:
        if daemon.process is not None and daemon.process.returncode is None:
            with contextlib.suppress(Exception):
                await daemon.stop(10)
        daemon.kill()
        if daemon._log_file is not None:
            daemon._log_file.close()


def stats(daemon: Daemon) -> dict[str, Any]:
    return request(daemon.control, {"cmd": "stats"})


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


# --------------------------------------------------------------------------- real processes


async def test_many_initiators_spread_over_two_workers_and_list_once() -> None:
    async with responder() as (daemon, port):
        peers = Initiators(port)
        try:
            await peers.establish(SAS)
            sas = await daemon.sas()  # `ikev2 list-sas --json`
            assert len(sas) == SAS and {sa["state"] for sa in sas} == {"established"}
            assert len({sa["id"] for sa in sas}) == SAS
            assert {sa["worker"] for sa in sas} == {0, 1}, "one worker got everything"
            for sa in sas:  # every SPI we allocated names its worker (handoff.tag_spi)
                peer = ipaddress.ip_address(sa["remote"].rsplit(":", 1)[0])
                assert sa["worker"] == peer_worker(peer, 2)  # a peer's IKE SAs: one worker
                assert int(sa["spi_r"][:2], 16) % 2 == sa["worker"]
                assert int(sa["children"][0]["spi_in"][:2], 16) % 2 == sa["worker"]
                assert split_id(sa["id"], 2)[0] == sa["worker"]
            assert len({sa["children"][0]["spi_in"] for sa in sas}) == SAS
            total = stats(daemon)
            assert (total["ike_sas"], total["kernel_sas"], len(total["workers"])) == (
                SAS,
                2 * SAS,
                2,
            )

            # `down ID` goes to the owner; the initiator is told (RFC 7296 §1.4.1)
            victim = next(sa for sa in sas if sa["worker"] == 1)
            code, out, err = await daemon.cli("down", str(victim["id"]))
            assert code == 0, err
            assert str(victim["id"]) in out
            left = await daemon.sas()
            assert len(left) == SAS - 1 and victim["id"] not in {sa["id"] for sa in left}
            assert await wait_until(lambda: _async(len(peers.deleted) == 1))
            code, _out, err = await daemon.cli("down", "999")
            assert code == 1 and "no IKE SA" in err
        finally:
            peers.close()


async def _async(value: Any) -> Any:
    return value


async def test_a_request_arriving_on_the_other_workers_socket_is_handed_to_the_owner() -> None:
    async with responder() as (daemon, port):
        peers = Initiators(port)
        try:
            await peers.establish(SAS)
            sas = await daemon.sas()
            worker_of_port = {int(sa["remote"].rsplit(":", 1)[1]): sa["worker"] for sa in sas}
            assert set(worker_of_port.values()) == {0, 1}
            # the kernel spreads the 4-tuples over both sockets without regard for addresses,
            # so some IKE_SA_INIT requests (and the IKE_AUTH after them) reached a socket of
            # the worker that does not own their peer: handed over, none lost
            before = stats(daemon)
            assert before["handed_off"] > 0 and before["taken_over"] == before["handed_off"]
            by_spi = {sa["spi_i"]: sa for sa in sas}
            ours = {
                sa_id: by_spi[peers.engine.sas[sa_id].spi_i.hex()] for sa_id in peers.established
            }
            # an SA owned by worker A, sent from a source port the kernel hashes onto worker B:
            # what a NAT rebinding (or the float to 4500, §2.23) does to a peer
            sa_id, victim = next(iter(ours.items()))
            home = peers.established[sa_id]
            other = next(p for p, w in worker_of_port.items() if w != victim["worker"])
            peers.redirect[home] = other
            peers.terminate(sa_id)  # INFORMATIONAL { D } --> from the other port
            assert await wait_until(lambda: _async(sa_id in peers.deleted)), "no answer"
            assert victim["id"] not in {sa["id"] for sa in await daemon.sas()}
            after = stats(daemon)
            assert after["taken_over"] == after["handed_off"]
            assert after["handoff_dropped"] == 0
            assert len(await daemon.sas()) == SAS - 1
        finally:
            peers.close()


async def test_sighup_reloads_every_worker() -> None:
    async with responder() as (daemon, port):
        peers = Initiators(port)
        try:
            await peers.establish(SAS)
            assert {sa["worker"] for sa in await daemon.sas()} == {0, 1}
            # the connection is renamed: each worker deletes its SAs of the removed one
            control = daemon.control
            daemon.config.write_text(responder_text(port, control, 2, name="rw2"))
            await daemon.signal(signal.SIGHUP)
            assert await wait_until(_nothing_listed(daemon), timeout=15), await daemon.sas()
            assert await wait_until(lambda: _async(len(peers.deleted) == SAS))
            await peers.establish(SAS)  # the new connection, on both workers
            sas = await daemon.sas()
            assert {sa["connection"] for sa in sas} == {"rw2"}
            assert {sa["worker"] for sa in sas} == {0, 1}
            code, out, err = await daemon.cli("reload")
            assert code == 0, err
            assert "reloaded" in out
        finally:
            peers.close()


def _nothing_listed(daemon: Daemon) -> Any:
    async def check() -> bool:
        return await daemon.sas() == []

    return check


async def test_sigterm_deletes_every_workers_sas_with_the_peers_and_exits_0() -> None:
    async with responder() as (daemon, port):
        peers = Initiators(port)
        try:
            await peers.establish(SAS)
            pids = [w["pid"] for w in stats(daemon)["workers"]]
            assert len(set(pids)) == 2 and all(alive(p) for p in pids)
            assert await daemon.stop(15) == 0
            assert len(peers.deleted) == SAS  # every worker said Delete to its peers
            assert not any(alive(p) for p in pids)
            log = daemon.log.read_text()
            assert "all workers stopped" in log and "status=0" in log
        finally:
            peers.close()


async def test_a_two_worker_daemon_initiates_from_its_peers_worker() -> None:
    """`up` goes to the worker of the connection's peer address (where that peer's own new IKE
    SAs land too); the peer's answers hash onto either socket and still find it."""
    owner = peer_worker(ipaddress.ip_address(SUN), 2)
    async with daemon_pair(moon_args=("--workers", "2")) as pair:
        for _ in range(3):
            code, out, err = await pair.moon.cli("up", "net")
            assert code == 0, err
            assert "ESTABLISHED" in out
        moon = await pair.moon.sas()
        assert len(moon) == 3 and {sa["worker"] for sa in moon} == {owner}
        assert all(int(sa["spi_i"][:2], 16) % 2 == owner for sa in moon)
        # the peer reauthenticates (RFC 7296 §2.8.3): its new IKE SA comes to the same worker
        old = (await pair.sun.sas())[0]
        code, _out, err = await pair.sun.cli("rekey", str(old["id"]), "--reauth")
        assert code == 0, err

        async def reauthenticated() -> bool:
            spis = {sa["spi_i"] for sa in await pair.moon.sas()}
            return old["spi_i"] not in spis and len(spis) == 3

        assert await wait_until(reauthenticated), await pair.moon.sas()
        assert {sa["worker"] for sa in await pair.moon.sas()} == {owner}
        assert len(await pair.sun.sas()) == 3
        code, _out, err = await pair.moon.cli("down", "net")
        assert code == 0, err
        assert await pair.moon.sas() == []
        assert await wait_until(_nothing_listed(pair.sun))


async def test_sigterm_to_every_process_at_once_still_exits_0() -> None:
    """What systemd's KillMode=control-group does: the workers stop on their own too."""
    async with responder() as (daemon, port):
        peers = Initiators(port)
        try:
            await peers.establish(4)
            assert daemon.process is not None
            pids = [w["pid"] for w in stats(daemon)["workers"]]
            for pid in [*pids, daemon.process.pid]:
                os.kill(pid, signal.SIGTERM)
            assert await asyncio.wait_for(daemon.process.wait(), 15) == 0
            assert not any(alive(p) for p in pids)
        finally:
            peers.close()


async def test_a_crashed_worker_stops_the_daemon_with_an_error() -> None:
    async with responder() as (daemon, _port):
        pids = [w["pid"] for w in stats(daemon)["workers"]]
        os.kill(pids[1], signal.SIGKILL)
        assert daemon.process is not None
        assert await asyncio.wait_for(daemon.process.wait(), 15) == 1
        assert "worker exited; stopping the daemon" in daemon.log.read_text()
        assert not alive(pids[0])


async def test_workers_1_is_one_process_and_auto_is_one_per_cpu() -> None:
    async with responder(1) as (daemon, _port):
        assert daemon.process is not None
        assert "workers" not in stats(daemon)
        assert _children(daemon.process.pid) == []
    async with responder('"auto"') as (daemon, _port):
        assert daemon.process is not None
        expected = os.cpu_count() or 1
        assert len(_children(daemon.process.pid)) == (expected if expected > 1 else 0)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry.name))
    return out


@pytest.mark.parametrize(
    ("value", "words"),
    [("0", "0 is out of range"), ("-2", "out of range"), ('"many"', "'many' is not a number"),
     ("1.5", "wrong type"), ("true", "wrong type")],
)  # fmt: skip
def test_bad_workers_value_is_one_clear_line(tmp_path: Path, value: str, words: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(responder_text(15500, str(tmp_path / "c.sock"), value))
    result = subprocess.run(
        [sys.executable, "-m", "ikev2.cli", "daemon", "--config", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"ikev2: config error: {path}: daemon.workers: "), line
    assert words in line and "(fix: " in line


# --------------------------------------------------------------------------- units


def test_tagged_spis_name_their_worker_and_datagrams_find_it() -> None:
    for workers in (2, 3, 7):
        for index in range(workers):
            for first in (0, 1, 127, 254, 255):
                spi = tag_spi(bytes((first,)) + bytes(7), index, workers)
                assert spi[0] % workers == index and abs(spi[0] - first) < workers
            spis = TaggedSpis(index, workers)
            assert all(spis(8)[0] % workers == index for _ in range(50))
            assert all(spis(4)[0] % workers == index for _ in range(50))
    ours, theirs = bytes((5,)) + bytes(7), bytes((8,)) + bytes(7)
    header_tail = bytes((0x21, 0x20, 35))  # next payload, version, IKE_AUTH
    as_responder = theirs + ours + header_tail + bytes((0x08,)) + bytes(8)  # I flag: spi_r is ours
    as_initiator = ours + theirs + header_tail + bytes((0x20,)) + bytes(8)  # response to us
    init_request = theirs + bytes(8) + bytes((0x21, 0x20, 34, 0x08)) + bytes(8)
    assert datagram_owner(as_responder, 2) == 1 and datagram_owner(as_responder, 3) == 2
    assert datagram_owner(as_initiator, 2) == 1
    assert datagram_owner(init_request, 2) is None and datagram_owner(b"\x01" * 10, 2) is None
    # a new IKE_SA_INIT goes to its peer's worker, whatever the port (500, 4500, a NAT's)
    for n in range(20):
        peer = ipaddress.ip_address(f"192.0.2.{n}")
        owners = {datagram_owner(init_request, 3, (peer, port)) for port in (500, 4500, 61000)}
        assert owners == {peer_worker(peer, 3)}
    assert {peer_worker(ipaddress.ip_address(f"192.0.2.{n}"), 3) for n in range(20)} == {0, 1, 2}
    for number in range(1, 50):
        assert global_id(split_id(number, 3)[1], split_id(number, 3)[0], 3) == number


def test_a_connection_with_several_peer_addresses_is_one_workers() -> None:
    """Whichever of its addresses the peer starts an IKE SA from, it lands where the
    connection is initiated (HandOff.pin), so its IKE SAs stay together."""
    channels = make_channels(3)
    handoff = HandOff(0, 3, channels[0][1], {})
    addresses = [ipaddress.ip_address(f"192.0.2.{n}") for n in range(40)]
    first = addresses[0]
    others = [a for a in addresses if peer_worker(a, 3) != peer_worker(first, 3)][:3]
    assert others, "all addresses hash alike"
    psk = Credentials(AuthMethodName.PSK, psk=b"x")
    ike = parse_proposals("aes128-sha256-x25519", ProtocolId.IKE)
    conn = ConnectionConfig(
        "multi", (ipaddress.ip_address("198.51.100.1"),), (first, *others),
        Identity(IdType.FQDN, b"a"), psk, psk, ike,
    )  # fmt: skip
    init_request = bytes((8,)) + bytes(7) + bytes(8) + bytes((0x21, 0x20, 34, 0x08)) + bytes(8)
    assert {handoff.owner(init_request, (a, 500)) for a in others} != {peer_worker(first, 3)}
    handoff.pin([conn])
    assert {handoff.owner(init_request, (a, 500)) for a in (first, *others)} == {
        peer_worker(first, 3)
    }
    established = bytes((8,)) + bytes(7) + bytes((2,)) + bytes(7) + bytes((0x2E, 0x20, 37, 0x08))
    assert handoff.owner(established + bytes(8), (others[0], 4500)) == 2  # by our SPI still
    for send, receive in channels:
        send.close()
        receive.close()


async def test_hand_off_frames_cross_between_two_workers() -> None:
    v4 = (ipaddress.ip_address("192.0.2.7"), 4500), (ipaddress.ip_address("198.51.100.1"), 4500)
    v6 = (ipaddress.ip_address("2001:db8::7"), 50123), (ipaddress.ip_address("2001:db8::1"), 500)
    for remote, local in (v4, v6):
        assert unpack_frame(pack_frame(b"ike", remote, local)) == (b"ike", remote, local)
    with pytest.raises(ValueError):
        unpack_frame(b"\x05" + bytes(40))

    loop = asyncio.get_running_loop()
    channels = make_channels(2)
    zero = HandOff(0, 2, channels[0][1], {1: channels[1][0]})
    one = HandOff(1, 2, channels[1][1], {0: channels[0][0]})
    got: list[Any] = []
    batches: list[int] = []
    one.start(loop, lambda *a: got.append(a), lambda: batches.append(len(got)))
    message = (
        bytes((9,)) + bytes(7) + bytes((7,)) + bytes(7) + bytes((0x21, 0x20, 37, 8)) + bytes(8)
    )
    assert zero.owner(message, v6[0]) == 1
    for _ in range(3):
        zero.forward(1, message, *v6)
    await asyncio.sleep(0.05)
    assert zero.stats["handed_off"] == 3 and one.stats["taken_over"] == 3
    assert batches == [3] and got == [(message, *v6)] * 3
    zero.close()
    one.close()
