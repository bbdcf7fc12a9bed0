"""Attackers for bench_daemon_flood.py and tests/service/test_daemon_flood.py, each meant to run in
a process of its own for a bounded time against a real daemon over loopback.

- `forged_inits`: IKE_SA_INITs with forged source addresses (a raw IPv4 socket, IP_HDRINCL),
  every datagram from another address of `sources` and with another SPIi; the attacker never
  sees an answer, so COOKIEs (RFC 7296 §2.6) stop it. Sent as fast as `rate` allows.
- `oversized`: the same with IKE_SA_INIT datagrams of `size` octets (an IKE header whose Length
  says so, then padding), the largest loopback carries.
- `AuthFlooder`: a real initiator engine on many source addresses that answers COOKIEs and
  completes IKE_SA_INIT (so it holds half-open IKE SAs), then sends garbage in the SK payload of
  its IKE_AUTH (the ICV check fails); its half-open SAs stay until the responder's
  half_open_timeout.
- `FragmentFlooder`: the same, but instead of IKE_AUTH it sends validly protected Encrypted
  Fragments (RFC 7383) of a large message, all but the last, so the responder holds fragments
  of a message that never completes.

The engine-based attackers reuse loadgen.Generator (one initiator engine, one socket per source).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Sequence

from loadgen import ConnFactory, Generator

from ikev2.constants import ExchangeType, NotifyType
from ikev2.engine import Engine
from ikev2.engine.config import EngineConfig, Timers
from ikev2.engine.fragments import fragment_message
from ikev2.testing.sources import psk_initiator
from ikev2.wire import NotifyPayload

IKE_AUTH = ExchangeType.IKE_AUTH
IKE_RESPONSE = 0x20
_UDP = struct.Struct("!HHHH")


def init_template(target: str, port: int, psk: bytes) -> bytes:
    """One real IKE_SA_INIT request (SA, KE, Ni, notifies) of our initiator to target:port."""
    conn = psk_initiator("t", "127.0.0.9", target, psk, local_id=b"t", remote_port=port)
    engine = Engine(EngineConfig((conn,)))
    engine.initiate("t", 0.0)
    [datagram] = engine.datagrams_to_send()
    return datagram.data


def _ip_udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytearray:
    """IPv4 + UDP headers for a raw IP_HDRINCL socket: Linux fills in the IP checksum, the
    total length and the ID; a UDP checksum of 0 means none (RFC 768)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, socket.IPPROTO_UDP, 0, src, dst)
    udp = _UDP.pack(sport, dport, 8 + len(payload), 0)
    return bytearray(ip + udp + payload)


def forged_inits(
    target: str, port: int, template: bytes, rate: float, seconds: float, sources: str
) -> dict[str, float]:
    """Send forged IKE_SA_INITs for `seconds`; each from the next address of `sources` (a
    network) with the next SPIi. Returns {"sent", "seconds", "rate"} as achieved."""
    net = ipaddress.ip_network(sources)
    first, count = int(net.network_address) + 1, net.num_addresses - 2
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dst = socket.inet_aton(target)
    packet = _ip_udp(b"\0" * 4, dst, 500, port, template)
    spi_at, src_at = 28, 12  # SPIi: the first octets of the IKE header after IP(20)+UDP(8)
    sent = 0
    t0 = time.monotonic()
    end = t0 + seconds
    pack_into = struct.pack_into
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * rate) + 1
        while sent < due:
            pack_into("!Q", packet, spi_at, 0x5EED000000000000 | sent)
            pack_into("!I", packet, src_at, first + sent % count)
            try:
                sock.sendto(packet, (target, 0))
            except OSError:  # ENOBUFS/EAGAIN: loopback's queue is full, not sent
                break
            sent += 1
        if sent >= due:
            time.sleep(0.0005)
    sock.close()
    elapsed = time.monotonic() - t0
    return {"sent": sent, "seconds": round(elapsed, 3), "rate": round(sent / elapsed)}


def oversized(
    target: str, port: int, size: int, rate: float, seconds: float, sources: str
) -> dict[str, float]:
    """Forged IKE_SA_INIT datagrams of `size` octets: an IKE header (RFC 7296 §3.1) whose Length
    says `size`, first payload SA, then zeros."""
    header = os.urandom(8) + bytes(8) + bytes([33, 0x20, ExchangeType.IKE_SA_INIT, 0x08])
    header += bytes(4) + struct.pack("!I", size)
    return forged_inits(target, port, header + bytes(size - len(header)), rate, seconds, sources)


class _Mangler(Generator):
    """A Generator whose IKE_AUTH requests are changed on the way out (subclasses say how)."""

    def __init__(self, conn: ConnFactory, addresses: Sequence[str]) -> None:
        super().__init__(conn, addresses, ports=len(addresses))
        self.sent_auth = 0
        self.reached_auth: set[bytes] = set()

    def mangle(self, data: bytes, spi_i: bytes) -> list[bytes]:
        raise NotImplementedError

    def _send(self) -> None:
        for d in self.engine.datagrams_to_send():
            data = d.data
            if data[18] == IKE_AUTH and not data[19] & IKE_RESPONSE:
                out = self.mangle(data, data[:8])
                self.sent_auth += 1
                self.reached_auth.add(data[:8])
            else:
                out = [data]
            for item in out:
                with contextlib.suppress(BlockingIOError):
                    self.sockets[d.local[1]].sendto(item, (str(d.remote[0]), d.remote[1]))

    def flood(self, seconds: float, window: int) -> dict[str, float]:
        """Keep `window` handshakes in flight for `seconds` (each ends by the engine's give-up:
        the responder never answers the mangled IKE_AUTH)."""
        t0 = time.monotonic()
        started = 0
        while time.monotonic() - t0 < seconds:
            # a handshake whose IKE_AUTH went out has done its harm: it leaves the window
            inflight = started - self.failed - self.established - len(self.reached_auth)
            for _ in range(max(0, window - inflight)):
                self._initiate(time.monotonic())
                started += 1
            self._poll(0.01)
        self._send()
        return {"started": started, "reached_auth": len(self.reached_auth),
                "established": self.established}  # fmt: skip


class AuthFlooder(_Mangler):
    """Valid IKE_SA_INIT, then an IKE_AUTH whose SK payload body is random (RFC 7296 §3.14)."""

    def mangle(self, data: bytes, spi_i: bytes) -> list[bytes]:
        return [data[:32] + os.urandom(len(data) - 32)]


class FragmentFlooder(_Mangler):
    """Valid IKE_SA_INIT, then fragments 1..N-1 of an N-fragment IKE_AUTH, each with a valid
    ICV under the IKE SA's keys (RFC 7383 §2.5), and never fragment N."""

    def __init__(self, conn: ConnFactory, addresses: Sequence[str], message: int) -> None:
        super().__init__(conn, addresses)
        self.message = message
        self.fragments_sent = 0

    def mangle(self, data: bytes, spi_i: bytes) -> list[bytes]:
        if spi_i in self.reached_auth:
            return []  # retransmits: the fragments were sent once
        sa = next(s for s in self.engine.sas.values() if s.spi_i == spi_i)
        assert sa.sk_out is not None
        junk = NotifyPayload(NotifyType.INITIAL_CONTACT + 100, data=os.urandom(self.message))
        header = sa._header(IKE_AUTH, 1, False)
        parts = fragment_message(header, [junk], sa.sk_out, sa.random_bytes, 1400)
        self.fragments_sent += len(parts) - 1
        return parts[:-1]


def attacker_conn(target: str, port: int) -> ConnFactory:
    """The attackers' initiator connection: tries little, gives up soon (it wants half-open
    SAs at the responder, not IKE SAs of its own)."""

    def conn(name: str, address: str, local_port: int) -> object:
        return psk_initiator(
            name, address, target, b"attacker does not know the PSK", local_id=b"attacker",
            local_port=local_port, remote_port=port,
            timers=Timers(retransmit_timeout=2.0, retransmit_tries=1, dpd_delay=0),
        )  # fmt: skip

    return conn  # type: ignore[return-value]
