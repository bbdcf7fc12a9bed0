"""Which worker owns an IKE SA, and handing a datagram to it (`[daemon] workers = N`, N > 1).

With SO_REUSEPORT the kernel spreads datagrams over the workers' sockets by a hash of the
4-tuple. Retransmits of one IKE_SA_INIT keep their 4-tuple and so their worker, but a peer that
floats from port 500 to 4500 (RFC 7296 §2.23), a NAT that rebinds, or a responder port that is
hashed differently after a rekey lands on another worker. So ownership comes from the SPI, not
the 4-tuple:

- every SPI a worker allocates carries the worker's index in its first octet
  (`first_octet % workers == index`), for the IKE SPIs (8 octets, RFC 7296 §3.1) as well as the
  ESP/AH SPIs (4 octets, RFC 4303 §2.1: so two workers never hand out the same inbound SPI);
- a datagram is routed by *our* SPI in its IKE header: the responder SPI when the peer is the
  original initiator (I flag set), else the initiator SPI (§3.1, the same rule the engine uses);
- an IKE_SA_INIT request (responder SPI zero) goes to the worker of the peer's IP address
  (a CRC-32 of it, modulo N): every IKE SA of one peer lives on one worker, whatever port its
  packets come from. That keeps its retransmits and COOKIE retry (§2.6) together, and above all
  a peer's reauthentication (§2.8.3: a new IKE SA that takes over the old one's children and
  reqids, often sent to port 4500 while the first came to 500) on the worker that holds the
  old SA, its reqids and its kernel policies (two workers installing the same policy would
  remove each other's);
- anything else is handed to its owner over an AF_UNIX datagram socket created before the fork,
  with the remote and local endpoints, and the owner answers from its own socket bound to the
  same address and port, so the peer sees no difference.

The hand-off frame is `!B16sH16sH` (IP version, remote address, remote port, local address,
local port; IPv4 in the first 4 octets) followed by the IKE message without the non-ESP marker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..engine.config import ConnectionConfig, IPAddress
from ..engine.events import Endpoint
from ..log import get_logger

log = get_logger("ikev2.service.handoff")
HEADER = struct.Struct("!B16sH16sH")
IKE_HEADER_LEN = 28  # RFC 7296 §3.1
FLAG_INITIATOR = 0x08
ZERO_SPI = bytes(8)
READ_BATCH = 256
MAX_FRAME = 65535 + HEADER.size
BUFFER = 4 << 20

Receiver = Callable[[bytes, Endpoint, Endpoint], None]


@dataclass(eq=False)
class WorkerRole:
    """What a forked worker is told by the supervisor (ikev2.service.workers)."""

    index: int
    workers: int
    kernel: str  # the supervisor's choice, probed once: "xfrm" | "memory"
    kernel_reason: str
    channel: socket.socket  # stream socket to the supervisor: control requests, ready line
    handoff: HandOff

    def owns(self, conn: ConnectionConfig) -> bool:
        """Whether this worker initiates `conn` (start_action, its trap policies and their
        acquires, `up`): the worker of its peer's address, where the peer's own IKE SAs land
        too (datagram_owner, HandOff.pin); worker 0 for a connection without a remote address."""
        return connection_worker(conn, self.workers) == self.index


def connection_worker(conn: ConnectionConfig, workers: int) -> int:
    return peer_worker(conn.remote_addrs[0], workers) if conn.remote_addrs else 0


def spi_owner(spi: bytes, workers: int) -> int:
    """The worker that allocated this SPI (see tag_spi)."""
    return spi[0] % workers


def tag_spi(raw: bytes, index: int, workers: int) -> bytes:
    """`raw` random octets with the first one moved to the nearest value ≡ index (mod workers)."""
    first = raw[0] - raw[0] % workers + index
    if first > 255:
        first -= workers
    return bytes((first,)) + raw[1:]


@dataclass(frozen=True)
class TaggedSpis:
    """The engine's Env.spi_bytes for worker `index` of `workers`."""

    index: int
    workers: int
    random_bytes: Callable[[int], bytes] = os.urandom

    def __call__(self, size: int) -> bytes:
        return tag_spi(self.random_bytes(size), self.index, self.workers)


def datagram_owner(
    data: bytes,
    workers: int,
    remote: Endpoint | None = None,
    pinned: Mapping[IPAddress, int] | None = None,
) -> int | None:
    """The worker owning the IKE SA this message belongs to: by our SPI, or for a new
    IKE_SA_INIT request by the peer's address (`pinned` first: HandOff.pin); None for
    something too short to be IKE, or a new request without `remote` (whoever received it
    deals with it)."""
    if len(data) < IKE_HEADER_LEN:
        return None
    ours = data[8:16] if data[19] & FLAG_INITIATOR else data[0:8]
    if ours == ZERO_SPI:
        if remote is None:
            return None
        if pinned and remote[0] in pinned:
            return pinned[remote[0]]
        return peer_worker(remote[0], workers)
    return ours[0] % workers


def peer_worker(address: ipaddress.IPv4Address | ipaddress.IPv6Address, workers: int) -> int:
    """The worker for new IKE SAs of a peer: the same in every worker process."""
    return zlib.crc32(address.packed) % workers


def _packed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return address.packed.ljust(16, b"\0")


def pack_frame(data: bytes, remote: Endpoint, local: Endpoint) -> bytes:
    return (
        HEADER.pack(remote[0].version, _packed(remote[0]), remote[1], _packed(local[0]), local[1])
        + data
    )


def unpack_frame(frame: bytes) -> tuple[bytes, Endpoint, Endpoint]:
    """ValueError for a frame that is not ours (cannot happen between our own processes)."""
    if len(frame) < HEADER.size:
        raise ValueError("short hand-off frame")
    version, remote, rport, local, lport = HEADER.unpack_from(frame)
    if version == 4:
        raddr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(remote[:4])
        laddr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(local[:4])
    elif version == 6:
        raddr, laddr = ipaddress.IPv6Address(remote), ipaddress.IPv6Address(local)
    else:
        raise ValueError(f"bad IP version {version} in hand-off frame")
    return frame[HEADER.size :], (raddr, rport), (laddr, lport)


def make_channels(workers: int) -> list[tuple[socket.socket, socket.socket]]:
    """One (send end, receive end) AF_UNIX datagram pair per worker, made before the fork:
    every other worker writes into the send end, the owner reads the receive end."""
    pairs = []
    for _ in range(workers):
        send, receive = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (send, receive):
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        pairs.append((send, receive))
    return pairs


@dataclass(eq=False)
class HandOff:
    """Worker `index`'s side: its inbox and the other workers' send ends."""

    index: int
    workers: int
    inbox: socket.socket
    peers: dict[int, socket.socket]
    stats: dict[str, int] = field(
        default_factory=lambda: {"handed_off": 0, "taken_over": 0, "handoff_dropped": 0}
    )
    # a connection's other remote addresses -> the worker of its first (connection_worker)
    pinned: dict[IPAddress, int] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_worker(cls, index: int, channels: list[tuple[socket.socket, socket.socket]]) -> HandOff:
        """In the forked worker: keep what it needs, close the rest of the inherited ends."""
        peers = {}
        for number, (send, receive) in enumerate(channels):
            if number == index:
                send.close()
            else:
                receive.close()
                peers[number] = send
        return cls(index, len(channels), channels[index][1], peers)

    def owner(self, data: bytes, remote: Endpoint) -> int:
        found = datagram_owner(data, self.workers, remote, self.pinned)
        return self.index if found is None else found

    def pin(self, connections: Iterable[ConnectionConfig]) -> None:
        """A peer with several addresses in one connection: all of them to the connection's
        worker, whichever it initiates from (config load and reload)."""
        self.pinned = {
            address: connection_worker(conn, self.workers)
            for conn in connections
            for address in conn.remote_addrs[1:]
        }

    def forward(self, owner: int, data: bytes, remote: Endpoint, local: Endpoint) -> None:
        try:
            self.peers[owner].send(pack_frame(data, remote, local))
        except (BlockingIOError, InterruptedError):
            self.stats["handoff_dropped"] += 1  # UDP semantics: the peer retransmits (§2.1)
            return
        except OSError as exc:  # the owner is gone (the supervisor is stopping the daemon)
            self.stats["handoff_dropped"] += 1
            log.debug("hand-off failed", worker=owner, error=exc.strerror)
            return
        self.stats["handed_off"] += 1

    def start(
        self, loop: asyncio.AbstractEventLoop, receive: Receiver, batch_done: Callable[[], None]
    ) -> None:
        self._loop = loop
        loop.add_reader(self.inbox.fileno(), self._readable, receive, batch_done)

    def _readable(self, receive: Receiver, batch_done: Callable[[], None]) -> None:
        got = 0
        for _ in range(READ_BATCH):
            try:
                frame = self.inbox.recv(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            try:
                data, remote, local = unpack_frame(frame)
            except ValueError as exc:
                log.warning("hand-off frame dropped", reason=str(exc))
                continue
            self.stats["taken_over"] += 1
            receive(data, remote, local)
            got += 1
        if got:
            batch_done()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.inbox.fileno())
            self._loop = None
        for sock in (self.inbox, *self.peers.values()):
            sock.close()
