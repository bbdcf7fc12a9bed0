"""The service layer's per-datagram and per-batch costs (docs/performance.md): the UDP
transport's bounded peer-address cache, and `down` waiters that no longer build a view of
every IKE SA per batch (a shutdown with many IKE SAs was quadratic)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from ikev2.engine.events import Datagram, IkeSaDeleted
from ikev2.service import driver as driver_module
from ikev2.service import udp
from ikev2.service.driver import Driver


def _recv(sock: socket.socket) -> bytes:
    sock.settimeout(2)
    return sock.recvfrom(2048)[0]


def test_peer_addresses_parsed_once_and_the_cache_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(udp, "ADDRESS_CACHE", 2)
    loop = asyncio.new_event_loop()
    got: list[tuple[bytes, Any, Any]] = []
    transport = udp.UdpTransport(loop, lambda d, r, lo: got.append((d, r, lo)), lambda: None)
    peers = []
    try:
        port = udp.free_port_pair(("127.0.0.1",))
        transport.open((ipaddress.ip_address("127.0.0.1"),), port, port + 1)
        for n in (2, 3, 4, 2):
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind((f"127.0.0.{n}", 0))
            peers.append(peer)
            peer.sendto(b"ike %d" % n, ("127.0.0.1", port))
            loop.run_until_complete(asyncio.sleep(0.02))
            assert len(transport._parsed) <= 2 and len(transport._text) <= 2
        assert [d for d, _, _ in got] == [b"ike 2", b"ike 3", b"ike 4", b"ike 2"]
        assert [str(r[0]) for _, r, _ in got] == ["127.0.0.2", "127.0.0.3", "127.0.0.4",
                                                  "127.0.0.2"]  # fmt: skip
        assert all(isinstance(r[0], ipaddress.IPv4Address) for _, r, _ in got)
        assert [r[1] for _, r, _ in got] == [p.getsockname()[1] for p in peers]
        # the answer goes back to the cached text of the peer, from the bound socket
        _, remote, local = got[-1]
        assert transport.send(Datagram(b"answer", remote, local))
        assert _recv(peers[-1]) == b"answer"
        # an address never seen (not in the cache) still gets its datagram
        other = (ipaddress.ip_address("127.0.0.3"), peers[1].getsockname()[1])
        transport._parsed.clear()
        transport._text.clear()
        assert transport.send(Datagram(b"uncached", other, local))
        assert _recv(peers[1]) == b"uncached"
    finally:
        transport.close()
        for peer in peers:
            peer.close()
        loop.close()


class Sa:
    pass


class Engine:
    """The engine surface a waiter needs: the IKE SAs by id; list_sas must not be called."""

    def __init__(self, ids: range) -> None:
        self.sas: dict[int, Sa] = {i: Sa() for i in ids}

    def list_sas(self) -> list[Any]:
        raise AssertionError("a view of every IKE SA per batch")

    def datagrams_to_send(self) -> list[Any]:
        return []

    def get_timer(self) -> float | None:
        return None


@pytest.mark.parametrize("count", [3, 1000])
def test_down_waiter_settles_from_events_and_sweeps_for_vanished_sas(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.new_event_loop()
    try:
        engine = Engine(range(1, count + 1))
        monkeypatch.setattr(driver_module, "ike_sa_view", lambda sa: pytest.fail("a view"))
        driver = Driver(engine, kernel=None, transport=None, loop=loop)  # type: ignore[arg-type]
        future = driver.wait_for(set(engine.sas), want_up=False)
        # half go with an event, the other half vanish from the engine without one
        half = count // 2
        for sa_id in range(1, half + 1):
            del engine.sas[sa_id]
            driver.apply([IkeSaDeleted(sa_id, "bench", "deleted")])
        assert not future.done()
        engine.sas.clear()
        driver.apply([])
        if count - half > driver_module.SWEEP_ALWAYS:  # a big waiter sweeps once a second
            assert not future.done()
            loop.run_until_complete(asyncio.sleep(1.05))
            driver.apply([])
        assert future.done() and future.result() == {"ok": True, "sas": []}
        assert driver._waiters == []
    finally:
        loop.close()
