"""UDP sockets for load generators and tests that stand for many peers: spread over several
loopback addresses (a workers daemon sends a peer's new IKE SAs to the worker of its address,
service/handoff.py), each on an ephemeral port unique among them (ports name connections)."""

from __future__ import annotations

import socket
from collections.abc import Sequence


def spread_sockets(
    addresses: Sequence[str], count: int, rcvbuf: int | None = None
) -> dict[int, tuple[socket.socket, str]]:
    """`count` non-blocking UDP sockets, round-robin over `addresses`: port -> (socket, address)."""
    made: dict[int, tuple[socket.socket, str]] = {}
    while len(made) < count:
        address = addresses[len(made) % len(addresses)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((address, 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        if port in made:  # that number is taken on another address: draw again
            sock.close()
            continue
        made[port] = (sock, address)
    return made
