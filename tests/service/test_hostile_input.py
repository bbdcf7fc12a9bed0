"""10,000 random datagrams and mutated real IKE messages at an established pair disturb nothing.

The junk goes to both daemons' IKE ports (500-style and NAT-T with and without the non-ESP
marker) from a socket of the test; the IKE SA must stay as it was (same SPIs, same child), the
daemons must keep answering list-sas, a new `up` must still work, and nothing may crash.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

from ikev2.service.control import request

from .daemons import MOON, SUN, daemon_pair
from .engine_samples import init_request

RANDOM_COUNT = 10_000
MUTATED_COUNT = 2_000


def ike_like(rng: random.Random, spi_i: bytes, spi_r: bytes) -> bytes:
    """A plausible IKE header on the established SPIs with random exchange, flags and body."""
    exchange = rng.choice([34, 35, 36, 37, rng.randrange(256)])
    flags = rng.choice([0x08, 0x20, 0x28, 0x00, rng.randrange(256)])
    body = rng.randbytes(rng.randrange(0, 300))
    length = 28 + len(body) if rng.random() < 0.8 else rng.randrange(1 << 32)
    header = spi_i + spi_r + bytes([rng.randrange(256), 0x20, exchange, flags])
    header += rng.randrange(1 << 32).to_bytes(4, "big") + length.to_bytes(4, "big")
    return header + body


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 8)):
        choice = rng.random()
        if choice < 0.5 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif choice < 0.75:
            del out[rng.randrange(len(out) + 1) :]
        else:
            out += rng.randbytes(rng.randrange(1, 64))
    return bytes(out)


def _received(pair: Any) -> int:
    total = 0
    for daemon in (pair.moon, pair.sun):
        stats = request(daemon.control, {"cmd": "stats"})
        total += sum(s["rx"] for s in stats["sockets"].values())
    return int(total)


async def _caught_up(pair: Any, count: int, patience: float = 3.0) -> int:
    """Wait (at most `patience` s) until the daemons have read `count` datagrams in all."""
    deadline = asyncio.get_running_loop().time() + patience
    received = _received(pair)
    while received < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
        received = _received(pair)
    return received


async def test_random_and_mutated_datagrams_disturb_nothing() -> None:
    rng = random.Random(20240607)
    async with daemon_pair() as pair:
        code, _out, err = await pair.moon.cli("up", "net")
        assert code == 0, err
        [before_moon] = await pair.moon.sas()
        [before_sun] = await pair.sun.sas()
        spi_i = bytes.fromhex(before_moon["spi_i"])
        spi_r = bytes.fromhex(before_moon["spi_r"])
        targets = [(addr, port) for addr in (MOON, SUN) for port in (pair.port, pair.port + 1)]
        # a real IKE_SA_INIT request to mutate, from a third, throwaway engine
        seed_message = init_request()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.3", 0))
        sock.setblocking(False)
        try:
            for n in range(RANDOM_COUNT + MUTATED_COUNT):
                if n < RANDOM_COUNT // 2:
                    data = rng.randbytes(rng.randrange(0, 600))
                elif n < RANDOM_COUNT:
                    data = ike_like(rng, spi_i, spi_r)
                else:
                    data = mutate(rng, seed_message)
                addr, port = rng.choice(targets)
                if port == pair.port + 1 and rng.random() < 0.7:
                    data = b"\x00\x00\x00\x00" + data  # NAT-T framing
                try:
                    sock.sendto(data, (addr, port))
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                if n % 250 == 249:
                    # paced by what the daemons have read, so a busy machine (two cores shared
                    # with other work) does not overflow their receive buffers
                    await _caught_up(pair, n + 1 - 25)
        finally:
            sock.close()

        received = await _caught_up(pair, RANDOM_COUNT + MUTATED_COUNT)
        # loopback rarely drops; most of the junk must really have reached the daemons
        assert received >= 0.9 * (RANDOM_COUNT + MUTATED_COUNT), received
        [after_moon] = await pair.moon.sas()
        [after_sun] = await pair.sun.sas()
        for before, after in ((before_moon, after_moon), (before_sun, after_sun)):
            assert after["state"] == "established"
            assert (after["id"], after["spi_i"], after["spi_r"]) == (
                before["id"], before["spi_i"], before["spi_r"]
            )  # fmt: skip
            assert after["children"] == before["children"]
        # both still answer; a second IKE SA comes up next to the first
        code, _out, err = await pair.moon.cli("up", "net")
        assert code == 0, err
        assert len(await pair.moon.sas()) == 2 and len(await pair.sun.sas()) == 2
        for daemon in (pair.moon, pair.sun):
            assert daemon.process is not None and daemon.process.returncode is None
            log = daemon.log.read_text()
            assert "Traceback" not in log and "internal error" not in log
