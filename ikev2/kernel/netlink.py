"""A NETLINK_XFRM socket: request/ack, dumps, and a non-blocking multicast event socket.

Framing follows linux/netlink.h: each message is a 16-byte nlmsghdr then a 4-aligned payload;
attributes are rtattr TLVs. The header walk is bounds-checked here in plain code so only whole,
validated slices reach construct (DESIGN.md §4). Every NLMSG_ERROR with a non-zero error becomes a
KernelError naming the operation.
"""

from __future__ import annotations

import errno
import itertools
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from . import xfrm_schemas as s
from .types import KernelError

REQUEST_TIMEOUT = 5.0  # seconds to wait for the kernel's answer to one request
RECV_BUFFER = 1 << 20  # one recv of a dump batch; the kernel fills at most ~32 KiB per batch
HDR = s.STRUCTS["nlmsghdr"][1]


@dataclass(frozen=True)
class NetlinkMessage:
    """One parsed netlink message: header fields and the payload after the header."""

    type: int
    flags: int
    seq: int
    payload: bytes


def split_messages(data: bytes, op: str) -> Iterator[NetlinkMessage]:
    """Walk the nlmsghdr chain of one datagram; a length that overruns it is an EPROTO error."""
    offset = 0
    while offset + HDR <= len(data):
        hdr = s.nlmsghdr.parse(data[offset : offset + HDR])
        if hdr.length < HDR or offset + hdr.length > len(data):
            raise KernelError(op, errno.EPROTO, f"netlink message length {hdr.length} overruns")
        yield NetlinkMessage(hdr.type, hdr.flags, hdr.seq, data[offset + HDR : offset + hdr.length])
        offset += s.nl_align(hdr.length)


def pack_attrs(attrs: Iterable[tuple[int, bytes]]) -> bytes:
    """rtattr TLVs (struct rtattr + payload, each padded to 4 bytes)."""
    out = bytearray()
    for attr_type, value in attrs:
        length = s.NLA_HDRLEN + len(value)
        out += s.rtattr.build({"length": length, "type": attr_type}) + value
        out += b"\0" * (s.nl_align(length) - length)
    return bytes(out)


def parse_attrs(data: bytes, op: str) -> dict[int, bytes]:
    """rtattr TLVs to {type: payload}; the NLA_F_NESTED / BYTEORDER bits are masked off."""
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + s.NLA_HDRLEN <= len(data):
        hdr = s.rtattr.parse(data[offset : offset + s.NLA_HDRLEN])
        if hdr.length < s.NLA_HDRLEN or offset + hdr.length > len(data):
            raise KernelError(op, errno.EPROTO, f"attribute length {hdr.length} overruns")
        attrs[hdr.type & 0x3FFF] = data[offset + s.NLA_HDRLEN : offset + hdr.length]
        offset += s.nl_align(hdr.length)
    return attrs


def error_code(msg: NetlinkMessage, op: str) -> int:
    """The positive errno of an NLMSG_ERROR message (0 for an ack)."""
    if len(msg.payload) < 4:
        raise KernelError(op, errno.EPROTO, "truncated NLMSG_ERROR")
    return -int(s.nlmsgerr.parse(msg.payload.ljust(20, b"\0")).error)


class NetlinkSocket:
    """A NETLINK_XFRM socket; with `groups` set it is a non-blocking event socket."""

    def __init__(self, protocol: int = s.NETLINK_XFRM, groups: int = 0) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
            self._sock.bind((0, groups))
        except OSError:
            self._sock.close()
            raise
        if groups:
            self._sock.setblocking(False)
        else:
            # the kernel answers a request at once; a bound on the wait turns a lost answer
            # into a KernelError instead of a daemon stuck in recv()
            self._sock.settimeout(REQUEST_TIMEOUT)
        self._seq = itertools.count(1)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def _send(self, op: str, msg_type: int, flags: int, body: bytes) -> int:
        seq = next(self._seq)
        header = s.nlmsghdr.build(
            {"length": HDR + len(body), "type": msg_type, "flags": flags, "seq": seq, "pid": 0}
        )
        try:
            self._sock.sendto(header + body, (0, 0))
        except OSError as exc:
            raise KernelError(op, exc.errno or errno.EIO, "netlink send failed") from exc
        return seq

    def _replies(self, op: str, seq: int) -> Iterator[NetlinkMessage]:
        """Messages answering `seq` (others, e.g. stale ones, are skipped)."""
        while True:
            try:
                data = self._sock.recv(RECV_BUFFER)
            except TimeoutError as exc:
                detail = f"no netlink answer within {REQUEST_TIMEOUT:g} s"
                raise KernelError(op, errno.ETIMEDOUT, detail) from exc
            except OSError as exc:
                raise KernelError(op, exc.errno or errno.EIO, "netlink recv failed") from exc
            for msg in split_messages(data, op):
                if msg.seq == seq:
                    yield msg

    def request(
        self, op: str, msg_type: int, body: bytes, detail: str = "", *, extra_flags: int = 0
    ) -> list[bytes]:
        """Send with NLM_F_ACK (and `extra_flags`, e.g. NLM_F_CREATE); return the payloads of
        data replies; raise on a non-zero error."""
        seq = self._send(op, msg_type, s.NLM_F_REQUEST | s.NLM_F_ACK | extra_flags, body)
        data: list[bytes] = []
        for msg in self._replies(op, seq):
            if msg.type == s.NLMSG_ERROR:
                code = error_code(msg, op)
                if code:
                    raise KernelError(op, code, detail)
                return data
            data.append(msg.payload)
        raise AssertionError("unreachable: _replies never ends")  # pragma: no cover

    def dump(self, op: str, msg_type: int, body: bytes = b"") -> list[tuple[int, bytes]]:
        """An NLM_F_DUMP request: (type, payload) of every entry until NLMSG_DONE."""
        seq = self._send(op, msg_type, s.NLM_F_REQUEST | s.NLM_F_DUMP, body)
        entries: list[tuple[int, bytes]] = []
        for msg in self._replies(op, seq):
            if msg.type == s.NLMSG_DONE:
                return entries
            if msg.type == s.NLMSG_ERROR:
                code = error_code(msg, op)
                if code:
                    raise KernelError(op, code, "dump failed")
                return entries
            entries.append((msg.type, msg.payload))
        raise AssertionError("unreachable: _replies never ends")  # pragma: no cover

    def read_pending(self, op: str) -> list[NetlinkMessage]:
        """Every message waiting on a non-blocking (event) socket."""
        messages: list[NetlinkMessage] = []
        while True:
            try:
                data = self._sock.recv(RECV_BUFFER)
            except BlockingIOError:
                return messages
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped events: report, keep going
                    raise KernelError(op, errno.ENOBUFS, "event socket overflowed") from exc
                raise KernelError(op, exc.errno or errno.EIO, "event recv failed") from exc
            messages.extend(split_messages(data, op))


def group_mask(*groups: int) -> int:
    """The bind() bitmask of netlink multicast groups (group n is bit n-1)."""
    mask = 0
    for group in groups:
        mask |= 1 << (group - 1)
    return mask
