"""Read IKE datagrams out of pcap, pcapng and hex-dump files (no dependency beyond struct).

- pcap (libpcap, µs or ns timestamps, either byte order) and pcapng (SHB/IDB/EPB/SPB/PB blocks,
  if_tsresol honoured), detected by their magic numbers; anything else is read as a hex dump.
- Link types: Ethernet (with 802.1Q/802.1ad tags), Linux cooked SLL and SLL2, raw IP, BSD loopback.
- IPv4 and IPv6 (extension headers skipped; fragments ignored), then UDP to or from port 500 or
  4500. On 4500 the 4-octet non-ESP marker is stripped (RFC 3948 §2.2); ESP (non-zero first four
  octets) and 1-octet NAT-keepalives (RFC 3948 §2.3) are skipped.
- Hex dump: one message per line, or blank-line-separated blocks; whitespace, colons and "0x"
  are ignored, lines starting with '#' are comments.

Frame numbers count every packet in the file from 1, as Wireshark numbers them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Final

from ..constants import IKE_PORT, NAT_T_PORT, NON_ESP_MARKER

PCAP_MAGICS: Final[dict[bytes, tuple[str, int]]] = {
    # magic as stored -> (byte order, timestamp fraction units per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
PCAPNG_SHB: Final = b"\x0a\x0d\x0d\x0a"
PCAPNG_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D

# pcapng block types
_BLOCK_IDB, _BLOCK_PB, _BLOCK_SPB, _BLOCK_EPB = 1, 2, 3, 6
_OPTION_IF_TSRESOL = 9

# Link-layer header types (tcpdump.org/linktypes.html)
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW = 0, 1, 101
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
_DLT_RAW_ALIASES: Final = frozenset({12, 14})  # DLT_RAW on some BSDs/OpenBSD

_ETHERTYPE_IPV4, _ETHERTYPE_IPV6 = 0x0800, 0x86DD
_ETHERTYPE_VLAN: Final = frozenset({0x8100, 0x88A8, 0x9100})
_IPPROTO_UDP = 17
_IPV6_EXTENSION_HEADERS: Final = frozenset({0, 43, 60})  # hop-by-hop, routing, destination
_IPV6_FRAGMENT = 44
IKE_PORTS: Final = frozenset({IKE_PORT, NAT_T_PORT})


class CaptureError(Exception):
    """The file cannot be read as a capture or hex dump."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """One IKE message as captured. For hex dumps the addresses, ports and time are None;
    `error` is set (and payload empty) for a hex line that is not valid hex."""

    frame: int
    timestamp: float | None
    src: str | None
    sport: int | None
    dst: str | None
    dport: int | None
    payload: bytes
    error: str | None = None


def read_datagrams(path: str | Path) -> Iterator[Datagram]:
    """Every IKE datagram in the file, in order. Raises OSError or CaptureError."""
    data = Path(path).read_bytes()
    if data[:4] in PCAP_MAGICS:
        return _from_packets(_pcap_packets(data))
    if data[:4] == PCAPNG_SHB:
        return _from_packets(_pcapng_packets(data))
    return _hex_datagrams(data)


# ---- pcap / pcapng ---------------------------------------------------------------------------

_Packet = tuple[int, float, int, bytes]  # frame number, timestamp, link type, frame octets


def _pcap_packets(data: bytes) -> Iterator[_Packet]:
    order, units = PCAP_MAGICS[data[:4]]
    if len(data) < 24:
        raise CaptureError("pcap global header truncated")
    link_type = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    offset, frame = 24, 0
    while offset + record.size <= len(data):
        seconds, fraction, captured, _ = record.unpack_from(data, offset)
        offset += record.size
        if offset + captured > len(data):
            raise CaptureError(f"pcap record {frame + 1} truncated")
        frame += 1
        yield frame, seconds + fraction / units, link_type, data[offset : offset + captured]
        offset += captured


def _pcapng_packets(data: bytes) -> Iterator[_Packet]:
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (link type, seconds per timestamp unit)
    offset, frame = 0, 0
    while offset + 12 <= len(data):
        if data[offset : offset + 4] == PCAPNG_SHB:
            magic = data[offset + 8 : offset + 12]
            order = "<" if struct.unpack("<I", magic)[0] == PCAPNG_BYTE_ORDER_MAGIC else ">"
            if struct.unpack(order + "I", magic)[0] != PCAPNG_BYTE_ORDER_MAGIC:
                raise CaptureError("pcapng section header has a bad byte-order magic")
            interfaces = []  # interface ids are per section
        block_type, block_length = struct.unpack_from(order + "II", data, offset)
        if block_length < 12 or block_length % 4 or offset + block_length > len(data):
            raise CaptureError(f"pcapng block at offset {offset} has bad length {block_length}")
        body = data[offset + 8 : offset + block_length - 4]
        if block_type == _BLOCK_IDB:
            interfaces.append(_interface(body, order))
        elif block_type in (_BLOCK_EPB, _BLOCK_PB):
            frame += 1
            if block_type == _BLOCK_EPB:
                interface, high, low, captured = struct.unpack_from(order + "IIII", body)
            else:  # obsolete Packet Block: 16-bit interface id and drops count
                interface, _, high, low, captured = struct.unpack_from(order + "HHIII", body)
            if interface >= len(interfaces):
                raise CaptureError(f"packet {frame} names unknown interface {interface}")
            link_type, resolution = interfaces[interface]
            yield frame, ((high << 32) | low) * resolution, link_type, body[20 : 20 + captured]
        elif block_type == _BLOCK_SPB:
            frame += 1
            if not interfaces:
                raise CaptureError(f"packet {frame} before any interface description")
            (original,) = struct.unpack_from(order + "I", body)
            link_type, _ = interfaces[0]
            yield frame, 0.0, link_type, body[4 : 4 + original]
        offset += block_length


def _interface(body: bytes, order: str) -> tuple[int, float]:
    """Interface Description Block: link type and the if_tsresol option (default 10^-6 s)."""
    link_type = struct.unpack_from(order + "H", body)[0]
    resolution = 1e-6
    offset = 8
    while offset + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, offset)
        if code == 0:
            break
        if code == _OPTION_IF_TSRESOL and length >= 1:
            value = body[offset + 4]
            resolution = 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        offset += 4 + (length + 3) // 4 * 4
    return link_type, resolution


def _from_packets(packets: Iterator[_Packet]) -> Iterator[Datagram]:
    for frame, timestamp, link_type, octets in packets:
        ip = _network_layer(link_type, octets)
        if ip is None:
            continue
        udp = _udp(ip)
        if udp is None:
            continue
        src, dst, sport, dport, payload = udp
        ike = _ike_payload(sport, dport, payload)
        if ike is not None:
            yield Datagram(frame, timestamp, src, sport, dst, dport, ike)


def _network_layer(link_type: int, frame: bytes) -> bytes | None:
    """The IP packet inside a link-layer frame, or None if it is not IP."""
    if link_type == LINKTYPE_ETHERNET:
        offset, ethertype = 14, int.from_bytes(frame[12:14], "big")
        while ethertype in _ETHERTYPE_VLAN and len(frame) >= offset + 4:
            ethertype = int.from_bytes(frame[offset + 2 : offset + 4], "big")
            offset += 4
    elif link_type == LINKTYPE_LINUX_SLL:
        offset, ethertype = 16, int.from_bytes(frame[14:16], "big")
    elif link_type == LINKTYPE_LINUX_SLL2:
        offset, ethertype = 20, int.from_bytes(frame[0:2], "big")
    elif link_type in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6) or link_type in (
        _DLT_RAW_ALIASES
    ):
        return frame
    elif link_type == LINKTYPE_NULL:
        return frame[4:]
    else:
        return None
    if ethertype not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        return None
    return frame[offset:]


def _udp(packet: bytes) -> tuple[str, str, int, int, bytes] | None:
    """(src, dst, sport, dport, UDP payload) of an unfragmented IPv4/IPv6 UDP packet."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        header_length = (packet[0] & 0x0F) * 4
        total = int.from_bytes(packet[2:4], "big")
        fragment = int.from_bytes(packet[6:8], "big")
        if packet[9] != _IPPROTO_UDP or fragment & 0x3FFF:  # MF flag or offset: a fragment
            return None
        src, dst = str(IPv4Address(packet[12:16])), str(IPv4Address(packet[16:20]))
        segment = packet[header_length:total]
    elif version == 6 and len(packet) >= 40:
        next_header, offset = packet[6], 40
        end = 40 + int.from_bytes(packet[4:6], "big")
        while next_header in _IPV6_EXTENSION_HEADERS and offset + 8 <= len(packet):
            next_header, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
        if next_header != _IPPROTO_UDP:  # also skips fragments (header 44)
            return None
        src, dst = str(IPv6Address(packet[8:24])), str(IPv6Address(packet[24:40]))
        segment = packet[offset:end]
    else:
        return None
    if len(segment) < 8:
        return None
    sport, dport, length = struct.unpack_from(">HHH", segment)
    return src, dst, sport, dport, segment[8 : max(length, 8)]


def _ike_payload(sport: int, dport: int, payload: bytes) -> bytes | None:
    """The IKE message in a UDP payload, or None (other ports, ESP-in-UDP, keepalives)."""
    if IKE_PORT in (sport, dport):
        return payload
    if NAT_T_PORT not in (sport, dport):
        return None
    if payload[:4] == NON_ESP_MARKER:
        return payload[4:]
    return None  # ESP (non-zero SPI) or a 1-octet 0xFF NAT-keepalive


# ---- hex dumps -------------------------------------------------------------------------------

_HEX_NOISE: Final = re.compile(r"0x|[\s:]", re.IGNORECASE)


def _hex_datagrams(data: bytes) -> Iterator[Datagram]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as error:
        raise CaptureError(
            f"not a pcap, pcapng or hex dump (non-text octet at offset {error.start})"
        ) from error
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    if any(not line.strip() for line in lines):
        blocks, current = [], []
        for line in lines:
            if line.strip():
                current.append(line)
            elif current:
                blocks.append("".join(current))
                current = []
        if current:
            blocks.append("".join(current))
    else:
        blocks = lines
    for frame, block in enumerate(blocks, start=1):
        digits = _HEX_NOISE.sub("", block)
        try:
            payload = bytes.fromhex(digits)
        except ValueError:
            bad = next((i for i, c in enumerate(digits) if c not in "0123456789abcdefABCDEF"), -1)
            reason = (
                f"invalid hex digit {digits[bad]!r} at position {bad}"
                if bad >= 0
                else f"odd number of hex digits ({len(digits)})"
            )
            yield Datagram(frame, None, None, None, None, None, b"", error=reason)
            continue
        yield Datagram(frame, None, None, None, None, None, payload)
