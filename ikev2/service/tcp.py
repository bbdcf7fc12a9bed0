"""TCP sockets for IKE and ESP (RFC 9329): a listener on the daemon's TCP port (4500 by default)
for IKE SAs a peer starts over TCP, and outgoing connections for ours (engine/tcp.py asks for
them with TcpConnect events and is told CONNECTED / FAILED / CLOSED).

Each connection is one TcpStream, keyed by its (local, remote) endpoints; the engine names a
connection by those, as it names a UDP path. The TCP Originator sends the stream prefix
"IKETCP" first (§4); the listener's side checks it.

Two ways of carrying a stream:
- espintcp (an XFRM kernel built with CONFIG_INET_ESPINTCP): after the prefix the socket gets
  the "espintcp" upper-layer protocol (setsockopt TCP_ULP). The kernel then takes the ESP
  frames itself (child SAs carry encap type TCP_ENCAP_ESPINTCP with the connection's ports),
  drops NAT-keepalives, and hands us one IKE message per recv() with its non-ESP marker; a
  send() of marker + message gets its Length from the kernel.
- userspace framing (wire/tcp_framing.py) otherwise: IKE works the same; ESP frames have no
  kernel to go to and are counted and dropped (the in-memory kernel, or a kernel without
  espintcp, where installing a TCP-encapsulated child SA fails and the engine deletes it).

A broken stream (wrong prefix, a Length of 0-2, recv errors) is closed (§6.1); peer input never
raises out of here. Writes that do not fit the socket buffer wait for it (add_writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from ..engine.config import IPAddress
from ..engine.events import Datagram, Endpoint
from ..engine.tcp import TcpChange, TcpChangeKind, TcpConnect
from ..kernel import Kernel
from ..log import get_logger
from ..wire.tcp_framing import (
    MAX_PACKET,
    NON_ESP_MARKER,
    STREAM_PREFIX,
    FrameKind,
    FramingError,
    StreamDecoder,
    frame_ike,
)

TCP_ULP = getattr(socket, "TCP_ULP", 31)  # linux/tcp.h
ESPINTCP = b"espintcp"
CONNECT_TIMEOUT = 10.0
PREFIX_TIMEOUT = 10.0  # an accepted connection must send IKETCP within this (§4)
MAX_STREAMS = 4096  # accepted connections at most; more are refused at once
READ_SIZE = 65536
BACKLOG = 128
RECONNECT_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)  # waits before each further reconnect try

log = get_logger("ikev2.service.tcp")

Receiver = Callable[[bytes, Endpoint, Endpoint], None]
Reporter = Callable[[TcpChange], None]


def _endpoint(address: tuple[str, int] | tuple[str, int, int, int]) -> Endpoint:
    return ipaddress.ip_address(address[0].partition("%")[0]), address[1]


def _userspace() -> StreamDecoder:
    """Our own framing; the listener's side reads the prefix itself first (TcpStream)."""
    return StreamDecoder(expect_prefix=False)


@dataclass(eq=False)
class TcpStream:
    """One TCP connection carrying IKE (and, with espintcp, ESP) of one IKE SA or a rekeyed pair."""

    sock: socket.socket
    local: Endpoint
    remote: Endpoint
    originator: bool  # we connected (§6.1: only we reconnect)
    prefix_needed: int = 0  # the listener's side: octets of IKETCP still to read (§4)
    prefix: bytearray = field(default_factory=bytearray)
    decoder: StreamDecoder | None = field(default_factory=lambda: _userspace())
    out: bytearray = field(default_factory=bytearray)  # userspace: bytes not yet written
    queued: list[bytes] = field(default_factory=list)  # espintcp: messages not yet written
    writer: bool = False  # add_writer is armed
    prefix_timer: asyncio.TimerHandle | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"rx": 0, "tx": 0, "dropped": 0})

    @property
    def espintcp(self) -> bool:
        """The kernel frames this stream (TCP_ULP espintcp is attached)."""
        return self.decoder is None


class TcpTransport:
    """The listener(s) and every open connection; IKE messages go to `receive`, changes of
    our connections to `report`, and `batch_done` runs after each read."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        receive: Receiver,
        batch_done: Callable[[], None],
        report: Reporter,
        *,
        kernel: Kernel | None = None,
        espintcp: bool = False,
    ) -> None:
        self.loop = loop
        self.receive = receive
        self.batch_done = batch_done
        self.report = report
        self.kernel = kernel  # bypass policies for our sockets (as for UDP)
        self.espintcp = espintcp  # try the espintcp ULP (XFRM kernels)
        self.listeners: list[socket.socket] = []
        self.streams: dict[tuple[Endpoint, Endpoint], TcpStream] = {}
        self.port = 0
        self.stats = {"accepted": 0, "refused": 0, "connected": 0, "failed": 0, "closed": 0,
                      "espintcp": 0, "esp_dropped": 0, "no_stream": 0}  # fmt: skip
        self._tasks: set[asyncio.Task[None]] = set()
        # the XFRM kernel refused TCP_ULP "espintcp": ESP cannot ride in our streams
        self.ulp_missing = False
        self.reconnect_delays = RECONNECT_DELAYS

    # --- listening (the TCP Responder's side)
    def listen(self, addresses: tuple[IPAddress, ...], port: int, reuse_port: bool = False) -> None:
        self.port = port
        for address in addresses:
            family = socket.AF_INET if address.version == 4 else socket.AF_INET6
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((str(address), port))
                sock.listen(BACKLOG)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRNOTAVAIL and address.version == 6:
                    log.warning("IPv6 address not available; skipped", address=str(address))
                    continue
                raise OSError(exc.errno, f"cannot listen on TCP {address} port {port}: "
                              f"{exc.strerror}") from None  # fmt: skip
            self._bypass(sock)
            self.listeners.append(sock)
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def describe(self) -> str:
        names = []
        for sock in self.listeners:
            host, port = sock.getsockname()[:2]
            names.append(f"{'[' + host + ']' if ':' in host else host}:{port} (TCP)")
        return ", ".join(names)

    def _bypass(self, sock: socket.socket) -> None:
        if self.kernel is not None:
            self.kernel.bypass_socket(sock.fileno(), sock.family)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("accept failed", error=exc.strerror)
                return
            if len(self.streams) >= MAX_STREAMS:
                self.stats["refused"] += 1
                sock.close()
                continue
            sock.setblocking(False)
            try:
                self._bypass(sock)
                local = _endpoint(sock.getsockname())
            except Exception as exc:  # a bypass refused, or the peer already gone
                log.info("accepted TCP connection dropped", error=str(exc))
                sock.close()
                continue
            stream = TcpStream(sock, local, _endpoint(address), originator=False,
                               prefix_needed=len(STREAM_PREFIX))  # fmt: skip
            self.stats["accepted"] += 1
            stream.prefix_timer = self.loop.call_later(PREFIX_TIMEOUT, self._no_prefix, stream)
            self._register(stream)

    def _no_prefix(self, stream: TcpStream) -> None:
        stream.prefix_timer = None
        if stream.prefix_needed:
            self._close(stream, "no IKETCP prefix in time")

    # --- connecting (the TCP Originator's side, §6.1)
    def connect(self, event: TcpConnect, attempt: int = 0) -> None:
        task = self.loop.create_task(self._connect(event, attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, event: TcpConnect, attempt: int = 0) -> None:
        family = socket.AF_INET if event.local.version == 4 else socket.AF_INET6
        host, port = str(event.remote[0]), event.remote[1]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            self._bypass(sock)
            sock.bind((str(event.local), 0))
            await asyncio.wait_for(self.loop.sock_connect(sock, (host, port)), CONNECT_TIMEOUT)
            local = _endpoint(sock.getsockname())
            # §4: the prefix goes first, before the kernel may take the stream over
            if sock.send(STREAM_PREFIX) != len(STREAM_PREFIX):
                raise OSError(errno.EIO, "stream prefix not written whole")
        except (OSError, TimeoutError) as exc:
            sock.close()
            self.stats["failed"] += 1
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            log.info("TCP connect failed", peer=f"{host}:{port}", reason=reason, attempt=attempt)
            if event.reconnect and attempt < len(self.reconnect_delays):
                # §6.1: the Originator re-establishes a dropped connection; a peer that is
                # restarting or a path that flaps gets a few more tries before the engine hears
                delay = self.reconnect_delays[attempt]
                self.loop.call_later(delay, self.connect, event, attempt + 1)
                return
            self.report(TcpChange(TcpChangeKind.FAILED, event.ike_sa_id, reason=str(reason)))
            return
        except Exception as exc:  # a kernel refusal of the bypass (KernelError)
            sock.close()
            self.stats["failed"] += 1
            self.report(TcpChange(TcpChangeKind.FAILED, event.ike_sa_id, reason=str(exc)))
            return
        stream = TcpStream(sock, local, event.remote, originator=True)
        self._attach_ulp(stream)
        old = self.streams.get((local, event.remote))
        if old is not None:  # the same 4-tuple again: the old one is gone (TIME_WAIT reuse)
            self._close(old, "replaced", report=False)
        self.stats["connected"] += 1
        self._register(stream)
        log.info("TCP connected", local=f"{local[0]}:{local[1]}", peer=f"{host}:{port}",
                 espintcp=stream.espintcp, reconnect=event.reconnect)  # fmt: skip
        self.report(TcpChange(TcpChangeKind.CONNECTED, event.ike_sa_id, local=local))

    def _attach_ulp(self, stream: TcpStream) -> None:
        """Hand the framing to the kernel's espintcp, if we may and it can (else userspace)."""
        if not self.espintcp:
            return
        try:
            stream.sock.setsockopt(socket.IPPROTO_TCP, TCP_ULP, ESPINTCP)
        except OSError as exc:
            if not self.ulp_missing:
                self.ulp_missing = True
                log.warning("kernel has no espintcp (CONFIG_INET_ESPINTCP): IKE over TCP works, "
                            "ESP in TCP cannot", error=exc.strerror)  # fmt: skip
            return
        stream.decoder = None
        self.stats["espintcp"] += 1

    def _register(self, stream: TcpStream) -> None:
        self.streams[(stream.local, stream.remote)] = stream
        self.loop.add_reader(stream.sock.fileno(), self._readable, stream)

    # --- receive
    def _readable(self, stream: TcpStream) -> None:
        got = False
        for _ in range(64):
            want = stream.prefix_needed if (stream.prefix_needed and self.espintcp) else READ_SIZE
            try:
                chunk = stream.sock.recv(want)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._close(stream, exc.strerror or "recv failed")
                break
            if not chunk:
                self._close(stream, "closed by peer")
                break
            if not self._take(stream, chunk):
                break
            got = True
            if stream.decoder is not None and not stream.prefix_needed:
                break  # a byte stream: one read drained what was there
        if got:
            self.batch_done()

    def _take(self, stream: TcpStream, chunk: bytes) -> bool:
        """Consume what one recv() returned; False when the stream is closed."""
        if stream.prefix_needed:
            head, chunk = chunk[: stream.prefix_needed], chunk[stream.prefix_needed :]
            stream.prefix += head
            stream.prefix_needed -= len(head)
            if not STREAM_PREFIX.startswith(bytes(stream.prefix)):
                self._close(stream, "stream does not start with IKETCP")
                return False
            if stream.prefix_needed:
                return True
            if stream.prefix_timer is not None:
                stream.prefix_timer.cancel()
                stream.prefix_timer = None
            self._attach_ulp(stream)
            if not chunk:
                return True
        stream.stats["rx"] += 1
        if stream.decoder is None:  # espintcp: one IKE message, non-ESP marker first
            if chunk[:4] == NON_ESP_MARKER:
                self.receive(chunk[4:], stream.remote, stream.local)
            else:
                stream.stats["dropped"] += 1
            return True
        for frame in stream.decoder.feed(chunk):
            if frame.kind is FrameKind.IKE:
                self.receive(frame.data, stream.remote, stream.local)
            else:  # no espintcp: ESP has nowhere to go
                self.stats["esp_dropped"] += 1
        if stream.decoder.error is not None:
            self._close(stream, stream.decoder.error)
            return False
        return True

    # --- send
    def send(self, datagram: Datagram) -> bool:
        stream = self.streams.get((datagram.local, datagram.remote))
        if stream is None:
            # §6.1: no connection (dropped, not yet re-established): the engine resends on the
            # next one, or gives up
            self.stats["no_stream"] += 1
            log.debug("no TCP connection for the message; dropped",
                      local=f"{datagram.local[0]}:{datagram.local[1]}",
                      peer=f"{datagram.remote[0]}:{datagram.remote[1]}")  # fmt: skip
            return False
        try:
            if stream.decoder is None:
                if len(datagram.data) + len(NON_ESP_MARKER) > MAX_PACKET:
                    raise FramingError("IKE message too large for TCP framing")
                stream.queued.append(NON_ESP_MARKER + datagram.data)  # the kernel adds Length
            else:
                stream.out += frame_ike(datagram.data)
        except FramingError as exc:
            log.warning("IKE message not sent", error=str(exc))
            return False
        stream.stats["tx"] += 1
        self._flush(stream)
        return True

    def _flush(self, stream: TcpStream) -> None:
        try:
            while stream.queued:
                stream.sock.send(stream.queued[0])  # espintcp: whole, or an error
                stream.queued.pop(0)
            while stream.out:
                sent = stream.sock.send(stream.out)
                del stream.out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:  # espintcp: the previous message is still going
                self._close(stream, exc.strerror or "send failed")
                return
        pending = bool(stream.queued or stream.out)
        if pending and not stream.writer:
            self.loop.add_writer(stream.sock.fileno(), self._flush, stream)
            stream.writer = True
        elif not pending and stream.writer:
            self.loop.remove_writer(stream.sock.fileno())
            stream.writer = False

    # --- teardown
    def _close(self, stream: TcpStream, reason: str, *, report: bool = True) -> None:
        key = (stream.local, stream.remote)
        if self.streams.get(key) is stream:
            del self.streams[key]
        if stream.prefix_timer is not None:
            stream.prefix_timer.cancel()
        with contextlib.suppress(Exception):
            self.loop.remove_reader(stream.sock.fileno())
        if stream.writer:
            with contextlib.suppress(Exception):
                self.loop.remove_writer(stream.sock.fileno())
        stream.sock.close()
        self.stats["closed"] += 1
        log.info("TCP connection closed", local=f"{stream.local[0]}:{stream.local[1]}",
                 peer=f"{stream.remote[0]}:{stream.remote[1]}", reason=reason)  # fmt: skip
        if report and not stream.prefix_needed:  # one that never said IKETCP carried no IKE SA
            self.report(TcpChange(TcpChangeKind.CLOSED, local=stream.local,
                                  remote=stream.remote, reason=reason))  # fmt: skip

    def drop(self, local: Endpoint, remote: Endpoint) -> bool:
        """Close one connection as if the network had (tests, and `ikev2` operators)."""
        stream = self.streams.get((local, remote))
        if stream is None:
            return False
        self._close(stream, "closed locally")
        return True

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for stream in list(self.streams.values()):
            self._close(stream, "daemon stopping", report=False)
        for sock in self.listeners:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self.listeners.clear()
