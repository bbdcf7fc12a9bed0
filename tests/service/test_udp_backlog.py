"""A full socket send buffer queues datagrams instead of dropping them (service/udp.py).

On loopback the kernel never refuses a UDP send, so these tests give the transport a socket
whose sendto raises BlockingIOError (EAGAIN) while "full", as a real NIC's does under a burst
(a shutdown's DELETEs, the DPDs of 100,000 IKE SAs falling due together).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from ikev2.service import udp

LOCAL = ipaddress.ip_address("127.0.0.1")


class FullSocket:
    """A real UDP socket (for its fd) whose sendto fails with EAGAIN while `full`."""

    def __init__(self) -> None:
        self.real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.full = True
        self.sent: list[tuple[bytes, Any]] = []

    def fileno(self) -> int:
        return self.real.fileno()

    def sendto(self, data: bytes, to: Any) -> int:
        if self.full:
            raise BlockingIOError
        self.sent.append((data, to))
        return len(data)

    def close(self) -> None:
        self.real.close()


def transport_with(sock: FullSocket, loop: asyncio.AbstractEventLoop) -> udp.UdpTransport:
    transport = udp.UdpTransport(loop, lambda d, r, lo: None, lambda: None)
    entry = udp.UdpSocket(sock, socket.AF_INET, LOCAL, 500, False)  # type: ignore[arg-type]
    transport.sockets.append(entry)
    transport._by_local[(LOCAL, 500)] = entry
    return transport


def datagram(n: int) -> udp.Datagram:
    return udp.Datagram(b"ike %d" % n, (ipaddress.ip_address("127.0.0.2"), 500), (LOCAL, 500))


def test_a_burst_waits_for_the_socket_and_keeps_its_order() -> None:
    loop = asyncio.new_event_loop()
    sock = FullSocket()
    try:
        transport = transport_with(sock, loop)
        assert all(transport.send(datagram(n)) for n in range(1000))
        assert sock.sent == [] and len(transport.sockets[0].backlog) == 1000
        sock.full = False  # room again: the writer callback sends the backlog
        loop.run_until_complete(asyncio.sleep(0.05))
        assert [d for d, _ in sock.sent] == [b"ike %d" % n for n in range(1000)]
        assert transport.sockets[0].stats == {"rx": 0, "tx": 1000, "dropped": 0}
        assert transport.send(datagram(1000)) and sock.sent[-1][0] == b"ike 1000"
    finally:
        sock.close()
        loop.close()


def test_past_the_backlog_limit_datagrams_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(udp, "SEND_BACKLOG", 10)
    loop = asyncio.new_event_loop()
    sock = FullSocket()
    try:
        transport = transport_with(sock, loop)
        results = [transport.send(datagram(n)) for n in range(15)]
        assert results == [True] * 10 + [False] * 5
        assert transport.sockets[0].stats["dropped"] == 5
        transport.close()  # a closed transport leaves no writer behind on the loop
        sock.full = False
        loop.run_until_complete(asyncio.sleep(0.05))
        assert sock.sent == []
    finally:
        sock.close()
        loop.close()
