"""UDP sockets for IKE: port 500 and the NAT-T port 4500, IPv4 and IPv6, wildcard or bound.

One non-blocking socket per (listen address, port), read with loop.add_reader and recvmsg so that
a socket bound to a wildcard address still learns the local address each datagram arrived on
(IP_PKTINFO / IPV6_RECVPKTINFO) and answers from it: the engine matches connections by local
address, and a peer expects answers from the address it wrote to. A readable socket is drained in
one go (up to READ_BATCH datagrams), then the driver runs once for the whole batch.

Port 4500 framing (RFC 3948 §2.2, RFC 7296 §2.23): IKE messages carry a 4-byte zero non-ESP
marker, which is stripped on receive and added on send; a 1-byte 0xFF datagram is a NAT-keepalive
(RFC 3948 §2.3) and is ignored; anything else starting with a non-zero SPI is ESP and not ours.

With the XFRM kernel, every IKE socket gets a per-socket IPsec bypass policy (our own policies must
never capture IKE) and the 4500 sockets get UDP_ENCAP_ESPINUDP so the kernel decapsulates ESP.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import secrets
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..engine.config import IPAddress
from ..engine.events import Datagram, Endpoint
from ..kernel import Kernel
from ..log import get_logger

NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 §2.2
NAT_KEEPALIVE = b"\xff"  # RFC 3948 §2.3
READ_BATCH = 256
MAX_DATAGRAM = 65535
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_CMSG_SPACE = socket.CMSG_SPACE(32)
ADDRESS_CACHE = 4096  # peer addresses kept parsed
SEND_BACKLOG = 65536  # datagrams queued per socket while its send buffer is full

log = get_logger("ikev2.service.udp")

Receiver = Callable[[bytes, Endpoint, Endpoint], None]


@dataclass(eq=False)
class UdpSocket:
    """One bound socket. `address` None means a wildcard bind (0.0.0.0 or ::)."""

    sock: socket.socket
    family: int
    address: IPAddress | None
    port: int
    nat: bool  # the NAT-T port: non-ESP marker framing
    stats: dict[str, int] = field(default_factory=lambda: {"rx": 0, "tx": 0, "dropped": 0})
    # datagrams the socket's send buffer had no room for, sent when it is writable again
    # (UdpTransport._sendmsg): a burst of thousands (the DELETEs of a shutdown, the DPDs of a
    # gateway's 100,000 SAs) would otherwise be dropped at the socket
    backlog: collections.deque[tuple[bytes, tuple[str, int], IPAddress]] = field(
        default_factory=collections.deque
    )

    def local_of(self, ancdata: list[tuple[int, int, bytes]]) -> IPAddress | None:
        """The datagram's destination address (ours), from the PKTINFO control message."""
        if self.address is not None:
            return self.address
        for level, kind, data in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
                return ipaddress.IPv4Address(data[8:12])  # struct in_pktinfo: ipi_addr
            if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 16:
                return ipaddress.IPv6Address(data[:16])  # struct in6_pktinfo: ipi6_addr
        return None

    def source_cmsg(self, source: IPAddress) -> list[tuple[int, int, bytes]]:
        """Ancillary data that makes a wildcard socket send from `source`."""
        if self.address is not None:
            return []
        if source.version == 4:
            return [
                (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=I4s4s", 0, source.packed, bytes(4)))
            ]
        return [(socket.IPPROTO_IPV6, IPV6_PKTINFO, struct.pack("=16sI", source.packed, 0))]


def _open_socket(address: IPAddress, port: int, reuse_port: bool) -> UdpSocket:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        wildcard = address.is_unspecified
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if wildcard:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        elif wildcard:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((str(address), port))
    except OSError:
        sock.close()
        raise
    return UdpSocket(sock, family, None if wildcard else address, port, nat=False)


class UdpTransport:
    """All IKE sockets; hands (data, remote, local) to `receive`, then calls `batch_done`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        receive: Receiver,
        batch_done: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.receive = receive
        self.batch_done = batch_done
        self.sockets: list[UdpSocket] = []
        self._by_local: dict[tuple[IPAddress, int], UdpSocket] = {}
        self._by_family: dict[tuple[int, int], UdpSocket] = {}
        self.nat_port = 4500
        # peer address text <-> object: parsing one costs several µs a datagram, and the
        # engine hands back the objects we gave it. Bounded: spoofed sources only refill it.
        self._parsed: dict[str, IPAddress] = {}
        self._text: dict[IPAddress, str] = {}

    def _remember(self, text: str, address: IPAddress) -> None:
        if len(self._parsed) >= ADDRESS_CACHE:
            self._parsed.clear()
            self._text.clear()
        self._parsed[text] = address
        self._text[address] = text

    def open(
        self,
        addresses: tuple[IPAddress, ...],
        port: int,
        nat_port: int,
        kernel: Kernel | None = None,
        reuse_port: bool = False,
    ) -> None:
        """Bind port and nat_port on every address; set bypass/encap through the kernel."""
        self.nat_port = nat_port
        for address in addresses:
            for number, nat in ((port, False), (nat_port, True)):
                try:
                    udp = _open_socket(address, number, reuse_port)
                except OSError as exc:
                    if exc.errno == errno.EADDRNOTAVAIL and address.version == 6:
                        log.warning("IPv6 address not available; skipped", address=str(address))
                        continue
                    raise OSError(exc.errno, f"cannot bind UDP {address} port {number}: "
                                  f"{exc.strerror}") from None  # fmt: skip
                udp.nat = nat
                if kernel is not None:
                    kernel.bypass_socket(udp.sock.fileno(), udp.family)
                    if nat:
                        kernel.enable_udp_encap(udp.sock.fileno())
                self._add(udp)

    def _add(self, udp: UdpSocket) -> None:
        self.sockets.append(udp)
        version = 4 if udp.family == socket.AF_INET else 6
        if udp.address is None:
            self._by_family.setdefault((version, udp.port), udp)
        else:
            self._by_local[(udp.address, udp.port)] = udp
        self.loop.add_reader(udp.sock.fileno(), self._readable, udp)

    def describe(self) -> str:
        return ", ".join(
            f"{udp.address or ('0.0.0.0' if udp.family == socket.AF_INET else '::')}:{udp.port}"
            f"{' (NAT-T)' if udp.nat else ''}"
            for udp in self.sockets
        )

    # --- receive
    def _readable(self, udp: UdpSocket) -> None:
        sock = udp.sock
        got = 0
        for _ in range(READ_BATCH):
            try:
                data, ancdata, _flags, source = sock.recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ECONNREFUSED from an earlier ICMP error
                log.debug("recvmsg failed", error=exc.strerror, port=udp.port)
                continue
            udp.stats["rx"] += 1
            if udp.nat:
                if data[:4] != NON_ESP_MARKER:
                    # a NAT-keepalive (RFC 3948 §2.3) or ESP the kernel did not take: not IKE
                    udp.stats["dropped"] += 1
                    continue
                data = data[4:]
            local_ip = udp.local_of(ancdata)
            if local_ip is None:
                udp.stats["dropped"] += 1
                continue
            remote_ip = self._parsed.get(source[0])
            if remote_ip is None:
                try:
                    remote_ip = ipaddress.ip_address(source[0].partition("%")[0])
                except ValueError:
                    udp.stats["dropped"] += 1
                    continue
                if "%" not in source[0]:  # a scoped text is not the address's only text
                    self._remember(source[0], remote_ip)
            self.receive(data, (remote_ip, source[1]), (local_ip, udp.port))
            got += 1
        if got:
            self.batch_done()

    # --- send
    def socket_for(self, local: Endpoint) -> UdpSocket | None:
        address, port = local
        udp = self._by_local.get((address, port)) or self._by_family.get((address.version, port))
        if udp is None and port == 4500 and self.nat_port != 4500:
            # the engine floats to 4500 (RFC 7296 §2.23); our NAT-T port is elsewhere
            udp = self._by_local.get((address, self.nat_port)) or self._by_family.get(
                (address.version, self.nat_port)
            )
        return udp

    def send(self, datagram: Datagram) -> bool:
        udp = self.socket_for(datagram.local)
        if udp is None:
            log.warning(
                "no socket for local endpoint; datagram dropped",
                local=f"{datagram.local[0]}:{datagram.local[1]}",
            )
            return False
        data = NON_ESP_MARKER + datagram.data if udp.nat else datagram.data
        return self._sendmsg(udp, data, datagram.remote, datagram.local[0])

    def send_keepalive(self, local: Endpoint, remote: Endpoint) -> bool:
        """RFC 3948 §2.3: one 0xFF byte from the NAT-T socket keeps our NAT mapping open."""
        udp = self.socket_for(local)
        if udp is None or not udp.nat:
            return False
        return self._sendmsg(udp, NAT_KEEPALIVE, remote, local[0])

    def _sendmsg(self, udp: UdpSocket, data: bytes, remote: Endpoint, source: IPAddress) -> bool:
        host = self._text.get(remote[0]) or str(remote[0])
        if udp.backlog:  # keep the order: after what waits already
            return self._defer(udp, data, (host, remote[1]), source)
        try:
            self._write(udp, data, (host, remote[1]), source)
        except (BlockingIOError, InterruptedError):
            return self._defer(udp, data, (host, remote[1]), source)
        except OSError as exc:
            log.info("send failed", error=exc.strerror, peer=f"{remote[0]}:{remote[1]}")
            return False
        udp.stats["tx"] += 1
        return True

    @staticmethod
    def _write(udp: UdpSocket, data: bytes, to: tuple[str, int], source: IPAddress) -> None:
        if udp.address is not None:  # bound: no source address to choose
            udp.sock.sendto(data, to)
        else:
            udp.sock.sendmsg([data], udp.source_cmsg(source), 0, to)

    def _defer(self, udp: UdpSocket, data: bytes, to: tuple[str, int], source: IPAddress) -> bool:
        """Queue a datagram until the socket is writable; past SEND_BACKLOG queued, drop it
        (UDP: the peer or our engine retransmits, RFC 7296 §2.1)."""
        if len(udp.backlog) >= SEND_BACKLOG:
            udp.stats["dropped"] += 1
            return False
        if not udp.backlog:
            self.loop.add_writer(udp.sock.fileno(), self._flush, udp)
        udp.backlog.append((data, to, source))
        return True

    def _flush(self, udp: UdpSocket) -> None:
        while udp.backlog:
            data, to, source = udp.backlog[0]
            try:
                self._write(udp, data, to, source)
            except (BlockingIOError, InterruptedError):
                return  # still full: wait for the next writable event
            except OSError as exc:
                log.info("send failed", error=exc.strerror, peer=f"{to[0]}:{to[1]}")
            else:
                udp.stats["tx"] += 1
            udp.backlog.popleft()
        self.loop.remove_writer(udp.sock.fileno())

    def close(self) -> None:
        for udp in self.sockets:
            self.loop.remove_reader(udp.sock.fileno())
            if udp.backlog:
                self.loop.remove_writer(udp.sock.fileno())
                udp.backlog.clear()
            udp.sock.close()
        self.sockets.clear()
        self._by_local.clear()
        self._by_family.clear()


def free_port_pair(addresses: Sequence[str]) -> int:
    """A port P with P and P+1 free for UDP on every address (IKE and NAT-T ports of a daemon
    on loopback: the demo, tests, benches)."""
    for _ in range(100):
        port = 20000 + secrets.randbelow(40000)
        try:
            for address in addresses:
                for candidate in (port, port + 1):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                        probe.bind((address, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free UDP port pair on {', '.join(addresses)}")
